// Benchmark 1: CPU seconds per media second of the production rendition ladder.
// (a) baton's one-decode ladder: the exact argument list ffmpegSpec() builds for the DEFAULTS ladder and
//     preset, reading a pre-encoded FLV file instead of stdin;
// (b) baseline: one ffmpeg per rendition, each decoding the source itself, run concurrently; each built by
//     ffmpegSpec() for a one-rendition ladder, so scale, encode and segment options are the same.
// CPU is the user + system time of the reaped ffmpeg processes (see reapedChildrenCpu).
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { DEFAULTS } from "../src/config/defaults.ts";
import { createLogger } from "../src/core/log.ts";
import type { FfmpegSpec } from "../src/transcode/ffmpeg.ts";
import { ffmpegSpec, type TranscodeOptions } from "../src/transcode/job.ts";
import { planLadder, type PlannedRendition } from "../src/transcode/ladder.ts";
import { compared, median, type Figure } from "./report.ts";
import { reapedChildrenCpu, removeDir, spawnTracked, stop, succeeded, tail, tempDir } from "./procs.ts";
import { syntheticInputs } from "../tools/chaos/publisher.ts";

const SOURCE = { width: 1280, height: 720, frameRate: 30, hasAudio: true };

export function transcodeOptions(renditions: PlannedRendition[], spoolDir: string): TranscodeOptions {
  return {
    streamId: "bench",
    publishId: "cpu",
    ffmpegPath: DEFAULTS.transcode.ffmpegPath,
    preset: DEFAULTS.transcode.preset,
    segmentDuration: DEFAULTS.hls.segmentDuration,
    spoolDir,
    maxRestarts: 0,
    renditions,
    hasAudio: SOURCE.hasAudio,
    log: createLogger({ level: "error" }),
  };
}

/** The command line FfmpegProcess gives ffmpeg (see src/transcode/ffmpeg.ts), with a file as the input. */
export function ffmpegArgs(spec: FfmpegSpec, input: string): string[] {
  return [
    "-nostdin", "-f", spec.inputFormat, ...spec.inputOptions, "-hide_banner", "-i", input,
    "-filter_complex", spec.filterComplex,
    ...spec.outputs.flatMap((o) => [...o.options, "-y", o.path]),
  ];
}

/** Encodes the synthetic source once (as a publisher would send it: H.264 + stereo AAC in FLV, 2-s GOP). */
export async function makeSource(file: string, seconds: number): Promise<void> {
  const args = [
    "-hide_banner", "-nostdin", "-loglevel", "error", ...syntheticInputs(), "-t", String(seconds),
    "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-pix_fmt", "yuv420p",
    "-b:v", "3000k", "-maxrate", "3000k", "-bufsize", "6000k",
    "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "flv", "-y", file,
  ];
  const t = tail();
  await succeeded(spawnTracked("ffmpeg-source", "ffmpeg", args, { onLine: t.onLine }), t.lines);
}

export interface Measured {
  cpu: number;
  /** Until the last command exited. */
  wall: number;
  /** Each command's own, in order. */
  walls: number[];
  segments: number;
}

/** Runs the commands concurrently; CPU of all of them together, wall time until the last exits. */
export async function measure(label: string, commands: string[][], outDir: string): Promise<Measured> {
  const before = reapedChildrenCpu();
  const started = performance.now();
  const runs = commands.map((args) => {
    const t = tail();
    return { p: spawnTracked(label, "ffmpeg", args, { onLine: t.onLine }), lines: t.lines };
  });
  let walls: number[];
  try {
    walls = await Promise.all(runs.map(async (r) => {
      await succeeded(r.p, r.lines);
      return (performance.now() - started) / 1000;
    }));
  } finally {
    await Promise.all(runs.map((r) => stop(r.p, "SIGKILL", 1000)));
  }
  const wall = (performance.now() - started) / 1000;
  const cpu = reapedChildrenCpu() - before;
  const segments = readdirSync(outDir).filter((f) => f.endsWith(".ts")).length;
  return { cpu, wall, walls, segments };
}

export async function transcodeCpu(o: { quick: boolean; log: (line: string) => void }): Promise<Figure[]> {
  const seconds = o.quick ? 8 : 20;
  const reps = o.quick ? 1 : 3;
  const renditions = planLadder(DEFAULTS.transcode.ladder, SOURCE);
  const names = renditions.map((r) => r.name).join("/");
  const work = tempDir("cpu");
  try {
    const source = join(work, "source.flv");
    o.log(`encoding a ${seconds}-s 1280x720 30-fps source`);
    await makeSource(source, seconds);
    const ladder: Measured[] = [];
    const baseline: Measured[] = [];
    for (let rep = 0; rep < reps; rep++) {
      const one = join(work, `ladder-${rep}`);
      mkdirSync(one);
      o.log(`run ${rep + 1}/${reps}: one-decode ladder ${names} (one ffmpeg)`);
      ladder.push(await measure("ffmpeg-ladder", [ffmpegArgs(ffmpegSpec(transcodeOptions(renditions, work), one), source)], one));
      removeDir(one);
      const each = join(work, `baseline-${rep}`);
      mkdirSync(each);
      o.log(`run ${rep + 1}/${reps}: baseline, ${renditions.length} concurrent ffmpeg processes`);
      const commands = renditions.map((r) => ffmpegArgs(ffmpegSpec(transcodeOptions([r], work), each), source));
      baseline.push(await measure("ffmpeg-baseline", commands, each));
      removeDir(each);
    }
    const expected = renditions.length * Math.ceil(seconds / DEFAULTS.hls.segmentDuration);
    for (const m of [...ladder, ...baseline]) {
      if (m.segments < expected - renditions.length) throw new Error(`only ${m.segments} segments written, expected about ${expected}`);
    }
    const perMedia = (m: Measured): number => m.cpu / seconds;
    const speed = (m: Measured): number => seconds / m.wall;
    const samples = { samples: ladder.map(perMedia), baselineSamples: baseline.map(perMedia), note: `issue: 0.93 vs 1.04 (0.89x); ${seconds}-s source, ${reps} run(s), median` };
    return [
      compared(`CPU per media second, ${names} ${DEFAULTS.transcode.preset}`, "CPU-s/s", median(ladder.map(perMedia)),
        `${renditions.length} processes`, median(baseline.map(perMedia)), samples),
      compared("transcode speed (media s per wall s)", "x", median(ladder.map(speed)), `${renditions.length} processes`,
        median(baseline.map(speed)), { samples: ladder.map(speed), baselineSamples: baseline.map(speed), note: `${segmentsNote(ladder[0]!, renditions.length)}` }),
    ];
  } finally {
    removeDir(work);
  }
}

function segmentsNote(m: Measured, renditions: number): string {
  return `${m.segments / renditions} segments per rendition`;
}
