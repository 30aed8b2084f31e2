// The one place that makes Redis connections: to redis.url, to the primary Redis Sentinels name, or to a Redis
// Cluster (ioredis Cluster). The rest of the code holds a RedisClient, whichever it is: both kinds share the
// command API, pipelines, scripts and pub/sub. What differs in a Cluster (a pipeline or a MULTI must stay on
// one shard) is handled where it matters: byShard() here, and the callers that say so.
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";

/** Where the Redis connections go: redis.url alone, the primary the sentinels name, or a Redis Cluster. */
export interface RedisTarget {
  url: string;
  /** `host:port` of Redis Sentinels (`redis.sentinels`); empty or absent: redis.url's host. */
  sentinels?: string[];
  /** The Sentinel master group name (`redis.sentinelName`). */
  sentinelName?: string;
  /** `host:port` seed nodes of a Redis Cluster (`redis.cluster`); empty or absent: not a cluster. */
  cluster?: string[];
}

export type RedisClient = Redis | Cluster;

/** `host:port` (IPv6 as `[address]:port`, as the config's HOST_PORT rule accepts) as ioredis takes it. */
function address(text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(":");
  return { host: text.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(text.slice(colon + 1)) };
}

/** ioredis options that make a client find the primary through Sentinel and follow its failovers. */
function sentinelOptions(target: RedisTarget): RedisOptions {
  if (!target.sentinels?.length) return {};
  return {
    sentinels: target.sentinels.map(address),
    name: target.sentinelName ?? "mymaster",
    role: "master",
    // a rediss:// URL means TLS to the primary; the sentinels themselves are asked in plain TCP
    enableTLSForSentinelMode: target.url.startsWith("rediss://"),
    // the primary's address is asked again on each reconnect; while every sentinel is away, asked again as
    // often as a plain connection retries
    sentinelRetryStrategy: (times) => Math.min(100 * times, 1000),
    // no failoverDetector (a subscription to +switch-master on every sentinel, per client): a dead primary
    // closes the connection, and sentinels end the clients of an old primary they turn into a replica (CLIENT
    // KILL), so every client asks the sentinels again anyway; and its disconnect, if it lands while a
    // reconnect is under way, is the kind that ends the client (see redisClient's "end")
    //
    // an old primary that came back as a replica answers writes with READONLY: reconnect (through the
    // sentinels, to the new primary) without sending the command again (see autoResendUnfulfilledCommands)
    reconnectOnError: (error) => error.message.startsWith("READONLY"),
  };
}

/** What every connection does, whatever it connects to. */
function commonOptions(name: string, commandTimeoutMs: number): RedisOptions {
  return {
    connectionName: name,
    maxRetriesPerRequest: 1,
    // a Redis that takes a command and does not answer (frozen, stalled, half a partition) must not hang the
    // caller: each command fails after commandTimeout, and a socket that brought no reply for as long is
    // closed, so the client leaves "ready" (/readyz says so) and later calls fail at once, not one by one
    commandTimeout: commandTimeoutMs,
    socketTimeout: commandTimeoutMs,
    // a command that timed out may still run when Redis wakes up; it must not be sent again after a
    // reconnect behind its caller's back (the caller retries what is safe to retry: see append-n.lua)
    autoResendUnfulfilledCommands: false,
    connectTimeout: 2000,
  };
}

/** redis.url's user, password and TLS for every shard of a Cluster (a Cluster has only database 0). */
function clusterOptions(target: RedisTarget, name: string, commandTimeoutMs: number): ClusterOptions {
  const url = new URL(target.url);
  return {
    // fail fast while the cluster is away or its slots are being learned, as the offline queue does below
    enableOfflineQueue: false,
    lazyConnect: true,
    clusterRetryStrategy: (times) => Math.min(100 * times, 1000),
    // the slot map is asked again after a MOVED, a failed node or this long, so a failover is followed
    slotsRefreshTimeout: 2000,
    slotsRefreshInterval: 5000,
    // reads go to masters: a replica may lag behind a timeline its master already moved on
    scaleReads: "master",
    redisOptions: {
      ...commonOptions(name, commandTimeoutMs),
      username: url.username ? decodeURIComponent(url.username) : undefined,
      password: url.password ? decodeURIComponent(url.password) : undefined,
      tls: url.protocol === "rediss:" ? {} : undefined,
    },
  };
}

/** Milliseconds before a client ioredis gave up on is connected again (see redisClient). */
export const RESTART_ENDED_MS = 1000;

/** Clients baton closed itself: any other end of a client is ioredis giving up (see redisClient). */
const closedByBaton = new WeakSet<RedisClient>();

/** Closes a client of redisClient() for good. */
export function closeRedis(client: RedisClient): void {
  closedByBaton.add(client);
  client.disconnect();
}

export function redisClient(target: RedisTarget, name: string, commandTimeoutMs: number): RedisClient {
  const client: RedisClient = target.cluster?.length
    ? new Cluster(target.cluster.map(address), clusterOptions(target, name, commandTimeoutMs))
    : new Redis(target.url, {
      ...commonOptions(name, commandTimeoutMs),
      // fail fast while Redis is away: callers queue or answer from cache rather than hang a request
      enableOfflineQueue: false,
      retryStrategy: (times) => Math.min(100 * times, 1000),
      lazyConnect: true,
      ...sentinelOptions(target),
    });
  // ioredis 6 ends a client for good when a reconnect is asked for (disconnect(true): a role check,
  // reconnectOnError) while a connect is under way: that connect fails with "Connection is closed." and
  // nothing retries it. A client ended so once in the Sentinel failover test, before the promotion (which
  // path, not found); a Cluster whose retry strategy gave up ends too. A client that ended without
  // closeRedis() starts over, as a retry would have.
  client.on("end", () => {
    if (closedByBaton.has(client)) return;
    setTimeout(() => {
      if (!closedByBaton.has(client) && client.status === "end") client.connect().catch(() => undefined);
    }, RESTART_ENDED_MS).unref();
  });
  return client;
}

/** CRC16/XMODEM, the hash Redis Cluster maps keys to slots with. */
function crc16(bytes: Buffer): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The Redis Cluster slot of a key: of its hash tag (the first non-empty `{...}`) when it has one. */
export function keySlot(key: string): number {
  const open = key.indexOf("{");
  const close = open >= 0 ? key.indexOf("}", open + 1) : -1;
  const hashed = close > open + 1 ? key.slice(open + 1, close) : key;
  return crc16(Buffer.from(hashed)) % 16384;
}

/**
 * Splits work on many keys into groups a pipeline may carry: ioredis sends a Cluster's pipeline to one shard,
 * and refuses one whose keys are served by different shards. One group for a single Redis; for a Cluster, one
 * per master as the client's slot map has it now (a slot that moved since is answered MOVED, which the
 * pipeline follows when its commands all moved together, or fails: its caller retries).
 */
export function byShard<T>(client: RedisClient, items: T[], key: (item: T) => string): T[][] {
  if (!(client instanceof Cluster)) return items.length ? [items] : [];
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const owner = client.slots[keySlot(key(item))]?.[0] ?? "";
    let group = groups.get(owner);
    if (!group) groups.set(owner, (group = []));
    group.push(item);
  }
  return [...groups.values()];
}
