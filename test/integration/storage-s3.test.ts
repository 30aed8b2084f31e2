// The s3 segment store against a real S3-protocol server (s3rver, started here as its own process on a free
// loopback port): the behaviour table every backend passes, then what only a remote store can get wrong (an
// unreachable or silent endpoint, wrong credentials, a missing bucket, object names under s3Prefix).
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { DEFAULTS, type Config } from "../../src/config/defaults.ts";
import { createSegmentStore } from "../../src/storage/create.ts";
import { storageKeys } from "../../src/storage/keys.ts";
import { S3SegmentStore } from "../../src/storage/s3.ts";
import { freePort } from "../../tools/processes.ts";
import { S3_ACCESS, S3_BUCKET, startTestS3, type TestS3 } from "../helpers/s3.ts";
import { HOST, stopAll } from "../helpers/stack.ts";
import { STORE_CASES, listAll, seg, storageCode } from "../helpers/storage-cases.ts";

const BUCKET = S3_BUCKET;
const ACCESS = S3_ACCESS;

describe("segment store: s3 (s3rver)", function () {
  this.timeout(60000);
  let endpoint = "";
  let tests = 0;
  const stores: S3SegmentStore[] = [];

  /** A store on the test server, under a prefix of its own, so each test starts from an empty store. */
  function s3Store(more: Partial<Config["storage"]> = {}): S3SegmentStore {
    tests += 1;
    const store = new S3SegmentStore({
      ...DEFAULTS.storage, backend: "s3", s3Endpoint: endpoint, s3Bucket: BUCKET, s3ForcePathStyle: true,
      s3Prefix: `run${tests}/`, s3Timeout: 5000, ...ACCESS, ...more,
    });
    stores.push(store);
    return store;
  }

  let s3: TestS3;
  before(async () => {
    s3 = await startTestS3();
    endpoint = s3.endpoint;
  });

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });

  after(async () => {
    await s3?.stop();
    await stopAll();
  });

  // s3rver writes objects in place (AWS S3, MinIO and Ceph publish an object whole): see serverAtomicity
  for (const c of STORE_CASES.filter((c) => !c.serverAtomicity)) it(c.what, () => c.run(s3Store()));

  it("is what createSegmentStore makes for backend s3, and keeps its objects under s3Prefix", async () => {
    const made = createSegmentStore({ ...DEFAULTS.storage, backend: "s3", s3Endpoint: endpoint, s3Bucket: BUCKET, s3ForcePathStyle: true, s3Prefix: "made/", ...ACCESS });
    assert.ok(made instanceof S3SegmentStore);
    stores.push(made);
    await made.put(seg(3), Buffer.from("under the prefix"));
    // the same bucket without the prefix sees the object under its full name, and not as a segment key
    const bare = s3Store({ s3Prefix: "" });
    assert.equal(await bare.get(seg(3)), null);
    assert.deepEqual(await listAll(bare, storageKeys.all()), []);
    assert.equal((await made.get(seg(3)))?.toString(), "under the prefix");
  });

  it("lists and deletes past one page (more than 1,000 objects)", async () => {
    const store = s3Store();
    const count = 1003;
    const keys = Array.from({ length: count }, (_, n) => seg(n));
    for (let i = 0; i < count; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => store.put(k, Buffer.from("x"))));
    await store.put(seg(0, "cam2"), Buffer.from("kept"));
    assert.equal((await listAll(store, storageKeys.stream("cam1"))).length, count);
    await store.deletePrefix(storageKeys.stream("cam1"));
    assert.deepEqual((await listAll(store, storageKeys.all())).map((o) => o.key), [seg(0, "cam2")]);
  });

  it("ignores objects in the bucket that are not segment keys", async () => {
    const store = s3Store({ s3Prefix: "foreign/" });
    const admin = s3.client();
    await admin.send(new PutObjectCommand({ Bucket: BUCKET, Key: "foreign/streams/cam1/notes.txt", Body: "not a segment" }));
    admin.destroy();
    await store.put(seg(0), Buffer.from("x"));
    assert.deepEqual(await listAll(store, storageKeys.all()), [{ key: seg(0), size: 1 }]);
  });

  it("fails with STORAGE_UNAVAILABLE, naming the endpoint, when nothing listens there", async () => {
    const nobody = `http://${HOST}:${await freePort()}`;
    const store = s3Store({ s3Endpoint: nobody });
    for (const call of [() => store.put(seg(0), Buffer.from("x")), () => store.get(seg(0)), () => listAll(store, storageKeys.all())]) {
      const { code, message } = await storageCode(call);
      assert.equal(code, "STORAGE_UNAVAILABLE");
      assert.ok(message.includes(nobody), message);
    }
  });

  it("fails with STORAGE_UNAVAILABLE within s3Timeout when the endpoint accepts and never answers", async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, HOST, resolve));
    const address = silent.address();
    assert.ok(address && typeof address === "object");
    try {
      const store = s3Store({ s3Endpoint: `http://${HOST}:${address.port}`, s3Timeout: 300 });
      const { code, message } = await storageCode(() => store.get(seg(0)));
      assert.equal(code, "STORAGE_UNAVAILABLE");
      assert.match(message, /no answer within 300 ms \(storage\.s3Timeout\)/);
      assert.ok(sockets.size <= 3, `${sockets.size} connections for one call`);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  // s3rver checks the access key id but not a SigV4 signature, so a wrong secret with a known id passes there
  it("refuses credentials the store does not know with STORAGE_DENIED, and never prints the secret", async () => {
    const store = s3Store({ s3AccessKeyId: "NOBODY", s3SecretAccessKey: "not-the-secret-key" });
    for (const call of [() => store.put(seg(0), Buffer.from("x")), () => store.get(seg(0)), () => store.deletePrefix(storageKeys.stream("cam1"))]) {
      const { code, message } = await storageCode(call);
      assert.equal(code, "STORAGE_DENIED");
      assert.match(message, /credentials or permission refused \(InvalidAccessKeyId/);
      assert.ok(!message.includes("not-the-secret-key"), message);
    }
  });

  it("fails with STORAGE_FAILED naming the bucket when it does not exist", async () => {
    const store = s3Store({ s3Bucket: "no-such-bucket" });
    const { code, message } = await storageCode(() => store.get(seg(0)));
    assert.equal(code, "STORAGE_FAILED");
    assert.match(message, /bucket no-such-bucket: NoSuchBucket/);
  });
});
