// The fs segment store on a real temporary directory: the shared behaviour table, then what only a directory
// can get wrong (temporary files left behind, a path that leaves the root, symbolic links).
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSegmentStore } from "../../src/storage/create.ts";
import { FsSegmentStore } from "../../src/storage/fs.ts";
import { storageKeys } from "../../src/storage/keys.ts";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { STORE_CASES, listAll, seg, storageCode } from "../helpers/storage-cases.ts";

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe("segment store: fs", () => {
  let dir = "";
  let root = "";
  let store: FsSegmentStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "baton-storage-"));
    root = join(dir, "segments");
    store = new FsSegmentStore(root);
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const c of STORE_CASES) it(c.what, () => c.run(store));

  it("is what createSegmentStore makes for backend fs, in storage.path", async () => {
    const made = createSegmentStore({ ...DEFAULTS.storage, path: root });
    assert.ok(made instanceof FsSegmentStore);
    await made.put(seg(0), Buffer.from("x"));
    assert.deepEqual(filesUnder(root), [join(root, seg(0))]);
    await made.close();
  });

  it("leaves no temporary file behind after many writes, and none when a write fails", async () => {
    await Promise.all(Array.from({ length: 50 }, (_, n) => store.put(seg(n % 5), Buffer.alloc(1000, n))));
    assert.equal(filesUnder(root).length, 5);
    // a directory where the object's file must go makes the rename fail
    mkdirSync(join(root, seg(9)), { recursive: true });
    assert.equal((await storageCode(() => store.put(seg(9), Buffer.from("x")))).code, "STORAGE_FAILED");
    assert.equal(filesUnder(root).length, 5);
  });

  it("never reads or lists outside its root, nor through a symbolic link", async () => {
    writeFileSync(join(dir, "outside.ts"), "secret");
    const rendition = join(root, storageKeys.rendition("cam1", "00000000aaaa", "720p"));
    mkdirSync(rendition, { recursive: true });
    symlinkSync(join(dir, "outside.ts"), join(rendition, "5.0123456789ab.ts"));
    symlinkSync(dir, join(root, "streams", "cam2"));
    await store.put(seg(1), Buffer.from("mine"));
    assert.deepEqual(await listAll(store, storageKeys.all()), [{ key: seg(1), size: 4 }]);
    assert.equal((await storageCode(() => store.get(seg(5)))).code, "STORAGE_REFUSED");
    await store.deletePrefix(storageKeys.stream("cam2"));
    assert.deepEqual(readdirSync(dir).sort(), ["outside.ts", "segments"]);
  });

  it("lists an empty store whose directory does not exist yet", async () => {
    assert.deepEqual(await listAll(store, storageKeys.all()), []);
    assert.equal(await store.get(seg(0)), null);
  });

  it("refuses to build a key from an id that fails its pattern", () => {
    const bad: Array<() => string> = [
      () => storageKeys.stream("../x"),
      () => storageKeys.stream("a".repeat(65)),
      () => storageKeys.broadcast("cam1", "XYZ"),
      () => storageKeys.rendition("cam1", "00000000aaaa", "../720p"),
      () => storageKeys.segment("cam1", "00000000aaaa", "720p", -1, "0123456789ab"),
      () => storageKeys.segment("cam1", "00000000aaaa", "720p", 1.5, "0123456789ab"),
      () => storageKeys.segment("cam1", "00000000aaaa", "720p", 1, "0123456789abc"),
    ];
    for (const build of bad) assert.throws(build, (e: Error & { code?: string }) => e.code === "STORAGE_REFUSED", build.toString());
    assert.equal(storageKeys.segment("cam1", "0123456789ab", "720p", 42, "0123456789ab"), "streams/cam1/0123456789ab/720p/42.0123456789ab.ts");
  });
});
