// Benchmark 2: first playlist latency. A real redis-server and baton node (production ladder, preset and
// 2-s segments); an ffmpeg publisher pushes the synthetic 720p stream in real time; the time until the node's
// media playlist lists a segment (polled every 20 ms) is taken from the first keyframe sent (approximated by
// the node's "publish accepted" log line, which comes right after the publisher's RTMP connect) and from the
// publisher's spawn. Baseline: plain ffmpeg writing HLS itself from the same synthetic source, one rendition
// (the ladder's first), same preset and segment length: from its spawn to the first playlist on disk
// listing a segment.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULTS } from "../src/config/defaults.ts";
import { errorMessage } from "../src/core/errors.ts";
import type { Managed } from "../tools/processes.ts";
import { BUFSIZE_SECONDS, MAXRATE_FACTOR, planLadder, type PlannedRendition } from "../src/transcode/ladder.ts";
import { compared, median, type Figure } from "./report.ts";
import { removeDir, sleep, spawnTracked, stop, tail, tempDir, waitFor } from "./procs.ts";
import { syntheticInputs } from "../tools/chaos/publisher.ts";
import { benchPrefix, publish, startBenchNode, startBenchRedis, streamName, type BenchNode, type BenchRedis } from "./stack.ts";

const SOURCE = { width: 1280, height: 720, frameRate: 30, hasAudio: true };
const POLL_MS = 20;

/** ffmpeg encoding the live synthetic source straight to HLS files, with the rendition's x264 settings. */
function plainHlsArgs(r: PlannedRendition, dir: string): string[] {
  const d = DEFAULTS.hls.segmentDuration;
  const gop = String(Math.round(r.frameRate * d));
  return [
    "-hide_banner", "-nostdin", "-loglevel", "error", "-re", ...syntheticInputs(), "-map", "0:v", "-map", "1:a",
    "-c:v", "libx264", "-preset", DEFAULTS.transcode.preset, "-profile:v", "high", "-level:v", r.x264Level,
    "-b:v", `${r.videoBitrate}k`, "-maxrate", `${Math.round(r.videoBitrate * MAXRATE_FACTOR)}k`,
    "-bufsize", `${r.videoBitrate * BUFSIZE_SECONDS}k`, "-g", gop, "-keyint_min", gop, "-sc_threshold", "0",
    "-force_key_frames", `expr:gte(t,n_forced*${d})`, "-pix_fmt", "yuv420p",
    "-c:a", "aac", "-b:a", `${r.audioBitrate}k`, "-ac", "2", "-ar", "48000",
    "-f", "hls", "-hls_time", String(d), "-hls_list_size", String(DEFAULTS.hls.playlistWindow),
    "-hls_segment_filename", join(dir, "%d.ts"), join(dir, "index.m3u8"),
  ];
}

async function plainHls(r: PlannedRendition): Promise<number> {
  const dir = tempDir("hls");
  const t = tail();
  const spawned = Date.now();
  const p = spawnTracked("ffmpeg-hls", "ffmpeg", plainHlsArgs(r, dir), { onLine: t.onLine });
  try {
    const listed = await waitFor("plain ffmpeg's first HLS segment", () => {
      if (p.child.exitCode !== null) throw new Error(`ffmpeg exited: ${t.lines.join(" | ")}`);
      try {
        return readFileSync(join(dir, "index.m3u8"), "utf8").includes("#EXTINF") ? Date.now() : undefined;
      } catch {
        return undefined;
      }
    }, 30000, POLL_MS);
    return (listed - spawned) / 1000;
  } finally {
    await stop(p, "SIGKILL", 1000);
    removeDir(dir);
  }
}

async function batonFirst(node: BenchNode, rendition: string): Promise<{ fromKeyframe: number; fromSpawn: number }> {
  const id = streamName("first");
  const spawned = Date.now();
  let publisher: Managed | null = null;
  try {
    publisher = publish(node.rtmp(id));
    const accepted = node.logTime(new RegExp(`publish accepted stream=${id} `), 30000);
    accepted.catch(() => undefined); // awaited below; a timeout while the segment wait fails is not unhandled
    const listed = await waitFor(`the first segment of ${id}`, async () => ((await node.lastSeq(id, rendition)) >= 0 ? Date.now() : undefined), 30000, POLL_MS);
    const acceptedAt = await accepted;
    return { fromKeyframe: (listed - acceptedAt) / 1000, fromSpawn: (listed - spawned) / 1000 };
  } catch (error) {
    throw new Error(`${errorMessage(error)}${node.problems()}`, { cause: error });
  } finally {
    await stop(publisher, "SIGKILL", 1000);
    // the transcoder flushes and the stream is released: wait, so the next run has the CPU to itself
    await waitFor(`${id} to be released`, async () => ((await node.streamState(id)) !== "live" ? true : undefined), 30000, 100).catch(() => undefined);
  }
}

export async function firstPlaylist(o: { quick: boolean; log: (line: string) => void }): Promise<Figure[]> {
  const reps = o.quick ? 1 : 3;
  const first = planLadder(DEFAULTS.transcode.ladder, SOURCE)[0]!;
  let redis: BenchRedis | null = null;
  let node: BenchNode | null = null;
  try {
    redis = await startBenchRedis();
    node = await startBenchNode({ redisUrl: redis.url, prefix: benchPrefix(), id: "bench-first" });
    await sleep(1000);
    const fromKeyframe: number[] = [];
    const fromSpawn: number[] = [];
    const baseline: number[] = [];
    for (let rep = 0; rep < reps; rep++) {
      o.log(`run ${rep + 1}/${reps}: baton node, production ladder, ${first.name} playlist`);
      const m = await batonFirst(node, first.name);
      fromKeyframe.push(m.fromKeyframe);
      fromSpawn.push(m.fromSpawn);
      o.log(`run ${rep + 1}/${reps}: plain ffmpeg -f hls`);
      baseline.push(await plainHls(first));
    }
    const plain = median(baseline);
    const label = `plain ffmpeg HLS ${first.name}`;
    return [
      compared("first playlist after first keyframe", "s", median(fromKeyframe), label, plain, {
        samples: fromKeyframe, baselineSamples: baseline, note: `issue: 2.7 to 3.2 s; ${reps} run(s), median`,
      }),
      compared("first playlist after publisher spawn", "s", median(fromSpawn), label, plain, {
        samples: fromSpawn, baselineSamples: baseline, note: "like for like: both from ffmpeg's spawn",
      }),
    ];
  } finally {
    if (node) await stop(node.proc, "SIGTERM", 10000);
    node?.agent.destroy();
    if (redis) await stop(redis.proc, "SIGTERM", 5000);
  }
}
