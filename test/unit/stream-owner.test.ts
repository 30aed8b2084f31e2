// A stream's owner handing it over while its last segments take longer to publish than the 4-s lease: the
// lease it marked for handoff must stay until its release, so no other node claims the stream in between
// and fences the last segments off. A real redis-server and store; the publisher and transcoder are fakes.
import assert from "node:assert/strict";
import { LEASE_TTL_MS, StreamOwner, type TimelineWriter } from "../../src/stream/owner.ts";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { HandoffPendingError } from "../../src/core/errors.ts";
import type { PublisherConnection } from "../../src/ingest/rtmp-server.ts";
import { createLogger } from "../../src/core/log.ts";
import { Metrics } from "../../src/core/metrics.ts";
import { StreamStore } from "../../src/state/store.ts";
import { FsSegmentStore } from "../../src/storage/fs.ts";
import type { SegmentGroupOut } from "../../src/transcode/job.ts";
import { startTestRedis, stopAll, tempDir, testPrefix, waitFor, type TestRedis } from "../helpers/stack.ts";
import { FakeConnection } from "../helpers/fake-connection.ts";

/** A store whose appends wait while the gate is shut: a flush that takes as long as the test wants. */
function gated(store: StreamStore): { writer: TimelineWriter; shut(): void; open(): void } {
  let gate: Promise<void> = Promise.resolve();
  let open = (): void => undefined;
  const writer: TimelineWriter = {
    claim: (...args) => store.claim(...args),
    renew: (...args) => store.renew(...args),
    inputView: (...args) => store.inputView(...args),
    setLadder: (...args) => store.setLadder(...args),
    markHandoff: (...args) => store.markHandoff(...args),
    release: (...args) => store.release(...args),
    writeMedia: (...args) => store.writeMedia(...args),
    appendEntry: async (...args) => {
      await gate;
      return store.appendEntry(...args);
    },
  };
  return {
    writer,
    shut: () => (gate = new Promise((resolve) => (open = resolve))),
    open: () => open(),
  };
}

function group(n: number): SegmentGroupOut {
  return {
    run: 0, pdt: 1_700_000_000_000 + n * 1000, disc: false, finishedAt: Date.now(),
    segments: ["360p", "240p"].map((rendition) => ({ rendition, index: n, start: n, duration: 1, bytes: Buffer.from(`${rendition}/${n}`) })),
  };
}

describe("stream owner: a handoff whose flush outlasts the lease", function () {
  this.timeout(40000);
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
    await store?.close();
    await stopAll();
  });

  it("keeps the handoff lease until it released the stream: no other claim in between, no segment lost", async () => {
    const lines: string[] = [];
    const log = createLogger({ level: "debug", node: "node-a", write: (line) => lines.push(line) });
    const connection = new FakeConnection("show");
    const { writer, shut, open } = gated(store);
    const owner = new StreamOwner({
      connection: connection as unknown as PublisherConnection,
      store: writer,
      grants: store,
      nodeId: "node-a",
      config: { ...DEFAULTS, hls: { ...DEFAULTS.hls, segmentDuration: 1 } },
      log,
      metrics: new Metrics({ node: "node-a" }),
      nodeAlive: async () => true,
      ownerGone: async () => false,
    });
    assert.equal(await owner.start(), true);
    // the transcoder's groups, as its "group" event hands them on
    const enqueue = (g: SegmentGroupOut): void => (owner as unknown as { enqueue(g: SegmentGroupOut): void }).enqueue(g);
    enqueue(group(0));
    enqueue(group(1));
    await waitFor("two segments published", async () => ((await store.read("show"))?.nextSeq === 2 ? true : undefined));

    // the last segment is slow to publish (Redis slow for this node, a long queue after an outage)
    shut();
    enqueue(group(2));
    const closed = owner.close("node draining: reconnect to another node");
    await waitFor("the lease marked for handoff", async () => ((await store.redis.get(store.keys.lease("show")))?.endsWith("#handoff") ? true : undefined));
    const handedOverAt = Date.now();
    // the publisher reconnects to another node, which is told to wait, for twice what the lease lasts by itself
    while (Date.now() - handedOverAt <= 2 * LEASE_TTL_MS) {
      await assert.rejects(store.claim("show", "node-b", "otherpublish", LEASE_TTL_MS, 1), HandoffPendingError);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    open();
    await closed;

    // the lease was renewed within the last second: this claim succeeds only because the release freed it
    const next = await store.claim("show", "node-b", "otherpublish", LEASE_TTL_MS, 1);
    assert.equal(next.nextSeq, 3, "the new owner continues after the last segment");
    const snapshot = await store.read("show");
    assert.deepEqual(snapshot?.entries.map((e) => e.seq), [0, 1, 2]);
    assert.equal(lines.filter((l) => /stream lost|segments lost/.test(l)).length, 0, lines.join("\n"));
  });
});
