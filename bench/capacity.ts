// Benchmark: how many streams one node holds in real time with the production ladder, and what one more
// publisher than it holds does to the streams already live. A real redis-server and one baton node (production
// ladder and preset, transcode.capacity 8); publishers push a pre-encoded 720p source with `-c copy`, so they
// cost next to nothing and the node's transcoders have the machine.
// (a) measured admission (transcode.cpuTarget, the default): publishers join one at a time until the node
//     refuses one; the figure is the streams it admitted and the slowest transcoder speed among them over a
//     window, with the baseline of admission by count alone (cpuTarget 0) taking one stream more.
// (b) the segment publish latency (ffmpeg finishing a segment to it being listed) of the admitted streams while
//     an extra publisher keeps retrying, against the same streams before it came (goal: unchanged, 1.0x).
import { join } from "node:path";
import { syntheticInputs } from "../tools/chaos/publisher.ts";
import type { Managed } from "../tools/processes.ts";
import { compared, type Figure } from "./report.ts";
import { httpGet, removeDir, sleep, spawnTracked, stop, succeeded, tail, tempDir } from "./procs.ts";
import { benchPrefix, startBenchNode, startBenchRedis, streamName, type BenchNode } from "./stack.ts";

const MAX_STREAMS = 8;

async function makeSource(file: string, seconds: number): Promise<void> {
  const t = tail();
  const args = [
    "-hide_banner", "-nostdin", "-loglevel", "error", ...syntheticInputs(), "-t", String(seconds),
    "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-pix_fmt", "yuv420p", "-b:v", "3000k", "-maxrate", "3000k", "-bufsize", "6000k",
    "-c:a", "aac", "-b:a", "128k", "-f", "flv", "-y", file,
  ];
  await succeeded(spawnTracked("ffmpeg-source", "ffmpeg", args, { onLine: t.onLine }), t.lines);
}

/** A publisher that loops the pre-encoded source in real time without encoding anything. */
function pushCopy(url: string, source: string): Managed {
  const t = tail(4);
  return spawnTracked("ffmpeg-copy", "ffmpeg", ["-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", source, "-c", "copy", "-f", "flv", url], { onLine: t.onLine });
}

async function metrics(node: BenchNode): Promise<string> {
  return (await httpGet(node.http("/metrics"), node.agent)).text;
}

/** Each stream's transcoder speed as the node reports it. */
async function speeds(node: BenchNode): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const m of (await metrics(node)).matchAll(/^baton_transcoder_speed\{[^}]*stream="([^"]+)"[^}]*\} ([\d.e+-]+)$/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

async function refusals(node: BenchNode): Promise<number> {
  let sum = 0;
  for (const m of (await metrics(node)).matchAll(/^baton_publish_refusals_total\{[^}]*reason="(?:at_capacity|cluster_full)"[^}]*\} (\d+)$/gm)) sum += Number(m[1]);
  return sum;
}

/** The slowest speed each stream showed over `ms` (sampled every 2 s, as ffmpeg reports it). */
async function slowest(node: BenchNode, streams: string[], ms: number): Promise<number> {
  let min = Infinity;
  for (const end = Date.now() + ms; Date.now() < end; ) {
    await sleep(2000);
    const now = await speeds(node);
    for (const s of streams) min = Math.min(min, now.get(s) ?? Infinity);
  }
  return min;
}

/** Mean of baton_segment_publish_latency_seconds (finished to listed) over the window, from its sum and count. */
async function publishLatency(node: BenchNode, ms: number): Promise<number> {
  const read = async (): Promise<{ sum: number; count: number }> => {
    const text = await metrics(node);
    const sum = Number(/^baton_segment_publish_latency_seconds_sum(?:\{[^}]*\})? ([\d.e+-]+)$/m.exec(text)?.[1] ?? NaN);
    const count = Number(/^baton_segment_publish_latency_seconds_count(?:\{[^}]*\})? (\d+)$/m.exec(text)?.[1] ?? NaN);
    return { sum, count };
  };
  const a = await read();
  await sleep(ms);
  const b = await read();
  return b.count > a.count ? ((b.sum - a.sum) / (b.count - a.count)) * 1000 : NaN;
}

interface Run {
  admitted: string[];
  node: BenchNode;
  publishers: Managed[];
}

/** Publishers join one at a time (each given time to be measured) until one is refused or MAX_STREAMS. */
async function fill(cpuTarget: number, capacity: number, source: string, log: (line: string) => void): Promise<Run> {
  const redis = await startBenchRedis();
  const node = await startBenchNode({
    redisUrl: redis.url, prefix: benchPrefix(), id: cpuTarget > 0 ? "cap-measured" : "cap-counted",
    env: { BATON_TRANSCODE_CPUTARGET: String(cpuTarget), BATON_TRANSCODE_CAPACITY: String(capacity) },
  });
  const run: Run = { admitted: [], node, publishers: [] };
  for (let i = 0; i < MAX_STREAMS; i++) {
    const id = streamName(`cap${i}`);
    const before = await refusals(node);
    const p = pushCopy(node.rtmp(id), source);
    run.publishers.push(p);
    // admitted streams go live at once; a refused publisher's ffmpeg exits
    const outcome = await Promise.race([
      p.exited.then(() => "refused" as const),
      (async () => {
        for (let t = 0; t < 100; t++) {
          if ((await node.streamState(id)) === "live") return "live" as const;
          await sleep(100);
        }
        return "timeout" as const;
      })(),
    ]);
    if (outcome !== "live" || (await refusals(node)) > before) break;
    run.admitted.push(id);
    log(`  cpuTarget ${cpuTarget}: stream ${i + 1} admitted`);
    // let its transcoder run and be measured before the next publisher asks
    await sleep(12000);
  }
  return run;
}

export async function capacity(o: { quick: boolean; log: (line: string) => void }): Promise<Figure[]> {
  const work = tempDir("capacity");
  const windowMs = o.quick ? 20000 : 60000;
  try {
    const source = join(work, "source.flv");
    o.log("encoding a 20-s 1280x720 30-fps source (pushed with -c copy: publishers cost nothing)");
    await makeSource(source, 20);
    o.log("measured admission: streams join until the node refuses one");
    const measured = await fill(0.85, MAX_STREAMS, source, o.log);
    const held = measured.admitted.length;
    const measuredSlowest = await slowest(measured.node, measured.admitted, windowMs);
    const before = await publishLatency(measured.node, windowMs / 2);
    // one more publisher than the node holds, retrying every 2 s as an encoder would, for the window
    const extra = streamName("extra");
    let retries = 0;
    const retrying = (async () => {
      for (const end = Date.now() + windowMs / 2; Date.now() < end; retries++) {
        await pushCopy(measured.node.rtmp(extra), source).exited;
        await sleep(2000);
      }
    })();
    const during = await publishLatency(measured.node, windowMs / 2);
    await retrying;
    for (const p of measured.publishers) await stop(p, "SIGKILL", 1000);

    o.log(`admission by count: ${held + 1} streams`);
    const counted = await fill(0, held + 1, source, o.log);
    const countedSlowest = await slowest(counted.node, counted.admitted, windowMs);
    for (const p of counted.publishers) await stop(p, "SIGKILL", 1000);
    return [
      { name: "streams one node holds in real time (measured admission), production ladder", unit: "streams", value: held, note: `node with transcode.capacity ${MAX_STREAMS}` },
      compared("slowest transcoder speed of the admitted streams", "x", measuredSlowest, `one more stream (admission by count: ${counted.admitted.length})`, countedSlowest, {
        note: `over ${windowMs / 1000} s; goal: at least 1.0 with measured admission`,
      }),
      compared("segment publish latency of live streams while an extra publisher retries", "ms", during, "before it came", before, {
        note: `${retries} refused attempts; goal: unchanged (1.0x)`,
      }),
    ];
  } finally {
    removeDir(work);
  }
}
