// The stream store and its Lua scripts against a real redis-server: fencing by epoch and claim id, no URI
// reused after Redis lost a timeline's history, no append after the end, retries of a write Redis ran, the
// stream set kept by renewals, the handoff lease, WAIT for replicas.
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { segmentUri } from "../../src/delivery/playlist.ts";
import { AdmissionError, BatonError, FencedError, HandoffPendingError } from "../../src/core/errors.ts";
import { isClaimId } from "../../src/core/ids.ts";
import { RecordSchemaError, SCHEMA_VERSION } from "../../src/state/schema.ts";
import { StreamStore, type StoreOptions } from "../../src/state/store.ts";
import { FsSegmentStore } from "../../src/storage/fs.ts";
import type { Claim, SegmentGroup } from "../../src/core/model.ts";
import { startTestRedis, stopAll, tempDir, testPrefix, waitFor, type TestRedis } from "../helpers/stack.ts";

const RENDITIONS = ["360p", "240p"];
const LEASE_MS = 4000;

function group(seq: number, tag = "a"): SegmentGroup {
  return {
    seq,
    pdt: 1_700_000_000_000 + seq * 1000,
    disc: false,
    renditions: RENDITIONS.map((name) => ({ name, duration: 1, bytes: Buffer.from(`${tag}/${name}/${seq}`) })),
  };
}

async function fenced(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => error instanceof FencedError && error.code === code);
}

describe("stream store and scripts (real redis-server)", function () {
  this.timeout(30000);
  let redis: TestRedis;
  const stores: StreamStore[] = [];

  async function store(options: Partial<StoreOptions> = {}, url = redis.url): Promise<StreamStore> {
    const s = new StreamStore({
      url, prefix: testPrefix(), window: 3, reconnectWindowMs: 30000, retentionSec: 60, commandTimeoutMs: 1000, waitReplicas: 0,
      media: new FsSegmentStore(tempDir("segments")),
      ...options,
    });
    stores.push(s);
    await s.connect();
    return s;
  }

  async function claim(s: StreamStore, streamId: string, node = "node-a"): Promise<Claim> {
    return s.claim(streamId, node, `pub-${node}`, LEASE_MS, 1);
  }

  /** What Redis holds after a restart without its data, for one stream. */
  async function forget(s: StreamStore, streamId: string): Promise<void> {
    const keys = await s.redis.keys(`${s.keys.prefix}{${streamId}}:*`);
    if (keys.length > 0) await s.redis.del(...keys);
  }

  before(async () => {
    redis = await startTestRedis();
  });
  after(async () => {
    for (const s of stores.splice(0)) await s.close();
    await stopAll();
  });

  it("gives each claim a random id that each entry records and each segment key names", async () => {
    const s = await store();
    const first = await claim(s, "cam");
    assert.ok(isClaimId(first.id), first.id);
    await s.append("cam", first, group(0));
    await s.append("cam", first, group(1));
    const snapshot = await s.read("cam");
    assert.equal(snapshot?.claim, first.id);
    assert.deepEqual(snapshot?.entries.map((e) => [e.seq, e.claim]), [[0, first.id], [1, first.id]]);
    assert.equal((await s.readSegment("cam", first.broadcast, "360p", 1, first.id))?.toString(), "a/360p/1");
    assert.equal(await s.readSegment("cam", first.broadcast, "360p", 1, "000000000000"), null, "another claim id names no bytes");
    await s.release("cam", first);
    const second = await claim(s, "cam", "node-b");
    assert.notEqual(second.id, first.id);
    assert.equal(second.nextSeq, 2, "the sequence continues across claims");
  });

  it("fences a stale owner: its epoch, or its claim id at an epoch Redis handed out again", async () => {
    const s = await store();
    const a = await claim(s, "fence");
    await s.append("fence", a, group(0));
    await s.release("fence", a);
    const b = await claim(s, "fence", "node-b");
    await fenced(s.append("fence", a, group(1)), "STALE_EPOCH");
    await fenced(s.setLadder("fence", a, []), "STALE_EPOCH");
    assert.equal(await s.renew("fence", a, LEASE_MS), false);
    assert.equal(await s.release("fence", a), false);
    // the same epoch number under another claim: what a Redis that lost the last claim hands out again
    await s.redis.hset(s.keys.meta("fence"), "epoch", String(a.epoch));
    await fenced(s.append("fence", a, group(1)), "STALE_EPOCH");
    await s.redis.hset(s.keys.meta("fence"), "epoch", String(b.epoch));
    await s.append("fence", b, group(1));
  });

  it("never reuses a URI when Redis loses the timeline mid-stream and the sequence restarts at 0", async () => {
    const s = await store();
    const before = await claim(s, "flushed");
    const old = [];
    for (let seq = 0; seq < 4; seq++) old.push(await s.append("flushed", before, group(seq, "old")));
    await forget(s, "flushed");
    // the owner finds out on its next write and stops; its publisher's reconnect claims the stream anew
    await fenced(s.append("flushed", before, group(4, "old")), "STALE_EPOCH");
    assert.equal(await s.renew("flushed", before, LEASE_MS), false);
    const after = await claim(s, "flushed");
    assert.equal(after.epoch, 1);
    assert.equal(after.nextSeq, 0);
    const fresh = [];
    for (let seq = 0; seq < 4; seq++) fresh.push(await s.append("flushed", after, group(seq, "new")));
    const oldUris = new Set(old.map(segmentUri));
    assert.equal(oldUris.size, 4);
    for (const entry of fresh) assert.equal(oldUris.has(segmentUri(entry)), false, `${segmentUri(entry)} was used before`);
    assert.deepEqual(fresh.map((e) => e.seq), [0, 1, 2, 3]);
    // an old URI finds nothing (the segment route answers 404), never the new bytes
    assert.equal(await s.readSegment("flushed", after.broadcast, "360p", 0, before.id), null);
    assert.equal((await s.readSegment("flushed", after.broadcast, "360p", 0, after.id))?.toString(), "new/360p/0");
  });

  it("refuses appends once the stream ended; takes the current claim's appends in its reconnect window", async () => {
    const s = await store({ reconnectWindowMs: 0 });
    const c = await claim(s, "ends");
    await s.append("ends", c, group(0));
    // the lease lapsed (Redis was away, the owner was frozen): the sweep opens the reconnect window
    await s.redis.del(s.keys.lease("ends"));
    assert.equal((await s.sweep("ends")).state, "reconnecting");
    await s.append("ends", c, group(1));
    assert.equal((await s.read("ends"))?.state, "reconnecting", "an append does not make the stream live again");
    assert.equal((await s.sweep("ends")).state, "ended");
    await fenced(s.append("ends", c, group(2)), "STREAM_ENDED");
    const snapshot = await s.read("ends");
    assert.equal(snapshot?.nextSeq, 2);
    assert.deepEqual(snapshot?.entries.map((e) => e.seq), [0, 1]);
    assert.equal(await s.renew("ends", c, LEASE_MS), false, "nor is the ended stream's lease taken back");
  });

  it("refuses a claim on another target duration while the timeline is live (nothing written); a new broadcast takes the caller's", async () => {
    const s = await store({ reconnectWindowMs: 0 });
    const c = await claim(s, "target");
    await s.append("target", c, group(0));
    await s.release("target", c);
    const before = await s.redis.hgetall(s.keys.meta("target"));
    // a node on 2-s segments would continue a timeline of 1-s ones: refused, whatever the lease says
    await assert.rejects(s.claim("target", "node-b", "pub-b", LEASE_MS, 2), (error: unknown) =>
      error instanceof AdmissionError && error.reason === "config_conflict" && /timeline has 1-s segments.*hls.segmentDuration is 2/.test(error.message));
    assert.deepEqual(await s.redis.hgetall(s.keys.meta("target")), before, "nothing written: the epoch is the same");
    assert.equal(await s.redis.get(s.keys.lease("target")), null);
    // the same duration continues it
    const again = await claim(s, "target", "node-c");
    assert.equal(again.nextSeq, 1);
    // once it ended, a new broadcast starts on the caller's duration
    await s.release("target", again);
    assert.equal((await s.sweep("target")).state, "ended");
    const fresh = await s.claim("target", "node-b", "pub-b", LEASE_MS, 2);
    assert.deepEqual([fresh.nextSeq, fresh.targetDuration], [0, 2]);
  });

  it("writes each entry with its schema version, reads entries without one as schema 1, and never reads an entry of a newer schema", async () => {
    const s = await store();
    const c = await claim(s, "schema");
    await s.append("schema", c, group(0));
    const written = await s.redis.lindex(s.keys.timeline("schema"), -1);
    assert.match(written ?? "", new RegExp(`^\\{"v":${SCHEMA_VERSION},"seq":0,`));
    // an entry an earlier release wrote (no "v"), then one of a release whose layout this one does not know
    const entry = (seq: number, v?: number): string =>
      JSON.stringify({ ...(v === undefined ? {} : { v }), seq, claim: c.id, pdt: 1_700_000_000_000 + seq * 1000, disc: false, cc: 0, dur: { "360p": 1, "240p": 1 } });
    await s.redis.rpush(s.keys.timeline("schema"), entry(1));
    assert.deepEqual((await s.read("schema"))?.entries.map((e) => e.seq), [0, 1]);
    await s.redis.rpush(s.keys.timeline("schema"), entry(2, SCHEMA_VERSION + 1));
    await assert.rejects(s.read("schema"), (error: unknown) => error instanceof RecordSchemaError && error.message.includes(`schema "${SCHEMA_VERSION + 1}"`));
    assert.equal(await s.redis.llen(s.keys.timeline("schema")), 3, "the reader left the timeline as it was");
  });

  it("answers a retried append that Redis already ran with the same entry, and nothing else out of order", async () => {
    const s = await store();
    const c = await claim(s, "retry");
    const first = await s.append("retry", c, group(0));
    const again = await s.append("retry", c, group(0));
    assert.deepEqual(again, first);
    const snapshot = await s.read("retry");
    assert.equal(snapshot?.nextSeq, 1);
    assert.equal(snapshot?.entries.length, 1);
    await fenced(s.append("retry", c, group(5)), "SEQ_MISMATCH");
    await s.append("retry", c, group(1));
    // an older sequence number is no retry of the last write
    await fenced(s.append("retry", c, group(0)), "SEQ_MISMATCH");
  });

  it("lists a claimed stream for the sweep, and each renewal lists it again", async () => {
    const s = await store();
    const c = await claim(s, "listed");
    assert.ok((await s.listStreams()).includes("listed"));
    // what a failed add, or the sweep's removal racing the claim, leaves
    await s.redis.srem(s.keys.streams(), "listed");
    assert.equal(await s.renew("listed", c, LEASE_MS), true);
    assert.ok((await s.listStreams()).includes("listed"));
  });

  it("deletes segments that left the window from the store after their grace, by the claim that wrote them; Redis holds no bytes", async () => {
    const s = await store({ window: 3, trimmedGraceMs: 300 });
    const a = await claim(s, "trim");
    await s.append("trim", a, group(0));
    await s.release("trim", a);
    const b = await claim(s, "trim", "node-b");
    assert.equal(b.broadcast, a.broadcast, "a new claim of a live timeline continues its broadcast");
    for (let seq = 1; seq < 5; seq++) await s.append("trim", b, group(seq));
    const read = (seq: number, c: Claim): Promise<Buffer | null> => s.readSegment("trim", b.broadcast, "240p", seq, c.id);
    // window 3: 0 (a's) and 1 (b's) left it; they stay readable for their grace, then are gone
    assert.notEqual(await read(0, a), null, "readable while a slow player may still want it");
    await waitFor("the trimmed segments deleted", async () => ((await read(0, a)) === null && (await read(1, b)) === null ? true : undefined), 5000, 50);
    assert.equal((await read(4, b))?.toString(), "a/240p/4", "a listed segment stays");
    const keys = await s.redis.keys("*");
    assert.deepEqual(keys.filter((k) => k.includes(":seg:")), [], "no segment bytes in Redis");
  });

  it("deletes an ended broadcast's media once its retention passed, and a reused stream id starts a new broadcast beside it", async () => {
    const s = await store({ reconnectWindowMs: 0 });
    const c = await claim(s, "gone");
    await s.append("gone", c, group(0));
    await s.release("gone", c);
    assert.equal((await s.sweep("gone")).state, "ended");
    const read = (): Promise<Buffer | null> => s.readSegment("gone", c.broadcast, "240p", 0, c.id);
    assert.equal(await s.deleteExpired(), 0, "nothing is due before the retention (60 s here)");
    assert.notEqual(await read(), null);
    assert.equal(await s.deleteExpired(Date.now() + 61_000), 1);
    assert.equal(await read(), null, "the broadcast's media left the store");

    // an ended stream taken again starts a new broadcast; the ended one's media stays until its own retention
    const d = await claim(s, "again");
    await s.append("again", d, group(0));
    await s.release("again", d);
    await s.sweep("again");
    const back = await claim(s, "again", "node-b");
    assert.notEqual(back.broadcast, d.broadcast);
    assert.equal(back.nextSeq, 0, "the new broadcast's timeline starts over");
    assert.notEqual(await s.readSegment("again", d.broadcast, "240p", 0, d.id), null);
    assert.equal(await s.deleteExpired(Date.now() + 61_000), 1);
    assert.equal(await s.readSegment("again", d.broadcast, "240p", 0, d.id), null);
  });

  it("keeps a handoff lease while its owner renews it, so claims wait; frees it at the release", async () => {
    const s = await store();
    const c = await claim(s, "handoff");
    assert.equal(await s.markHandoff("handoff", c), true);
    assert.equal(await s.renew("handoff", c, LEASE_MS, true), true);
    assert.equal(await s.redis.get(s.keys.lease("handoff")), `${c.holder}#handoff`);
    assert.ok((await s.redis.pttl(s.keys.lease("handoff"))) > LEASE_MS - 1000);
    await assert.rejects(claim(s, "handoff", "node-b"), HandoffPendingError);
    // a handoff lease that lapsed (Redis away) is taken back with its mark while the claim is still current
    await s.redis.del(s.keys.lease("handoff"));
    assert.equal(await s.renew("handoff", c, LEASE_MS, true), true);
    await assert.rejects(claim(s, "handoff", "node-b"), HandoffPendingError);
    assert.equal(await s.release("handoff", c), true);
    const next = await claim(s, "handoff", "node-b");
    assert.ok(next.epoch > c.epoch);
  });

  it("lets a hot standby preempt only the holder it saw stall, at a higher epoch that fences it; says where the listed media ends", async () => {
    const s = await store();
    const active = await s.claim("cam", "node-a", "pub-a", LEASE_MS, 1);
    assert.equal(active.endsAt, 0, "nothing listed yet");
    await s.append("cam", active, group(0));
    const longer = group(1);
    longer.renditions[1]!.duration = 1.25;
    await s.append("cam", active, longer);
    assert.equal((await s.inputView("cam")).role, "primary");

    await assert.rejects(s.claim("cam", "node-b", "pub-b", LEASE_MS, 1, { role: "backup" }), /live on node-a/, "a live lease is refused");
    await assert.rejects(s.claim("cam", "node-b", "pub-b", LEASE_MS, 1, { role: "backup", preempt: "node-c/pub-c/1" }), /live on node-a/, "only the holder seen is preempted");
    await s.markHandoff("cam", active);
    const standby = await s.claim("cam", "node-b", "pub-b", LEASE_MS, 1, { role: "backup", preempt: active.holder });
    assert.deepEqual([standby.epoch, standby.nextSeq], [active.epoch + 1, 2]);
    assert.equal(standby.endsAt, longer.pdt + 1250, "the end of the last entry's longest rendition");
    const view = await s.inputView("cam");
    assert.deepEqual([view.holder, view.role], [standby.holder, "backup"]);

    await fenced(s.append("cam", active, group(2)), "STALE_EPOCH");
    assert.equal(await s.renew("cam", active, LEASE_MS), false, "the stalled owner's renewal finds the stream gone");
    const entry = await s.append("cam", standby, group(2));
    assert.deepEqual([entry.seq, entry.disc], [2, true], "the standby's first segment continues the sequence after a discontinuity");
  });

  it("with redis.waitReplicas, confirms a claim on a replica, and refuses one no replica acknowledged", async () => {
    const replica = await startTestRedis();
    const control = new Redis(replica.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await control.connect();
      // a full sync at once, not after the default 5-s wait for more replicas
      const primary = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await primary.connect();
      await primary.config("SET", "repl-diskless-sync-delay", "0");
      await control.replicaof("127.0.0.1", String(redis.port));
      // the primary counts a replica for WAIT once it sees it online, which can lag the replica's own view
      await waitFor("the replica online at the primary", async () => (/slave0:.*state=online/.test(await primary.info("replication")) ? true : undefined));
      primary.disconnect();
      // a generous WAIT (half the command timeout) for the acknowledged case: a loaded machine is slow to ack
      const s = await store({ waitReplicas: 1, commandTimeoutMs: 10000 });
      const c = await claim(s, "acked");
      // the claim is on the replica by the time the publisher would be accepted
      assert.equal(await control.hget(s.keys.meta("acked"), "claim"), c.id);
      assert.equal(await s.release("acked", c), true);
      assert.equal(await control.hget(s.keys.meta("acked"), "state"), "reconnecting");

      // the replica promoted: a primary with no replica of its own
      await control.replicaof("NO", "ONE");
      const alone = await store({ waitReplicas: 1, commandTimeoutMs: 400 }, replica.url);
      await assert.rejects(claim(alone, "lonely"), (error: unknown) => error instanceof BatonError && error.code === "NOT_REPLICATED");
      assert.equal(await alone.redis.exists(alone.keys.lease("lonely")), 0, "the refused claim holds no lease");
      assert.equal(await alone.redis.hget(alone.keys.meta("lonely"), "state"), "reconnecting");
    } finally {
      control.disconnect();
    }
  });
});
