// The segment store's behaviour, one table of cases every backend must pass (test/unit/storage-fs.test.ts and
// test/integration/storage-s3.test.ts run it against a real directory and a real S3-protocol server).
import assert from "node:assert/strict";
import { StorageError } from "../../src/core/errors.ts";
import { storageKeys } from "../../src/storage/keys.ts";
import type { SegmentStore, StoredObject } from "../../src/storage/store.ts";

const CLAIM = "0123456789ab";
const BROADCAST = "00000000aaaa";
export const seg = (seq: number, streamId = "cam1", broadcastId = BROADCAST, rendition = "720p"): string =>
  storageKeys.segment(streamId, broadcastId, rendition, seq, CLAIM);

export async function listAll(store: SegmentStore, prefix: string): Promise<StoredObject[]> {
  const objects: StoredObject[] = [];
  for await (const object of store.list(prefix)) objects.push(object);
  return objects.sort((a, b) => a.key.localeCompare(b.key));
}

export async function storageCode(run: () => Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await run();
  } catch (error) {
    assert.ok(error instanceof StorageError, `not a StorageError: ${String(error)}`);
    return { code: error.code, message: error.message };
  }
  assert.fail("the call did not fail");
}

/** Keys no backend may take: each would leave the store or name something that is not a segment. */
export const BAD_KEYS = [
  "", "/etc/passwd", "../secret", "streams/../../etc/passwd", `streams/cam1/${BROADCAST}/720p/../../../../x.ts`,
  `streams/cam1/${BROADCAST}/720p/0.${CLAIM}.ts/..`, `streams/cam1/${BROADCAST}/720p/0.${CLAIM}.ts.tmp`,
  `streams\\cam1\\${BROADCAST}\\720p\\0.${CLAIM}.ts`, `streams/cam1/${BROADCAST}/720p/00.${CLAIM}.ts`,
  `streams/cam1/${BROADCAST}/720P/0.${CLAIM}.ts`, `streams/cam.1/${BROADCAST}/720p/0.${CLAIM}.ts`,
  `streams/cam1/${BROADCAST}/720p/0.${CLAIM}.ts\0`, `/streams/cam1/${BROADCAST}/720p/0.${CLAIM}.ts`,
];
export const BAD_DELETE_PREFIXES = ["", "streams/", "streams", "streams/cam1", "streams/../", "/", "../", "streams/cam1/../"];

interface Case {
  what: string;
  /**
   * Proves the store's atomic put, which for S3 is the server's own guarantee: s3rver, the S3 server the tests
   * can run, writes each object in place, so against it this case would test s3rver, not baton.
   */
  serverAtomicity?: true;
  run: (store: SegmentStore) => Promise<void>;
}

export const STORE_CASES: Case[] = [
  {
    what: "gives back the bytes put, and null for a key never put",
    async run(store) {
      const bytes = Buffer.from("segment bytes \x00\xff");
      await store.put(seg(1), bytes);
      assert.deepEqual(await store.get(seg(1)), bytes);
      assert.equal(await store.get(seg(2)), null);
      assert.equal(await store.get(seg(1, "cam2")), null);
    },
  },
  {
    what: "replaces an object put again, and stores an empty one",
    async run(store) {
      await store.put(seg(1), Buffer.from("first version, longer"));
      await store.put(seg(1), Buffer.from("second"));
      assert.equal((await store.get(seg(1)))?.toString(), "second");
      await store.put(seg(2), Buffer.alloc(0));
      assert.equal((await store.get(seg(2)))?.length, 0);
    },
  },
  {
    what: "reads byte ranges inclusively, cuts an end past the object, refuses a start past it",
    async run(store) {
      await store.put(seg(1), Buffer.from("0123456789"));
      assert.equal((await store.get(seg(1), { start: 2, end: 5 }))?.toString(), "2345");
      assert.equal((await store.get(seg(1), { start: 9, end: 9 }))?.toString(), "9");
      assert.equal((await store.get(seg(1), { start: 7, end: 100 }))?.toString(), "789");
      assert.equal((await store.get(seg(1), { start: 0, end: 9 }))?.toString(), "0123456789");
      assert.equal((await storageCode(() => store.get(seg(1), { start: 10, end: 12 }))).code, "STORAGE_RANGE");
      assert.equal(await store.get(seg(2), { start: 0, end: 1 }), null);
      for (const range of [{ start: 5, end: 4 }, { start: -1, end: 3 }, { start: 0.5, end: 3 }, { start: 0, end: Number.NaN }]) {
        assert.equal((await storageCode(() => store.get(seg(1), range))).code, "STORAGE_REFUSED", JSON.stringify(range));
      }
    },
  },
  {
    what: "lists keys and sizes under a prefix, and nothing of a stream whose id only starts alike",
    async run(store) {
      await store.put(seg(0), Buffer.alloc(10));
      await store.put(seg(1), Buffer.alloc(20));
      await store.put(seg(0, "cam1", BROADCAST, "360p"), Buffer.alloc(5));
      await store.put(seg(0, "cam10"), Buffer.alloc(7));
      await store.put(seg(0, "cam1", "00000000bbbb"), Buffer.alloc(3));
      assert.deepEqual(await listAll(store, storageKeys.rendition("cam1", BROADCAST, "720p")), [
        { key: seg(0), size: 10 }, { key: seg(1), size: 20 },
      ]);
      assert.equal((await listAll(store, storageKeys.broadcast("cam1", BROADCAST))).length, 3);
      assert.equal((await listAll(store, storageKeys.stream("cam1"))).length, 4);
      const all = await listAll(store, storageKeys.all());
      assert.equal(all.reduce((sum, o) => sum + o.size, 0), 45);
      assert.deepEqual(await listAll(store, storageKeys.stream("nothing")), []);
    },
  },
  {
    what: "deletes one broadcast's objects and leaves every other broadcast and stream",
    async run(store) {
      for (let seq = 0; seq < 5; seq++) await store.put(seg(seq), Buffer.from(`s${seq}`));
      await store.put(seg(0, "cam1", BROADCAST, "360p"), Buffer.from("r"));
      await store.put(seg(0, "cam10"), Buffer.from("other stream"));
      await store.put(seg(0, "cam1", "00000000bbbb"), Buffer.from("other broadcast"));
      await store.deletePrefix(storageKeys.broadcast("cam1", BROADCAST));
      assert.equal(await store.get(seg(3)), null);
      assert.deepEqual(await listAll(store, storageKeys.broadcast("cam1", BROADCAST)), []);
      assert.deepEqual((await listAll(store, storageKeys.all())).map((o) => o.key), [seg(0, "cam1", "00000000bbbb"), seg(0, "cam10")]);
      // deleting what is already gone is no error: expiry may run twice
      await store.deletePrefix(storageKeys.broadcast("cam1", BROADCAST));
      await store.deletePrefix(storageKeys.stream("never"));
    },
  },
  {
    what: "refuses every key that is not a segment key, and every prefix but a stream's, broadcast's or rendition's",
    async run(store) {
      for (const key of BAD_KEYS) {
        assert.equal((await storageCode(() => store.put(key, Buffer.from("x")))).code, "STORAGE_REFUSED", JSON.stringify(key));
        assert.equal((await storageCode(() => store.get(key))).code, "STORAGE_REFUSED", JSON.stringify(key));
      }
      for (const prefix of BAD_DELETE_PREFIXES) {
        assert.equal((await storageCode(() => store.deletePrefix(prefix))).code, "STORAGE_REFUSED", JSON.stringify(prefix));
      }
      assert.equal((await storageCode(() => listAll(store, "../"))).code, "STORAGE_REFUSED");
      assert.deepEqual(await listAll(store, storageKeys.all()), []);
    },
  },
  {
    what: "a reader during many overwrites sees one whole version each time, never part of one",
    serverAtomicity: true,
    async run(store) {
      const key = seg(7);
      // each version has its own length and fill byte, so a torn or mixed read cannot pass for a whole one
      const version = (n: number): Buffer => Buffer.alloc(65536 + n * 997, n);
      const versions = 40;
      let writing = true;
      const writer = (async () => {
        try {
          for (let n = 1; n <= versions; n++) await store.put(key, version(n));
        } finally {
          writing = false;
        }
      })();
      let reads = 0;
      while (writing) {
        const bytes = await store.get(key);
        if (bytes === null) continue;
        const n = bytes[0] ?? 0;
        assert.ok(n >= 1 && n <= versions, `fill ${n}`);
        assert.ok(bytes.equals(version(n)), `read ${reads}: ${bytes.length} bytes, fill ${n}: not version ${n} whole`);
        reads += 1;
      }
      await writer;
      assert.ok(reads > 0, "no read overlapped the writes");
      assert.ok((await store.get(key))?.equals(version(versions)));
    },
  },
  {
    what: "refuses every call after close, and closes twice",
    async run(store) {
      await store.put(seg(0), Buffer.from("x"));
      await store.close();
      await store.close();
      assert.equal((await storageCode(() => store.get(seg(0)))).code, "STORAGE_UNAVAILABLE");
      assert.equal((await storageCode(() => store.put(seg(0), Buffer.from("y")))).code, "STORAGE_UNAVAILABLE");
    },
  },
];
