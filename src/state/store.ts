// Everything baton keeps in Redis about streams, behind typed methods. Multi-step changes are Lua scripts
// (./scripts/); keys come from keys.ts only.
import { Redis, type RedisOptions } from "ioredis";
import { StorageError } from "../core/errors.ts";
import { storageKeys } from "../storage/keys.ts";
import type { SegmentStore } from "../storage/store.ts";
import type { Claim, LadderEntry, SegmentGroup, StreamSnapshot, StreamState, TimelineEntry } from "../core/model.ts";
import { BatonError } from "../core/errors.ts";
import { newClaimId } from "./claim-id.ts";
import { Keys } from "./keys.ts";
import { defineScripts, mapScriptError, queueScript, runScript } from "./scripts.ts";
import { Broadcasts, type EndedReply } from "./broadcasts.ts";
import { TimelinePages } from "./timeline-pages.ts";

/** Where the Redis connections go: redis.url alone, or the primary the sentinels name. */
export interface RedisTarget {
  url: string;
  /** `host:port` of Redis Sentinels (`redis.sentinels`); empty or absent: redis.url's host. */
  sentinels?: string[];
  /** The Sentinel master group name (`redis.sentinelName`). */
  sentinelName?: string;
}

export interface StoreOptions extends RedisTarget {
  prefix: string;
  /** Segments listed in a media playlist (without a DVR window), and at least that many with one. */
  window: number;
  /** The DVR window in ms (`hls.dvrWindow`): media kept and listed; 0: `window` segments, no pages. */
  dvrWindowMs?: number;
  /** Entries in a timeline page (`hls.dvrPageSize`); default DEFAULT_PAGE_SIZE. */
  pageSize?: number;
  reconnectWindowMs: number;
  retentionSec: number;
  /** Milliseconds a Redis call may take before it fails (`redis.commandTimeout`). */
  commandTimeoutMs: number;
  /** Replicas that must acknowledge a claim and a release with WAIT (`redis.waitReplicas`); 0: none. */
  waitReplicas: number;
  /** Where segment bytes go (src/storage): Redis keeps the timeline, never the media. */
  media: SegmentStore;
  /** recording.retention (s) with recording.enabled: every page and segment is kept, an ended broadcast that long. */
  recordingRetentionSec?: number;
  /** How long a segment that left the playlist stays in the store; default trimmedSegmentMs (tests shorten it). */
  trimmedGraceMs?: number;
}

/** `host:port` (IPv6 as `[address]:port`, as redis.sentinels' rule accepts) as ioredis takes it. */
function sentinelAddress(text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(":");
  return { host: text.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(text.slice(colon + 1)) };
}

/** ioredis options that make a client find the primary through Sentinel and follow its failovers. */
function sentinelOptions(target: RedisTarget): RedisOptions {
  if (!target.sentinels?.length) return {};
  return {
    sentinels: target.sentinels.map(sentinelAddress),
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

/** Milliseconds before a client ioredis gave up on is connected again (see redisClient). */
export const RESTART_ENDED_MS = 1000;

/** Clients baton closed itself: any other end of a client is ioredis giving up (see redisClient). */
const closedByBaton = new WeakSet<Redis>();

/** Closes a client of redisClient() for good. */
export function closeRedis(client: Redis): void {
  closedByBaton.add(client);
  client.disconnect();
}

export function redisClient(target: RedisTarget, name: string, commandTimeoutMs: number): Redis {
  const client = new Redis(target.url, {
    connectionName: name,
    // fail fast while Redis is away: callers queue or answer from cache rather than hang a request
    enableOfflineQueue: false,
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
    retryStrategy: (times) => Math.min(100 * times, 1000),
    lazyConnect: true,
    ...sentinelOptions(target),
  });
  // ioredis 6 ends a client for good when a reconnect is asked for (disconnect(true): a role check,
  // reconnectOnError) while a connect is under way: that connect fails with "Connection is closed." and
  // nothing retries it. A client ended so once in the Sentinel failover test, before the promotion (which
  // path, not found). A client that ended without closeRedis() starts over, as a retry would have.
  client.on("end", () => {
    if (closedByBaton.has(client)) return;
    setTimeout(() => {
      if (!closedByBaton.has(client) && client.status === "end") client.connect().catch(() => undefined);
    }, RESTART_ENDED_MS).unref();
  });
  return client;
}

export class StreamStore {
  readonly keys: Keys;
  readonly redis: Redis;
  /**
   * With `waitReplicas`, claims and releases go through their own connection: WAIT blocks the connection it
   * runs on (up to its timeout when a replica lags), which must not hold up the playlist reads on `redis`.
   */
  private readonly acked: Redis | null;
  /** The DVR window's timeline pages, and the deletion of media that left the window. */
  readonly pages: TimelinePages;
  /** Ended broadcasts kept as VOD. */
  readonly broadcasts: Broadcasts;

  constructor(readonly options: StoreOptions, name = "baton") {
    this.keys = new Keys(options.prefix);
    this.redis = redisClient(options, name, options.commandTimeoutMs);
    const [media, recording] = [options.media, options.recordingRetentionSec !== undefined];
    this.pages = new TimelinePages({ ...options, redis: this.redis, keys: this.keys, dvrWindowMs: options.dvrWindowMs ?? 0, keep: recording });
    this.broadcasts = new Broadcasts({ redis: this.redis, keys: this.keys, media, pages: this.pages.cache, recording });
    this.acked = options.waitReplicas > 0 ? redisClient(options, `${name}-acked`, options.commandTimeoutMs) : null;
    for (const client of this.clients) {
      defineScripts(client);
      // errors show up as failed calls; without a listener ioredis would print each reconnect failure
      client.on("error", () => undefined);
    }
  }

  private get clients(): Redis[] {
    return this.acked ? [this.redis, this.acked] : [this.redis];
  }

  /** Connects; resolves when connected, rejects if Redis cannot be reached now (retries continue). */
  async connect(): Promise<void> {
    for (const client of this.clients) {
      await client.connect().catch((error: unknown) => {
        if (client.status === "ready") return;
        throw error;
      });
    }
  }

  get ready(): boolean {
    return this.clients.every((client) => client.status === "ready");
  }

  async close(): Promise<void> {
    this.pages.close();
    for (const client of this.clients) closeRedis(client);
  }

  async claim(streamId: string, nodeId: string, publishId: string, leaseTtlMs: number, targetDuration: number): Promise<Claim> {
    const k = this.keys;
    const id = newClaimId();
    const client = this.acked ?? this.redis;
    // The stream joins the set before its state exists, in one round trip: Redis runs a connection's
    // commands in order, so a claimed stream is always listed for the sweep (a listed id without state is
    // harmless: the sweep drops it). The claim script cannot add it itself: the set's key has no hash tag,
    // and Redis Cluster runs a script only on keys of one slot. The sweep's removal of a stream it found
    // gone can race a new claim; each renewal adds the stream again (see renew()).
    const pipeline = client.pipeline().sadd(k.streams(), streamId);
    queueScript(pipeline, "claim", [
      k.meta(streamId), k.lease(streamId), k.timeline(streamId), k.pages(streamId),
      nodeId, publishId, leaseTtlMs, targetDuration, k.timelineChannel(), streamId, id,
    ]);
    const replies = await pipeline.exec();
    const [error, result] = replies?.[1] ?? [new Error("redis pipeline aborted"), null];
    if (error) throw mapScriptError(error);
    const [epoch, nextSeq, target, ladder, broadcast] = result as [number, number, string, string, string];
    const claim: Claim = {
      id,
      epoch: Number(epoch),
      nextSeq: Number(nextSeq),
      targetDuration: Number(target),
      ladder: ladder ? (JSON.parse(ladder) as LadderEntry[]) : null,
      holder: `${nodeId}/${publishId}/${epoch}`,
      broadcast,
    };
    if (this.acked) {
      try {
        await this.replicated(this.acked, "claim");
      } catch (notReplicated) {
        // the publisher is refused (it retries): leave the stream as a refused claim would have
        await this.releaseOn(this.acked, streamId, claim).catch(() => false);
        throw notReplicated;
      }
    }
    return claim;
  }

  /**
   * Extends the lease; `handingOver` while the owner flushes after a handoff mark. Adds the stream to the
   * stream set again each time (idempotent), so a stream the claim could not list is listed within a second.
   */
  async renew(streamId: string, claim: Claim, leaseTtlMs: number, handingOver = false): Promise<boolean> {
    const k = this.keys;
    const pipeline = this.redis.pipeline();
    queueScript(pipeline, "renew", [k.lease(streamId), k.meta(streamId), claim.holder, leaseTtlMs, claim.epoch, claim.id, handingOver ? "1" : "0"]);
    pipeline.sadd(k.streams(), streamId);
    const replies = await pipeline.exec();
    const [error, result] = replies?.[0] ?? [new Error("redis pipeline aborted"), null];
    if (error) throw mapScriptError(error);
    return result === 1;
  }

  /**
   * What a publish token is checked against before a claim: the stream's last revocation (unix seconds), the
   * digest of the token its current broadcast started with, and its state.
   */
  async publishGrant(streamId: string): Promise<{ revokedAt: number | null; grant: string | null; state: StreamState | null }> {
    const k = this.keys;
    const replies = await this.redis.multi().get(k.revoked(streamId)).hmget(k.meta(streamId), "grant", "state").exec();
    if (!replies) throw new Error("redis transaction aborted");
    const [[revokedError, revoked], [metaError, meta]] = replies as [[Error | null, string | null], [Error | null, (string | null)[]]];
    if (revokedError || metaError) throw revokedError ?? metaError;
    return { revokedAt: revoked === null ? null : Number(revoked), grant: meta[0] ?? null, state: (meta[1] as StreamState | null) ?? null };
  }

  /** Records the token a broadcast started with (its digest), so its reconnects may use it after it expires. */
  async setGrant(streamId: string, digest: string): Promise<void> {
    await this.redis.hset(this.keys.meta(streamId), "grant", digest);
  }

  /** Refuses every publish token of the stream issued up to `at` (unix seconds), and forgets the broadcast's grant. */
  async revoke(streamId: string, at: number): Promise<void> {
    const k = this.keys;
    await this.redis.multi().set(k.revoked(streamId), String(at)).hdel(k.meta(streamId), "grant").exec();
  }

  /** Sets the ladder if the stream has none yet; returns the one in force. */
  async setLadder(streamId: string, claim: Claim, ladder: LadderEntry[]): Promise<LadderEntry[]> {
    const k = this.keys;
    const json = (await runScript(this.redis, "ladder", [
      k.meta(streamId), claim.epoch, JSON.stringify(ladder), k.timelineChannel(), streamId, claim.id,
    ])) as string;
    return JSON.parse(json) as LadderEntry[];
  }

  /**
   * Appends one aligned segment of every rendition; throws FencedError when the writer lost the stream or the
   * stream ended. Safe to retry after a timeout: a write Redis ran anyway is answered again.
   */
  async append(streamId: string, claim: Claim, group: SegmentGroup): Promise<TimelineEntry> {
    const k = this.keys;
    const media = this.options.media;
    // the bytes first: a segment the timeline lists is readable from every node (a retry writes them again)
    await Promise.all(group.renditions.map((r) => media.put(storageKeys.segment(streamId, claim.broadcast, r.name, group.seq, claim.id), r.bytes)));
    const durations: Record<string, number> = {};
    for (const r of group.renditions) durations[r.name] = Math.round(r.duration * 1000) / 1000;
    const [entry, length, ...left] = (await runScript(this.redis, "append", [
      k.meta(streamId), k.timeline(streamId),
      claim.epoch, claim.id, group.seq, Math.round(group.pdt), group.disc ? "1" : "0", this.pages.on ? 0 : this.options.window, "",
      k.timelineChannel(), streamId, JSON.stringify(durations),
    ])) as [string, number, ...string[]];
    await this.pages.appended(streamId, claim, length, left);
    return JSON.parse(entry) as TimelineEntry;
  }


  /** Marks the caller's lease as being handed over (a drain); claims elsewhere wait for the release. */
  async markHandoff(streamId: string, claim: Claim): Promise<boolean> {
    return (await runScript(this.redis, "handoff", [this.keys.lease(streamId), claim.holder])) === 1;
  }

  async release(streamId: string, claim: Claim): Promise<boolean> {
    const client = this.acked ?? this.redis;
    const released = await this.releaseOn(client, streamId, claim);
    if (this.acked) await this.replicated(this.acked, "release");
    return released;
  }

  private async releaseOn(client: Redis, streamId: string, claim: Claim): Promise<boolean> {
    const k = this.keys;
    const result = await runScript(client, "release", [
      k.meta(streamId), k.lease(streamId), claim.holder, claim.epoch, k.timelineChannel(), streamId, claim.id,
    ]);
    return result === 1;
  }

  /**
   * Waits until `waitReplicas` replicas have the connection's writes so far (Redis WAIT), so a failover to
   * one of them keeps them. WAIT's own timeout is half the command timeout, so its answer comes first.
   */
  private async replicated(client: Redis, what: string): Promise<void> {
    const wanted = this.options.waitReplicas;
    const timeoutMs = Math.max(1, Math.floor(this.options.commandTimeoutMs / 2));
    const acknowledged = await client.wait(wanted, timeoutMs);
    if (acknowledged < wanted) {
      throw new BatonError("NOT_REPLICATED", `${what} acknowledged by ${acknowledged} of ${wanted} replicas within ${timeoutMs} ms`);
    }
  }

  /**
   * Advances a stream whose owner is gone; its state ("gone" when none is left), and whether this call changed
   * it. A broadcast this call ended is sealed for VOD (state/broadcasts.ts) and scheduled for deletion from the
   * segment store after its retention (recording.retention when recording, else hls.retention).
   */
  async sweep(streamId: string): Promise<{ state: StreamState | "gone"; changed: boolean }> {
    const k = this.keys;
    const [state, changed, ...ended] = (await runScript(this.redis, "sweep", [
      k.meta(streamId), k.lease(streamId), k.timeline(streamId), k.pages(streamId),
      this.options.reconnectWindowMs, this.options.retentionSec, k.timelineChannel(), streamId,
    ])) as [StreamState | "gone", string, ...Partial<EndedReply>];
    if (state === "gone") await this.redis.srem(k.streams(), streamId);
    const broadcast = ended[0];
    if (state === "ended" && changed === "1" && broadcast) {
      const expiresAt = Date.now() + (this.options.recordingRetentionSec ?? this.options.retentionSec) * 1000;
      // a broadcast that could not be sealed (the store failed) is no VOD, but its media still expires
      await this.broadcasts.seal(streamId, ended as EndedReply, expiresAt).catch(() => this.redis.zadd(k.expiring(), expiresAt, `${streamId}/${broadcast}`));
    }
    return { state, changed: changed === "1" };
  }

  /** Deletes the media of every broadcast whose retention ended; returns how many it deleted. */
  async deleteExpired(now = Date.now()): Promise<number> {
    const k = this.keys;
    const due = await this.redis.zrangebyscore(k.expiring(), 0, now, "LIMIT", 0, 100);
    for (const member of due) {
      const [streamId, broadcast] = member.split("/") as [string, string];
      // a member that is no broadcast (another release's) is dropped rather than retried for ever
      await this.options.media.deletePrefix(storageKeys.broadcast(streamId, broadcast)).catch((error: unknown) => {
        if (!(error instanceof StorageError && error.code === "STORAGE_REFUSED")) throw error;
      });
      await this.broadcasts.expired(streamId, broadcast).catch(() => undefined);
      await this.redis.zrem(k.expiring(), member);
    }
    return due.length;
  }

  /** Takes or renews the sweeper's lease: true while this node is the one that sweeps. */
  async lead(nodeId: string, ttlMs: number): Promise<boolean> {
    return (await runScript(this.redis, "lead", [this.keys.sweeper(), nodeId, ttlMs])) === 1;
  }

  async listStreams(): Promise<string[]> {
    return (await this.redis.smembers(this.keys.streams())).sort();
  }

  /**
   * One atomic read of a stream's state and timeline (its pages from the page cache or the segment store,
   * then the tail), cut to the DVR window; null when the stream has no state.
   */
  async read(streamId: string): Promise<StreamSnapshot | null> {
    const k = this.keys;
    const replies = await this.redis.multi().hgetall(k.meta(streamId)).lrange(k.pages(streamId), 0, -1).lrange(k.timeline(streamId), 0, -1).exec();
    if (!replies) throw new Error("redis transaction aborted");
    const [[metaError, meta], [pagesError, refs], [listError, list]] = replies as [[Error | null, Record<string, string>], [Error | null, string[]], [Error | null, string[]]];
    if (metaError || pagesError || listError) throw metaError ?? pagesError ?? listError;
    if (!meta.state || !meta.epoch) return null;
    const entries = await this.pages.entries(refs, list);
    return {
      id: streamId,
      epoch: Number(meta.epoch),
      claim: meta.claim ?? "",
      broadcast: meta.broadcast ?? meta.claim ?? "",
      owner: meta.owner ?? "",
      state: meta.state as StreamState,
      targetDuration: Number(meta.targetDuration),
      ladder: meta.ladder ? (JSON.parse(meta.ladder) as LadderEntry[]) : null,
      nextSeq: Number(meta.nextSeq ?? 0),
      createdAt: Number(meta.createdAt ?? 0),
      claimedAt: Number(meta.claimedAt ?? 0),
      releasedAt: meta.releasedAt ? Number(meta.releasedAt) : null,
      entries,
    };
  }

  /** A segment's bytes from the segment store, or null: none of that claim has that sequence number (or it expired). */
  async readSegment(streamId: string, broadcast: string, rendition: string, seq: number, claim: string): Promise<Buffer | null> {
    return this.options.media.get(storageKeys.segment(streamId, broadcast, rendition, seq, claim));
  }

  /** A second connection in subscriber mode; calls the handler of each channel with each message. */
  async subscribe(handlers: Record<string, (message: string) => void>, onReconnect: () => void): Promise<Redis> {
    // the command timeout bounds SUBSCRIBE (at start and after reconnects); once subscribed, no command is
    // outstanding, so a frozen Redis leaves the subscription quiet rather than closed
    const sub = redisClient(this.options, "baton-sub", this.options.commandTimeoutMs);
    sub.on("error", () => undefined);
    sub.on("message", (channel: string, message: string) => handlers[channel]?.(message));
    sub.on("ready", onReconnect);
    // enableOfflineQueue is off, so subscribe once connected; ioredis resubscribes after reconnects
    try {
      await sub.connect();
      await sub.subscribe(...Object.keys(handlers));
    } catch (error) {
      // the caller tries again with a new client: this one must not go on reconnecting beside it
      closeRedis(sub);
      throw error;
    }
    return sub;
  }
}
