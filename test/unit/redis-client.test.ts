// The Redis clients baton makes (redisClient) against a real redis-server: a client ioredis gave up on connects
// again by itself; one baton closed stays closed.
import assert from "node:assert/strict";
import { RESTART_ENDED_MS, byShard, closeRedis, keySlot, redisClient, type RedisClient } from "../../src/state/client.ts";
import { Keys } from "../../src/state/keys.ts";
import { startTestRedis, stopAll, waitFor, type TestRedis } from "../helpers/stack.ts";

/** Ends a client the way ioredis 6 does when a reconnect is asked for while a connect is under way. */
async function endUnasked(client: RedisClient): Promise<void> {
  const connecting = client.connect();
  client.disconnect(true);
  await assert.rejects(connecting, /Connection is closed/);
  assert.equal(client.status, "end");
}

describe("redis clients (real redis-server)", function () {
  this.timeout(20000);
  let redis: TestRedis;
  const clients: RedisClient[] = [];

  before(async () => {
    redis = await startTestRedis();
  });
  after(async () => {
    for (const client of clients) closeRedis(client);
    await stopAll();
  });

  function client(): RedisClient {
    const c = redisClient({ url: redis.url }, "test", 1000);
    c.on("error", () => undefined);
    clients.push(c);
    return c;
  }

  it("connects again a client ioredis ended without being asked to", async () => {
    const c = client();
    await endUnasked(c);
    await waitFor("the client to be ready again", () => (c.status === "ready" ? true : undefined), 10000, 50);
    assert.equal(await c.ping(), "PONG");
  });

  it("leaves a client closed with closeRedis closed", async () => {
    const c = client();
    await c.connect();
    const ended = new Promise((resolve) => c.once("end", resolve));
    closeRedis(c);
    await ended;
    // past the delay after which an unasked end is undone
    await new Promise((resolve) => setTimeout(resolve, RESTART_ENDED_MS + 500));
    assert.equal(c.status, "end");
  });
});

describe("Redis Cluster slots", () => {
  it("hashes keys as Redis Cluster does (CRC16/XMODEM mod 16384, of the hash tag when there is one)", () => {
    // values from the Redis Cluster specification and CLUSTER KEYSLOT
    assert.equal(keySlot("123456789"), 0x31c3);
    assert.equal(keySlot("foo"), 12182);
    assert.equal(keySlot("{user1000}.following"), keySlot("user1000"));
    // an empty tag is no tag: the whole key is hashed
    assert.notEqual(keySlot("foo{}{bar}"), keySlot("bar"));
  });

  it("puts every key of a stream in one slot, and streams in many", () => {
    const keys = new Keys("baton:");
    const slots = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const id = `show-${i}`;
      const slot = keySlot(keys.meta(id));
      for (const key of [keys.timeline(id), keys.lease(id), keys.revoked(id)]) assert.equal(keySlot(key), slot);
      slots.add(slot);
    }
    assert.equal(slots.size, 20);
  });

  it("gives a single Redis one group, and none for nothing", () => {
    const c = redisClient({ url: "redis://127.0.0.1:1" }, "test", 1000);
    assert.deepEqual(byShard(c, ["a", "b", "c"], (k) => k), [["a", "b", "c"]]);
    assert.deepEqual(byShard(c, [], (k: string) => k), []);
    closeRedis(c);
  });
});
