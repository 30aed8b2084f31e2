// The DVR window on a real cluster, with each segment store: a viewer watching on one node pauses (a
// WebSocket report, as the player sends it), the stream runs on for two minutes while its timeline moves into
// pages in the store, and the viewer comes back through HAProxy and on the other node: its media playlist's
// EXT-X-START points into the very segment it paused in, which is still served. A fresh viewer gets the live
// playlist without EXT-X-START (players start it at the live edge). No Redis key grows past 64 KB. An ended
// broadcast plays as VOD on every node, and a stream id used again starts a new broadcast beside it. With a
// short window, the store's size stays flat.
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import WebSocket from "ws";
import { Keys } from "../../src/state/keys.ts";
import { lastSeq, parseM3u8, type ParsedPlaylist } from "../helpers/hls.ts";
import { S3_ACCESS, S3_BUCKET, startTestS3 } from "../helpers/s3.ts";
import {
  get, publish, segmentDir, startTestHaproxy, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestHaproxy, type TestNode,
} from "../helpers/stack.ts";
import { directoryBytes } from "../helpers/store-size.ts";
import { getSession } from "../helpers/viewer-api.ts";

/**
 * Seconds of media the stream runs on while the viewer is paused (1 s segments in the test nodes): longer than
 * the media used to live when it was kept in Redis (the 12-s window plus a margin, about 45 s).
 */
const PAUSE_SECONDS = 70;
/** The DVR window and page size of the test clusters: the pause stays inside the window, pages are many. */
const DVR_ENV = { BATON_HLS_DVRWINDOW: "180", BATON_HLS_DVRPAGESIZE: "5" };

async function playlist(url: string): Promise<{ text: string; parsed: ParsedPlaylist }> {
  const r = await get(url);
  assert.equal(r.status, 200, `${url}: ${r.status} ${r.text}`);
  return { text: r.text, parsed: parseM3u8(r.text) };
}

/** The URI (without its query) of the segment an EXT-X-START offset falls in. */
function startSegment(text: string): string {
  const offset = Number(/#EXT-X-START:TIME-OFFSET=([\d.]+),PRECISE=YES/.exec(text)?.[1] ?? NaN);
  assert.ok(Number.isFinite(offset), `an EXT-X-START in\n${text.slice(0, 600)}`);
  let at = 0;
  for (const segment of parseM3u8(text).segments) {
    if (offset < at + segment.duration) return segment.uri.split("?")[0]!;
    at += segment.duration;
  }
  assert.fail(`EXT-X-START at ${offset} s is past the playlist's ${at} s`);
}

async function largestKey(url: string): Promise<{ key: string; bytes: number }> {
  const client = new Redis(url, { lazyConnect: true });
  await client.connect();
  try {
    let largest = { key: "", bytes: 0 };
    for (const key of await client.keys("*")) {
      const bytes = (await client.memory("USAGE", key, "SAMPLES", "0")) ?? 0;
      if (bytes > largest.bytes) largest = { key, bytes };
    }
    return largest;
  } finally {
    client.disconnect();
  }
}

interface Cluster {
  name: string;
  redisUrl: string;
  prefix: string;
  nodes: [TestNode, TestNode];
  lb: TestHaproxy;
}

async function startCluster(name: string, env: Record<string, string>): Promise<Cluster> {
  const redis = await startTestRedis();
  const prefix = testPrefix();
  const nodes: [TestNode, TestNode] = [
    await startTestNode({ redisUrl: redis.url, prefix, id: `${name}-a`, env: { ...DVR_ENV, ...env } }),
    await startTestNode({ redisUrl: redis.url, prefix, id: `${name}-b`, env: { ...DVR_ENV, ...env } }),
  ];
  return { name, redisUrl: redis.url, prefix, nodes, lb: await startTestHaproxy(nodes) };
}

/** Pause on node a, two minutes of stream, resume through HAProxy and on node b; returns what it measured. */
async function pauseAndResume(c: Cluster, id: string): Promise<string> {
  const [a, b] = c.nodes;
  publish(c.lb.rtmp(id));
  await waitFor(`${id}: four segments`, async () => {
    const r = await get(a.http(`/live/${id}/240p/index.m3u8`));
    return r.status === 200 && parseM3u8(r.text).segments.length >= 4 ? true : undefined;
  }, 60000);

  // the viewer watches on node a, at the live edge, and pauses in the segment before the newest
  const master = parseM3u8((await playlist(a.http(`/live/${id}/index.m3u8`))).text);
  const mediaUri = master.playlists!.find((p) => p.uri.includes("/240p/"))!.uri;
  // the session rides in the path: s/<token>/240p/index.m3u8, and the segments relative to it
  const token = /^s\/([^/]+)\//.exec(mediaUri)![1]!;
  const watching = (await playlist(a.http(`/live/${id}/${mediaUri}`))).parsed;
  const paused = watching.segments[watching.segments.length - 2]!;
  const pausedUri = paused.uri;
  assert.equal((await get(a.http(`/live/${id}/s/${token}/240p/${paused.uri}`))).status, 200);
  const session = { id: token.split(".")[0]!, token };
  const startedAt = (await getSession(a, session)).streamStartedAt!;
  const position = (Date.parse(paused.dateTimeString!) - startedAt) / 1000 + paused.duration / 2;
  const ws = new WebSocket(a.http(`/ws?session=${token}`).replace("http", "ws"));
  await new Promise<void>((resolve, reject) => (ws.once("open", () => resolve()), ws.once("error", reject)));
  ws.send(JSON.stringify({ type: "position", position, paused: true }));
  await waitFor(`${id}: the pause recorded`, async () => ((await getSession(a, session)).paused ? true : undefined));
  ws.close();

  // the stream runs on: PAUSE_SECONDS of segments past the paused one
  const pausedSeq = watching.mediaSequence + watching.segments.length - 2;
  await waitFor(`${id}: ${PAUSE_SECONDS} s of stream after the pause`, async () => {
    const r = await get(b.http(`/live/${id}/240p/index.m3u8`));
    return r.status === 200 && lastSeq(parseM3u8(r.text)) >= pausedSeq + PAUSE_SECONDS ? true : undefined;
  }, (PAUSE_SECONDS + 60) * 1000, 1000);
  const redis = new Redis(c.redisUrl, { lazyConnect: true });
  await redis.connect();
  const keys = new Keys(c.prefix);
  const [pages, tail] = [await redis.llen(keys.pages(id)), await redis.llen(keys.timeline(id))];
  redis.disconnect();
  assert.ok(pages >= PAUSE_SECONDS / 5 - 2, `${pages} pages hold the window's older entries`);
  assert.ok(tail < 10, `the tail in Redis holds ${tail} entries`);

  // the viewer comes back: master and media playlists through HAProxy, and the media playlist on node b
  const back = parseM3u8((await playlist(c.lb.http(`/live/${id}/index.m3u8?session=${token}`))).text);
  const resumeUri = back.playlists!.find((p) => p.uri.includes("/240p/"))!.uri;
  assert.match(resumeUri, /\?resume=\d{13}$/);
  for (const url of [c.lb.http(`/live/${id}/${resumeUri}`), b.http(`/live/${id}/${resumeUri}`), b.http(`/live/${id}/240p/index.m3u8?session=${token}`)]) {
    const { text, parsed } = await playlist(url);
    assert.equal(startSegment(text), pausedUri, `${url} starts the viewer in the segment it paused in`);
    assert.ok(parsed.segments.length > PAUSE_SECONDS, `${url} lists the DVR window (${parsed.segments.length} segments)`);
  }
  const segment = await get(c.lb.http(`/live/${id}/240p/${pausedUri}?session=${token}`));
  assert.equal(segment.status, 200, "the paused segment is still served");
  assert.equal(segment.bytes[0], 0x47);

  // a fresh viewer gets the live playlist, no start point: players begin it at the live edge
  const fresh = parseM3u8((await playlist(c.lb.http(`/live/${id}/index.m3u8`))).text);
  const live = await playlist(c.lb.http(`/live/${id}/${fresh.playlists!.find((p) => p.uri.includes("/240p/"))!.uri}`));
  assert.doesNotMatch(live.text, /EXT-X-START|EXT-X-ENDLIST/);

  const largest = await largestKey(c.redisUrl);
  assert.ok(largest.bytes < 64 * 1024, `${largest.key} holds ${largest.bytes} bytes`);
  return `${c.name}: paused at ${pausedSeq}, resumed there after ${PAUSE_SECONDS} segments; ${pages} pages, tail ${tail}; largest key ${largest.bytes} B`;
}

/**
 * A short window (10 s, 3-entry pages) on a real node: the fs store's size, sampled by media seconds
 * published, stops growing once the window, the tail and the deletion grace (19 s here) are full.
 */
async function soak(): Promise<string> {
  const redis = await startTestRedis();
  const prefix = testPrefix();
  const node = await startTestNode({ redisUrl: redis.url, prefix, id: "dvr-soak", env: { BATON_HLS_DVRWINDOW: "10", BATON_HLS_DVRPAGESIZE: "3" } });
  publish(node.rtmp("soak"));
  const sizes: number[] = [];
  for (const seconds of [45, 60, 75, 90]) {
    await waitFor(`soak: ${seconds} s of media`, async () => {
      const r = await get(node.http("/live/soak/240p/index.m3u8"));
      return r.status === 200 && lastSeq(parseM3u8(r.text)) >= seconds ? true : undefined;
    }, (seconds + 60) * 1000, 1000);
    sizes.push(directoryBytes(segmentDir(prefix)));
  }
  const [settled] = sizes as [number];
  // without deletion 90 s of media would be twice the 45 s the store held when it settled
  for (const bytes of sizes) assert.ok(bytes <= settled * 1.5, `the store grew from ${settled} to ${bytes} bytes (${sizes.join(", ")})`);
  return `soak: store bytes at 45, 60, 75, 90 s of media: ${sizes.join(", ")}`;
}

describe("DVR window: pause anywhere, resume there on any node", function () {
  this.timeout(300000);
  after(stopAll);

  it("an ended broadcast plays as VOD on every node; a reused stream id starts a new broadcast whose URIs differ", async () => {
    const redis = await startTestRedis();
    const prefix = testPrefix();
    const env = { ...DVR_ENV, BATON_HLS_RECONNECTWINDOW: "1" };
    const nodes = [await startTestNode({ redisUrl: redis.url, prefix, id: "vod-a", env }), await startTestNode({ redisUrl: redis.url, prefix, id: "vod-b", env })];
    const [a, b] = nodes as [TestNode, TestNode];
    interface Listed { broadcasts: { id: string; ended: number | null; duration: number; renditions: string[]; playlist: string }[] }
    const listed = async (node: TestNode): Promise<Listed["broadcasts"]> => {
      const r = await get(node.http("/api/streams/again/broadcasts"));
      return r.status === 200 ? (JSON.parse(r.text) as Listed).broadcasts : [];
    };
    const ended = async (count: number): Promise<Listed["broadcasts"]> =>
      waitFor(`${count} ended broadcasts`, async () => {
        const all = await listed(b);
        return all.filter((x) => x.ended !== null).length === count ? all : undefined;
      }, 60000, 250);

    publish(a.rtmp("again"), { seconds: 8 });
    const [first] = await ended(1);
    assert.ok(first && first.duration >= 5, `the first broadcast lasted ${first?.duration} s`);
    assert.match(first.playlist, new RegExp(`^/vod/again/${first.id}/index\\.m3u8$`));
    const vod = async (node: TestNode, id: string): Promise<ParsedPlaylist & { text: string }> => {
      const master = parseM3u8((await playlist(node.http(`/vod/again/${id}/index.m3u8`))).text);
      const uri = master.playlists!.find((p) => p.uri.startsWith("240p/"))!.uri;
      const media = await playlist(node.http(`/vod/again/${id}/${uri}`));
      return { ...media.parsed, text: media.text };
    };
    const firstSegments: string[] = [];
    for (const node of nodes) {
      const media = await vod(node, first.id);
      assert.match(media.text, /#EXT-X-ENDLIST\n$/);
      assert.ok(Math.abs(media.segments.reduce((sum, x) => sum + x.duration, 0) - first.duration) < 0.01);
      const segment = await get(node.http(`/vod/again/${first.id}/240p/${media.segments[0]!.uri}`));
      assert.equal(segment.status, 200);
      assert.equal(segment.bytes[0], 0x47);
      firstSegments.push(...media.segments.map((x) => x.uri));
    }

    // the same id again: a new broadcast, new URIs; the first one still plays
    publish(a.rtmp("again"), { seconds: 4 });
    const both = await ended(2);
    const second = both.find((x) => x.id !== first.id)!;
    const again = await vod(a, second.id);
    assert.ok(again.segments.length > 0);
    assert.ok(again.segments.every((x) => !firstSegments.includes(x.uri)), "no URI of the first broadcast is used again");
    assert.deepEqual((await vod(b, first.id)).segments.map((x) => x.uri), firstSegments.slice(0, firstSegments.length / 2));
  });

  it("fs and s3 clusters: a viewer paused 70 s resumes in the segment it paused in; a fresh viewer starts live; a short window's store stays flat", async () => {
    const s3 = await startTestS3();
    const clusters = [
      await startCluster("dvr-fs", {}),
      await startCluster("dvr-s3", {
        BATON_STORAGE_BACKEND: "s3", BATON_STORAGE_S3ENDPOINT: s3.endpoint, BATON_STORAGE_S3BUCKET: S3_BUCKET,
        BATON_STORAGE_S3FORCEPATHSTYLE: "true", BATON_STORAGE_S3_ACCESSKEYID: S3_ACCESS.s3AccessKeyId,
        BATON_STORAGE_S3_SECRETACCESSKEY: S3_ACCESS.s3SecretAccessKey,
      }),
    ];
    const results = await Promise.all([...clusters.map((c) => pauseAndResume(c, "dvrshow")), soak()]);
    for (const line of results) process.stdout.write(`      ${line}\n`);
    await s3.stop();
  });
});
