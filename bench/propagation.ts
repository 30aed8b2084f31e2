// Benchmark 3: segment propagation across the cluster. Redis and three nodes share one prefix; the stream is
// published to node 1. This process subscribes to `${prefix}timeline`, on which append-n.lua publishes the
// stream id after each append, and timestamps each message that moved the stream's nextSeq: that is when
// node 1 published the segment. Every node's media playlist is polled every 10 ms; a node's latency for a
// segment is the first poll answer listing it less the message time. Baseline, from this same process
// during the same minutes: the round trip of a plain Redis GET.
import { Redis } from "ioredis";
import { errorMessage } from "../src/core/errors.ts";
import type { Managed } from "../tools/processes.ts";
import { Keys } from "../src/state/keys.ts";
import { DEFAULTS } from "../src/config/defaults.ts";
import { planLadder } from "../src/transcode/ladder.ts";
import { compared, percentile, type Figure } from "./report.ts";
import { httpGet, lastListedSeq, sleep, stop, waitFor } from "./procs.ts";
import { publish, streamName, type BenchNode, type Cluster } from "./stack.ts";

const POLL_MS = 10;
const TARGET_P99_MS = 50;

/** The stream left running for the reconnect benchmark. */
export interface LiveStream {
  id: string;
  publisher: Managed;
}

export function benchRendition(): string {
  return planLadder(DEFAULTS.transcode.ladder, { width: 1280, height: 720, frameRate: 30, hasAudio: true })[0]!.name;
}

function redis(url: string): Redis {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on("error", () => undefined);
  return client;
}

/** Polls one node's playlist until `done()`; records when each sequence number was first listed. */
async function pollNode(node: BenchNode, path: string, seen: Map<number, number>, done: () => boolean): Promise<void> {
  let last = -1;
  while (!done()) {
    const started = performance.now();
    try {
      const r = await httpGet(node.http(path), node.agent);
      const at = performance.now();
      if (r.status === 200) {
        const newest = lastListedSeq(r.text);
        for (let seq = last + 1; seq <= newest; seq++) if (!seen.has(seq)) seen.set(seq, at);
        last = Math.max(last, newest);
      }
    } catch {
      // a refused or slow poll only shows as latency
    }
    const wait = POLL_MS - (performance.now() - started);
    if (wait > 0) await sleep(wait);
  }
}

/** GET round trips every 10 ms until `done()`. */
async function pingRedis(client: Redis, key: string, out: number[], done: () => boolean): Promise<void> {
  await client.set(key, "x", "PX", 3600000);
  while (!done()) {
    const started = performance.now();
    try {
      await client.get(key);
      out.push(performance.now() - started);
    } catch {
      // counted as missing; Redis errors would show in the propagation figures too
    }
    await sleep(POLL_MS);
  }
}

export async function propagation(c: Cluster, o: { quick: boolean; log: (line: string) => void }): Promise<{ figures: Figure[]; live: LiveStream }> {
  const count = o.quick ? 20 : 60;
  const keys = new Keys(c.prefix);
  const id = streamName("prop");
  const path = `/live/${id}/${benchRendition()}/index.m3u8`;
  const sub = redis(c.redis.url);
  const cmd = redis(c.redis.url);
  const published = new Map<number, number>();
  const seen = c.nodes.map(() => new Map<number, number>());
  const rtts: number[] = [];
  let finished = false;
  const done = (): boolean => finished;
  let publisher: Managed | null = null;
  const loops: Promise<void>[] = [];
  try {
    await Promise.all([sub.connect(), cmd.connect()]);
    let knownNext = 0;
    sub.on("message", (_channel: string, message: string) => {
      if (message !== id) return;
      const at = performance.now();
      void cmd.hget(keys.meta(id), "nextSeq").then((value) => {
        const next = Number(value ?? 0);
        for (let seq = knownNext; seq < next; seq++) if (!published.has(seq)) published.set(seq, at);
        knownNext = Math.max(knownNext, next);
      }, () => undefined);
    });
    await sub.subscribe(keys.timelineChannel());
    c.nodes.forEach((node, i) => loops.push(pollNode(node, path, seen[i]!, done)));
    loops.push(pingRedis(cmd, `${c.prefix}bench:ping`, rtts, done));
    o.log(`publishing ${id} to ${c.nodes[0]!.id}; measuring segments 1 to ${count} on ${c.nodes.length} nodes`);
    publisher = publish(c.nodes[0]!.rtmp(id));
    const p = publisher;
    const complete = (): boolean => seen.every((m) => m.has(count)) && published.has(count);
    const progress = (): string => `published up to ${Math.max(-1, ...published.keys())}, listed up to ` +
      seen.map((m, i) => `${Math.max(-1, ...m.keys())} on ${c.nodes[i]!.id}`).join(", ") + c.nodes.map((n) => n.problems()).join("");
    await waitFor(`segment ${count} on every node`, () => {
      if (p.child.exitCode !== null) throw new Error(`the publisher exited; ${progress()}`);
      return complete() ? true : undefined;
    }, (count * DEFAULTS.hls.segmentDuration * 1.5 + 40) * 1000, 200).catch((error: unknown) => {
      throw new Error(`${errorMessage(error)}: ${progress()}`, { cause: error });
    });
    finished = true;
    await Promise.all(loops);
    const all: number[] = [];
    const perNode: number[][] = c.nodes.map(() => []);
    for (let seq = 1; seq <= count; seq++) {
      const at = published.get(seq)!;
      seen.forEach((m, i) => perNode[i]!.push(m.get(seq)! - at));
    }
    for (const list of perNode) all.push(...list);
    const p50 = percentile(all, 50);
    const p99 = percentile(all, 99);
    const met = p99 < TARGET_P99_MS ? "met" : "NOT met";
    const nodes = perNode.map((list, i) => `${c.nodes[i]!.id.replace("bench-", "")} ${percentile(list, 99).toFixed(1)}`).join(", ");
    const live = { id, publisher: p };
    publisher = null;
    return {
      live,
      figures: [
        compared("segment propagation p50", "ms", p50, "Redis GET RTT p50", percentile(rtts, 50), {
          samples: all, note: `${count} segments x ${c.nodes.length} nodes, polled every ${POLL_MS} ms; ${rtts.length} GETs`,
        }),
        compared("segment propagation p99", "ms", p99, "Redis GET RTT p99", percentile(rtts, 99), {
          note: `target < ${TARGET_P99_MS} ms on loopback: ${met}; p99 per node: ${nodes}`,
        }),
        { name: "segment propagation max", unit: "ms", value: Math.max(...all), note: `min ${Math.min(...all).toFixed(1)} ms` },
      ],
    };
  } finally {
    finished = true;
    await Promise.all(loops).catch(() => undefined);
    await stop(publisher, "SIGKILL", 1000);
    sub.disconnect();
    cmd.disconnect();
  }
}
