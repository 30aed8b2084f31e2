// The DVR window's timeline pages against a real redis-server: old entries move out of Redis into page
// objects in the segment store, readers put the timeline back together on any node, pages that leave the
// window are deleted with their segments, a later owner archives what an earlier one could not, and a
// two-hour window of a three-rendition ladder keeps every Redis key (and the stream's whole footprint) under
// 64 KB.
import assert from "node:assert/strict";
import type { Claim, SegmentGroup } from "../../src/core/model.ts";
import { renderMedia } from "../../src/delivery/playlist.ts";
import { StreamStore, type StoreOptions } from "../../src/state/store.ts";
import { RecordSchemaError, SCHEMA_VERSION } from "../../src/state/schema.ts";
import { PageCache, inWindow } from "../../src/state/timeline-pages.ts";
import { FsSegmentStore } from "../../src/storage/fs.ts";
import { storageKeys } from "../../src/storage/keys.ts";
import type { SegmentStore } from "../../src/storage/store.ts";
import { directoryBytes } from "../helpers/store-size.ts";
import { startTestRedis, stopAll, tempDir, testPrefix, waitFor, type TestRedis } from "../helpers/stack.ts";

const LADDER = ["1080p", "720p", "480p"];
const T0 = 1_700_000_000_000;

/** One group of the ladder, `seconds` long (the pdt advances by as much). */
function group(seq: number, seconds = 1): SegmentGroup {
  return {
    seq, pdt: T0 + seq * seconds * 1000, disc: false,
    renditions: LADDER.map((name) => ({ name, duration: seconds, bytes: Buffer.from(`${name}/${seq}`) })),
  };
}

/** Bytes Redis reports for each of the stream's keys. */
async function footprint(s: StreamStore, streamId: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for (const key of await s.redis.keys(`${s.keys.prefix}{${streamId}}:*`)) sizes.set(key, (await s.redis.memory("USAGE", key, "SAMPLES", "0")) ?? 0);
  return sizes;
}

describe("timeline pages: the DVR window (real redis-server)", function () {
  this.timeout(120000);
  let redis: TestRedis;
  const stores: StreamStore[] = [];

  async function store(options: Partial<StoreOptions> & { media: SegmentStore; prefix: string }): Promise<StreamStore> {
    const s = new StreamStore({
      url: redis.url, window: 3, reconnectWindowMs: 30000, retentionSec: 60, commandTimeoutMs: 2000, waitReplicas: 0,
      dvrWindowMs: 30_000, pageSize: 5, trimmedGraceMs: 200, ...options,
    });
    stores.push(s);
    await s.connect();
    return s;
  }

  before(async () => {
    redis = await startTestRedis();
  });
  after(async () => {
    for (const s of stores.splice(0)) await s.close();
    await stopAll();
  });

  it("keeps the window's entries in pages and a short tail; any node reads the same timeline; pages that left the window are deleted", async () => {
    const media = new FsSegmentStore(tempDir("pages"));
    const prefix = testPrefix();
    const s = await store({ media, prefix });
    const c = await s.claim("dvr", "node-a", "pub-a", 4000, 1);
    for (let seq = 0; seq < 60; seq++) await s.append("dvr", c, group(seq));

    const tail = await s.redis.llen(s.keys.timeline("dvr"));
    assert.ok(tail < 10, `the tail holds ${tail} entries, under two pages`);
    assert.ok((await s.redis.llen(s.keys.pages("dvr"))) >= 5, "the older entries are pages");
    // the window is 30 s of 1 s segments: the newest starts at 59 s, so 29..59 are in it
    const expected = Array.from({ length: 31 }, (_, i) => 29 + i);
    assert.deepEqual((await s.read("dvr"))?.entries.map((e) => e.seq), expected);
    // another node, with nothing cached, reads the pages from the store
    const other = await store({ media, prefix });
    assert.deepEqual((await other.read("dvr"))?.entries.map((e) => e.seq), expected);
    assert.ok(other.pages.cache.size > 0, "the pages it read are cached");

    // pages wholly before the window are gone from Redis, and with their segments from the store after the grace
    const key = (seq: number): string => storageKeys.segment("dvr", c.broadcast, "720p", seq, c.id);
    const gone = async (k: string): Promise<boolean> => (await media.get(k)) === null;
    await waitFor("the first page and its media deleted", async () => ((await gone(key(0))) && (await gone(storageKeys.page("dvr", c.broadcast, 0, c.id))) ? true : undefined), 5000, 50);
    assert.equal((await media.get(key(29)))?.toString(), "720p/29", "a segment in the window stays");
  });

  it("a later owner archives the pages an earlier one could not write", async () => {
    const fs = new FsSegmentStore(tempDir("pages"));
    // the first owner's store refuses page objects (a store outage for them): its tail grows instead
    const refusing: SegmentStore = {
      ...fs, list: (p) => fs.list(p), get: (k, r) => fs.get(k, r), delete: (k) => fs.delete(k), deletePrefix: (p) => fs.deletePrefix(p), close: () => fs.close(),
      put: (k, bytes) => (k.endsWith(".json") ? Promise.reject(new Error("no pages")) : fs.put(k, bytes)),
    };
    const prefix = testPrefix();
    const first = await store({ media: refusing, prefix, dvrWindowMs: 3_600_000 });
    const a = await first.claim("late", "node-a", "pub-a", 4000, 1);
    for (let seq = 0; seq < 23; seq++) await first.append("late", a, group(seq));
    assert.equal(await first.redis.llen(first.keys.timeline("late")), 23, "no page was archived");
    await first.release("late", a);

    const second = await store({ media: fs, prefix, dvrWindowMs: 3_600_000 });
    const b: Claim = await second.claim("late", "node-b", "pub-b", 4000, 1);
    for (let seq = 23; seq < 30; seq++) await second.append("late", b, group(seq));
    assert.ok((await second.redis.llen(second.keys.timeline("late"))) < 10, "the new owner caught up");
    assert.deepEqual((await second.read("late"))?.entries.map((e) => e.seq), Array.from({ length: 30 }, (_, i) => i), "nothing lost or repeated");
  });

  it("keeps a two-hour window of a three-rendition ladder under 64 KB of Redis, per key and in all", async () => {
    const prefix = testPrefix();
    const s = await store({ media: new FsSegmentStore(tempDir("pages")), prefix, dvrWindowMs: 7_200_000, pageSize: 60, window: 6 });
    const c = await s.claim("long", "node-a", "pub-a", 60000, 2);
    // 3,600 segments of 2 s: two hours, and a few more so the oldest page has left the window
    const count = 3660;
    for (let seq = 0; seq < count; seq++) await s.append("long", c, group(seq, 2));
    const sizes = await footprint(s, "long");
    const total = [...sizes.values()].reduce((a, b) => a + b, 0);
    for (const [key, bytes] of sizes) assert.ok(bytes < 64 * 1024, `${key} holds ${bytes} bytes`);
    assert.ok(total < 64 * 1024, `the stream holds ${total} bytes of Redis`);
    const entries = (await s.read("long"))?.entries ?? [];
    assert.ok(entries.length >= 3600 && entries.length <= 3601, `${entries.length} entries listed`);
    assert.equal(entries[entries.length - 1]?.seq, count - 1);
    process.stdout.write(`      redis per stream at ${entries.length} entries: ${total} bytes (${[...sizes].map(([k, b]) => `${k.split(":").pop()} ${b}`).join(", ")})\n`);
  });

  it("an ended stream's playlist lists its whole window, pages and tail, and ends with EXT-X-ENDLIST", async () => {
    const s = await store({ media: new FsSegmentStore(tempDir("pages")), prefix: testPrefix(), reconnectWindowMs: 0, dvrWindowMs: 3_600_000 });
    const c = await s.claim("ended", "node-a", "pub-a", 4000, 1);
    for (let seq = 0; seq < 27; seq++) await s.append("ended", c, group(seq));
    await s.release("ended", c);
    assert.equal((await s.sweep("ended")).state, "ended");
    const ttl = await s.redis.pttl(s.keys.pages("ended"));
    assert.ok(ttl > 0 && ttl <= 60_000, `the page refs expire with the stream's state (${ttl} ms)`);
    const snapshot = (await s.read("ended"))!;
    const text = renderMedia(snapshot, "720p");
    assert.equal((text.match(/#EXTINF/g) ?? []).length, 27);
    assert.match(text, /#EXT-X-MEDIA-SEQUENCE:0\n/);
    assert.match(text, /#EXT-X-ENDLIST\n$/);
  });

  it("keeps the store's size flat once the window is full: media that left it is deleted", async () => {
    const dir = tempDir("soak");
    const s = await store({ media: new FsSegmentStore(dir), prefix: testPrefix(), dvrWindowMs: 20_000, pageSize: 5, trimmedGraceMs: 50 });
    const c = await s.claim("soak", "node-a", "pub-a", 60000, 1);
    const segment = Buffer.alloc(4096, 0x47);
    let seq = 0;
    const run = async (count: number): Promise<void> => {
      for (const end = seq + count; seq < end; seq++) {
        await s.append("soak", c, { seq, pdt: T0 + seq * 1000, disc: false, renditions: LADDER.map((name) => ({ name, duration: 1, bytes: segment })) });
      }
    };
    const group = LADDER.length * segment.length;
    // what must stay: the 21 s window's segments; what may: the tail's two pages and the page that just left
    const [floor, ceiling] = [21 * group, (21 + 3 * 5 + 5) * group + 64 * 1024];
    const sizes: number[] = [];
    for (const count of [100, 200, 400]) {
      await run(count);
      sizes.push(await waitFor(`the store at most ${ceiling} bytes after ${seq} segments`, () => {
        const bytes = directoryBytes(dir);
        return bytes <= ceiling ? bytes : undefined;
      }, 10000, 50));
      assert.ok(sizes[sizes.length - 1]! >= floor, `the window's media stays (${sizes[sizes.length - 1]} bytes)`);
    }
    process.stdout.write(`      store bytes after 100, 300, 700 segments (${group} bytes each): ${sizes.join(", ")}\n`);
  });

  it("reads a page of an earlier release's entries (no schema version) and refuses a page with an entry of a newer schema", async () => {
    const entry = (seq: number, v?: number): object => ({ ...(v === undefined ? {} : { v }), seq, claim: "c", pdt: seq * 1000, disc: false, cc: 0, dur: { a: 1 } });
    const objects = new Map([["old", [entry(0), entry(1)]], ["newer", [entry(2), entry(3, SCHEMA_VERSION + 1)]]]);
    const cache = new PageCache(async (key) => Buffer.from(JSON.stringify(objects.get(key))));
    assert.deepEqual((await cache.get("old"))?.map((e) => e.seq), [0, 1]);
    await assert.rejects(cache.get("newer"), RecordSchemaError);
  });

  it("cuts the listed entries to the window but never under the playlist window", () => {
    const entries = [0, 1, 2, 10, 11].map((seq) => ({ seq, claim: "c", pdt: seq * 1000, disc: false, cc: 0, dur: { a: 1 } }));
    assert.deepEqual(inWindow(entries, 2000, 1).map((e) => e.seq), [10, 11]);
    assert.deepEqual(inWindow(entries, 2000, 4).map((e) => e.seq), [1, 2, 10, 11]);
    assert.deepEqual(inWindow([], 2000, 4), []);
  });
});
