// Benchmark 10: what one live stream costs Redis now that media lives in the segment store. A real
// redis-server and node with the light ladder and a light publisher; after the stream settles, for a measured
// span: bytes written into Redis per media second (INFO's total_net_input_bytes, every command of the node:
// appends, lease renewals, heartbeats), and the stream's Redis memory (MEMORY USAGE of its keys). Baseline in
// the same run: the segment bytes the ladder produced per media second, which is what Redis took in before the
// segment store (the figure goals: under 1 KB per media second, under 64 KB per stream). Then the DVR window
// at its full length: a StreamStore driven directly with synthetic groups of a three-rendition ladder (2 s
// segments) to two hours of entries, its Redis memory and the bytes its appends and archives sent Redis.
import { Redis } from "ioredis";
import { StreamStore } from "../src/state/store.ts";
import { FsSegmentStore } from "../src/storage/fs.ts";
import { compared, type Figure } from "./report.ts";
import { sleep, stop, tempDir } from "./procs.ts";
import { lightLadderEnv, publishLight, waitForSeq } from "./live.ts";
import { benchPrefix, startBenchNode, startBenchRedis, streamName } from "./stack.ts";

async function netInput(redis: Redis): Promise<number> {
  return Number(/total_net_input_bytes:(\d+)/.exec(await redis.info("stats"))?.[1] ?? 0);
}

async function streamMemory(redis: Redis, stream: string): Promise<number> {
  let total = 0;
  for (const key of await redis.keys(`*{${stream}}*`)) total += (await redis.memory("USAGE", key)) ?? 0;
  return total;
}

/** Bytes of the segments listed in the stream's 360p and 240p playlists, and their media seconds. */
async function segmentBytes(http: (path: string) => string, stream: string): Promise<{ bytes: number; seconds: number }> {
  let bytes = 0;
  let seconds = 0;
  for (const rendition of ["360p", "240p"]) {
    const text = await (await fetch(http(`/live/${stream}/${rendition}/index.m3u8`))).text();
    const lines = text.split("\n");
    for (const [i, line] of lines.entries()) {
      const duration = /^#EXTINF:([\d.]+)/.exec(line)?.[1];
      const uri = lines[i + 1];
      if (!duration || !uri) continue;
      bytes += (await (await fetch(http(`/live/${stream}/${rendition}/${uri}`))).arrayBuffer()).byteLength;
      if (rendition === "360p") seconds += Number(duration);
    }
  }
  return { bytes, seconds };
}

/** Two hours of 2-s segments of a three-rendition ladder through the store: its Redis memory, its bytes in. */
async function dvrWindowFootprint(url: string, redis: Redis, prefix: string, entries: number): Promise<{ memory: number; perMediaSecond: number }> {
  const dir = tempDir("dvr");
  const store = new StreamStore({
    url, prefix, window: 6, dvrWindowMs: 7_200_000, reconnectWindowMs: 30000, retentionSec: 60, commandTimeoutMs: 5000, waitReplicas: 0,
    media: new FsSegmentStore(dir),
  });
  await store.connect();
  try {
    const stream = streamName("dvr");
    const claim = await store.claim(stream, "bench", "bench-pub", 600000, 2);
    const before = await netInput(redis);
    const t0 = Date.now() - entries * 2000;
    for (let seq = 0; seq < entries; seq++) {
      const renditions = ["1080p", "720p", "480p"].map((name) => ({ name, duration: 2, bytes: Buffer.from("segment") }));
      await store.append(stream, claim, { seq, pdt: t0 + seq * 2000, disc: false, renditions });
    }
    const perMediaSecond = ((await netInput(redis)) - before) / (entries * 2);
    return { memory: await streamMemory(redis, stream), perMediaSecond };
  } finally {
    await store.close();
  }
}

export async function redisFootprint(ctx: { quick: boolean; log: (line: string) => void }): Promise<Figure[]> {
  const server = await startBenchRedis();
  const redis = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const node = await startBenchNode({ redisUrl: server.url, prefix: benchPrefix(), id: "bench-footprint", env: lightLadderEnv() });
  const stream = streamName("footprint");
  const spanMs = ctx.quick ? 10000 : 30000;
  const rate = async (): Promise<number> => {
    const before = await netInput(redis);
    const started = Date.now();
    await sleep(spanMs);
    return ((await netInput(redis)) - before) / ((Date.now() - started) / 1000);
  };
  // the node's own traffic with no stream (heartbeats, the sweeper's lease), so the stream's share is apart
  ctx.log(`measuring ${spanMs / 1000} s of an idle node, then ${spanMs / 1000} s of a live stream`);
  await sleep(2000);
  const idle = await rate();
  const publisher = publishLight(node.rtmp(stream));
  try {
    await waitForSeq(node, stream, "240p", 3, publisher);
    const live = await rate();
    const memory = await streamMemory(redis, stream);
    const media = await segmentBytes(node.http, stream);
    const mediaPerSecond = media.bytes / Math.max(1, media.seconds);
    ctx.log("driving the stream store to a two-hour DVR window (3,600 entries of three renditions)");
    const dvr = await dvrWindowFootprint(server.url, redis, benchPrefix(), 3600);
    return [
      compared("bytes into Redis per media second, one stream's share", "bytes", Math.round(live - idle), "segment bytes per media second (what Redis took in before)", Math.round(mediaPerSecond), {
        note: `goal: under 1 KB (appends, lease renewals); the node itself writes ${Math.round(idle)} bytes/s with no stream`,
      }),
      { name: "Redis memory of one live stream", unit: "bytes", value: memory, note: "goal: under 64 KB (its meta, timeline tail, page refs, lease), a few seconds in" },
      { name: "Redis memory of one live stream with a full 2-hour DVR window", unit: "bytes", value: dvr.memory, note: "goal: under 64 KB; 3,600 entries of three renditions, 60-entry pages" },
      { name: "bytes into Redis per media second, appends and page archives of a 3-rendition stream", unit: "bytes", value: Math.round(dvr.perMediaSecond), note: "goal: under 1 KB; the store's own commands only (no lease renewals, heartbeats)" },
    ];
  } finally {
    redis.disconnect();
    await stop(publisher);
    await stop(node.proc);
    await stop(server.proc);
  }
}
