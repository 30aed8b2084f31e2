// The Redis clients baton makes (redisClient) against a real redis-server: a client ioredis gave up on connects
// again by itself; one baton closed stays closed.
import assert from "node:assert/strict";
import type { Redis } from "ioredis";
import { RESTART_ENDED_MS, closeRedis, redisClient } from "../../src/state/store.ts";
import { startTestRedis, stopAll, waitFor, type TestRedis } from "../helpers/stack.ts";

/** Ends a client the way ioredis 6 does when a reconnect is asked for while a connect is under way. */
async function endUnasked(client: Redis): Promise<void> {
  const connecting = client.connect();
  client.disconnect(true);
  await assert.rejects(connecting, /Connection is closed/);
  assert.equal(client.status, "end");
}

describe("redis clients (real redis-server)", function () {
  this.timeout(20000);
  let redis: TestRedis;
  const clients: Redis[] = [];

  before(async () => {
    redis = await startTestRedis();
  });
  after(async () => {
    for (const client of clients) closeRedis(client);
    await stopAll();
  });

  function client(): Redis {
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
