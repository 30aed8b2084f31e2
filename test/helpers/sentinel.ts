// Redis Sentinel for failover tests: sentinel processes (redis-server in sentinel mode, so no package beyond
// redis-server is needed) watching a primary on free loopback ports, tracked for stopAll().
import { Redis } from "ioredis";
import { startSentinel, type SentinelSettings } from "../../tools/local-redis.ts";
import { freePort } from "../../tools/processes.ts";
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

export type SentinelOptions = SentinelSettings;

/**
 * Starts `count` sentinels monitoring the primary and resolves once each of them knows the others and at least
 * one replica: before that, a failover could not be agreed or would have nothing to promote.
 */
export async function startTestSentinels(o: SentinelOptions): Promise<TestSentinels> {
  const ports: number[] = [];
  const clients: Redis[] = [];
  for (let i = 0; i < o.count; i++) {
    const port = await freePort();
    track(await startSentinel(port, tempDir(`sentinel-${i}`), o));
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
