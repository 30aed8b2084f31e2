// Publish tokens against the cluster's state: `baton revoke` ends the live publish and refuses every token
// issued until then, while a new token resumes the same timeline; an expired token still carries the reconnects
// of the broadcast it started (a show outlives its token), and no other.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { makePublishToken } from "../../src/ingest/token.ts";
import { nodeCommand } from "../../tools/processes.ts";
import { lastSeq, parseM3u8 } from "../helpers/hls.ts";
import { ADMIN_TOKEN, SECRET, get, nodeMetric, publish, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestNode } from "../helpers/stack.ts";

async function newest(node: TestNode, id: string): Promise<number | undefined> {
  const r = await get(node.http(`/live/${id}/240p/index.m3u8`));
  if (r.status !== 200) return undefined;
  const playlist = parseM3u8(r.text);
  return playlist.segments.length > 0 ? lastSeq(playlist) : undefined;
}

const refusals = (node: TestNode, reason: string): Promise<number> => nodeMetric(node, "baton_publish_refusals_total", `reason="${reason}"`);

describe("publish tokens: revocation and the broadcast's own token", function () {
  this.timeout(120000);
  let node: TestNode;
  after(stopAll);

  before(async () => {
    const redis = await startTestRedis();
    node = await startTestNode({ redisUrl: redis.url, prefix: testPrefix() });
  });

  it("`baton revoke` ends the live publish, refuses the old token, and a new token continues the timeline", async () => {
    const id = `rev-${randomBytes(3).toString("hex")}`;
    const first = publish(node.rtmp(id, makePublishToken(SECRET, id, 3600)));
    await waitFor("segments", async () => ((await newest(node, id)) ?? -1) >= 1 ? true : undefined, 30000);
    const [command, args] = nodeCommand(["revoke", id, "--url", node.http("")]);
    const out = await new Promise<string>((resolve, reject) =>
      execFile(command, args, { env: { ...process.env, BATON_ADMIN_TOKEN: ADMIN_TOKEN }, encoding: "utf8" }, (error, stdout, stderr) =>
        error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    assert.match(out, new RegExp(`${id}: publish tokens issued until .* are refused`));
    const exit = await first.exited;
    assert.notEqual(exit.code, null, "the revoked publisher's connection was ended");
    await node.waitForLog(/publish ended .*reason="publish revoked"/);

    // a token made in the same second as the revocation is refused too; wait for the next second
    const before = await refusals(node, "revoked");
    const again = publish(node.rtmp(id, makePublishToken(SECRET, id, 3600, Date.now() - 5000)));
    await again.exited;
    assert.equal(await refusals(node, "revoked"), before + 1, "the old token is refused as revoked");

    await new Promise((resolve) => setTimeout(resolve, 1100 - (Date.now() % 1000)));
    const at = (await newest(node, id))!;
    publish(node.rtmp(id, makePublishToken(SECRET, id, 3600)));
    const resumed = await waitFor("the stream with a new token", async () => {
      const seq = await newest(node, id);
      return seq !== undefined && seq > at ? seq : undefined;
    }, 30000);
    assert.ok(resumed > at, "the same timeline continues (no restart at 0)");
  });

  it("an expired token carries its own broadcast's reconnects, and no other stream's or broadcast's", async () => {
    const id = `grace-${randomBytes(3).toString("hex")}`;
    // good for 6 more seconds: it starts the broadcast, then expires while the stream is live
    const token = makePublishToken(SECRET, id, 60, Date.now() - 54_000);
    const expiresAt = (Math.floor((Date.now() - 54_000) / 1000) + 60) * 1000;
    const first = publish(node.rtmp(id, token));
    await waitFor("segments", async () => ((await newest(node, id)) ?? -1) >= 1 ? true : undefined, 30000);
    await waitFor("the token to expire", () => (Date.now() > expiresAt + 1000 ? true : undefined), 20000, 200);
    first.child.kill("SIGKILL");
    await first.exited;
    await node.waitForLog(new RegExp(`publish ended stream=${id}`));
    const at = (await newest(node, id))!;
    publish(node.rtmp(id, token));
    await waitFor("the reconnect with the expired token to be taken", async () => (((await newest(node, id)) ?? 0) > at ? true : undefined), 30000);

    // the same kind of expired token, never used for a broadcast, is refused
    const other = `grace-${randomBytes(3).toString("hex")}`;
    const before = await refusals(node, "expired_token");
    const stale = publish(node.rtmp(other, makePublishToken(SECRET, other, 60, Date.now() - 120_000)));
    await stale.exited;
    assert.equal(await refusals(node, "expired_token"), before + 1);
  });
});
