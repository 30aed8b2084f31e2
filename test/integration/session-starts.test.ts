// What starting sessions costs: thousands of POST /api/sessions and session-less master playlist requests leave
// no Redis key (a session is its token until used) and, from one client, are rate-limited (429, Retry-After);
// a session that is used gets its record; new sessions start while Redis is away and are recorded after.
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { parseM3u8, sessionOf } from "../helpers/hls.ts";
import { ADMIN, get, pool, publish, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestNode, type TestRedis } from "../helpers/stack.ts";
import { auth, call, getSession, json, putPosition } from "../helpers/viewer-api.ts";

describe("session starts", function () {
  this.timeout(120000);
  let redis: TestRedis;
  let client: Redis;
  let node: TestNode;
  let prefix: string;

  const sessionKeys = async (): Promise<string[]> => client.keys(`${prefix}session:*`);
  /** Every key but the live stream's own (its timeline and segments grow as it plays). */
  // besides the stream's own keys and the sweeper's lease (housekeeping that comes and goes with its 3-s TTL)
  const otherKeys = async (): Promise<string[]> =>
    (await client.keys("*")).filter((k) => !k.startsWith(`${prefix}{show}:`) && k !== `${prefix}sweeper`).sort();
  /** A session start from the client `address` (the node believes X-Forwarded-For from loopback, its balancer). */
  const start = async (i: number, address: string): Promise<{ status: number; token: string | null; retryAfter: string | null }> => {
    const headers = { "X-Forwarded-For": address };
    const r = i % 2
      ? await call(node.http("/api/sessions"), json({ streamId: "show" }, headers))
      : await call(node.http("/live/show/index.m3u8"), { headers });
    const token = r.status === 200 ? (/^s\/([^/\s]+)\//m.exec(r.text)?.[1] ?? null) : ((r.body as { token?: string } | null)?.token ?? null);
    return { status: r.status, token, retryAfter: r.headers.get("retry-after") };
  };

  before(async () => {
    redis = await startTestRedis({ persistent: true });
    prefix = testPrefix();
    node = await startTestNode({ redisUrl: redis.url, prefix });
    client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    publish(node.rtmp("show"));
    await waitFor("the stream", async () => ((await get(node.http("/live/show/360p/index.m3u8"))).status === 200 ? true : undefined), 30000);
  });
  after(async () => {
    client.disconnect();
    await stopAll();
  });

  it("4,000 session starts from 2,000 clients leave no Redis key; a session that is used gets its record", async () => {
    const keysBefore = await otherKeys();
    const tokens: string[] = [];
    await pool(4000, 40, async (i) => {
      const r = await start(i, `10.1.${(i >> 9) & 255}.${(i >> 1) & 255}`);
      assert.ok(r.status === 200 || r.status === 201, `start ${i}: ${r.status}`);
      tokens.push(r.token!);
    });
    assert.equal(new Set(tokens).size, 4000, "each start a session of its own");
    assert.deepEqual(await sessionKeys(), []);
    assert.deepEqual(await otherKeys(), keysBefore, "no key of any kind");

    // used: a segment fetched with one, a position reported with another
    const [fetched, reported] = [tokens[0]!, tokens[1]!];
    const media = parseM3u8((await get(node.http(`/live/show/s/${fetched}/360p/index.m3u8`))).text);
    assert.equal((await get(node.http(`/live/show/s/${fetched}/360p/${media.segments[0]!.uri}`))).status, 200);
    await putPosition(node, { id: reported.split(".")[0]!, token: reported }, 3, true);
    const keys = await waitFor("two records", async () => ((await sessionKeys()).length === 2 ? sessionKeys() : undefined));
    assert.deepEqual(keys.sort(), [fetched, reported].map((t) => `${prefix}session:${t.split(".")[0]}`).sort());
    const record = await client.hgetall(`${prefix}session:${fetched.split(".")[0]}`);
    assert.equal(record.streamId, "show");
    assert.ok((await client.pttl(`${prefix}session:${fetched.split(".")[0]}`)) > 86000_000, "then the TTL of a used session");
  });

  it("from one client: 60 starts in a burst, then 429 with Retry-After, and still no key", async () => {
    const keysBefore = (await sessionKeys()).length;
    const answers: { status: number; retryAfter: string | null }[] = [];
    await pool(3000, 40, async (i) => void answers.push(await start(i, "198.51.100.7")));
    const started = answers.filter((a) => a.status === 200 || a.status === 201).length;
    const limited = answers.filter((a) => a.status === 429);
    // sessions.startsPerMinute is 60: the burst, plus one a second while the requests went on
    assert.ok(started >= 60 && started < 120, `${started} started`);
    assert.equal(started + limited.length, 3000, "every other answer a 429");
    assert.ok(limited.every((a) => Number(a.retryAfter) >= 1), "each 429 says when to retry");
    assert.equal((await sessionKeys()).length, keysBefore);
    // another client is not held back by that one
    assert.equal((await start(0, "198.51.100.8")).status, 200);
    const metrics = (await get(node.http("/metrics"), ADMIN)).text;
    const refused = /baton_session_starts_refused_total\{[^}]*reason="rate_limited"[^}]*\} (\d+)/.exec(metrics);
    assert.equal(Number(refused?.[1]), limited.length, "counted by reason");
  });

  it("starts sessions while Redis is away, and records them once it is back", async () => {
    await redis.stop();
    const master = await get(node.http("/live/show/index.m3u8"));
    assert.equal(master.status, 200, "the timeline this node knows serves, and the session is its token");
    const token = sessionOf(master.text);
    const s = { id: token.split(".")[0]!, token };
    const queued = await call(node.http(`/api/sessions/${s.id}/position`), {
      method: "PUT", headers: { ...auth(token), "Content-Type": "application/json" }, body: JSON.stringify({ position: 9, paused: true }),
    });
    assert.equal(queued.status, 202, queued.text);
    await redis.start();
    const view = await waitFor("the queued first report recorded", async () => {
      const v = await getSession(node, s).catch(() => undefined);
      return v?.position === 9 ? v : undefined;
    });
    assert.equal(view.paused, true);
    assert.equal(view.source, "reported");
  });
});
