// A standby's takeover in the claim script, against a real redis-server: it preempts only the holder it saw
// stall, at a higher epoch, so the stalled owner's next append and renewal are refused; the claim says where
// the timeline's media ended, and records the new active input's role.
import assert from "node:assert/strict";
import { AlreadyLiveError, FencedError } from "../../src/core/errors.ts";
import type { SegmentGroup } from "../../src/core/model.ts";
import { StreamStore } from "../../src/state/store.ts";
import { FsSegmentStore } from "../../src/storage/fs.ts";
import { startTestRedis, stopAll, tempDir, testPrefix, type TestRedis } from "../helpers/stack.ts";

const T = 1_700_000_000_000;

function group(seq: number, durations = [1, 1]): SegmentGroup {
  return {
    seq, pdt: T + seq * 1000, disc: false,
    renditions: ["360p", "240p"].map((name, i) => ({ name, duration: durations[i]!, bytes: Buffer.from(`${name}/${seq}`) })),
  };
}

describe("standby takeover in the claim script (real redis-server)", function () {
  this.timeout(30000);
  let redis: TestRedis;
  let store: StreamStore;

  before(async () => {
    redis = await startTestRedis();
    store = new StreamStore({
      url: redis.url, prefix: testPrefix(), window: 6, reconnectWindowMs: 30000, retentionSec: 60, commandTimeoutMs: 1000, waitReplicas: 0,
      media: new FsSegmentStore(tempDir("segments")),
    });
    await store.connect();
  });
  after(async () => {
    await store.close();
    await stopAll();
  });

  it("preempts only the holder named, fences it, continues the sequence and reports the last listed end", async () => {
    const active = await store.claim("cam", "node-a", "pub-a", 60000, 1);
    assert.equal(active.lastEnd, 0, "nothing listed yet");
    await store.append("cam", active, group(0));
    await store.append("cam", active, group(1, [1, 1.25]));
    assert.equal((await store.inputView("cam")).role, "primary");

    await assert.rejects(store.claim("cam", "node-b", "pub-b", 60000, 1, { role: "backup" }), AlreadyLiveError, "a live lease is refused");
    await assert.rejects(store.claim("cam", "node-b", "pub-b", 60000, 1, { role: "backup", preempt: "node-c/pub-c/1" }), AlreadyLiveError, "only the holder seen is preempted");
    await store.markHandoff("cam", active);
    const standby = await store.claim("cam", "node-b", "pub-b", 60000, 1, { role: "backup", preempt: active.holder });
    assert.equal(standby.epoch, active.epoch + 1);
    assert.equal(standby.nextSeq, 2);
    assert.equal(standby.lastEnd, T + 1000 + 1250, "the longest rendition's end of the last entry");
    const view = await store.inputView("cam");
    assert.deepEqual([view.holder, view.role], [standby.holder, "backup"]);

    await assert.rejects(store.append("cam", active, group(2)), (e: unknown) => e instanceof FencedError && e.code === "STALE_EPOCH");
    assert.equal(await store.renew("cam", active, 60000), false, "the stalled owner's renewal finds the stream gone");
    const entry = await store.append("cam", standby, group(2));
    assert.deepEqual([entry.seq, entry.disc], [2, true], "the standby's first segment continues the sequence after a discontinuity");
  });
});
