// The segment store a node uses reports its failures (baton_segment_store_errors_total): the shared behaviour
// table passes through the wrapper unchanged, each failed call is reported once with its operation and code, and
// a viewer's range past an object's end is no store failure.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { countStoreErrors, type StoreErrorCode, type StoreOp } from "../../src/storage/counted.ts";
import { FsSegmentStore } from "../../src/storage/fs.ts";
import { storageKeys } from "../../src/storage/keys.ts";
import type { SegmentStore } from "../../src/storage/store.ts";
import { STORE_CASES, listAll, seg, storageCode } from "../helpers/storage-cases.ts";

describe("segment store: failures counted", () => {
  let dir = "";
  let reported: [StoreOp, StoreErrorCode][] = [];
  let store: SegmentStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "baton-storage-counted-"));
    reported = [];
    store = countStoreErrors(new FsSegmentStore(join(dir, "segments")), (op, code) => reported.push([op, code]));
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const c of STORE_CASES) it(`behaves the same: ${c.what}`, () => c.run(store));

  it("reports nothing for calls that succeed, a missing object or a range past the end", async () => {
    await store.put(seg(0), Buffer.from("abc"));
    assert.deepEqual(await store.get(seg(0), { start: 1, end: 9 }), Buffer.from("bc"));
    assert.equal(await store.get(seg(1)), null);
    assert.equal((await storageCode(() => store.get(seg(0), { start: 5, end: 9 }))).code, "STORAGE_RANGE");
    await store.delete([seg(0), seg(1)]);
    assert.deepEqual(await listAll(store, storageKeys.all()), []);
    assert.deepEqual(reported, []);
  });

  it("reports each failed call once, with its operation and code, and still throws it", async () => {
    // a directory where the object's file must go makes the write fail
    mkdirSync(join(dir, "segments", seg(9)), { recursive: true });
    assert.equal((await storageCode(() => store.put(seg(9), Buffer.from("x")))).code, "STORAGE_FAILED");
    assert.equal((await storageCode(() => store.get("../outside"))).code, "STORAGE_REFUSED");
    await store.close();
    assert.equal((await storageCode(() => store.get(seg(0)))).code, "STORAGE_UNAVAILABLE");
    assert.equal((await storageCode(() => listAll(store, storageKeys.all()))).code, "STORAGE_UNAVAILABLE");
    assert.equal((await storageCode(() => store.deletePrefix(storageKeys.stream("cam1")))).code, "STORAGE_UNAVAILABLE");
    assert.deepEqual(reported, [
      ["put", "STORAGE_FAILED"], ["get", "STORAGE_REFUSED"], ["get", "STORAGE_UNAVAILABLE"], ["list", "STORAGE_UNAVAILABLE"], ["delete_prefix", "STORAGE_UNAVAILABLE"],
    ]);
  });
});
