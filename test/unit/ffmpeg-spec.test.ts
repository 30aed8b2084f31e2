// The transcoder's ffmpeg argument list, as the job gives it for a ladder (read, never run, here).
import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULTS, type Rendition } from "../../src/config/defaults.ts";
import type { SourceInfo } from "../../src/ingest/rtmp-server.ts";
import { createLogger } from "../../src/core/log.ts";
import { BUFSIZE_SECONDS, MAXRATE_FACTOR, planLadder, type PlannedRendition } from "../../src/transcode/ladder.ts";
import { MIN_FIRST_SEGMENT, ffmpegSpec, wallClockCuts, type TranscodeOptions } from "../../src/transcode/job.ts";

const LADDER: Rendition[] = DEFAULTS.transcode.ladder;

function source(width: number | null, height: number | null, frameRate: number | null = 30, hasAudio = true): SourceInfo {
  return { width, height, frameRate, hasAudio };
}

describe("ffmpegSpec", () => {
  const DIR = join("/tmp", "baton-spec-test", "0");

  function options(renditions: PlannedRendition[], hasAudio: boolean, segmentDuration = 2): TranscodeOptions {
    return {
      streamId: "cam1",
      publishId: "p1",
      ffmpegPath: "/usr/bin/ffmpeg",
      preset: "veryfast",
      segmentDuration,
      spoolDir: "/tmp/baton-spec-test",
      maxRestarts: 3,
      renditions,
      hasAudio,
      log: createLogger({ level: "error", write: () => undefined }),
    };
  }

  /** A -force_key_frames expression's first time and interval (expr:gte(t,FIRST+n_forced*EVERY)). */
  function forcedAt(expr: string): { first: number; every: number } {
    const m = /^expr:gte\(t,(-?[\d.]+)\+n_forced\*([\d.]+)\)$/.exec(expr);
    assert.ok(m, expr);
    return { first: Number(m[1]), every: Number(m[2]) };
  }

  /** The value after a flag that must appear exactly once. */
  function value(list: string[], flag: string): string {
    const at = list.indexOf(flag);
    assert.ok(at >= 0, `${flag} missing from ${list.join(" ")}`);
    assert.equal(list.indexOf(flag, at + 1), -1, `${flag} appears twice`);
    assert.ok(at + 1 < list.length, `${flag} has no value`);
    return list[at + 1]!;
  }

  function count(list: string[], flag: string): number {
    return list.filter((item) => item === flag).length;
  }

  const cases: { what: string; src: SourceInfo; segmentDuration: number }[] = [
    { what: "three renditions with audio at 60 fps", src: source(1920, 1080, 60, true), segmentDuration: 2 },
    { what: "two renditions without audio at 25 fps", src: source(854, 480, 25, false), segmentDuration: 4 },
    { what: "one rendition (small source) at 29.97 fps", src: source(320, 240, 29.97, true), segmentDuration: 3 },
  ];

  for (const c of cases) {
    describe(c.what, () => {
      const renditions = planLadder(LADDER, c.src);
      const spec = ffmpegSpec(options(renditions, c.src.hasAudio, c.segmentDuration), DIR);
      const d = c.segmentDuration;

      it("has one output per rendition, each in the run's directory", () => {
        assert.equal(spec.outputs.length, renditions.length);
        assert.ok(renditions.length >= 1);
        spec.outputs.forEach((output, i) => {
          assert.equal(output.path, join(DIR, `${renditions[i]!.name}-%d.ts`));
        });
        assert.equal(new Set(spec.outputs.map((o) => o.path)).size, spec.outputs.length);
        assert.equal(spec.ffmpegPath, "/usr/bin/ffmpeg");
        assert.equal(spec.inputFormat, "flv");
      });

      it("forces keyframes at the segment duration, without scene-cut keyframes", () => {
        for (const output of spec.outputs) {
          assert.equal(forcedAt(value(output.options, "-force_key_frames")).every, d);
          assert.equal(value(output.options, "-sc_threshold"), "0");
          assert.equal(value(output.options, "-segment_time"), String(d));
          assert.equal(value(output.options, "-output_ts_offset"), "0");
        }
      });

      it("keeps x264's own keyframes out of the way: -keyint_min one segment, -g two", () => {
        spec.outputs.forEach((output, i) => {
          const gop = Math.round(renditions[i]!.frameRate * d);
          assert.equal(Number(value(output.options, "-keyint_min")), gop);
          assert.equal(Number(value(output.options, "-g")), 2 * gop);
        });
      });

      it("cuts on wall-clock boundaries: the run's offset shifts its output time, its first keyframe is forced at the first boundary", () => {
        const cuts = wallClockCuts(1_700_000_004_300, d); // 300 ms past a multiple of 2, 3 and 4 s
        const shifted = ffmpegSpec(options(renditions, c.src.hasAudio, d), DIR, cuts);
        shifted.outputs.forEach((output, i) => {
          assert.equal(value(output.options, "-output_ts_offset"), "0.3");
          // the first boundary, less half a frame: the frame nearest it is forced, never the one after
          const { first, every } = forcedAt(value(output.options, "-force_key_frames"));
          assert.equal(every, d);
          const halfFrame = 0.5 / renditions[i]!.frameRate;
          assert.ok(first < d - 0.3 && first >= d - 0.3 - halfFrame - 1e-4, `first forced at ${first}`);
        });
      });

      it("writes a CSV segment list per rendition", () => {
        const lists = spec.outputs.map((output, i) => {
          assert.equal(value(output.options, "-f"), "segment");
          assert.equal(value(output.options, "-segment_format"), "mpegts");
          assert.equal(value(output.options, "-segment_list_type"), "csv");
          const list = value(output.options, "-segment_list");
          assert.equal(list, join(DIR, `${renditions[i]!.name}.csv`));
          return list;
        });
        assert.equal(new Set(lists).size, renditions.length);
      });

      it("sets each rendition's rate control and level", () => {
        spec.outputs.forEach((output, i) => {
          const r = renditions[i]!;
          assert.equal(value(output.options, "-c:v"), "libx264");
          assert.equal(value(output.options, "-preset"), "veryfast");
          assert.equal(value(output.options, "-b:v"), `${r.videoBitrate}k`);
          assert.equal(value(output.options, "-maxrate"), `${Math.round(r.videoBitrate * MAXRATE_FACTOR)}k`);
          assert.equal(value(output.options, "-bufsize"), `${r.videoBitrate * BUFSIZE_SECONDS}k`);
          assert.equal(value(output.options, "-level:v"), r.x264Level);
        });
      });

      it("splits the one decoded input into one scaled branch per rendition", () => {
        const n = renditions.length;
        const chains = spec.filterComplex.split(";");
        assert.equal(chains.length, n + 1);
        assert.equal(chains[0], `[0:v]split=${n}${renditions.map((_, i) => `[s${i}]`).join("")}`);
        assert.equal(spec.filterComplex.split("[0:v]").length - 1, 1, "the input video is used once");
        renditions.forEach((r, i) => {
          const chain = chains[i + 1]!;
          assert.ok(chain.startsWith(`[s${i}]scale=${r.width}:${r.height}`), chain);
          assert.ok(chain.endsWith(`[v${i}]`), chain);
          assert.equal(chain.includes(",fps="), r.fpsFilter !== null, chain);
          if (r.fpsFilter !== null) assert.ok(chain.includes(`,fps=${r.fpsFilter}`), chain);
        });
        spec.outputs.forEach((output, i) => {
          const maps = output.options.flatMap((item, at) => (item === "-map" ? [output.options[at + 1]] : []));
          assert.equal(maps[0], `[v${i}]`, "each output takes its own branch");
          assert.equal(maps.length, c.src.hasAudio ? 2 : 1);
        });
      });

      it("maps and encodes audio only when the source has audio", () => {
        for (const output of spec.outputs) {
          assert.equal(output.options.includes("0:a:0"), c.src.hasAudio);
          assert.equal(count(output.options, "-c:a"), c.src.hasAudio ? 1 : 0);
          if (c.src.hasAudio) assert.equal(value(output.options, "-c:a"), "aac");
        }
      });

      it("gives every option and value its own array element (no element holds a space)", () => {
        const all = [...spec.inputOptions, ...spec.outputs.flatMap((o) => o.options)];
        for (const item of all) {
          assert.equal(typeof item, "string");
          assert.ok(!/\s/.test(item), `element ${JSON.stringify(item)} contains whitespace`);
          assert.notEqual(item, "");
        }
        assert.ok(!/\s/.test(spec.filterComplex), spec.filterComplex);
        // every flag is followed by its value, not by another flag (except the few flags without values)
        for (const list of [spec.inputOptions, ...spec.outputs.map((o) => o.options)]) {
          list.forEach((item, at) => {
            if (/^-[a-z_:]+$/.test(item)) {
              const next = list[at + 1];
              assert.ok(next !== undefined, `${item} ends the list without a value`);
            }
          });
        }
      });
    });
  }
});

describe("wallClockCuts", () => {
  it("puts a run's boundaries where the wall clock is a multiple of the segment duration", () => {
    for (const d of [1, 2, 6]) {
      for (const startedAt of [1_700_000_000_000, 1_700_000_000_417, 1_700_000_001_999, 1_700_000_003_250]) {
        const { offset, firstKeyframe } = wallClockCuts(startedAt, d);
        assert.ok(offset >= 0 && offset < d, `offset ${offset}`);
        // the first forced keyframe lands on a boundary, and so does every one after it
        assert.equal(Math.round(startedAt + firstKeyframe * 1000) % (d * 1000), 0, `${startedAt} ${d}`);
        // output time (run time plus the offset) is wall-clock time modulo the duration: ffmpeg's muxer cuts there
        assert.equal(Math.round((startedAt - offset * 1000)) % (d * 1000), 0);
        assert.ok(firstKeyframe >= MIN_FIRST_SEGMENT || firstKeyframe === 0, `first segment ${firstKeyframe}`);
        assert.ok(firstKeyframe < d + MIN_FIRST_SEGMENT, `first segment ${firstKeyframe}`);
      }
    }
  });

  it("never starts a run with a segment of a frame or two: one that short joins the next", () => {
    assert.deepEqual(wallClockCuts(1_700_000_001_900, 2), { offset: 1.9, firstKeyframe: 2.1 });
    assert.deepEqual(wallClockCuts(1_700_000_001_700, 2), { offset: 1.7, firstKeyframe: 0.3 });
    assert.deepEqual(wallClockCuts(1_700_000_002_000, 2), { offset: 0, firstKeyframe: 0 });
  });

  it("gives two pipelines that started apart the same boundaries", () => {
    const boundaries = (startedAt: number, count: number): number[] => {
      const { firstKeyframe } = wallClockCuts(startedAt, 2);
      return Array.from({ length: count }, (_, k) => Math.round(startedAt + (firstKeyframe + 2 * k) * 1000));
    };
    const fromA = boundaries(1_700_000_000_120, 10);
    const fromB = boundaries(1_700_000_007_870, 4);
    assert.ok(fromB.at(-1)! < fromA.at(-1)!, "B's boundaries lie within A's");
    for (const at of fromB) assert.ok(fromA.includes(at), `B cuts at ${at}, A at ${fromA.join(", ")}`);
  });
});
