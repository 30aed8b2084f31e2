// Passthrough on the real stack: a 360p H.264 source with a 2-s GOP into the light ladder (top 360p) with 2-s
// segments. Its top rendition copies the source (ffprobe: the source's stream parameters; the master playlist
// says so), its segments cut at the same frames as the encoded rendition's, ffmpeg's HLS demuxer reads the
// whole stream and hls.js plays the copied rendition in Chromium. A 5-s GOP or a larger source keeps the full
// encode and the log says why; transcode.passthrough=never never copies.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chromium, type Browser } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "../../tools/chaos/browsers.ts";
import { parseM3u8, type ParsedPlaylist, type ParsedSegment } from "../helpers/hls.ts";
import { get, publish, startTestNode, startTestRedis, stopAll, tempDir, testPrefix, waitFor, type TestNode } from "../helpers/stack.ts";
import { syntheticPushArgs } from "../../tools/chaos/publisher.ts";
import { join } from "node:path";
import { MIN_FIRST_SEGMENT } from "../../src/transcode/job.ts";

const SEGMENT = 2;
const SOURCE = { width: 640, height: 360, gop: 2, videoKbps: 400, stereo: true };

interface VideoStream {
  codec_name: string;
  profile: string;
  level: number;
  width: number;
  height: number;
  pix_fmt: string;
  r_frame_rate: string;
  has_b_frames: number;
  start_time: string;
  nb_read_packets: string;
}

function run(command: string, args: string[], input?: Buffer): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, { encoding: "buffer", maxBuffer: 64 << 20, timeout: 60000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} failed: ${error.message}\n${stderr.toString()}`));
      else resolve({ stdout: stdout.toString(), stderr: stderr.toString() });
    });
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(input);
  });
}

/** The video stream of a file or of bytes (ffprobe reads them on stdin), its packets counted. */
async function videoOf(input: string | Buffer): Promise<VideoStream> {
  const args = ["-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
    "stream=codec_name,profile,level,width,height,pix_fmt,r_frame_rate,has_b_frames,start_time,nb_read_packets", "-of", "json", "-i"];
  const { stdout } = await run("ffprobe", [...args, typeof input === "string" ? input : "pipe:0"], typeof input === "string" ? undefined : input);
  const stream = (JSON.parse(stdout) as { streams: VideoStream[] }).streams[0];
  assert.ok(stream, "no video stream");
  return stream;
}

/** The RFC 6381 codecs string of H.264 as ffprobe names its profile and level. */
function avc1(v: VideoStream): string {
  const profiles: Record<string, string> = { "Constrained Baseline": "42c0", Baseline: "4200", Main: "4d00", High: "6400" };
  assert.ok(profiles[v.profile], `profile ${v.profile}`);
  return `avc1.${profiles[v.profile]}${v.level.toString(16).padStart(2, "0")}`;
}

/** The bitrate (kbit/s) in the x264 settings SEI of a segment holding an encoder's first keyframe, or null. */
function x264Bitrate(segment: Buffer): number | null {
  const text = segment.toString("latin1");
  const at = text.indexOf("x264 - core");
  const match = at >= 0 ? / bitrate=(\d+)/.exec(text.slice(at, at + 4000)) : null;
  return match ? Number(match[1]) : null;
}

async function media(node: TestNode, stream: string, rendition: string): Promise<ParsedPlaylist> {
  const response = await get(node.http(`/live/${stream}/${rendition}/index.m3u8`));
  assert.equal(response.status, 200, response.text);
  return parseM3u8(response.text);
}

/** Both renditions' playlists once each lists `count` segments. */
function segments(node: TestNode, stream: string, count: number): Promise<[ParsedPlaylist, ParsedPlaylist]> {
  return waitFor(`${count} segments of ${stream} in both renditions`, async () => {
    const [top, low] = [await media(node, stream, "360p"), await media(node, stream, "240p")];
    return top.segments.length >= count && low.segments.length >= count ? [top, low] as [ParsedPlaylist, ParsedPlaylist] : undefined;
  }, 60000, 250);
}

async function segmentBytes(node: TestNode, stream: string, rendition: string, uri: string): Promise<Buffer> {
  const response = await get(node.http(`/live/${stream}/${rendition}/${uri}`));
  assert.equal(response.status, 200);
  return response.bytes;
}

describe("passthrough: the top rendition copies a source that fits it", function () {
  this.timeout(240000);
  let node: TestNode;
  let never: TestNode;
  let browser: Browser | null = null;
  /** What the publisher's encoder makes of the synthetic source (the same arguments, into a file). */
  let source: VideoStream;

  before(async () => {
    const redis = await startTestRedis();
    const env = { BATON_HLS_SEGMENTDURATION: String(SEGMENT), BATON_HLS_RECONNECTWINDOW: "2" };
    node = await startTestNode({ redisUrl: redis.url, prefix: testPrefix(), env });
    never = await startTestNode({ redisUrl: redis.url, prefix: testPrefix(), env: { ...env, BATON_TRANSCODE_PASSTHROUGH: "never" } });
    const file = join(tempDir("passthrough"), "source.flv");
    const args = syntheticPushArgs(file, { ...SOURCE, seconds: 2 }).filter((a) => a !== "-re");
    await run("ffmpeg", args);
    source = await videoOf(file);
  });
  after(async () => {
    await browser?.close();
    await stopAll();
  });

  it("copies the source into the top rendition, aligned with the encoded one, and the master says what it is", async () => {
    // long enough that the browser, started after the checks below, still has media ahead of it on a busy machine
    // long enough for a busy machine to reach the player's checks while it is live; stopped after them
    const publisher = publish(node.rtmp("copy"), { ...SOURCE, seconds: 90 });
    const line = await node.waitForLog(/transcoding stream=copy/, 30000);
    assert.match(line, /360p:640x360:copy\+audio,240p:426x240/);
    const [top, low] = await segments(node, "copy", 5);
    // the first keyframe carries its encoder's settings: the publisher's in the copy, baton's in the encode
    assert.equal(top.mediaSequence, 0);
    assert.equal(x264Bitrate(await segmentBytes(node, "copy", "360p", top.segments[0]!.uri)), SOURCE.videoKbps);
    assert.equal(x264Bitrate(await segmentBytes(node, "copy", "240p", low.segments[0]!.uri)), 250);

    const master = parseM3u8((await get(node.http("/live/copy/index.m3u8"))).text);
    const attributes = master.playlists!.map((p) => p.attributes as Record<string, unknown>);
    assert.deepEqual(attributes[0]!.RESOLUTION, { width: 640, height: 360 });
    assert.equal(attributes[0]!.CODECS, `${avc1(source)},mp4a.40.2`, "CODECS is the source's");
    // the source's declared rates (ffmpeg declares kibibit/s: 400k is 390.6), its audio copied too
    const [video, audio] = [400000 / 1024, 64000 / 1024];
    assert.equal(Number(attributes[0]!["AVERAGE-BANDWIDTH"]), Math.round((video + audio) * 1000));
    assert.equal(Number(attributes[0]!.BANDWIDTH), Math.round((video * 1.1 + audio) * 1000));

    // segments of the same sequence number: the same frames in both renditions, from the same time
    const seqs = top.segments.slice(1, 4).map((_, i) => top.mediaSequence + 1 + i);
    for (const seq of seqs) {
      const t: ParsedSegment = top.segments[seq - top.mediaSequence]!;
      const l: ParsedSegment = low.segments[seq - low.mediaSequence]!;
      assert.ok(Math.abs(t.duration - l.duration) < 0.02, `segment ${seq}: ${t.duration} s against ${l.duration} s`);
      assert.ok(Math.abs(t.duration - SEGMENT) < 0.1, `segment ${seq} lasts ${t.duration} s`);
      const copied = await videoOf(await segmentBytes(node, "copy", "360p", t.uri));
      const encoded = await videoOf(await segmentBytes(node, "copy", "240p", l.uri));
      for (const key of ["codec_name", "profile", "level", "width", "height", "pix_fmt", "r_frame_rate", "has_b_frames"] as const) {
        assert.equal(copied[key], source[key], `the copied segment's ${key}`);
      }
      assert.deepEqual([encoded.width, encoded.height], [426, 240]);
      assert.equal(copied.nb_read_packets, encoded.nb_read_packets, `segment ${seq}: frames`);
      assert.ok(Math.abs(Number(copied.start_time) - Number(encoded.start_time)) < 0.04, `segment ${seq} starts at ${copied.start_time} and ${encoded.start_time}`);
    }

    // hls.js plays the copied rendition in Chromium
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30000 });
    const page = await browser.newPage();
    const fetched: string[] = [];
    page.on("response", (r) => fetched.push(new URL(r.url()).pathname));
    await page.goto(node.http("/watch/copy"));
    await page.waitForFunction(() => (window as unknown as { batonPlayer: { hls?: { levels: unknown[] } } }).batonPlayer.hls?.levels.length === 2, null, { timeout: 30000 });
    await page.evaluate(() => {
      const hls = (window as unknown as { batonPlayer: { hls: { levels: { height: number }[]; currentLevel: number } } }).batonPlayer.hls;
      hls.currentLevel = hls.levels.findIndex((l) => l.height === 360);
    });
    await waitFor("a copied segment fetched by hls.js", () => (fetched.some((p) => /\/360p\/[^/]+\.ts$/.test(p)) ? true : undefined), 30000);
    const at = await page.evaluate(() => document.querySelector("video")!.currentTime);
    const player = (): Promise<{ currentTime: number; buffered: number[][]; errors: { fatal: boolean; details: string }[] }> => page.evaluate(() => {
      const video = document.querySelector("video")!;
      const buffered = Array.from({ length: video.buffered.length }, (_, i) => [video.buffered.start(i), video.buffered.end(i)]);
      return { currentTime: video.currentTime, buffered, errors: (window as unknown as { batonPlayer: { errors: { fatal: boolean; details: string }[] } }).batonPlayer.errors };
    });
    await page.waitForFunction((t) => document.querySelector("video")!.currentTime > t + 2 * 2, at, { timeout: 45000 }).catch(async (error: unknown) => {
      throw new Error(`playback did not move on 4 s from ${at} s: ${JSON.stringify(await player())} (${String(error)})`);
    });
    assert.deepEqual((await player()).errors.filter((e) => e.fatal), []);
    await page.close();

    // ffmpeg's HLS demuxer (ffplay's, VLC-style clients') reads the whole ended stream, both renditions; the
    // encoder quits as on Ctrl-C (it closes the stream), which ends it after the 2-s reconnect window
    publisher.child.kill("SIGINT");
    await publisher.exited;
    await waitFor("EXT-X-ENDLIST", async () => ((await media(node, "copy", "360p")).endList ? true : undefined), 30000);
    const ended = await media(node, "copy", "360p");
    assert.ok(ended.segments.length >= 6, `${ended.segments.length} segments`);
    for (const rendition of ["360p", "240p"]) {
      const { stderr } = await run("ffmpeg", ["-hide_banner", "-v", "error", "-i", node.http(`/live/copy/${rendition}/index.m3u8`), "-map", "0", "-f", "null", "-"]);
      assert.equal(stderr.trim(), "", `${rendition}: ${stderr}`);
    }
    assert.ok(!node.lines.some((l) => /passthrough off.*stream=copy/.test(l)), "it copied from start to end");
  });

  it("keeps the full encode of a source with a 5-s GOP, saying why, with segments of the segment duration after the first", async () => {
    const publisher = publish(node.rtmp("longgop"), { ...SOURCE, gop: 5 });
    const line = await node.waitForLog(/passthrough off: its first segment is encoded again in full stream=longgop/, 30000);
    assert.match(line, /keyframe interval does not divide the 2-s segment duration/);
    const [top, low] = await segments(node, "longgop", 4);
    for (const p of [top, low]) {
      // the first runs to the first wall-clock boundary (job.ts wallClockCuts), every later one a whole segment
      const [first, ...rest] = p.segments;
      assert.ok(first!.duration > 0 && first!.duration < SEGMENT + MIN_FIRST_SEGMENT + 0.05, `the first segment lasts ${first!.duration} s`);
      assert.ok(rest.every((s) => Math.abs(s.duration - SEGMENT) < 0.1), p.segments.map((s) => s.duration).join(" "));
      assert.ok(p.segments.every((s) => !s.discontinuity), "the re-encoded first segment continues the stream");
    }
    // encoded, so with the keyframes baton forces, not the source's 5-s ones
    const copied = await videoOf(await segmentBytes(node, "longgop", "360p", top.segments[1]!.uri));
    assert.deepEqual([copied.width, copied.height], [640, 360]);
    publisher.child.kill("SIGKILL");
  });

  it("falls back to the full encode from the next keyframe when the source's GOP grows mid-stream", async () => {
    // keyframes every 2 s until 7 s, then every 5 s (at 10, 15, ...)
    const keyframes = "expr:if(lt(t,7),gte(t,n_forced*2),gte(t,n_forced*5-10))";
    const publisher = publish(node.rtmp("grows"), { ...SOURCE, gop: 20, keyframes });
    assert.match(await node.waitForLog(/transcoding stream=grows/, 30000), /360p:640x360:copy/);
    const line = await node.waitForLog(/passthrough off: full encode from the next keyframe stream=grows/, 60000);
    assert.match(line, /no source keyframe within 2\.20 s of the last segment boundary/);
    await node.waitForLog(/ffmpeg started stream=grows run=1/, 30000);
    const [top, low] = await waitFor("two full-encode segments after the discontinuity", async () => {
      const [t, l] = [await media(node, "grows", "360p"), await media(node, "grows", "240p")];
      const disc = t.segments.findIndex((s) => s.discontinuity);
      return disc > 0 && t.segments.length >= disc + 2 && l.segments.length >= disc + 2 ? [t, l] : undefined;
    }, 60000, 250);
    const disc = top.segments.findIndex((s) => s.discontinuity);
    assert.equal(low.segments.findIndex((s) => s.discontinuity), disc, "both renditions switch at the same segment");
    // (from segment 1: the first of an encoded rendition starts with AAC's 1,024-sample priming, 21 ms early)
    for (let i = 1; i < disc + 2; i++) {
      assert.ok(Math.abs(top.segments[i]!.duration - low.segments[i]!.duration) < 0.02, `segment ${i}: ${top.segments[i]!.duration} s against ${low.segments[i]!.duration} s`);
    }
    // copied segments of 2 s, the one running to the late keyframe, then the full encode's: its first up to the
    // next wall-clock boundary (job.ts wallClockCuts), then 2-s ones
    assert.ok(top.segments.slice(0, disc - 1).every((s) => Math.abs(s.duration - SEGMENT) < 0.1), top.segments.map((s) => s.duration).join(" "));
    assert.ok(Math.abs(top.segments[disc - 1]!.duration - 4) < 0.1, `the last copied segment lasts ${top.segments[disc - 1]!.duration} s`);
    assert.ok(top.segments[disc]!.duration > 0 && top.segments[disc]!.duration < SEGMENT + MIN_FIRST_SEGMENT + 0.05, `the full encode's first segment lasts ${top.segments[disc]!.duration} s`);
    assert.ok(Math.abs(top.segments[disc + 1]!.duration - SEGMENT) < 0.1, `then ${top.segments[disc + 1]!.duration} s`);
    // the full encode's first keyframe carries baton's x264 settings: the source's bitrate as the rendition's
    assert.equal(x264Bitrate(await segmentBytes(node, "grows", "360p", top.segments[disc]!.uri)), Math.round(400000 / 1024));
    publisher.child.kill("SIGKILL");
  });

  it("keeps the full encode of a source larger than the top rendition, saying why", async () => {
    const publisher = publish(node.rtmp("large"), { ...SOURCE, width: 1280, height: 720 });
    const line = await node.waitForLog(/passthrough off: full encode stream=large/, 30000);
    assert.match(line, /the source \(1280x720\) is larger than the 360p rendition \(640x360\)/);
    assert.match(await node.waitForLog(/transcoding stream=large/), /360p:640x360,240p:426x240/);
    const [top] = await segments(node, "large", 2);
    const master = parseM3u8((await get(node.http("/live/large/index.m3u8"))).text);
    assert.equal((master.playlists![0]!.attributes as Record<string, unknown>).CODECS, "avc1.64001e,mp4a.40.2");
    assert.equal((await videoOf(await segmentBytes(node, "large", "360p", top.segments[0]!.uri))).height, 360);
    publisher.child.kill("SIGKILL");
  });

  it("never copies with transcode.passthrough=never", async () => {
    const publisher = publish(never.rtmp("never"), SOURCE);
    assert.match(await never.waitForLog(/transcoding stream=never/, 30000), /360p:640x360,240p:426x240/);
    const [top] = await segments(never, "never", 2);
    const master = parseM3u8((await get(never.http("/live/never/index.m3u8"))).text);
    assert.equal((master.playlists![0]!.attributes as Record<string, unknown>).CODECS, "avc1.64001e,mp4a.40.2");
    // baton's own encode: its x264 says the rendition's bitrate in the first keyframe's settings
    assert.equal(top.mediaSequence, 0);
    assert.equal(x264Bitrate(await segmentBytes(never, "never", "360p", top.segments[0]!.uri)), 500);
    assert.ok(!never.lines.some((l) => /passthrough/.test(l)), "no passthrough decision is logged");
    publisher.child.kill("SIGKILL");
  });
});
