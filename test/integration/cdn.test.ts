// A CDN in front: Debian's nginx with proxy_cache (a shared cache that obeys Cache-Control) in front of a node.
// With sessions, it never hands one viewer's playlists (its token, its EXT-X-START) to another, and still
// caches what carries no session; in CDN mode (delivery.cdn) it caches every playlist and segment for all.
// No log line of the nodes carries a session token.
import assert from "node:assert/strict";
import { parseM3u8, sessionOf } from "../helpers/hls.ts";
import { startTestCache, type TestCache } from "../helpers/nginx.ts";
import { get, publish, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestNode } from "../helpers/stack.ts";
import { createSession, getSession, putPosition } from "../helpers/viewer-api.ts";

/** Fetches through the cache until it answers from its store (HIT), within a deadline. */
async function cachedHit(cache: TestCache, path: string): Promise<string> {
  return waitFor(`a cache hit for ${path}`, async () => {
    const r = await get(cache.http(path));
    assert.equal(r.status, 200, `${path}: ${r.text}`);
    return r.headers.get("x-cache") === "HIT" ? r.text : undefined;
  }, 10000);
}

describe("a CDN-style cache in front of a node", function () {
  this.timeout(120000);
  let node: TestNode;
  let cdnNode: TestNode;
  let cache: TestCache;
  let cdnCache: TestCache;
  const tokens: string[] = [];

  before(async () => {
    const redis = await startTestRedis();
    const prefix = testPrefix();
    // a 20-segment window: past CAN-SKIP-UNTIL (six 1 s segments), so delta updates are offered
    const window = { BATON_HLS_PLAYLISTWINDOW: "20" };
    node = await startTestNode({ redisUrl: redis.url, prefix, id: "edge-origin", env: window });
    cdnNode = await startTestNode({ redisUrl: redis.url, prefix, id: "edge-cdn", env: { ...window, BATON_DELIVERY_CDN: "true" } });
    [cache, cdnCache] = [await startTestCache(node.httpPort), await startTestCache(cdnNode.httpPort)];
    publish(node.rtmp("show"));
    await waitFor("eight segments of the show", async () => {
      const r = await get(node.http("/live/show/360p/index.m3u8"));
      return r.status === 200 && parseM3u8(r.text).segments.length >= 8 ? true : undefined;
    }, 60000);
  });
  after(stopAll);

  it("never serves one viewer's master or media playlist to another, and caches the session-free ones", async () => {
    const masters = [];
    for (let i = 0; i < 4; i++) {
      const r = await get(cache.http("/live/show/index.m3u8"));
      assert.equal(r.status, 200);
      assert.notEqual(r.headers.get("x-cache"), "HIT", "a master playlist that starts a session is never a cached one");
      masters.push(sessionOf(r.text));
    }
    tokens.push(...masters);
    assert.equal(new Set(masters).size, 4, "each viewer its own session");

    // a paused viewer's playlist carries its own EXT-X-START: another viewer never gets it from the cache
    const [paused, other] = [masters[0]!, masters[1]!];
    const view = await getSession(node, { id: paused.split(".")[0]!, token: paused });
    const first = parseM3u8((await get(node.http("/live/show/360p/index.m3u8"))).text).segments[2]!;
    await putPosition(node, { id: paused.split(".")[0]!, token: paused }, (Date.parse(first.dateTimeString!) - view.streamStartedAt!) / 1000, true);
    const resumed = parseM3u8((await get(cache.http(`/live/show/index.m3u8?session=${paused}`))).text).playlists![0]!.uri;
    for (let i = 0; i < 3; i++) {
      const mine = await get(cache.http(`/live/show/${resumed}`));
      assert.match(mine.text, /#EXT-X-START:TIME-OFFSET=/);
      const theirs = await get(cache.http(`/live/show/s/${other}/360p/index.m3u8`));
      assert.doesNotMatch(theirs.text, /EXT-X-START/);
      for (const r of [mine, theirs]) assert.notEqual(r.headers.get("x-cache"), "HIT", "a URL with a session is private");
      const segment = await get(cache.http(`/live/show/s/${other}/360p/${parseM3u8(theirs.text).segments.at(-1)!.uri}`));
      assert.equal(segment.status, 200);
      assert.notEqual(segment.headers.get("x-cache"), "HIT");
    }

    // what carries no session is the same for everyone: cached
    const text = await cachedHit(cache, "/live/show/360p/index.m3u8");
    assert.doesNotMatch(text, /session|s\//);
    await cachedHit(cache, `/live/show/360p/${parseM3u8(text).segments.at(-1)!.uri}`);
  });

  it("in CDN mode writes no session into any URI, and the cache serves every playlist and segment", async () => {
    const master = await cachedHit(cdnCache, "/live/show/index.m3u8");
    assert.deepEqual(parseM3u8(master).playlists!.map((p) => p.uri), ["360p/index.m3u8", "240p/index.m3u8"]);
    const media = await cachedHit(cdnCache, "/live/show/360p/index.m3u8");
    assert.ok(parseM3u8(media).segments.every((s) => /^\d+\.[0-9a-f]{12}\.ts$/.test(s.uri)));
    await cachedHit(cdnCache, `/live/show/360p/${parseM3u8(media).segments.at(-1)!.uri}`);
    const delta = await cachedHit(cdnCache, "/live/show/360p/index.m3u8?_HLS_skip=YES");
    assert.match(delta, /#EXT-X-SKIP:SKIPPED-SEGMENTS=\d+/);
    // gzip and identity are cached apart (Vary: Accept-Encoding)
    const zipped = await get(cdnCache.http("/live/show/360p/index.m3u8"), { "Accept-Encoding": "gzip" });
    assert.equal(zipped.headers.get("content-encoding"), "gzip");

    // a player that reports over the API keeps its position: its session lives on without a URI
    const s = await createSession(cdnNode, "show");
    tokens.push(s.token);
    await putPosition(cdnNode, s, 3.5, true);
    assert.equal((await getSession(node, s)).position, 3.5);
    const own = await get(cdnNode.http(`/live/show/index.m3u8?session=${s.token}`));
    assert.doesNotMatch(own.text, /session|s\//, "not even its own master playlist carries it");
  });

  it("writes no session token into any log line", () => {
    assert.ok(tokens.length >= 5);
    for (const n of [node, cdnNode]) {
      assert.ok(n.lines.length > 0);
      for (const token of tokens) assert.ok(!n.lines.some((line) => line.includes(token) || line.includes(token.split(".")[2]!)), `${n.id} logged a token`);
    }
  });
});
