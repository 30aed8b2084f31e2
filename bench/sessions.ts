// Benchmark 5: viewer session positions. A real redis-server and baton's SessionStore (src/state/sessions.ts)
// as one node runs it: N sessions each report a position, round after round, as fast as the store takes
// them; figure: position updates per second that reach Redis (batched into one pipeline every flush).
// Baseline in the same run: the same updates sent one at a time (one HSET + PEXPIRE round trip each), the way
// a naive implementation would. Memory per session: Redis used_memory growth over the sessions created, and
// the node process's heap growth while holding them in its write queue and cache.
import { Redis } from "ioredis";
import { DEFAULTS } from "../src/config/defaults.ts";
import { Keys } from "../src/state/keys.ts";
import { defineScripts } from "../src/state/scripts.ts";
import { SessionStore } from "../src/state/sessions.ts";
import { issuedAt, newSessionId } from "../src/delivery/session-token.ts";
import { compared, type Figure } from "./report.ts";
import { stop } from "./procs.ts";
import { benchPrefix, startBenchRedis } from "./stack.ts";

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info("memory");
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
}

export async function sessions(ctx: { quick: boolean; log: (line: string) => void }): Promise<Figure[]> {
  const count = ctx.quick ? 2000 : 10000;
  const rounds = ctx.quick ? 3 : 5;
  const server = await startBenchRedis();
  const redis = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  defineScripts(redis);
  const keys = new Keys(benchPrefix());
  const store = new SessionStore(redis, keys, { ttlSec: DEFAULTS.sessions.ttl, flushIntervalMs: DEFAULTS.sessions.flushInterval });
  try {
    const memoryBefore = await usedMemory(redis);
    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const ids: string[] = [];
    for (let i = 0; i < count; i++) ids.push(newSessionId());
    // a session's record is made by its first use: here a first report, as a player's first one
    store.start();
    const first = { node: "node-1", report: { position: 0, pdt: Date.now(), paused: false } };
    await Promise.all(ids.map((id) => store.update(id, first, { streamId: "bench", issuedAt: issuedAt(id) })));
    const redisPerSession = ((await usedMemory(redis)) - memoryBefore) / count;
    ctx.log(`${count} sessions created; ${rounds} rounds of position reports`);

    // batched, as baton writes them: everyone reports, the store flushes every flushInterval
    let started = Date.now();
    for (let round = 0; round < rounds; round++) {
      await Promise.all(ids.map((id, i) => store.update(id, { report: { position: round * 2 + i / count, pdt: Date.now(), paused: false } })));
    }
    const batchedSeconds = (Date.now() - started) / 1000;
    const heapPerSession = Math.max(0, process.memoryUsage().heapUsed - heapBefore) / count;
    await store.close();

    // baseline: one round trip per update
    const sample = ids.slice(0, Math.min(ids.length, ctx.quick ? 1000 : 3000));
    started = Date.now();
    for (const [i, id] of sample.entries()) {
      await redis.multi().hset(keys.session(id), { position: i, pdt: Date.now(), paused: "0" }).pexpire(keys.session(id), DEFAULTS.sessions.ttl * 1000).exec();
    }
    const singleSeconds = (Date.now() - started) / 1000;
    const batchedRate = (count * rounds) / batchedSeconds;
    const singleRate = sample.length / singleSeconds;
    return [
      compared("session position updates into Redis", "updates/s", batchedRate, "one round trip per update", singleRate, {
        note: `${count} sessions x ${rounds} rounds, flush every ${DEFAULTS.sessions.flushInterval} ms`,
      }),
      { name: "Redis memory per session", unit: "bytes", value: Math.round(redisPerSession) },
      { name: "node heap per session (write queue and cache)", unit: "bytes", value: Math.round(heapPerSession), note: "without --expose-gc: an upper bound" },
    ];
  } finally {
    await store.close();
    redis.disconnect();
    await stop(server.proc);
  }
}
