// Viewer caps on a real node with a live stream: at delivery.maxViewersPerStream a new viewer is answered 503
// with Retry-After, while the viewers already watching keep loading their playlists and segments.
import assert from "node:assert/strict";
import { get, nodeMetric, publish, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestNode } from "../helpers/stack.ts";

/** The session path a master playlist lists (`s/{token}/{rendition}/index.m3u8`). */
function sessionPath(master: string): string {
  const line = master.split("\n").find((l) => l.startsWith("s/"));
  assert.ok(line, `no session URI in\n${master}`);
  return line;
}

describe("viewer caps", function () {
  this.timeout(90000);
  let node: TestNode;

  before(async () => {
    const redis = await startTestRedis();
    node = await startTestNode({ redisUrl: redis.url, prefix: testPrefix(), env: { BATON_DELIVERY_MAXVIEWERSPERSTREAM: "2" } });
    publish(node.rtmp("capped"), { width: 320, height: 240 });
  });

  after(() => stopAll());

  it("turns a third new viewer away with 503 and Retry-After, never the two watching", async () => {
    // the first master playlist answered is the first viewer's
    const first = await waitFor("the stream's master playlist", async () => {
      const r = await get(node.http("/live/capped/index.m3u8"));
      return r.status === 200 ? r.text : undefined;
    }, 60000);
    const second = await get(node.http("/live/capped/index.m3u8"));
    assert.equal(second.status, 200);
    const third = await get(node.http("/live/capped/index.m3u8"));
    assert.equal(third.status, 503);
    assert.equal(third.headers.get("retry-after"), "30");
    assert.match(third.text, /TOO_MANY_VIEWERS/);
    assert.equal(await nodeMetric(node, "baton_viewers_refused_total", 'reason="stream"'), 1);
    // the viewers already watching: their media playlists and segments still load
    for (const master of [first, second.text]) {
      const media = await waitFor("a segment in the viewer's media playlist", async () => {
        const r = await get(node.http(`/live/capped/${sessionPath(master)}`));
        assert.equal(r.status, 200, "a viewer already watching was refused its playlist");
        return r.text.includes(".ts\n") ? r : undefined;
      }, 30000);
      const segment = media.text.split("\n").find((l) => l.endsWith(".ts"))!;
      const base = sessionPath(master).replace(/index\.m3u8.*$/, "");
      const seg = await get(node.http(`/live/capped/${base}${segment}`));
      assert.equal(seg.status, 200, `${base}${segment}: ${seg.text}`);
    }
    // and the session API refuses a new viewer the same way
    const api = await fetch(node.http("/api/sessions"), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ streamId: "capped" }) });
    assert.equal(api.status, 503);
  });
});
