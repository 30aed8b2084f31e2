// Benchmark: what passthrough saves. The production ladder (720p/480p/360p, veryfast, 2-s segments) from a 720p
// H.264 source with a 2-s GOP, as ffmpegSpec() builds it with the top rendition copying the source
// (passthroughPlan) against the full encode of the same ladder, in the same run, alternating:
// (a) CPU seconds per media second of one ffmpeg reading the pre-encoded FLV file (as transcode-cpu.ts);
// (b) three such ladders at once, as three streams on one node: each ffmpeg's own speed (media s per wall s).
//     They read their file as fast as they can, so a speed of 1.0x or more means the three hold real time.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DEFAULTS } from "../src/config/defaults.ts";
import type { SourceInfo } from "../src/ingest/rtmp-server.ts";
import { ffmpegSpec } from "../src/transcode/job.ts";
import { planLadder, type PlannedRendition } from "../src/transcode/ladder.ts";
import { passthroughPlan } from "../src/transcode/passthrough.ts";
import { compared, median, type Figure } from "./report.ts";
import { removeDir, tempDir } from "./procs.ts";
import { ffmpegArgs, makeSource, measure, transcodeOptions, type Measured } from "./transcode-cpu.ts";

const STREAMS = 3;
/**
 * What baton sees of makeSource()'s file: H.264 High 3.1 at 3,000 kbit/s, AAC-LC 48 kHz stereo at 128 kbit/s
 * (ffmpeg declares both in kibibit/s), so the 720p rendition copies its audio too.
 */
const SOURCE: SourceInfo = {
  width: 1280, height: 720, frameRate: 30, hasAudio: true, videoCodecs: "avc1.64001f", videoKbps: 3000000 / 1024,
  aac: { objectType: 2, sampleRate: 48000, channels: 2 }, audioKbps: 128000 / 1024,
};

export async function passthroughBench(o: { quick: boolean; log: (line: string) => void }): Promise<Figure[]> {
  const seconds = o.quick ? 8 : 20;
  const reps = o.quick ? 1 : 3;
  const full = planLadder(DEFAULTS.transcode.ladder, SOURCE);
  const plan = passthroughPlan("auto", full, SOURCE, false);
  if (!plan.copy) throw new Error(`the bench's source does not fit the ladder: ${plan.why}`);
  if (!plan.renditions[0]!.copyAudio) throw new Error("the bench's source audio does not fit the 720p rendition");
  const names = plan.renditions.map((r) => `${r.name}${r.copy ? "(copy)" : ""}`).join("/");
  const work = tempDir("passthrough");
  let dirs = 0;
  /** One ladder's command per stream, each writing into a directory of its own. */
  const commands = (renditions: PlannedRendition[], streams: number, source: string): { args: string[][]; dirs: string[] } => {
    const out = Array.from({ length: streams }, () => join(work, `out-${dirs++}`));
    for (const dir of out) mkdirSync(dir);
    return { args: out.map((dir) => ffmpegArgs(ffmpegSpec(transcodeOptions(renditions, work), dir), source)), dirs: out };
  };
  const run = async (label: string, renditions: PlannedRendition[], streams: number, source: string): Promise<Measured> => {
    const c = commands(renditions, streams, source);
    try {
      return await measure(label, c.args, c.dirs[0]!);
    } finally {
      for (const dir of c.dirs) removeDir(dir);
    }
  };
  try {
    const source = join(work, "source.flv");
    o.log(`encoding a ${seconds}-s 1280x720 30-fps source (2-s GOP)`);
    await makeSource(source, seconds);
    const copied: Measured[] = [];
    const encoded: Measured[] = [];
    const copiedThree: Measured[] = [];
    const encodedThree: Measured[] = [];
    for (let rep = 0; rep < reps; rep++) {
      o.log(`run ${rep + 1}/${reps}: ${names}, then the full encode`);
      copied.push(await run("ffmpeg-passthrough", plan.renditions, 1, source));
      encoded.push(await run("ffmpeg-ladder", full, 1, source));
      o.log(`run ${rep + 1}/${reps}: ${STREAMS} ladders at once, passthrough then the full encode`);
      copiedThree.push(await run("ffmpeg-passthrough", plan.renditions, STREAMS, source));
      encodedThree.push(await run("ffmpeg-ladder", full, STREAMS, source));
    }
    const expected = full.length * Math.ceil(seconds / DEFAULTS.hls.segmentDuration);
    for (const m of [...copied, ...encoded, ...copiedThree, ...encodedThree]) {
      if (m.segments < expected - full.length) throw new Error(`only ${m.segments} segments written, expected about ${expected}`);
    }
    const perMedia = (m: Measured): number => m.cpu / seconds;
    /** The slowest of the streams that ran at once. */
    const slowest = (m: Measured): number => Math.min(...m.walls.map((wall) => seconds / wall));
    const note = `${seconds}-s source, ${reps} run(s), median`;
    return [
      compared(`CPU per media second, ${names} ${DEFAULTS.transcode.preset}`, "CPU-s/s", median(copied.map(perMedia)),
        "full encode", median(encoded.map(perMedia)), { samples: copied.map(perMedia), baselineSamples: encoded.map(perMedia), note: `goal: at most 0.45 CPU-s/s; ${note}` }),
      compared(`slowest of ${STREAMS} ladders at once, ${names}`, "x", median(copiedThree.map(slowest)),
        `${STREAMS} full encodes at once`, median(encodedThree.map(slowest)), {
          samples: copiedThree.flatMap((m) => m.walls.map((wall) => seconds / wall)),
          baselineSamples: encodedThree.flatMap((m) => m.walls.map((wall) => seconds / wall)),
          note: `goal: every transcoder >= 1.0x (they read as fast as they can); samples: each stream's speed; ${note}`,
        }),
      compared(`CPU per media second, ${STREAMS} ladders at once, ${names}`, "CPU-s/s", median(copiedThree.map(perMedia)),
        `${STREAMS} full encodes at once`, median(encodedThree.map(perMedia)), { samples: copiedThree.map(perMedia), baselineSamples: encodedThree.map(perMedia), note }),
    ];
  } finally {
    removeDir(work);
  }
}
