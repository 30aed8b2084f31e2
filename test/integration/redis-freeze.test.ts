// Redis frozen (SIGSTOP: it keeps its sockets and answers nothing) while a stream is live: the node answers
// the playlists and segments it has in memory while Redis is still stopped, fails other requests fast with
// 503, says it is not ready, and once Redis resumes publishes what it queued, with no hole and no restart.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { holes, lastSeq, parseM3u8, type ParsedPlaylist } from "../helpers/hls.ts";
import { get, publish, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestNode, type TestRedis } from "../helpers/stack.ts";

/**
 * How long Redis stays frozen: past the 5 s a node trusts a cached timeline without asking Redis, so the
 * playlist requests late in the freeze each need Redis, and are answered from memory when it does not answer.
 */
const FREEZE_MS = 8000;

/** Whether a process is stopped by a signal (state T in /proc/PID/stat). */
function stopped(pid: number): boolean {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
}

async function media(node: TestNode, path: string): Promise<ParsedPlaylist> {
  const r = await get(node.http(path));
  assert.equal(r.status, 200, `${path}: ${r.status} ${r.text}`);
  return parseM3u8(r.text);
}

describe("a frozen Redis (SIGSTOP)", function () {
  this.timeout(120000);
  let redis: TestRedis;
  let node: TestNode;

  before(async () => {
    redis = await startTestRedis();
    node = await startTestNode({ redisUrl: redis.url, prefix: testPrefix() });
  });
  after(async () => {
    // never leave a stopped process behind, whatever failed
    redis?.proc.child.kill("SIGCONT");
    await stopAll();
  });

  it("answers playlists and segments from memory while Redis is stopped, fails the rest fast, loses no segment", async () => {
    const path = "/live/frozen/360p/index.m3u8";
    const publisher = publish(node.rtmp("frozen"));
    const before = await waitFor("three segments", async () => {
      const p = await media(node, path).catch(() => null);
      return p && p.segments.length >= 3 ? p : undefined;
    }, 40000);
    const newest = before.segments[before.segments.length - 1]!.uri;
    assert.equal((await get(node.http(`/live/frozen/360p/${newest}`))).status, 200);

    const pid = redis.proc.child.pid!;
    redis.proc.child.kill("SIGSTOP");
    const frozenAt = Date.now();
    let answered = 0;
    try {
      await waitFor("Redis to be stopped", () => (stopped(pid) ? true : undefined), 5000, 10);
      // sequential requests, as a player's reloads: each one answered, and answered before Redis resumes
      while (Date.now() - frozenAt < FREEZE_MS) {
        const playlist = await media(node, path);
        assert.ok(stopped(pid), "the playlist was answered while Redis was stopped");
        assert.ok(playlist.segments.length >= 3);
        answered += 1;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const segment = await get(node.http(`/live/frozen/360p/${newest}`));
      assert.equal(segment.status, 200, "a segment in memory is served");
      assert.ok(stopped(pid));
      // what the node does not have fails fast through the 503 path; readiness tells the balancer
      const unknown = await get(node.http("/live/nosuch/360p/index.m3u8"));
      assert.equal(unknown.status, 503, unknown.text);
      const ready = await get(node.http("/readyz"));
      assert.equal(ready.status, 503);
      assert.match(ready.text, /redis/);
      assert.ok(stopped(pid), "those answers came while Redis was stopped");
    } finally {
      redis.proc.child.kill("SIGCONT");
    }
    assert.ok(answered > 0);

    // the owner published what it queued meanwhile, in order: the sequence goes on, no discontinuity
    const after = await waitFor("the stream to go on after the freeze", async () => {
      const p = await media(node, path);
      return lastSeq(p) >= lastSeq(before) + 6 && (await get(node.http("/readyz"))).status === 200 ? p : undefined;
    }, 30000);
    assert.ok(!after.segments.some((s) => s.discontinuity), "a frozen Redis is no discontinuity");
    assert.deepEqual(holes(after), []);
    publisher.child.kill("SIGKILL");
  });
});
