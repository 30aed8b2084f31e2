// The transcoders' scheduling priority: each ffmpeg gets transcode.niceness more than the node has, so the
// node's own work (publishing a finished segment, renewing a lease, answering a viewer) runs first on a busy
// machine. Checked on a real child process, read back from /proc.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { getPriority } from "node:os";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { createLogger } from "../../src/core/log.ts";
import { lowerPriority } from "../../src/transcode/ffmpeg.ts";
import { ffmpegSpec, type TranscodeOptions } from "../../src/transcode/job.ts";
import { planLadder } from "../../src/transcode/ladder.ts";
import { niceOf } from "../helpers/procfs.ts";


describe("transcoder priority", () => {
  let child: ChildProcess | null = null;

  afterEach(() => {
    child?.kill("SIGKILL");
    child = null;
  });

  function sleeper(): number {
    child = spawn("sleep", ["30"], { stdio: "ignore" });
    assert.ok(child.pid, "sleep did not start");
    return child.pid;
  }

  it("is below the node's by default", () => {
    assert.ok(DEFAULTS.transcode.niceness > 0);
  });

  it("adds the niceness to the node's own", () => {
    const pid = sleeper();
    assert.equal(niceOf(pid), getPriority());
    const result = lowerPriority(pid, 7);
    assert.deepEqual(result, { niceness: Math.min(19, getPriority() + 7) });
    assert.equal(niceOf(pid), Math.min(19, getPriority() + 7));
  });

  it("never goes past 19", () => {
    const pid = sleeper();
    assert.deepEqual(lowerPriority(pid, 40), { niceness: 19 });
    assert.equal(niceOf(pid), 19);
  });

  it("reports a process it cannot change instead of throwing", () => {
    // above Linux's largest pid (2^22): no such process
    const result = lowerPriority(2 ** 22 + 1, 5);
    assert.ok("error" in result, `expected an error, got ${JSON.stringify(result)}`);
  });

  it("is given to every ffmpeg run of a job", () => {
    const spec = ffmpegSpec({ ...jobOptions(), niceness: 10 }, "/tmp/baton-priority-test/0");
    assert.equal(spec.niceness, 10);
    assert.equal(ffmpegSpec(jobOptions(), "/tmp/baton-priority-test/0").niceness, 0);
  });
});

function jobOptions(): TranscodeOptions {
  return {
    streamId: "cam1", publishId: "p1", ffmpegPath: "ffmpeg", preset: "veryfast", segmentDuration: 2, spoolDir: "/tmp/baton-priority-test",
    maxRestarts: 0, hasAudio: false, log: createLogger({ level: "error", write: () => undefined }),
    renditions: planLadder(DEFAULTS.transcode.ladder, { width: 640, height: 360, frameRate: 30, hasAudio: false }),
  };
}
