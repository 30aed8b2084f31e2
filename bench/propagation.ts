// Benchmark 3: segment propagation across the cluster, with the fs segment store and with the s3 one (s3rver).
// Redis and three nodes share one prefix; the stream is published to node 1. Two starts are timed for each
// segment: when ffmpeg finished it (its segment muxer appends the segment's CSV line to node 1's spool once
// the file is closed; the CSV files' mtimes once every rendition's line is there: when the group was done,
// timed by the kernel rather than by a poll a busy machine delays) and when node 1 appended
// it (this process subscribes to `${prefix}timeline`, on which append-n.lua publishes the stream id after each
// append, and timestamps each message that moved the stream's nextSeq). Every node's media playlist is polled
// every 10 ms; a node's latency for a segment is the first poll answer listing it less the start. Baselines,
// from this same process during the same minutes: the round trip of a plain Redis GET, and for s3 the fs
// figure. The store's bytes per stream-hour come from the sizes of the measured segments of every rendition.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import { errorMessage } from "../src/core/errors.ts";
import type { Managed } from "../tools/processes.ts";
import { Keys } from "../src/state/keys.ts";
import { DEFAULTS } from "../src/config/defaults.ts";
import { planLadder } from "../src/transcode/ladder.ts";
import { compared, percentile, type Figure } from "./report.ts";
import { S3RVER_BUCKET, s3rverNodeEnv, startS3rver } from "../tools/s3rver.ts";
import { httpGet, lastListedSeq, sleep, stop, tempDir, track, waitFor } from "./procs.ts";
import { HOST, PUSH, publish, startCluster, stopCluster, streamName, type BenchNode, type Cluster } from "./stack.ts";

const POLL_MS = 10;
const FINISH_POLL_MS = 2;
const TARGET_FS_P99_MS = 50;
const TARGET_S3_P99_MS = 100;

/** The stream left running for the reconnect benchmark. */
export interface LiveStream {
  id: string;
  publisher: Managed;
}

/**
 * The propagation clusters' transcode preset. A transcoder behind real time moves to a faster preset with a new
 * ffmpeg run (transcode/degrade.ts), whose groups number from 0 again: the finish times follow the first run
 * only, so the preset starts at the fastest, where no such move happens.
 */
export const PROPAGATION_ENV = { BATON_TRANSCODE_PRESET: "ultrafast" };

/** The default ladder's renditions for the bench's push, highest first. */
export function benchRenditions(): string[] {
  return planLadder(DEFAULTS.transcode.ladder, { width: PUSH.width, height: PUSH.height, frameRate: 30, hasAudio: true }).map((r) => r.name);
}

export function benchRendition(): string {
  return benchRenditions()[0]!;
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

/**
 * When ffmpeg finished each segment group of the stream on `node` (see the header), by group index: a fresh
 * stream's first transcoder run numbers its groups from 0 like the timeline numbers its sequences.
 */
async function watchFinishes(node: BenchNode, streamId: string, renditions: string[], finished: Map<number, number>, done: () => boolean): Promise<void> {
  const seen = new Map(renditions.map((r) => [r, new Map<number, number>()]));
  const offsets = new Map<string, number>();
  let runDir: string | null = null;
  while (!done()) {
    try {
      const job = runDir ? null : readdirSync(node.spoolDir).find((name) => name.startsWith(`${streamId}-`));
      if (job) runDir = join(node.spoolDir, job, "0");
    } catch {
      // the spool appears with the stream's first transcoder run
    }
    for (const r of runDir ? renditions : []) {
      const file = join(runDir!, `${r}.csv`);
      let text: string;
      let at: number;
      try {
        at = statSync(file).mtimeMs - performance.timeOrigin;
        text = readFileSync(file, "utf8");
      } catch {
        continue;
      }
      const end = text.lastIndexOf("\n") + 1;
      const from = offsets.get(r) ?? 0;
      if (end <= from) continue;
      offsets.set(r, end);
      for (const m of text.slice(from, end).matchAll(/-(\d+)\.ts,/g)) seen.get(r)!.set(Number(m[1]), at);
    }
    for (const [index] of seen.get(renditions[0]!)!) {
      if (finished.has(index)) continue;
      const times = renditions.map((r) => seen.get(r)!.get(index));
      if (times.every((t) => t !== undefined)) finished.set(index, Math.max(...(times as number[])));
    }
    await sleep(FINISH_POLL_MS);
  }
}

/** Bytes and media seconds of every rendition's segments `from`..`to`, read from node's playlists and HEADs. */
async function storedBytes(node: BenchNode, streamId: string, renditions: string[], range: { from: number; to: number }, done: () => boolean): Promise<{ bytes: number; seconds: number }[]> {
  const totals = renditions.map(() => ({ bytes: 0, seconds: 0 }));
  const counted = renditions.map(() => new Set<number>());
  while (!done()) {
    await Promise.all(renditions.map(async (r, i) => {
      const playlist = await httpGet(node.http(`/live/${streamId}/${r}/index.m3u8`)).catch(() => null);
      if (playlist?.status !== 200) return;
      for (const m of playlist.text.matchAll(/#EXTINF:([\d.]+),?\n((\d+)\.[0-9a-f]{12}\.ts)/g)) {
        const seq = Number(m[3]);
        if (seq < range.from || seq > range.to || counted[i]!.has(seq)) continue;
        const head = await fetch(node.http(`/live/${streamId}/${r}/${m[2]}`), { method: "HEAD", signal: AbortSignal.timeout(5000) }).catch(() => null);
        const length = Number(head?.headers.get("content-length") ?? NaN);
        if (!Number.isFinite(length)) continue;
        counted[i]!.add(seq);
        totals[i]!.bytes += length;
        totals[i]!.seconds += Number(m[1]);
      }
    }));
    await sleep(1000);
  }
  return totals;
}

/** Sum and count of node's baton_segment_publish_latency_seconds (ffmpeg's group noticed to in the timeline). */
async function publishLatency(node: BenchNode): Promise<{ sum: number; count: number }> {
  const text = (await httpGet(node.http("/metrics"), node.agent)).text;
  const total = (suffix: string): number => text.split("\n")
    .filter((l) => l.startsWith(`baton_segment_publish_latency_seconds_${suffix}`))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
  return { sum: total("sum"), count: total("count") };
}

/** What one propagation run measured, in ms from each start to the listing, every node and segment. */
export interface Propagation {
  store: string;
  segments: number;
  fromAppend: number[];
  fromFinish: number[];
  /** p99 from ffmpeg's finish, per node. */
  finishP99PerNode: string;
  rtts: number[];
  /** Node 1's mean time from noticing a finished group to having it in the timeline (store write, append), ms. */
  publishMeanMs: number;
  /** Bytes per media second of each rendition's measured segments, summed. */
  storedBytesPerSecond: number;
  renditions: string[];
  live: LiveStream;
}

/** Publishes a fresh stream to node 1 of `c` and measures segments 1 to `count` on every node; the stream stays live. */
export async function measurePropagation(c: Cluster, o: { count: number; store: string; log: (line: string) => void }): Promise<Propagation> {
  const { count } = o;
  const keys = new Keys(c.prefix);
  const id = streamName("prop");
  const renditions = benchRenditions();
  const path = `/live/${id}/${renditions[0]}/index.m3u8`;
  const sub = redis(c.redis.url);
  const cmd = redis(c.redis.url);
  const published = new Map<number, number>();
  const finished = new Map<number, number>();
  const seen = c.nodes.map(() => new Map<number, number>());
  const rtts: number[] = [];
  let finishedAll = false;
  const done = (): boolean => finishedAll;
  let publisher: Managed | null = null;
  const loops: Promise<void>[] = [];
  const stored = storedBytes(c.nodes[0]!, id, renditions, { from: 1, to: count }, done);
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
    loops.push(watchFinishes(c.nodes[0]!, id, renditions, finished, done));
    o.log(`${o.store}: publishing ${id} to ${c.nodes[0]!.id}; measuring segments 1 to ${count} on ${c.nodes.length} nodes`);
    const latencyBefore = await publishLatency(c.nodes[0]!);
    publisher = publish(c.nodes[0]!.rtmp(id));
    const p = publisher;
    const complete = (): boolean => seen.every((m) => m.has(count)) && published.has(count) && finished.has(count);
    const progress = (): string => `finished up to ${Math.max(-1, ...finished.keys())}, published up to ${Math.max(-1, ...published.keys())}, listed up to ` +
      seen.map((m, i) => `${Math.max(-1, ...m.keys())} on ${c.nodes[i]!.id}`).join(", ") + c.nodes.map((n) => n.problems()).join("");
    await waitFor(`segment ${count} on every node`, () => {
      if (p.child.exitCode !== null) throw new Error(`the publisher exited; ${progress()}`);
      return complete() ? true : undefined;
    }, (count * DEFAULTS.hls.segmentDuration * 1.5 + 40) * 1000, 200).catch((error: unknown) => {
      throw new Error(`${errorMessage(error)}: ${progress()}`, { cause: error });
    });
    finishedAll = true;
    await Promise.all(loops);
    const latencyAfter = await publishLatency(c.nodes[0]!);
    const fromAppend: number[] = [];
    const fromFinish: number[] = [];
    const finishPerNode: number[][] = c.nodes.map(() => []);
    for (let seq = 1; seq <= count; seq++) {
      seen.forEach((m, i) => {
        fromAppend.push(m.get(seq)! - published.get(seq)!);
        finishPerNode[i]!.push(m.get(seq)! - finished.get(seq)!);
      });
    }
    for (const list of finishPerNode) fromFinish.push(...list);
    const perRendition = await stored;
    const live = { id, publisher: p };
    publisher = null;
    return {
      store: o.store, segments: count, fromAppend, fromFinish, rtts, renditions, live,
      publishMeanMs: (1000 * (latencyAfter.sum - latencyBefore.sum)) / Math.max(1, latencyAfter.count - latencyBefore.count),
      finishP99PerNode: finishPerNode.map((list, i) => `${c.nodes[i]!.id.replace("bench-", "")} ${percentile(list, 99).toFixed(1)}`).join(", "),
      storedBytesPerSecond: perRendition.reduce((sum, r) => sum + (r.seconds > 0 ? r.bytes / r.seconds : 0), 0),
    };
  } finally {
    finishedAll = true;
    await Promise.all(loops).catch(() => undefined);
    await stored.catch(() => undefined);
    await stop(publisher, "SIGKILL", 1000);
    sub.disconnect();
    cmd.disconnect();
  }
}

/** ffmpeg finished to listed on every node, ms, for segments finished while Redis was frozen. */
export interface FrozenPropagation {
  segments: number;
  fromFinish: number[];
  finishP99PerNode: string;
  /** How long Redis was frozen, ms. */
  frozenMs: number;
}

/**
 * The live stream's next `count` segments with Redis frozen (SIGSTOP: it keeps its sockets and answers
 * nothing): each node lists them from the owner's offers (cluster/peers.ts). Redis is thawed after, and the
 * stream goes on.
 */
export async function frozenPropagation(c: Cluster, live: LiveStream, o: { count: number; log: (line: string) => void }): Promise<FrozenPropagation> {
  const renditions = benchRenditions();
  const path = `/live/${live.id}/${renditions[0]}/index.m3u8`;
  const finished = new Map<number, number>();
  const seen = c.nodes.map(() => new Map<number, number>());
  let over = false;
  const done = (): boolean => over;
  const loops = [watchFinishes(c.nodes[0]!, live.id, renditions, finished, done), ...c.nodes.map((node, i) => pollNode(node, path, seen[i]!, done))];
  const pid = c.redis.proc.child.pid!;
  let frozenAt = 0;
  try {
    // what every node lists now: the measured segments are the ones finished after the freeze
    await waitFor("every node polled", () => (seen.every((m) => m.size > 0) ? true : undefined), 10000, 50);
    const before = Math.max(...seen.map((m) => Math.max(...m.keys())));
    o.log(`fs, Redis frozen: measuring segments ${before + 2} to ${before + 1 + o.count} on ${c.nodes.length} nodes`);
    process.kill(pid, "SIGSTOP");
    frozenAt = performance.now();
    // the first segment after the freeze may have been finished before it: it is left out
    const wanted = Array.from({ length: o.count }, (_, i) => before + 2 + i);
    await waitFor(`segment ${wanted.at(-1)} on every node while Redis is frozen`, () => {
      if (live.publisher.child.exitCode !== null) throw new Error("the publisher exited");
      return wanted.every((seq) => finished.has(seq) && seen.every((m) => m.has(seq))) ? true : undefined;
    }, (o.count * DEFAULTS.hls.segmentDuration * 2 + 20) * 1000, 100).catch((error: unknown) => {
      const listed = seen.map((m, i) => `${Math.max(-1, ...m.keys())} on ${c.nodes[i]!.id}`).join(", ");
      throw new Error(`${errorMessage(error)}: finished up to ${Math.max(-1, ...finished.keys())}, listed up to ${listed}`, { cause: error });
    });
    const perNode = c.nodes.map((_, i) => wanted.map((seq) => seen[i]!.get(seq)! - finished.get(seq)!));
    return {
      segments: o.count,
      fromFinish: perNode.flat(),
      finishP99PerNode: perNode.map((list, i) => `${c.nodes[i]!.id.replace("bench-", "")} ${percentile(list, 99).toFixed(1)}`).join(", "),
      frozenMs: performance.now() - frozenAt,
    };
  } finally {
    if (frozenAt > 0) process.kill(pid, "SIGCONT");
    over = true;
    await Promise.all(loops).catch(() => undefined);
  }
}

/** ffmpeg finished to listed on every node with Redis frozen, against the same with Redis up (same run). */
export function frozenFigure(frozen: FrozenPropagation, fs: Propagation): Figure {
  const p99 = percentile(frozen.fromFinish, 99);
  return compared("fs, Redis frozen: ffmpeg finished to listed on every node p99", "ms", p99, "Redis up p99", percentile(fs.fromFinish, 99), {
    samples: frozen.fromFinish,
    note: `${frozen.segments} segments x 3 nodes during a ${(frozen.frozenMs / 1000).toFixed(1)}-s SIGSTOP of Redis (listed from the owner's offers); p50 ${percentile(frozen.fromFinish, 50).toFixed(1)} ms; p99 per node: ${frozen.finishP99PerNode}; goal: within a second`,
  });
}

/** The same measurement on a cluster of its own whose segment store is s3rver's bucket; stops it all after. */
export async function s3Propagation(o: { count: number; log: (line: string) => void }): Promise<Propagation> {
  o.log(`starting s3rver (bucket ${S3RVER_BUCKET}), redis-server and 3 baton nodes on the s3 store`);
  const s3 = await startS3rver(HOST, tempDir("s3rver"));
  track(s3.proc);
  try {
    const c = await startCluster(3, { ...s3rverNodeEnv(s3), ...PROPAGATION_ENV });
    try {
      const p = await measurePropagation(c, { ...o, store: "s3" });
      await stop(p.live.publisher, "SIGKILL", 1000);
      return p;
    } finally {
      await stopCluster(c);
    }
  } finally {
    await stop(s3.proc, "SIGTERM", 2000);
  }
}

/** The figures of the fs store's run (against Redis GETs) and of the s3 store's run (against the fs run). */
export function propagationFigures(fs: Propagation, s3: Propagation): Figure[] {
  const met = (p99: number, target: number): string => `target < ${target} ms on loopback: ${p99 < target ? "met" : "NOT met"}`;
  const note = (p: Propagation): string => `${p.segments} segments x 3 nodes, polled every ${POLL_MS} ms (adds up to ${POLL_MS} ms)`;
  const publishNote = (p: Propagation): string => `node 1 noticed group to appended (store write included): mean ${p.publishMeanMs.toFixed(1)} ms`;
  const fsP99 = percentile(fs.fromFinish, 99);
  const s3P99 = percentile(s3.fromFinish, 99);
  return [
    compared("segment propagation from append p50", "ms", percentile(fs.fromAppend, 50), "Redis GET RTT p50", percentile(fs.rtts, 50), {
      samples: fs.fromAppend, note: `${note(fs)}; ${fs.rtts.length} GETs`,
    }),
    compared("segment propagation from append p99", "ms", percentile(fs.fromAppend, 99), "Redis GET RTT p99", percentile(fs.rtts, 99)),
    compared("fs: ffmpeg finished to listed on every node p50", "ms", percentile(fs.fromFinish, 50), "Redis GET RTT p50", percentile(fs.rtts, 50), {
      samples: fs.fromFinish, note: `${note(fs)}; ${publishNote(fs)}`,
    }),
    compared("fs: ffmpeg finished to listed on every node p99", "ms", fsP99, "Redis GET RTT p99", percentile(fs.rtts, 99), {
      note: `${met(fsP99, TARGET_FS_P99_MS)}; p99 per node: ${fs.finishP99PerNode}; max ${Math.max(...fs.fromFinish).toFixed(1)} ms`,
    }),
    compared("s3: ffmpeg finished to listed on every node p50", "ms", percentile(s3.fromFinish, 50), "fs p50", percentile(fs.fromFinish, 50), {
      samples: s3.fromFinish, note: `${note(s3)}; s3rver on loopback; ${publishNote(s3)}`,
    }),
    compared("s3: ffmpeg finished to listed on every node p99", "ms", s3P99, "fs p99", fsP99, {
      note: `${met(s3P99, TARGET_S3_P99_MS)}; p99 per node: ${s3.finishP99PerNode}; max ${Math.max(...s3.fromFinish).toFixed(1)} ms`,
    }),
    storeBytesFigure(fs),
  ];
}

/** Bytes the store holds per stream-hour (every rendition), against the bytes the publisher sent in that hour. */
function storeBytesFigure(p: Propagation): Figure {
  const ingest = ((PUSH.videoKbps + PUSH.audioKbps) * 1000) / 8;
  return compared("store bytes per stream-hour", "GB", (p.storedBytesPerSecond * 3600) / 1e9, "publisher's bytes per hour", (ingest * 3600) / 1e9, {
    note: `default ladder (${p.renditions.join(", ")}, x264 ${PROPAGATION_ENV.BATON_TRANSCODE_PRESET}) from the bench's ${PUSH.width}x${PUSH.height} push: segments 1 to ${p.segments}`,
  });
}
