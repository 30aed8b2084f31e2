// The sweep against a real redis-server, with several nodes' sweepers at once: one node sweeps at a time, a
// stream's end is logged once in the cluster (it used to be logged every second by every node, for the whole
// retention), and when the sweeping node stops another takes over within the lease.
import assert from "node:assert/strict";
import { SWEEPER_LEASE_MS, Sweeper } from "../../src/cluster/sweeper.ts";
import { createLogger } from "../../src/core/log.ts";
import { StreamStore } from "../../src/state/store.ts";
import { FsSegmentStore } from "../../src/storage/fs.ts";
import { startTestRedis, stopAll, tempDir, testPrefix, waitFor, type TestRedis } from "../helpers/stack.ts";

describe("the sweeper (real redis-server)", function () {
  this.timeout(30000);
  let redis: TestRedis;
  const stores: StreamStore[] = [];
  before(async () => {
    redis = await startTestRedis();
  });
  after(async () => {
    for (const s of stores) await s.close();
    await stopAll();
  });

  async function store(prefix: string): Promise<StreamStore> {
    const s = new StreamStore({ url: redis.url, prefix, window: 3, reconnectWindowMs: 0, retentionSec: 60, commandTimeoutMs: 1000, waitReplicas: 0, media: new FsSegmentStore(tempDir("segments")) });
    stores.push(s);
    await s.connect();
    return s;
  }

  it("one node sweeps at a time, each end is logged once, and a stopped sweeper is replaced within its lease", async () => {
    const prefix = testPrefix();
    const lines: string[] = [];
    const ids = ["node-1", "node-2", "node-3"];
    const sweepers = await Promise.all(ids.map(async (id) => {
      const log = createLogger({ level: "info", node: id, write: (line) => lines.push(line) });
      return new Sweeper(await store(prefix), id, log);
    }));
    const s = stores[stores.length - 1]!;
    // three streams whose publishers left: each ends at its first sweep (no reconnect window)
    for (const id of ["a", "b", "c"]) {
      const claim = await s.claim(id, "node-9", `p-${id}`, 4000, 2);
      await s.release(id, claim);
    }
    for (let round = 0; round < 5; round++) await Promise.all(sweepers.map((w) => w.sweep()));
    assert.equal(sweepers.filter((w) => w.leading).length, 1, "one sweeper leads");
    const ended = lines.filter((l) => l.includes("stream ended"));
    assert.deepEqual(ended.map((l) => /stream=(\w)/.exec(l)?.[1]).sort(), ["a", "b", "c"], `each end once:\n${lines.join("\n")}`);
    const leader = sweepers.find((w) => w.leading)!;
    const leaderId = ids[sweepers.indexOf(leader)]!;
    assert.ok(ended.every((l) => l.includes(`[${leaderId}]`)), "logged by the node whose script ended the stream");

    leader.stop();
    const others = sweepers.filter((w) => w !== leader);
    await waitFor("another node to lead", async () => {
      await Promise.all(others.map((w) => w.sweep()));
      return others.some((w) => w.leading) ? true : undefined;
    }, SWEEPER_LEASE_MS + 3000, 200);
    assert.equal(others.filter((w) => w.leading).length, 1);
  });
});
