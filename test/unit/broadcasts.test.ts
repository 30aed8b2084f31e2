// Ended broadcasts as recordings against a real redis-server: the sweep that ends a stream seals its
// broadcast (last page, manifest, a small record), the recording lists everything kept and nothing the store
// lacks, a reused stream id starts a new broadcast beside it, `recording` keeps a whole broadcast past the DVR
// window, and expiry deletes the media and the record.
import assert from "node:assert/strict";
import type { LadderEntry, SegmentGroup } from "../../src/core/model.ts";
import { runScript } from "../../src/state/scripts.ts";
import { StreamStore, type StoreOptions } from "../../src/state/store.ts";
import { FsSegmentStore } from "../../src/storage/fs.ts";
import { startTestRedis, stopAll, tempDir, testPrefix, type TestRedis } from "../helpers/stack.ts";

const LADDER: LadderEntry[] = ["360p", "240p"].map((name, i) => ({
  name, width: 640 >> i, height: 360 >> i, bandwidth: 800000 >> i, averageBandwidth: 600000 >> i, codecs: "avc1.42c01e,mp4a.40.2", frameRate: 30,
}));
const T0 = 1_700_000_000_000;

function group(seq: number, start = 0): SegmentGroup {
  return { seq, pdt: T0 + (start + seq) * 1000, disc: false, renditions: LADDER.map((r) => ({ name: r.name, duration: 1, bytes: Buffer.from(`${r.name}/${start}/${seq}`) })) };
}

describe("broadcasts: ended streams kept as recordings (real redis-server)", function () {
  this.timeout(60000);
  let redis: TestRedis;
  const stores: StreamStore[] = [];

  async function store(options: Partial<StoreOptions> = {}): Promise<StreamStore> {
    const s = new StreamStore({
      url: redis.url, prefix: testPrefix(), window: 3, reconnectWindowMs: 0, retentionSec: 60, commandTimeoutMs: 2000, waitReplicas: 0,
      media: new FsSegmentStore(tempDir("broadcasts")), dvrWindowMs: 10_000, pageSize: 5, trimmedGraceMs: 10, ...options,
    });
    stores.push(s);
    await s.connect();
    return s;
  }

  /** A broadcast of `count` one-second segments, published and ended; its id. */
  async function broadcast(s: StreamStore, streamId: string, count: number, start = 0): Promise<string> {
    const c = await s.claim(streamId, "node-a", "pub-a", 4000, 1);
    await s.setLadder(streamId, c, LADDER);
    for (let seq = 0; seq < count; seq++) await s.append(streamId, c, group(seq, start));
    await s.release(streamId, c);
    // the release started a reconnect window of 0 ms: the sweep ends the stream
    assert.deepEqual(await s.sweep(streamId), { state: "ended", changed: true });
    return c.broadcast;
  }

  /** Whether every rendition's segment of every entry is in the store. */
  async function allReadable(s: StreamStore, streamId: string, id: string, entries: { seq: number; claim: string }[]): Promise<boolean> {
    for (const e of entries) for (const r of LADDER) if (!(await s.readSegment(streamId, id, r.name, e.seq, e.claim))) return false;
    return true;
  }

  before(async () => {
    redis = await startTestRedis();
  });
  after(async () => {
    for (const s of stores.splice(0)) await s.close();
    await stopAll();
  });

  it("an owner that wakes after its stream ended cannot trim the sealed tail, and its late page is the sealed one", async () => {
    const s = await store();
    const c = await s.claim("late", "node-a", "pub-a", 4000, 1);
    await s.setLadder("late", c, LADDER);
    // nine entries: one page short of the two a trim needs, so the tail holds them all
    for (let seq = 0; seq < 9; seq++) await s.append("late", c, group(seq));
    // the owner froze; its lease lapsed, the window passed, the sweep ended and sealed the stream
    await s.redis.del(s.keys.lease("late"));
    await s.sweep("late");
    assert.equal((await s.sweep("late")).state, "ended");
    const tail = await s.redis.lrange(s.keys.timeline("late"), 0, -1);
    // the owner wakes with one more entry it had appended just before (the tail now holds two pages) and archives
    const extra = JSON.stringify({ ...JSON.parse(tail[tail.length - 1]!), seq: 9 });
    await s.redis.rpush(s.keys.timeline("late"), extra);
    const first = JSON.parse(tail[0]!) as { seq: number; claim: string };
    const reply = (await runScript(s.redis, "archive", [
      s.keys.meta("late"), s.keys.timeline("late"), s.keys.pages("late"), c.epoch, c.id, 5, first.seq, first.claim, JSON.stringify({ first: 0, last: 4, pdt: T0, end: T0 + 5000, key: "x" }), 10_000,
    ])) as string[];
    assert.deepEqual(reply, ["0"], "an archive after the end trimmed the tail");
    assert.equal(await s.redis.llen(s.keys.timeline("late")), 10);
    // the recording lists all nine sealed entries, in pages of the page size
    const recording = await s.broadcasts.recording("late", c.broadcast);
    assert.deepEqual(recording?.entries.map((e) => e.seq), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it("seals an ended broadcast: the DVR window it kept plays as a recording; a reused stream id starts a new broadcast beside it", async () => {
    const s = await store();
    const first = await broadcast(s, "show", 30);
    const [record] = await s.broadcasts.list("show");
    assert.equal(record?.id, first);
    assert.deepEqual(record?.renditions, ["360p", "240p"]);
    const recording = (await s.broadcasts.recording("show", first))!;
    const seqs = recording.entries.map((e) => e.seq);
    assert.equal(seqs[seqs.length - 1], 29, "up to the end");
    assert.ok(seqs[0]! <= 19 && seqs[0]! > 0, `the 10 s window and what else was kept, not everything (from ${seqs[0]})`);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => seqs[0]! + i), "no hole");
    assert.equal(record?.duration, seqs.length);
    assert.ok(await allReadable(s, "show", first, recording.entries), "every listed segment is in the store");

    // the same stream id again: a new broadcast, its own timeline, the old one still a recording
    const c = await s.claim("show", "node-b", "pub-b", 4000, 1);
    assert.notEqual(c.broadcast, first);
    for (let seq = 0; seq < 3; seq++) await s.append("show", c, group(seq, 100));
    const live = (await s.read("show"))!;
    assert.equal(live.broadcast, c.broadcast);
    assert.deepEqual(live.entries.map((e) => e.seq), [0, 1, 2]);
    assert.ok(live.entries.every((e) => e.claim === c.id && !recording.entries.some((old) => old.claim === e.claim)), "no URI of the old broadcast is reused");
    assert.deepEqual((await s.broadcasts.recording("show", first))?.entries, recording.entries);

    // expiry takes the old broadcast's media and record
    assert.equal(await s.deleteExpired(Date.now() + 61_000), 1);
    assert.equal(await s.broadcasts.recording("show", first), null);
    assert.deepEqual(await s.broadcasts.list("show"), []);
    assert.equal(await s.readSegment("show", first, "240p", 29, recording.entries[0]!.claim), null);
  });

  it("with recording, keeps the whole broadcast past the DVR window for recording.retention", async () => {
    const s = await store({ recordingRetentionSec: 600 });
    const id = await broadcast(s, "rec", 40);
    assert.ok(((await s.read("rec"))?.entries.length ?? 0) <= 12, "the live playlist still lists the window only");
    const recording = (await s.broadcasts.recording("rec", id))!;
    assert.deepEqual(recording.entries.map((e) => e.seq), Array.from({ length: 40 }, (_, i) => i));
    assert.ok(await allReadable(s, "rec", id, recording.entries), "every segment kept");
    assert.equal((await s.broadcasts.list("rec"))[0]?.duration, 40);
    assert.equal(await s.deleteExpired(Date.now() + 61_000), 0, "hls.retention (60 s) does not apply to a recording");
    assert.equal(await s.deleteExpired(Date.now() + 601_000), 1);
    assert.equal(await s.broadcasts.recording("rec", id), null);
  });
});
