// Passthrough: which sources the top rendition copies, what the master playlist then says of it, how the
// source's keyframes are followed, and the ffmpeg arguments of a copying run (read, never run, here).
import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULTS, type Rendition } from "../../src/config/defaults.ts";
import { createLogger } from "../../src/core/log.ts";
import type { SourceInfo } from "../../src/ingest/rtmp-server.ts";
import { aacConfig, avcCodecs, type AVPacket } from "../../src/ingest/nms.ts";
import { ffmpegSpec, type TranscodeOptions } from "../../src/transcode/job.ts";
import { ladderEntries, planLadder, replanLadder, x264ProfileOf } from "../../src/transcode/ladder.ts";
import { BitrateWatch, CADENCE_TOLERANCE, CopyWatch, HEAVY_SEGMENTS, KeyframeCadence, PASSTHROUGH_BITRATE_MARGIN, passthroughPlan, type Misfit } from "../../src/transcode/passthrough.ts";

const LADDER: Rendition[] = DEFAULTS.transcode.ladder;
const H264_HIGH_31 = "avc1.64001f";

function source(o: Partial<SourceInfo> = {}): SourceInfo {
  return { width: 1280, height: 720, frameRate: 30, hasAudio: true, videoCodecs: H264_HIGH_31, videoKbps: 2500, ...o };
}

describe("passthrough", () => {
  describe("passthroughPlan", () => {
    it("copies a 720p H.264 source into the 720p rendition and says what the source is", () => {
      const plan = passthroughPlan("auto", planLadder(LADDER, source()), source(), false);
      assert.equal(plan.copy, true, plan.why);
      const [top, ...rest] = plan.renditions;
      assert.equal(top!.copy, true);
      assert.deepEqual([top!.width, top!.height], [1280, 720]);
      assert.equal(top!.codecs, `${H264_HIGH_31},mp4a.40.2`);
      assert.equal(top!.bandwidth, Math.round((2500 * 1.1 + 128) * 1000));
      assert.equal(top!.averageBandwidth, (2500 + 128) * 1000);
      // a fallback encode keeps to what CODECS and BANDWIDTH say
      assert.deepEqual([top!.x264Profile, top!.x264Level, top!.videoBitrate], ["high", "3.1", 2500]);
      assert.ok(rest.every((r) => !r.copy));
      assert.deepEqual(rest.map((r) => r.name), ["480p", "360p"]);
    });

    it("copies a smaller source into the top rendition it fits (a 480p source: the 480p rendition)", () => {
      const small = source({ width: 854, height: 480, videoCodecs: "avc1.42c01e", videoKbps: 1200 });
      const plan = passthroughPlan("auto", planLadder(LADDER, small), small, false);
      assert.equal(plan.copy, true, plan.why);
      assert.equal(plan.renditions[0]!.name, "480p");
      assert.equal(plan.renditions[0]!.x264Profile, "baseline");
      assert.equal(plan.renditions[0]!.codecs, "avc1.42c01e,mp4a.40.2");
    });

    const refused: { what: string; src: SourceInfo; why: RegExp }[] = [
      { what: "a source that is not H.264", src: source({ videoCodecs: null }), why: /not H\.264/ },
      { what: "a High 10 source", src: source({ videoCodecs: "avc1.6e001f" }), why: /profile/ },
      { what: "a source larger than the rendition", src: source({ width: 1920, height: 1080 }), why: /1920x1080\) is larger than the 720p rendition \(1280x720/ },
      { what: "a 60-fps source into a 30-fps rendition", src: source({ frameRate: 60 }), why: /60 fps is above/ },
      { what: "a source without a declared bitrate", src: source({ videoKbps: null }), why: /does not declare/ },
      { what: "a source over the bitrate margin", src: source({ videoKbps: 2800 * PASSTHROUGH_BITRATE_MARGIN + 1 }), why: /kbit\/s is over 720p's 2800/ },
    ];
    for (const c of refused) {
      it(`keeps the full encode for ${c.what}, saying why`, () => {
        const planned = planLadder(LADDER, c.src);
        const plan = passthroughPlan("auto", planned, c.src, false);
        assert.equal(plan.copy, false);
        assert.match(plan.why, c.why);
        assert.deepEqual(plan.renditions, planned);
      });
    }

    it("copies the audio too when it is AAC-LC 48 kHz stereo within the margin, and says its bitrate", () => {
      const stereo = { objectType: 2, sampleRate: 48000, channels: 2 };
      const withAudio = (o: Partial<SourceInfo>): SourceInfo => source({ aac: stereo, audioKbps: 125, ...o });
      const plan = passthroughPlan("auto", planLadder(LADDER, withAudio({})), withAudio({}), false);
      const top = plan.renditions[0]!;
      assert.equal(top.copyAudio, true);
      assert.equal(top.averageBandwidth, (2500 + 125) * 1000);
      assert.equal(top.audioBitrate, 125, "a fallback encode keeps to the copied audio's bitrate");
      assert.ok(plan.renditions.slice(1).every((r) => !r.copyAudio));
      for (const o of [{ aac: { ...stereo, channels: 1 } }, { aac: { ...stereo, objectType: 5 } }, { aac: { ...stereo, sampleRate: 44100 } }, { audioKbps: 128 * PASSTHROUGH_BITRATE_MARGIN + 1 }, { audioKbps: null }]) {
        const other = withAudio(o);
        const p = passthroughPlan("auto", planLadder(LADDER, other), other, false);
        assert.equal(p.copy, true);
        assert.equal(p.renditions[0]!.copyAudio, false, JSON.stringify(o));
      }
    });

    it("never copies with never, and copies any H.264 with always", () => {
      const big = source({ width: 1920, height: 1080, videoKbps: null });
      assert.equal(passthroughPlan("never", planLadder(LADDER, source()), source(), false).copy, false);
      const always = passthroughPlan("always", planLadder(LADDER, big), big, false);
      assert.equal(always.copy, true);
      assert.deepEqual([always.renditions[0]!.width, always.renditions[0]!.height], [1920, 1080]);
      assert.equal(passthroughPlan("always", planLadder(LADDER, source({ videoCodecs: null })), source({ videoCodecs: null }), false).copy, false);
    });

    it("copies on a later publish only a source identical to the recorded rendition", () => {
      const first = passthroughPlan("auto", planLadder(LADDER, source()), source(), false);
      const fixed = ladderEntries(first.renditions);
      const again = passthroughPlan("auto", replanLadder(fixed, LADDER, source()), source(), true);
      assert.equal(again.copy, true, again.why);
      assert.deepEqual(ladderEntries(again.renditions), fixed);
      const other = source({ videoCodecs: "avc1.4d001f" });
      const refused = passthroughPlan("auto", replanLadder(fixed, LADDER, other), other, true);
      assert.equal(refused.copy, false);
      assert.match(refused.why, /recorded as 1280x720 avc1\.64001f/);
      assert.equal(passthroughPlan("always", replanLadder(fixed, LADDER, other), other, true).copy, false, "always too");
      // the recorded rendition, encoded now, keeps its recorded profile and level
      assert.deepEqual([refused.renditions[0]!.x264Profile, refused.renditions[0]!.x264Level], ["high", "3.1"]);
    });
  });

  describe("x264ProfileOf, avcCodecs and aacConfig", () => {
    it("reads profile and level from a codecs string", () => {
      assert.deepEqual(x264ProfileOf("avc1.42c01e,mp4a.40.2"), { profile: "baseline", level: "3.0" });
      assert.deepEqual(x264ProfileOf("avc1.4d0028"), { profile: "main", level: "4.0" });
      assert.equal(x264ProfileOf("avc1.f4001f"), null);
      assert.equal(x264ProfileOf("hvc1.1.6.L93.B0"), null);
    });

    it("reads the codecs string of an AVC sequence header, and nothing from another codec", () => {
      const record = Buffer.from([0x17, 0, 0, 0, 0, 1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, 0]);
      const packet = (data: Buffer): AVPacket => ({ codec_type: 9, codec_id: data[0]! & 0x0f, flags: 2, pts: 0, dts: 0, size: data.length, data });
      assert.equal(avcCodecs(packet(record)), "avc1.64001f");
      assert.equal(avcCodecs(packet(Buffer.from([0x1c, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]))), null);
      assert.equal(avcCodecs(packet(record.subarray(0, 7))), null);
    });

    it("reads an AAC sequence header's object type, sample rate and channels", () => {
      const packet = (data: Buffer): AVPacket => ({ codec_type: 8, codec_id: data[0]! >> 4, flags: 0, pts: 0, dts: 0, size: data.length, data });
      // AAC-LC (2), 48 kHz (index 3), 2 channels: 00010 0011 0010 000
      assert.deepEqual(aacConfig(packet(Buffer.from([0xaf, 0, 0x11, 0x90]))), { objectType: 2, sampleRate: 48000, channels: 2 });
      assert.deepEqual(aacConfig(packet(Buffer.from([0xaf, 0, 0x12, 0x08]))), { objectType: 2, sampleRate: 44100, channels: 1 });
      assert.equal(aacConfig(packet(Buffer.from([0x2f, 0, 0x11, 0x90]))), null, "MP3");
      assert.equal(aacConfig(packet(Buffer.from([0xaf, 1, 0x11, 0x90]))), null, "an AAC frame, not the header");
    });
  });

  describe("KeyframeCadence", () => {
    /** Feeds 30-fps video with keyframes every `gop` seconds (offset by `lateMs`) for `seconds`; the first misfit. */
    function follow(segmentDuration: number, gop: number, seconds: number, lateMs = 0): { why: string | null; cuts: number } {
      const cadence = new KeyframeCadence(segmentDuration);
      const base = 123456;
      for (let frame = 0; frame < seconds * 30; frame++) {
        const keyframe = frame % Math.round(gop * 30) === 0;
        const why = cadence.video(base + Math.round((frame * 1000) / 30) + (keyframe && frame > 0 ? lateMs : 0), keyframe);
        if (why) return { why, cuts: cadence.cuts };
      }
      return { why: null, cuts: cadence.cuts };
    }

    it("fits keyframes on every boundary, or more often than it", () => {
      assert.deepEqual(follow(2, 2, 20), { why: null, cuts: 9 });
      assert.deepEqual(follow(2, 1, 20), { why: null, cuts: 9 });
      assert.equal(follow(2, 2, 20, 100).why, null, "a keyframe 100 ms late still fits");
    });

    it("cuts where the run's output time (its own plus the wall-clock offset) crosses a boundary, as ffmpeg's muxer does", () => {
      const cutsAt = (offset: number): number[] => {
        const cadence = new KeyframeCadence(2, offset);
        const at: number[] = [];
        for (let frame = 0; frame < 9 * 30; frame++) {
          const before = cadence.cuts;
          assert.equal(cadence.video(5000 + Math.round((frame * 1000) / 30), frame % 30 === 0), null);
          if (cadence.cuts > before) at.push(frame / 30);
        }
        return at;
      };
      assert.deepEqual(cutsAt(0), [2, 4, 6, 8]);
      assert.deepEqual(cutsAt(1), [1, 3, 5, 7]);
    });

    it("refuses a keyframe interval longer than the segment, or one that does not divide it", () => {
      const five = follow(2, 5, 20);
      assert.match(five.why ?? "", /does not divide the 2-s segment duration/);
      assert.equal(five.cuts, 0, "refused within the first segment");
      assert.match(follow(2, 1.5, 20).why ?? "", /does not divide/);
      assert.match(follow(1, 2, 20).why ?? "", /does not divide the 1-s/);
      assert.ok(follow(2, 2, 20, (CADENCE_TOLERANCE + 0.05) * 1000).why, "a keyframe later than the tolerance");
    });
  });

  describe("BitrateWatch", () => {
    const bandwidth = 500_000;
    const bytes = (kbps: number, seconds = 2): number => (kbps * 1000 * seconds) / 8;

    it("falls back after HEAVY_SEGMENTS copied segments in a row over the margin, not after one heavy scene", () => {
      const watch = new BitrateWatch(bandwidth);
      const over = 500 * PASSTHROUGH_BITRATE_MARGIN + 10;
      assert.equal(watch.segment(bytes(over), 2), null);
      assert.equal(watch.segment(bytes(over), 2), null);
      assert.equal(watch.segment(bytes(480), 2), null, "a segment within it starts the count again");
      for (let i = 1; i < HEAVY_SEGMENTS; i++) assert.equal(watch.segment(bytes(over), 2), null);
      assert.match(watch.segment(bytes(over), 2) ?? "", /3 copied segments in a row over 125% of the declared 500 kbit\/s/);
    });

    it("takes segments up to the margin, and ignores an empty one", () => {
      const watch = new BitrateWatch(bandwidth);
      for (let i = 0; i < 10; i++) assert.equal(watch.segment(bytes(500 * PASSTHROUGH_BITRATE_MARGIN - 1), 2), null);
      assert.equal(watch.segment(1000, 0), null);
    });
  });

  describe("CopyWatch", () => {
    const video = (ms: number, keyframe: boolean): AVPacket => ({ codec_type: 9, codec_id: 7, flags: keyframe ? 3 : 4, pts: ms, dts: ms, size: 1000, data: Buffer.alloc(0) });
    const audio = (ms: number): AVPacket => ({ codec_type: 8, codec_id: 10, flags: 1, pts: ms, dts: ms, size: 200, data: Buffer.alloc(0) });
    /** 30-fps video with keyframes every `gop` s, an audio frame after each; the first misfit and the packets fed. */
    function feed(watch: CopyWatch, gop: number, seconds: number): { misfit: Misfit | null; fed: AVPacket[] } {
      const fed: AVPacket[] = [];
      for (let frame = 0; frame < seconds * 30; frame++) {
        const ms = Math.round((frame * 1000) / 30);
        for (const p of [video(ms, frame % (gop * 30) === 0), audio(ms)]) {
          fed.push(p);
          const misfit = watch.packet(p);
          if (misfit) return { misfit, fed };
        }
      }
      return { misfit: null, fed };
    }

    it("hands back every packet of the first segment (audio too) when the keyframes do not fit it", () => {
      const { misfit, fed } = feed(new CopyWatch(2, 500_000, 32 << 20), 5, 10);
      assert.ok(misfit, "a 5-s GOP does not fit 2-s segments");
      assert.match(misfit.why, /does not divide/);
      assert.deepEqual(misfit.replay, fed, "the run's packets, to encode again");
      assert.equal(misfit.replay![0]!.flags, 3, "from the keyframe it started at");
    });

    it("falls back without a replay once the first segment is cut, and says a misfit once", () => {
      const watch = new CopyWatch(2, 500_000, 32 << 20);
      assert.equal(feed(watch, 2, 5).misfit, null);
      let later: Misfit | null = null;
      for (let i = 0; i < HEAVY_SEGMENTS && !later; i++) later = watch.segment(1e6, 2);
      assert.ok(later, "4 Mbit/s segments against a declared 500 kbit/s");
      assert.equal(later.replay, null);
      assert.equal(watch.segment(1e6, 2), null);
      assert.equal(watch.packet(video(99_000, false)), null);
    });

    it("bounds the first segment's packets also when only audio follows its keyframe (memory)", () => {
      const watch = new CopyWatch(2, 500_000, 50_000);
      assert.equal(watch.packet(video(0, true)), null);
      let misfit: Misfit | null = null;
      for (let ms = 0; ms < 600_000 && !misfit; ms += 21) misfit = watch.packet(audio(ms));
      assert.match(misfit?.why ?? "", /over 50000 bytes in its first segment/, "a keyframe, then audio only, is not kept forever");
    });

    it("refuses a first segment heavier than the input backlog bound", () => {
      const { misfit } = feed(new CopyWatch(2, 500_000, 50_000), 2, 3);
      assert.match(misfit?.why ?? "", /over 50000 bytes in its first segment/);
      assert.ok(misfit?.replay);
    });
  });

  describe("ffmpegSpec with a copied rendition", () => {
    const DIR = join("/tmp", "baton-spec-test", "0");
    const plan = passthroughPlan("auto", planLadder(LADDER, source()), source(), false);
    const options: TranscodeOptions = {
      streamId: "cam1", publishId: "p1", ffmpegPath: "/usr/bin/ffmpeg", preset: "veryfast", segmentDuration: 2,
      spoolDir: "/tmp/baton-spec-test", maxRestarts: 3, renditions: plan.renditions, hasAudio: true,
      log: createLogger({ level: "error", write: () => undefined }),
    };
    const spec = ffmpegSpec(options, DIR);

    it("copies the source's video into the top output and scales only the others", () => {
      assert.equal(spec.filterComplex.split(";")[0], "[0:v]split=2[s0][s1]");
      assert.match(spec.filterComplex, /\[s0\]scale=854:480.*\[v0\];\[s1\]scale=640:360.*\[v1\]$/);
      const [top, mid, low] = spec.outputs.map((o) => o.options.join(" "));
      assert.match(top!, /-map 0:v:0 -c:v copy/);
      assert.doesNotMatch(top!, /libx264/);
      assert.match(mid!, /-map \[v0\] -c:v libx264/);
      assert.match(low!, /-map \[v1\] -c:v libx264/);
      // audio is still the ladder's AAC in every output
      for (const o of spec.outputs) assert.match(o.options.join(" "), /-map 0:a:0 -c:a aac/);
    });

    it("puts the encoded renditions' keyframes where the source has them, so every rendition cuts alike", () => {
      for (const o of spec.outputs.slice(1)) {
        const args = o.options.join(" ");
        assert.match(args, /-force_key_frames source/);
        assert.match(args, /-g 120 /, "x264's own interval never puts a keyframe a frame before the source's");
      }
    });

    it("copies the audio of a rendition that copies it, and encodes the others'", () => {
      const renditions = plan.renditions.map((r, i) => ({ ...r, copyAudio: i === 0 }));
      const outputs = ffmpegSpec({ ...options, renditions }, DIR).outputs.map((o) => o.options.join(" "));
      assert.match(outputs[0]!, /-map 0:a:0 -c:a copy/);
      assert.doesNotMatch(outputs[0]!, /-c:a aac/);
      for (const o of outputs.slice(1)) assert.match(o, /-map 0:a:0 -c:a aac/);
    });

    it("has no filter graph when the only rendition copies", () => {
      const one = ffmpegSpec({ ...options, renditions: plan.renditions.slice(0, 1) }, DIR);
      assert.equal(one.filterComplex, "");
      assert.equal(one.outputs.length, 1);
    });
  });
});
