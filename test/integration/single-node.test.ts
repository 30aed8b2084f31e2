// One node, real Redis, real ffmpeg publishing RTMP: the ladder, the segments, the live playlist, the end of
// a stream, a returning publisher, a crashing transcoder.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { lastSeq, parseM3u8, resumedAfter, slateSeqs, type ParsedPlaylist as ParsedMedia } from "../helpers/hls.ts";
import { get, publish, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestNode, type TestRedis, ADMIN } from "../helpers/stack.ts";

async function media(node: TestNode, stream: string, rendition: string): Promise<ParsedMedia> {
  const response = await get(node.http(`/live/${stream}/${rendition}/index.m3u8`));
  assert.equal(response.status, 200, response.text);
  return parseM3u8(response.text);
}

describe("single node: RTMP in, adaptive HLS out", function () {
  this.timeout(120000);
  let redis: TestRedis;
  let node: TestNode;

  before(async () => {
    redis = await startTestRedis();
    node = await startTestNode({ redisUrl: redis.url, prefix: testPrefix(), env: { BATON_HLS_RECONNECTWINDOW: "4" } });
  });
  after(stopAll);

  it("serves the ladder of a 720p push: master, media playlists, segments at each rendition's height", async () => {
    const publisher = publish(node.rtmp("ladder"), { width: 1280, height: 720 });
    const master = await waitFor("the master playlist", async () => {
      const r = await get(node.http("/live/ladder/index.m3u8"));
      return r.status === 200 ? r : undefined;
    });
    assert.equal(master.headers.get("content-type"), "application/vnd.apple.mpegurl");
    assert.equal(master.headers.get("access-control-allow-origin"), "*");
    const parsed = parseM3u8(master.text);
    assert.deepEqual(parsed.playlists?.map((p) => p.uri.replace(/^s\/[^/]+\//, "")), ["360p/index.m3u8", "240p/index.m3u8"]);
    assert.ok(parsed.playlists?.every((p) => /^s\/[0-9a-f]{32}\.ladder\.[A-Za-z0-9_-]{43}\//.test(p.uri)), "a new viewer gets a session in the path of every URI");
    const first = parsed.playlists?.[0]?.attributes as Record<string, unknown>;
    assert.deepEqual(first.RESOLUTION, { width: 640, height: 360 });
    assert.equal(first.CODECS, "avc1.64001e,mp4a.40.2");
    assert.ok(Number(first.BANDWIDTH) > Number(first["AVERAGE-BANDWIDTH"]));
    assert.equal(Number(first["FRAME-RATE"]), 30);

    for (const [rendition, height] of [["360p", 360], ["240p", 240]] as const) {
      const playlist = await waitFor(`a ${rendition} segment`, async () => {
        const p = await media(node, "ladder", rendition);
        return p.segments.length > 0 ? p : undefined;
      });
      assert.equal(playlist.targetDuration, 1);
      const segment = await get(node.http(`/live/ladder/${rendition}/${playlist.segments[0]!.uri}`));
      assert.equal(segment.status, 200);
      assert.equal(segment.headers.get("content-type"), "video/mp2t");
      assert.match(segment.headers.get("cache-control") ?? "", /immutable/);
      // the URI names the claim that wrote the segment: the same number under another claim id is no segment
      const [seq, claim] = playlist.segments[0]!.uri.split("?")[0]!.split(".") as [string, string];
      assert.match(claim, /^[0-9a-f]{12}$/);
      for (const wrong of [`${seq}.${claim === "000000000000" ? "000000000001" : "000000000000"}.ts`, `${seq}.ts`]) {
        assert.equal((await get(node.http(`/live/ladder/${rendition}/${wrong}`))).status, 404, wrong);
      }
      const { stdout } = await runWithInput("ffprobe", ["-v", "error", "-show_entries", "stream=codec_name,height", "-of", "json", "-i", "pipe:0"], segment.bytes);
      const streams = (JSON.parse(stdout) as { streams: { codec_name: string; height?: number }[] }).streams;
      assert.deepEqual(streams.map((s) => s.codec_name).sort(), ["aac", "h264"]);
      assert.equal(streams.find((s) => s.codec_name === "h264")?.height, height);
    }

    // ffmpeg's progress is parsed into metrics (reported every 2 s)
    await waitFor("transcoder metrics", async () => {
      const text = (await get(node.http("/metrics"), ADMIN)).text;
      const fps = /baton_transcoder_fps\{stream="ladder"[^}]*\} [1-9]/.test(text);
      const kbps = /baton_transcoder_output_kbps\{stream="ladder"[^}]*\} [1-9]/.test(text);
      return /baton_transcoder_speed\{stream="ladder"/.test(text) && fps && kbps ? true : undefined;
    }, 20000);
    const before = lastSeq(await media(node, "ladder", "360p"));
    await waitFor("the playlist to advance", async () => (lastSeq(await media(node, "ladder", "360p")) >= before + 2 ? true : undefined));
    // renditions stay aligned: the same sequence numbers and date-times
    const [a, b] = [await media(node, "ladder", "360p"), await media(node, "ladder", "240p")];
    const common = Math.min(lastSeq(a), lastSeq(b));
    const at = (p: ParsedMedia, seq: number) => p.segments[seq - p.mediaSequence];
    assert.equal(at(a, common)?.dateTimeString, at(b, common)?.dateTimeString);
    publisher.child.kill("SIGKILL");
  });

  it("keeps a stream live through the reconnect window, continues it after a discontinuity, then ends it", async () => {
    const stream = "reconnect";
    let publisher = publish(node.rtmp(stream), { seconds: 4 });
    await publisher.exited;
    await node.waitForLog(/publish ended stream=reconnect/);
    const firstText = (await get(node.http(`/live/${stream}/240p/index.m3u8`))).text;
    const afterFirst = parseM3u8(firstText);
    assert.ok(afterFirst.segments.length >= 3);
    assert.notEqual(afterFirst.endList, true, "a stream must stay live while its publisher may return");
    // the last segment of the first publish (the slate may follow it already: hls.inputLoss)
    const slateBefore = slateSeqs(firstText);
    let lastLive = lastSeq(afterFirst);
    while (slateBefore.has(lastLive)) lastLive -= 1;

    publisher = publish(node.rtmp(stream), { seconds: 3 });
    const resumed = await waitFor("segments of the second publish", async () => resumedAfter((await get(node.http(`/live/${stream}/240p/index.m3u8`))).text, lastLive));
    // the sequence continues where it stopped, with only the slate in between
    assert.ok(resumed.seq > lastLive);
    for (const seq of resumed.between) assert.ok(resumed.slate.has(seq), `segment ${seq}, between the publishes, is slate`);
    await publisher.exited;

    const ended = await waitFor("EXT-X-ENDLIST after the reconnect window", async () => {
      const p = await media(node, stream, "240p");
      return p.endList ? p : undefined;
    }, 30000);
    assert.ok(lastSeq(ended) >= resumed.seq);
  });

  it("restarts a crashed ffmpeg and marks the restart with a discontinuity", async () => {
    const stream = "crash";
    const publisher = publish(node.rtmp(stream));
    const line = await node.waitForLog(/ffmpeg started stream=crash run=0 pid=(\d+)/);
    const pid = Number(/pid=(\d+)/.exec(line)![1]);
    const before = await waitFor("segments before the crash", async () => {
      const p = await media(node, stream, "360p");
      return p.segments.length >= 2 ? p : undefined;
    });
    process.kill(pid, "SIGKILL");
    await node.waitForLog(/ffmpeg exited while the publisher is live stream=crash/);
    await node.waitForLog(/ffmpeg started stream=crash run=1/);
    const after = await waitFor("a discontinuity after the restart", async () => {
      const p = await media(node, stream, "360p");
      return p.segments.some((s) => s.discontinuity) ? p : undefined;
    });
    assert.ok(lastSeq(after) > lastSeq(before));
    assert.ok(after.mediaSequence >= before.mediaSequence);
    publisher.child.kill("SIGKILL");
    assert.equal(node.proc.child.exitCode, null, "the node survives");
    assert.match((await get(node.http("/metrics"), ADMIN)).text, /baton_transcoder_restarts_total\{node="[^"]+"\} [1-9]/);
  });

  it("answers 4xx with a reason for unknown streams and bad paths, and reads no file", async () => {
    for (const path of ["/live/nosuch/index.m3u8", "/live/nosuch/360p/index.m3u8", "/live/nosuch/360p/5.0123456789ab.ts"]) {
      const r = await get(node.http(path));
      assert.equal(r.status, 404, path);
      assert.ok((JSON.parse(r.text) as { message: string }).message.length > 0);
    }
    for (const path of ["/live/../../etc/passwd", "/live/a%2F..%2Fb/index.m3u8", "/live/x/360p/abc.ts", "/etc/passwd", "/live/x/../index.m3u8"]) {
      const r = await get(node.http(path));
      assert.ok(r.status === 404 || r.status === 400, `${path}: ${r.status}`);
      assert.doesNotMatch(r.text, /root:/);
    }
    const head = await fetch(node.http("/healthz"), { method: "HEAD" });
    assert.equal(head.status, 200);
    const post = await fetch(node.http("/live/x/index.m3u8"), { method: "POST" });
    assert.equal(post.status, 405);
  });

  it("reports readiness, health and metrics", async () => {
    assert.equal((await get(node.http("/healthz"))).status, 200);
    assert.equal((await get(node.http("/readyz"))).status, 200);
    const metrics = (await get(node.http("/metrics"), ADMIN)).text;
    for (const name of ["baton_segments_published_total", "baton_segment_publish_latency_seconds_bucket", "baton_http_requests_total", "process_cpu_seconds_total", "baton_publish_refusals_total"]) {
      assert.match(metrics, new RegExp(name));
    }
    assert.match(metrics, /baton_http_requests_total\{route="media",status="200"/);
  });
});

function runWithInput(command: string, args: string[], input: Buffer): Promise<{ stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, { maxBuffer: 1 << 20 }, (error, stdout) => (error ? reject(error) : resolve({ stdout })));
    child.stdin?.end(input);
  });
}
