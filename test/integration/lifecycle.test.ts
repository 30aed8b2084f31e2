// A node in this process, so the test can see what it leaves behind: closing a stream leaves no ffmpeg, no
// spool file; closing the node leaves no timer, socket or server.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { getPriority } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config/load.ts";
import { createLogger } from "../../src/core/log.ts";
import { BatonNode } from "../../src/node.ts";
import { freePort, nodeEnv } from "../../tools/processes.ts";
import { HOST, SECRET, TEST_LADDER, get, publish, startTestRedis, stopAll, tempDir, testPrefix, waitFor } from "../helpers/stack.ts";
import { makePublishToken } from "../../src/ingest/token.ts";
import { niceOf } from "../helpers/procfs.ts";

function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of process.getActiveResourcesInfo()) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

function childrenNamed(name: string): number[] {
  try {
    return execFileSync("pgrep", ["-P", String(process.pid), "-x", name], { encoding: "utf8" }).split("\n").filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

describe("lifecycle: close leaves nothing running", function () {
  this.timeout(60000);
  after(stopAll);

  it("ends a stream's transcoder and files when its publisher leaves, and the node's timers and sockets on close", async () => {
    const redis = await startTestRedis();
    const spool = join(tempDir("spool"), "spool");
    const [rtmpPort, httpPort, agentPort] = [await freePort(), await freePort(), await freePort()];
    const config = loadConfig({
      env: nodeEnv(
        { id: "inproc", host: HOST, rtmpPort, httpPort, agentPort, redisUrl: redis.url, spoolDir: spool, publishSecret: SECRET, storagePath: tempDir("segments") },
        { redis: { prefix: testPrefix() }, transcode: { preset: "ultrafast", ladder: TEST_LADDER }, hls: { segmentDuration: 1 }, log: { level: "error" } },
      ),
    });
    const baseline = resources();
    const node = new BatonNode(config, createLogger({ level: "error" }));
    await node.start();

    const publisher = publish(`rtmp://${HOST}:${rtmpPort}/live/life?token=${makePublishToken(SECRET, "life", 600)}`);
    await waitFor("a segment", async () => {
      const r = await get(`http://${HOST}:${httpPort}/live/life/240p/index.m3u8`);
      return r.status === 200 && r.text.includes("#EXTINF") ? true : undefined;
    });
    const ffmpegs = childrenNamed("ffmpeg");
    assert.equal(ffmpegs.length, 2, "the publisher and the transcoder");
    // the test's publisher keeps this process's priority; the node's transcoder gets transcode.niceness more
    assert.deepEqual(ffmpegs.map(niceOf).sort((a, b) => a - b), [getPriority(), Math.min(19, getPriority() + config.transcode.niceness)]);
    assert.ok(readdirSync(spool).length > 0, "the transcoder spools into its own directory");

    publisher.child.kill("SIGKILL");
    await publisher.exited;
    await waitFor("the owner to let go", () => (node.owners.size === 0 ? true : undefined));
    assert.deepEqual(childrenNamed("ffmpeg"), [], "no ffmpeg left");
    assert.deepEqual(readdirSync(spool), [], "no spool file left");

    await node.close();
    await node.close(); // safe twice
    await redis.stop();
    // let sockets finish closing (close callbacks run on the next turns of the loop)
    await waitFor("resources back to the baseline", () => {
      const now = resources();
      const extra = Object.entries(now).filter(([name, n]) => n > (baseline[name] ?? 0) && name !== "FSReqCallback");
      return extra.length === 0 ? true : undefined;
    }, 5000).catch(() => assert.fail(`left behind: ${JSON.stringify(resources())} vs ${JSON.stringify(baseline)}`));
    assert.ok(existsSync(spool));
  });
});
