// One stream's failure fails that stream, never the node: a transcoder spool that turned into a file (ENOTDIR
// on every mkdir and rm under it) used to reject a promise nobody awaited and end the process, after leaving
// the stream "live" with no segments.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ADMIN, get, nodeMetric, publish, startTestNode, startTestRedis, stopAll, tempDir, testPrefix, waitFor } from "../helpers/stack.ts";

describe("a broken transcoder spool fails the stream, not the node", function () {
  this.timeout(90000);
  after(stopAll);

  it("drops the publisher with a counted failure, keeps serving, and takes the next publisher once the spool is back", async () => {
    const redis = await startTestRedis();
    const spool = join(tempDir("spool"), "spool");
    const node = await startTestNode({ redisUrl: redis.url, prefix: testPrefix(), env: { BATON_TRANSCODE_SPOOLDIR: spool } });
    const status = async (): Promise<{ startedAt: number; publishers: unknown[] }> => JSON.parse((await get(node.http("/admin/status"), ADMIN)).text);
    const startedAt = (await status()).startedAt;

    rmSync(spool, { recursive: true, force: true });
    writeFileSync(spool, "not a directory");
    const id = `spool-${randomBytes(3).toString("hex")}`;
    const broken = publish(node.rtmp(id));
    await node.waitForLog(/transcoding failed; dropping the publisher.*spool directory is unusable/, 30000);
    await broken.exited;
    assert.equal(await nodeMetric(node, "baton_stream_failures_total", 'reason="transcode_failed"'), 1);
    await waitFor("the owner to let go", async () => ((await status()).publishers.length === 0 ? true : undefined));
    assert.equal((await get(node.http("/healthz"))).status, 200);
    assert.equal((await status()).startedAt, startedAt, "the node is the same process");
    assert.equal(await nodeMetric(node, "baton_internal_errors_total"), 0, "nothing escaped to the last line of defence");

    rmSync(spool, { force: true });
    mkdirSync(spool);
    const good = `spool-${randomBytes(3).toString("hex")}`;
    publish(node.rtmp(good));
    await waitFor("a segment of the next stream", async () => {
      const r = await get(node.http(`/live/${good}/240p/index.m3u8`));
      return r.status === 200 && r.text.includes("#EXTINF") ? true : undefined;
    }, 40000);
  });
});
