// Redis Sentinel for failover tests: sentinel processes (redis-server in sentinel mode, so no package beyond
// redis-server is needed) watching a primary on free loopback ports, tracked for stopAll().
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort, startProcess, waitForPort } from "../../tools/processes.ts";
import { HOST, tempDir, track, waitFor } from "./stack.ts";

export interface TestSentinels {
  /** `host:port` of each sentinel, as redis.sentinels takes them. */
  addresses: string[];
  /** The master group name they monitor. */
  name: string;
  /** The port of the primary the first sentinel that answers names now. */
  primaryPort(): Promise<number>;
  /** Closes the test's connections to the sentinels (the processes stop with stopAll()). */
  close(): void;
}

export interface SentinelOptions {
  name: string;
  primaryPort: number;
  count: number;
  /** Milliseconds without an answer before a sentinel thinks the primary is down. */
  downAfterMs: number;
  /** Milliseconds a failover may take before another sentinel may try again. */
  failoverTimeoutMs: number;
}

function sentinelConfig(port: number, dir: string, o: SentinelOptions): string {
  // a majority of the sentinels agree the primary is down, then one is elected to promote a replica
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

/**
 * Starts `count` sentinels monitoring the primary and resolves once each of them knows the others and at least
 * one replica: before that, a failover could not be agreed or would have nothing to promote.
 */
export async function startTestSentinels(o: SentinelOptions): Promise<TestSentinels> {
  const ports: number[] = [];
  const clients: Redis[] = [];
  for (let i = 0; i < o.count; i++) {
    const port = await freePort();
    const dir = tempDir(`sentinel-${i}`);
    // sentinels rewrite their config file as they learn the topology: one writable file each
    const file = join(dir, "sentinel.conf");
    writeFileSync(file, sentinelConfig(port, dir, o));
    const proc = track(startProcess(`redis-sentinel:${port}`, "redis-server", [file, "--sentinel"]));
    await waitForPort(HOST, port, 10000, proc);
    ports.push(port);
    const client = new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 1 });
    client.on("error", () => undefined);
    clients.push(client);
  }
  const sentinel = (client: Redis, ...args: string[]): Promise<unknown> => client.call("SENTINEL", ...args);
  await waitFor("the sentinels to know each other and a replica", async () => {
    for (const client of clients) {
      const others = (await sentinel(client, "sentinels", o.name)) as unknown[];
      const replicas = (await sentinel(client, "replicas", o.name)) as unknown[];
      if (others.length < o.count - 1 || replicas.length < 1) return undefined;
    }
    return true;
  }, 20000, 200);
  return {
    addresses: ports.map((port) => `${HOST}:${port}`),
    name: o.name,
    async primaryPort() {
      let lastError: unknown;
      for (const client of clients) {
        try {
          const [, port] = (await sentinel(client, "get-master-addr-by-name", o.name)) as [string, string];
          return Number(port);
        } catch (error) {
          lastError = error;
        }
      }
      throw lastError;
    },
    close() {
      for (const client of clients) client.disconnect();
    },
  };
}
