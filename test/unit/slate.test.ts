// The slate generator against real ffmpeg and ffprobe: each rendition's slate segment has the ladder's
// format, and its copies moved in time play on as one stream.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LadderEntry } from "../../src/core/model.ts";
import { DEFAULT_SLATE, Slates, avcLevel, encodeSlate } from "../../src/transcode/slate.ts";
import { TS_PACKET, TsRetimer, readTimestamp } from "../../src/transcode/ts-retime.ts";

const LADDER: LadderEntry[] = [
  { name: "360p", width: 640, height: 360, bandwidth: 900000, averageBandwidth: 800000, codecs: "avc1.64001e,mp4a.40.2", frameRate: 30 },
  { name: "240p", width: 426, height: 240, bandwidth: 500000, averageBandwidth: 450000, codecs: "avc1.640015,mp4a.40.2", frameRate: 25 },
];

interface Probe {
  streams: { codec_type: string; codec_name: string; profile?: string; width?: number; height?: number; r_frame_rate?: string; sample_rate?: string; channels?: number; level?: number }[];
  format: { duration: string; format_name: string };
}

function probe(file: string): Probe {
  return JSON.parse(execFileSync("ffprobe", ["-v", "error", "-show_streams", "-show_format", "-of", "json", file]).toString()) as Probe;
}

/** First PTS of each PES of a PID-independent kind (video 0xe0, audio 0xc0) in a segment. */
function firstPts(segment: Buffer, streamId: number): number | null {
  for (let at = 0; at < segment.length; at += TS_PACKET) {
    if (!(segment[at + 1]! & 0x40)) continue;
    const control = (segment[at + 3]! >> 4) & 0x3;
    const payload = control & 0x2 ? at + 5 + segment[at + 4]! : at + 4;
    if (segment[payload] === 0 && segment[payload + 1] === 0 && segment[payload + 2] === 1 && segment[payload + 3] === streamId) {
      return readTimestamp(segment, payload + 9);
    }
  }
  return null;
}

describe("slate", function () {
  this.timeout(60000);
  let dir: string;
  let segments: Map<string, Buffer>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "baton-slate-"));
    segments = await encodeSlate(LADDER, { ffmpegPath: "ffmpeg", image: DEFAULT_SLATE, segmentDuration: 2, workDir: dir });
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  it("encodes one segment per rendition in the ladder's format", () => {
    assert.deepEqual([...segments.keys()], ["360p", "240p"]);
    for (const r of LADDER) {
      const file = join(dir, `${r.name}.ts`);
      writeFileSync(file, segments.get(r.name)!);
      const p = probe(file);
      const video = p.streams.find((s) => s.codec_type === "video")!;
      const audio = p.streams.find((s) => s.codec_type === "audio")!;
      assert.equal(p.format.format_name, "mpegts");
      assert.equal(video.codec_name, "h264");
      assert.equal(video.profile, "High");
      assert.equal(video.level, Number(avcLevel(r.codecs)) * 10);
      assert.equal(`${video.width}x${video.height}`, `${r.width}x${r.height}`);
      assert.equal(video.r_frame_rate, `${r.frameRate}/1`);
      assert.equal(audio.codec_name, "aac");
      assert.equal(audio.sample_rate, "48000");
      assert.equal(audio.channels, 2);
      assert.ok(Math.abs(Number(p.format.duration) - 2) < 0.1, `${r.name} lasts ${p.format.duration} s`);
    }
  });

  it("moves copies on in time: the k-th starts k durations after the first, and three play as one", async () => {
    const slate = await new Slates({ ffmpegPath: "ffmpeg", image: DEFAULT_SLATE, segmentDuration: 2, workDir: dir }).get(LADDER);
    const gap = slate.gap();
    const other = slate.gap();
    // another stream's gap at the same time has counters of its own: interleaving it changes nothing here
    const copies = [0, 1, 2].map((k) => (other.segment("360p", k), gap.segment("360p", k)));
    const base = firstPts(copies[0]!, 0xe0)!;
    assert.ok(base !== null);
    assert.equal(firstPts(copies[1]!, 0xe0), base + 180000);
    assert.equal(firstPts(copies[2]!, 0xe0), base + 360000);
    assert.equal(firstPts(copies[2]!, 0xc0), firstPts(copies[0]!, 0xc0)! + 360000);
    const joined = join(dir, "joined.ts");
    writeFileSync(joined, Buffer.concat(copies));
    assert.ok(Math.abs(Number(probe(joined).format.duration) - 6) < 0.15, `three slate segments last ${probe(joined).format.duration} s`);
    // ffmpeg decodes the three as one stream: no timestamp going back, no continuity error
    const decoded = spawnSync("ffmpeg", ["-v", "warning", "-i", joined, "-f", "null", "-"], { encoding: "utf8" });
    assert.equal(decoded.status, 0);
    assert.doesNotMatch(decoded.stderr, /non monotonic|discontinuity|Packet corrupt|Continuity/i, decoded.stderr);
  });

  it("wraps timestamps at 2^33 and refuses what is not MPEG-TS", () => {
    const template = segments.get("240p")!;
    const pts = firstPts(template, 0xe0)!;
    const wrapped = new TsRetimer().shift(template, 2 ** 33 - pts + 5);
    assert.equal(firstPts(wrapped, 0xe0), 5);
    assert.throws(() => new TsRetimer().shift(Buffer.alloc(100), 0), /whole packets/);
    assert.throws(() => new TsRetimer().shift(Buffer.alloc(188), 0), /no sync byte/);
  });

  it("says clearly when the slate image cannot be read", async () => {
    await assert.rejects(
      encodeSlate(LADDER, { ffmpegPath: "ffmpeg", image: join(dir, "missing.png"), segmentDuration: 2, workDir: dir }),
      (error: Error) => /ffmpeg could not encode the slate/.test(error.message) && /missing\.png/.test(error.message),
    );
  });
});
