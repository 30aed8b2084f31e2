// The local cluster's Redis: one redis-server with its data under var/redis, or, with Sentinel (the
// redis-failover chaos scenario, `npm run chaos -- --sentinel`), a primary, one replica and three sentinels on
// loopback, as a high-availability deployment runs them. The nodes then know only the sentinels.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import type { PidFile } from "./pid-file.ts";
import { freePort, startProcess, startRedis, stopProcess, waitForPort, waitUntil, type Managed } from "./processes.ts";

const HOST = "127.0.0.1";

export interface SentinelSettings {
  /** The master group's name (`sentinel monitor NAME ...`, redis.sentinelName). */
  name: string;
  primaryPort: number;
  /** How many sentinels watch it: a majority of them must agree it is down. */
  count: number;
  /** Milliseconds without an answer before a sentinel thinks the primary is down. */
  downAfterMs: number;
  /** Milliseconds a failover may take before another sentinel may try again. */
  failoverTimeoutMs: number;
}

/** A sentinel's config file (sentinels rewrite theirs as they learn the topology: one writable file each). */
export function sentinelConfig(port: number, dir: string, o: SentinelSettings): string {
  const quorum = Math.floor(o.count / 2) + 1;
  return [
    `port ${port}`, `bind ${HOST}`, "daemonize no", `dir ${dir}`,
    `sentinel monitor ${o.name} ${HOST} ${o.primaryPort} ${quorum}`,
    `sentinel down-after-milliseconds ${o.name} ${o.downAfterMs}`,
    `sentinel failover-timeout ${o.name} ${o.failoverTimeoutMs}`,
    `sentinel parallel-syncs ${o.name} 1`,
    "",
  ].join("\n");
}

/** Starts one sentinel (redis-server in sentinel mode: no package beyond redis-server is needed). */
export async function startSentinel(port: number, dir: string, o: SentinelSettings, options: { logFile?: string; ownGroup?: boolean } = {}): Promise<Managed> {
  const file = join(dir, "sentinel.conf");
  writeFileSync(file, sentinelConfig(port, dir, o));
  const proc = startProcess(`redis-sentinel:${port}`, "redis-server", [file, "--sentinel"], options);
  await waitForPort(HOST, port, 10000, proc).catch((error: unknown) => {
    proc.child.kill("SIGKILL");
    throw error;
  });
  return proc;
}

/** A SENTINEL command to the first sentinel that answers it. */
async function askSentinels(clients: Redis[], ...args: string[]): Promise<unknown> {
  let lastError: unknown = new Error("no sentinel");
  for (const client of clients) {
    try {
      return await client.call("SENTINEL", ...args);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

interface DataServer {
  port: number;
  dir: string;
  proc: Managed | null;
}

export interface LocalRedisOptions {
  port: number;
  /** The cluster's state directory: data under redis/ (redis-replica/, sentinel-N/), logs under logs/. */
  dir: string;
  pids: PidFile;
  sentinel: boolean;
}

/** Where the sentinels wait before calling the primary down, and how long one failover may take. */
export const LOCAL_SENTINEL = { name: "baton", count: 3, downAfterMs: 2000, failoverTimeoutMs: 10000 };

export class LocalRedis {
  private readonly servers: DataServer[];
  private readonly sentinels: Managed[] = [];
  private readonly clients: Redis[] = [];
  /** `host:port` of each sentinel (redis.sentinels), empty without Sentinel. */
  readonly sentinelAddresses: string[] = [];

  constructor(private readonly o: LocalRedisOptions) {
    this.servers = [{ port: o.port, dir: join(o.dir, "redis"), proc: null }];
  }

  get url(): string {
    return `redis://${HOST}:${this.o.port}`;
  }

  /** Starts the server (with Sentinel: the primary, its replica, then the sentinels once the replica is in sync). */
  async start(): Promise<void> {
    if (this.o.sentinel) this.servers.push({ port: await freePort(HOST), dir: join(this.o.dir, "redis-replica"), proc: null });
    await this.startServers(this.o.port);
    if (!this.o.sentinel) return;
    for (let i = 0; i < LOCAL_SENTINEL.count; i++) {
      const port = await freePort(HOST);
      const dir = join(this.o.dir, `sentinel-${i + 1}`);
      mkdirSync(dir, { recursive: true });
      const proc = await startSentinel(port, dir, { ...LOCAL_SENTINEL, primaryPort: this.o.port }, { logFile: join(this.o.dir, "logs", `sentinel-${i + 1}.log`), ownGroup: true });
      this.o.pids.add(`redis-sentinel-${i + 1}`, proc.child.pid);
      this.sentinels.push(proc);
      this.sentinelAddresses.push(`${HOST}:${port}`);
      const client = new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 1 });
      client.on("error", () => undefined);
      this.clients.push(client);
    }
    // before this, a failover could not be agreed on or would have nothing to promote
    await waitUntil("the sentinels to know each other and the replica", async () => {
      for (const client of this.clients) {
        const others = (await client.call("SENTINEL", "sentinels", LOCAL_SENTINEL.name)) as unknown[];
        const replicas = (await client.call("SENTINEL", "replicas", LOCAL_SENTINEL.name)) as unknown[];
        if (others.length < LOCAL_SENTINEL.count - 1 || replicas.length < 1) return false;
      }
      return true;
    }, 30000, 100);
  }

  /** The primary's port now: the one the sentinels name (without Sentinel, the one server's). */
  async primaryPort(): Promise<number> {
    if (!this.o.sentinel) return this.o.port;
    const [, port] = (await askSentinels(this.clients, "get-master-addr-by-name", LOCAL_SENTINEL.name)) as [string, string];
    return Number(port);
  }

  /** Starts every data server that is not running: the primary `primary`, the others its replicas. */
  async startServers(primary?: number): Promise<void> {
    const primaryPort = primary ?? (await this.primaryPort());
    for (const [i, server] of this.servers.entries()) {
      if (server.proc) continue;
      const name = i === 0 ? "redis" : "redis-replica";
      const proc = startRedis({
        port: server.port, dir: server.dir, persistent: true, logFile: join(this.o.dir, "logs", `${name}.log`), ownGroup: true,
        ...(server.port !== primaryPort ? { replicaOf: primaryPort } : {}),
      });
      server.proc = proc;
      this.o.pids.add(i === 0 ? "redis-server" : "redis-replica", proc.child.pid);
      await waitForPort(HOST, server.port, 10000, proc).catch((error: Error) => {
        throw new Error(`Redis did not start: ${error.message} (see ${join(this.o.dir, "logs", `${name}.log`)})`);
      });
    }
  }

  /** Stops every data server (each saves its append-only file): Redis is away for every node. */
  async stopServers(): Promise<void> {
    await Promise.all(this.servers.map(async (server) => {
      if (server.proc) await stopProcess(server.proc, "SIGTERM", 10000);
      server.proc = null;
    }));
  }

  /** Freezes (SIGSTOP) or thaws (SIGCONT) every data server: their sockets stay open, they answer nothing. */
  signal(signal: "SIGSTOP" | "SIGCONT"): void {
    for (const server of this.servers) if (server.proc?.child.pid) process.kill(server.proc.child.pid, signal);
  }

  /**
   * A failover: SIGKILLs the primary the sentinels name and waits until they name another (the replica,
   * promoted), then starts the old one again as its replica. Resolves with the two ports.
   */
  async failover(timeoutMs = 30000): Promise<{ from: number; to: number }> {
    if (!this.o.sentinel) throw new Error("a failover needs the local cluster's Sentinel (npm run chaos -- --sentinel)");
    const from = await this.primaryPort();
    const server = this.servers.find((s) => s.port === from);
    if (!server?.proc) throw new Error(`the primary the sentinels name (port ${from}) is not the local cluster's`);
    server.proc.child.kill("SIGKILL");
    await server.proc.exited;
    server.proc = null;
    await waitUntil("the sentinels to promote the replica", async () => (await this.primaryPort()) !== from, timeoutMs, 100);
    const to = await this.primaryPort();
    await this.startServers(to);
    return { from, to };
  }

  /** Stops the sentinels, then the data servers. */
  async stop(): Promise<void> {
    for (const client of this.clients) client.disconnect();
    await Promise.all(this.sentinels.map((p) => stopProcess(p, "SIGTERM", 5000)));
    await this.stopServers();
  }
}
