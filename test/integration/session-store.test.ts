// The session store and its script (session-1.lua) on a real redis-server: a session's record is made by its
// first use from its token's facts, only while the token may still be used, and never again once it expired.
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { issuedAt, newSessionId } from "../../src/delivery/session-token.ts";
import { Keys } from "../../src/state/keys.ts";
import { RecordSchemaError, SCHEMA_VERSION } from "../../src/state/schema.ts";
import { defineScripts } from "../../src/state/scripts.ts";
import { SessionStore, startWindowMs } from "../../src/state/sessions.ts";
import { startTestRedis, stopAll, testPrefix, waitFor } from "../helpers/stack.ts";

describe("session store on Redis", function () {
  this.timeout(30000);
  let redis: Redis;
  let keys: Keys;
  const stores: SessionStore[] = [];
  const storeWith = (ttlSec: number): SessionStore => {
    const store = new SessionStore(redis, keys, { ttlSec, flushIntervalMs: 50 });
    stores.push(store);
    return store;
  };
  const report = (position: number) => ({ node: "n1", report: { position, pdt: 1000 + position, paused: true } });
  const origin = (id: string) => ({ streamId: "show", issuedAt: issuedAt(id) });

  before(async () => {
    const server = await startTestRedis();
    redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
    defineScripts(redis);
    keys = new Keys(testPrefix());
    await waitFor("redis", () => (redis.status === "ready" ? true : undefined));
  });
  after(async () => {
    for (const store of stores) await store.close();
    redis.disconnect();
    await stopAll();
  });

  it("makes no record for a playlist request, and makes it from the token's facts on the first report", async () => {
    const store = storeWith(3600);
    const id = newSessionId();
    void store.update(id, { node: "n1", rendition: "360p" }, origin(id));
    await store.flush();
    assert.equal(await redis.exists(keys.session(id)), 0, "a playlist request alone leaves nothing");
    void store.update(id, report(7), origin(id));
    await store.flush();
    const session = await store.get(id);
    assert.equal(session?.streamId, "show");
    assert.equal(session?.createdAt, issuedAt(id));
    assert.equal(session?.position, 7);
    assert.equal(session?.paused, true);
    assert.ok((await store.ttl(id))! > 3590);
    assert.equal(store.created, 1);
  });

  it("writes a session with its schema version, and neither reads nor writes a session of a newer schema", async () => {
    const store = storeWith(3600);
    const id = newSessionId();
    void store.update(id, report(4), origin(id));
    await store.flush();
    assert.equal(await redis.hget(keys.session(id), "v"), String(SCHEMA_VERSION));
    // the same session as a release of a newer schema would have rewritten it
    await redis.hset(keys.session(id), "v", String(SCHEMA_VERSION + 1), "position", "9");
    void store.update(id, report(5), origin(id));
    await store.flush();
    assert.equal(store.newerSchema, 1);
    assert.deepEqual(await redis.hmget(keys.session(id), "v", "position"), [String(SCHEMA_VERSION + 1), "9"], "left as it was");
    await assert.rejects(store.get(id), RecordSchemaError);
    // a session an earlier release wrote, before sessions carried their schema, is schema 1
    await redis.hdel(keys.session(id), "v");
    assert.equal((await store.get(id))?.position, 9);
  });

  it("makes it on an inferred position too, and a write without the token's facts never does", async () => {
    const store = storeWith(3600);
    const [a, b] = [newSessionId(), newSessionId()];
    void store.update(a, { inferred: { position: 3, pdt: 1003 } }, origin(a));
    void store.update(b, report(1));
    await store.flush();
    assert.equal((await store.get(a))?.source, "inferred");
    assert.equal(await redis.exists(keys.session(b)), 0);
  });

  it("refuses a token first used after its start window", async () => {
    const store = storeWith(3600);
    const id = newSessionId(Date.now() - startWindowMs(3600) - 5000);
    void store.update(id, report(1), origin(id));
    await store.flush();
    assert.equal(await redis.exists(keys.session(id)), 0);
  });

  it("never brings back a session that expired after use, by a late write or one queued before it expired", async () => {
    const [one, other] = [storeWith(2), storeWith(2)];
    const id = newSessionId();
    void one.update(id, report(1), origin(id));
    await one.flush();
    assert.equal((await one.get(id))?.position, 1);
    // made within the start window, sent only once the record expired (Redis away from that node meanwhile)
    void other.update(id, report(2), origin(id));
    await waitFor("the record to expire", async () => ((await redis.exists(keys.session(id))) === 0 ? true : undefined), 10000);
    await other.flush();
    assert.equal(await redis.exists(keys.session(id)), 0, "the queued write");
    void one.update(id, report(3), origin(id));
    await one.flush();
    assert.equal(await redis.exists(keys.session(id)), 0, "a late write");
  });
});
