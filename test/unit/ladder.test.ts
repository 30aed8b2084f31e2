import assert from "node:assert/strict";
import { DEFAULTS, type Rendition } from "../../src/config/defaults.ts";
import type { SourceInfo } from "../../src/ingest/rtmp-server.ts";
import { MAXRATE_FACTOR, h264Level, ladderEntries, planLadder, replanLadder, scaledWidth } from "../../src/transcode/ladder.ts";

const LADDER: Rendition[] = DEFAULTS.transcode.ladder;

function source(width: number | null, height: number | null, frameRate: number | null = 30, hasAudio = true): SourceInfo {
  return { width, height, frameRate, hasAudio };
}

describe("rendition ladder", () => {
  describe("scaledWidth", () => {
    it("follows the source's aspect ratio and is always even", () => {
      const sources = [
        { width: 1920, height: 1080 },
        { width: 1280, height: 720 },
        { width: 854, height: 480 },
        { width: 640, height: 480 },
        { width: 1080, height: 1920 },
        { width: 1000, height: 1000 },
        { width: 1366, height: 768 },
        { width: 721, height: 405 },
      ];
      for (const s of sources) {
        for (const height of [120, 240, 360, 480, 720, 1080]) {
          const width = scaledWidth(height, s);
          assert.equal(width % 2, 0, `${height} of ${s.width}x${s.height}: ${width}`);
          // the nearest even width: off by at most one pixel from the exact one
          assert.ok(Math.abs(width - (height * s.width) / s.height) <= 1, `${height} of ${s.width}x${s.height}: ${width}`);
        }
      }
    });

    it("gives the well-known 16:9 widths", () => {
      const hd = { width: 1920, height: 1080 };
      assert.equal(scaledWidth(720, hd), 1280);
      assert.equal(scaledWidth(480, hd), 854);
      assert.equal(scaledWidth(360, hd), 640);
      assert.equal(scaledWidth(240, hd), 426);
    });
  });

  describe("h264Level", () => {
    it("picks the lowest level whose frame size and macroblock rate fit (Table A-1)", () => {
      assert.deepEqual(h264Level(640, 360, 30), { level: "3.0", hex: "1e" });
      assert.deepEqual(h264Level(1280, 720, 30), { level: "3.1", hex: "1f" });
      assert.deepEqual(h264Level(1280, 720, 60), { level: "3.2", hex: "20" });
      assert.deepEqual(h264Level(1920, 1080, 30), { level: "4.0", hex: "28" });
      assert.deepEqual(h264Level(1920, 1080, 60), { level: "4.2", hex: "2a" });
      assert.deepEqual(h264Level(2560, 1440, 30), { level: "5.0", hex: "32" });
      assert.deepEqual(h264Level(3840, 2160, 30), { level: "5.1", hex: "33" });
    });

    it("never picks a level whose limits the picture exceeds", () => {
      // MaxFS (macroblocks per frame) and MaxMBPS per level, H.264 Table A-1
      const limits: Record<string, [number, number]> = {
        "3.0": [1620, 40500], "3.1": [3600, 108000], "3.2": [5120, 216000], "4.0": [8192, 245760],
        "4.2": [8704, 522240], "5.0": [22080, 589824], "5.1": [36864, 983040],
      };
      for (const [w, h] of [[426, 240], [640, 360], [854, 480], [1280, 720], [1920, 1080], [2560, 1440]] as const) {
        for (const fps of [24, 25, 30, 50, 60]) {
          const { level, hex } = h264Level(w, h, fps);
          const mbs = Math.ceil(w / 16) * Math.ceil(h / 16);
          const [maxFs, maxMbps] = limits[level]!;
          assert.ok(mbs <= maxFs && mbs * fps <= maxMbps, `${w}x${h}@${fps} -> ${level}`);
          assert.equal(parseInt(hex, 16), Math.round(Number(level) * 10));
        }
      }
    });
  });

  describe("planLadder", () => {
    it("skips renditions taller than the source", () => {
      const planned = planLadder(LADDER, source(854, 480));
      assert.deepEqual(
        planned.map((r) => r.name),
        ["480p", "360p"],
      );
      assert.deepEqual(
        planned.map((r) => r.height),
        [480, 360],
      );
    });

    it("keeps every rendition for a source as tall as the tallest", () => {
      assert.deepEqual(
        planLadder(LADDER, source(1920, 1080)).map((r) => r.name),
        ["720p", "480p", "360p"],
      );
      assert.deepEqual(
        planLadder(LADDER, source(1280, 720)).map((r) => r.name),
        ["720p", "480p", "360p"],
      );
    });

    it("a source smaller than every rendition keeps one rendition, the smallest, at the source's height", () => {
      const planned = planLadder(LADDER, source(320, 240));
      assert.equal(planned.length, 1);
      assert.equal(planned[0]!.name, "360p");
      assert.equal(planned[0]!.height, 240);
      assert.equal(planned[0]!.width, 320);
      assert.equal(planned[0]!.videoBitrate, 800);
    });

    it("an odd source height below every rendition gives an even height", () => {
      const planned = planLadder(LADDER, source(427, 241));
      assert.equal(planned.length, 1);
      assert.equal(planned[0]!.height, 240);
      assert.equal(planned[0]!.width % 2, 0);
    });

    it("the smallest rendition is chosen even when the ladder is not in height order", () => {
      const unordered: Rendition[] = [LADDER[2]!, LADDER[0]!, LADDER[1]!];
      const planned = planLadder(unordered, source(256, 144));
      assert.deepEqual(
        planned.map((r) => [r.name, r.height]),
        [["360p", 144]],
      );
    });

    it("uses 1280x720 at 30 fps when the source says nothing of its size and rate", () => {
      const planned = planLadder(LADDER, source(null, null, null));
      assert.deepEqual(
        planned.map((r) => [r.name, r.width, r.height, r.frameRate]),
        [["720p", 1280, 720, 30], ["480p", 854, 480, 30], ["360p", 640, 360, 30]],
      );
    });

    it("widths are even and follow the source's aspect ratio", () => {
      for (const [w, h] of [[1920, 1080], [1080, 1920], [640, 480], [1366, 768], [2560, 1080], [720, 720]] as const) {
        for (const r of planLadder(LADDER, source(w, h))) {
          assert.equal(r.width % 2, 0, `${r.name} of ${w}x${h}`);
          assert.ok(Math.abs(r.width / r.height - w / h) <= 2 / r.height, `${r.name} of ${w}x${h}: ${r.width}x${r.height}`);
        }
      }
    });

    it("caps the frame rate with an fps filter only when the source is faster than the cap", () => {
      const fast = planLadder(LADDER, source(1280, 720, 60));
      for (const r of fast) {
        assert.equal(r.fpsFilter, 30, r.name);
        assert.equal(r.frameRate, 30, r.name);
      }
      for (const rate of [30, 29.97, 25, 24, 30.005]) {
        for (const r of planLadder(LADDER, source(1280, 720, rate))) {
          assert.equal(r.fpsFilter, null, `${rate} fps ${r.name}`);
          assert.equal(r.frameRate, Math.round(rate * 1000) / 1000, `${rate} fps ${r.name}`);
        }
      }
      for (const r of planLadder(LADDER, source(1280, 720, 30.5))) assert.equal(r.fpsFilter, 30);
    });

    it("maxFrameRate 0 keeps the source's rate, however fast", () => {
      const uncapped = LADDER.map((r) => ({ ...r, maxFrameRate: 0 }));
      for (const r of planLadder(uncapped, source(1280, 720, 60))) {
        assert.equal(r.fpsFilter, null);
        assert.equal(r.frameRate, 60);
      }
    });

    it("caps each rendition at its own maxFrameRate", () => {
      const mixed: Rendition[] = [
        { ...LADDER[0]!, maxFrameRate: 60 },
        { ...LADDER[1]!, maxFrameRate: 30 },
        { ...LADDER[2]!, maxFrameRate: 15 },
      ];
      const planned = planLadder(mixed, source(1280, 720, 50));
      assert.deepEqual(
        planned.map((r) => [r.fpsFilter, r.frameRate]),
        [[null, 50], [30, 30], [15, 15]],
      );
    });

    it("CODECS has mp4a.40.2 only when the source has audio, and the H.264 level of the rendition", () => {
      for (const hasAudio of [true, false]) {
        for (const r of planLadder(LADDER, source(1920, 1080, 30, hasAudio))) {
          const level = h264Level(r.width, r.height, r.frameRate);
          const codecs = r.codecs.split(",");
          assert.equal(codecs[0], `avc1.6400${level.hex}`);
          assert.equal(r.x264Level, level.level);
          if (hasAudio) assert.deepEqual(codecs.slice(1), ["mp4a.40.2"]);
          else assert.equal(codecs.length, 1, r.codecs);
        }
      }
    });

    it("BANDWIDTH is the peak video rate plus audio, AVERAGE-BANDWIDTH the average, both in bit/s", () => {
      const [withAudio] = planLadder(LADDER, source(1280, 720, 30, true));
      assert.equal(withAudio!.bandwidth, Math.round((2800 * MAXRATE_FACTOR + 128) * 1000));
      assert.equal(withAudio!.averageBandwidth, (2800 + 128) * 1000);
      assert.equal(withAudio!.audioBitrate, 128);
      const [silent] = planLadder(LADDER, source(1280, 720, 30, false));
      assert.equal(silent!.bandwidth, Math.round(2800 * MAXRATE_FACTOR * 1000));
      assert.equal(silent!.averageBandwidth, 2800 * 1000);
      assert.equal(silent!.audioBitrate, 0);
    });

    it("ladderEntries keeps exactly what the master playlist needs", () => {
      const entries = ladderEntries(planLadder(LADDER, source(1280, 720)));
      for (const e of entries) {
        assert.deepEqual(Object.keys(e).sort(), ["averageBandwidth", "bandwidth", "codecs", "frameRate", "height", "name", "width"]);
      }
    });
  });

  describe("replanLadder", () => {
    const fixed = ladderEntries(planLadder(LADDER, source(854, 480, 30)));

    it("keeps the fixed names, sizes, rates and codecs whatever the new source is", () => {
      for (const s of [source(1920, 1080, 60), source(320, 240, 25), source(null, null, null)]) {
        const planned = replanLadder(fixed, LADDER, s);
        assert.deepEqual(
          planned.map((r) => [r.name, r.width, r.height, r.frameRate, r.codecs, r.bandwidth, r.averageBandwidth]),
          fixed.map((r) => [r.name, r.width, r.height, r.frameRate, r.codecs, r.bandwidth, r.averageBandwidth]),
        );
      }
    });

    it("adds an fps filter only when the new source's rate differs from the fixed one", () => {
      assert.deepEqual(
        replanLadder(fixed, LADDER, source(854, 480, 30)).map((r) => r.fpsFilter),
        [null, null],
      );
      assert.deepEqual(
        replanLadder(fixed, LADDER, source(854, 480, 60)).map((r) => r.fpsFilter),
        [30, 30],
      );
      assert.deepEqual(
        replanLadder(fixed, LADDER, source(854, 480, 25)).map((r) => r.fpsFilter),
        [30, 30],
      );
    });

    it("takes bitrates from the config, and no audio bitrate without audio", () => {
      const planned = replanLadder(fixed, LADDER, source(854, 480, 30, true));
      assert.deepEqual(
        planned.map((r) => [r.videoBitrate, r.audioBitrate]),
        [[1400, 96], [800, 96]],
      );
      const silent = replanLadder(fixed, LADDER, source(854, 480, 30, false));
      assert.deepEqual(
        silent.map((r) => r.audioBitrate),
        [0, 0],
      );
    });

    it("uses the fixed rendition's level", () => {
      for (const r of replanLadder(fixed, LADDER, source(1920, 1080, 60))) {
        assert.equal(r.x264Level, h264Level(r.width, r.height, r.frameRate).level);
      }
    });
  });
});
