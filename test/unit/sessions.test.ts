// Viewer sessions without Redis: session and playback tokens, the per-address limiter, who may start a session,
// and the store's write queue (one entry and one promise per session, whatever the number of writes).
import assert from "node:assert/strict";
import { AdmissionError } from "../../src/core/errors.ts";
import type { IncomingMessage } from "node:http";
import type { Redis } from "ioredis";
import { ClientAddresses } from "../../src/http/client-address.ts";
import { HttpError } from "../../src/http/errors.ts";
import { checkPlaybackToken, makePlaybackToken, playbackUrls } from "../../src/delivery/playback-token.ts";
import { clientKey } from "../../src/core/address.ts";
import { AddressLimiter } from "../../src/delivery/rate-limit.ts";
import { issuedAt, makeSessionToken, newSessionId, readSessionToken } from "../../src/delivery/session-token.ts";
import { readReport, ViewerSessions } from "../../src/delivery/sessions.ts";
import { checkPublishToken, makePublishToken } from "../../src/ingest/token.ts";
import { Keys } from "../../src/state/keys.ts";
import { SessionStore, startWindowMs, type Session } from "../../src/state/sessions.ts";

const SECRET = "unit-session-secret-0123456789abcdef";
const NOW = Date.UTC(2024, 0, 1, 0, 0, 0);

/** The HttpError `action` throws; fails if it throws nothing or something else. */
function httpError(action: () => unknown): HttpError {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof HttpError, `expected an HttpError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected an HttpError, got none");
}

describe("session tokens", () => {
  it("an id is the issue millisecond (12 hex digits) and 80 random bits; the token names session and stream", () => {
    const id = newSessionId(NOW + 999);
    assert.match(id, /^[0-9a-f]{32}$/);
    assert.equal(issuedAt(id), NOW + 999);
    assert.notEqual(newSessionId(NOW).slice(12), newSessionId(NOW).slice(12));
    const token = makeSessionToken(SECRET, id, "show");
    assert.match(token, new RegExp(`^${id}\\.show\\.[A-Za-z0-9_-]{43}$`));
    assert.deepEqual(readSessionToken(SECRET, token), { sessionId: id, streamId: "show" });
  });

  it("refuses a token of another secret, one whose issue time or stream was changed, and malformed text", () => {
    const id = newSessionId(NOW);
    const token = makeSessionToken(SECRET, id, "show");
    assert.equal(readSessionToken("another-secret-0123456789abcdef", token), null);
    const later = (Number.parseInt(id.slice(0, 12), 16) + 3600_000).toString(16) + id.slice(12);
    assert.equal(readSessionToken(SECRET, token.replace(id, later)), null, "the issue time is signed");
    assert.equal(readSessionToken(SECRET, token.replace(".show.", ".other.")), null);
    for (const bad of ["", "x", `${token}.x`, token.toUpperCase(), 42, null]) assert.equal(readSessionToken(SECRET, bad), null);
  });
});

describe("playback tokens", () => {
  it("has the shape <expiry>.<signature>; a good one passes until its expiry", () => {
    const { token, expiresAt } = makePlaybackToken(SECRET, "show", 600, NOW);
    assert.match(token, /^\d+\.[A-Za-z0-9_-]{43}$/);
    assert.equal(expiresAt, NOW + 600_000);
    assert.doesNotThrow(() => checkPlaybackToken(SECRET, "show", token, NOW + 600_000));
    assert.deepEqual(playbackUrls("http://h:1", "show", token), {
      url: `http://h:1/watch/show?token=${token}`, playlistUrl: `http://h:1/live/show/index.m3u8?token=${token}`,
    });
  });

  it("answers 401 without a token, 403 for another stream's, a tampered, a foreign or an expired one", () => {
    const { token } = makePlaybackToken(SECRET, "show", 600, NOW);
    for (const missing of [undefined, null, ""]) assert.equal(httpError(() => checkPlaybackToken(SECRET, "show", missing, NOW)).status, 401);
    assert.equal(httpError(() => checkPlaybackToken(SECRET, "show", undefined, NOW)).code, "PLAYBACK_TOKEN_REQUIRED");
    const refused = (t: unknown, stream = "show", now = NOW): string => {
      const e = httpError(() => checkPlaybackToken(SECRET, stream, t, now));
      assert.equal(e.status, 403);
      return e.code;
    };
    assert.equal(refused(token, "other"), "BAD_PLAYBACK_TOKEN");
    assert.equal(refused(token.replace(/\.(.)/, (_m, c: string) => `.${c === "A" ? "B" : "A"}`)), "BAD_PLAYBACK_TOKEN");
    assert.equal(refused(makePlaybackToken("another-secret-0123456789abcdef", "show", 600, NOW).token), "BAD_PLAYBACK_TOKEN");
    const [expiry, signature] = token.split(".");
    assert.equal(refused(`${Number(expiry) + 86400}.${signature}`), "BAD_PLAYBACK_TOKEN", "the expiry is signed");
    for (const bad of ["abc", "1.x", `${token}x`, `${token}.${token}`]) assert.equal(refused(bad), "BAD_PLAYBACK_TOKEN");
    assert.equal(refused(token, "show", NOW + 601_000), "EXPIRED_PLAYBACK_TOKEN");
  });

  it("is never a publish token, nor a publish token a playback token, even under one secret", () => {
    const play = makePlaybackToken(SECRET, "show", 600).token;
    const publish = makePublishToken(SECRET, "show", 600);
    assert.equal(httpError(() => checkPlaybackToken(SECRET, "show", publish)).code, "BAD_PLAYBACK_TOKEN");
    assert.throws(() => checkPublishToken(SECRET, "show", play), (error: unknown) => error instanceof AdmissionError && error.reason === "bad_token");
    // nor with a publish token's shape: the signature covers what the token is for
    const [expiry, signature] = play.split(".");
    assert.throws(() => checkPublishToken(SECRET, "show", `${Number(expiry) - 600}.${expiry}.${signature}`), /does not match/);
  });
});

describe("per-address limiter", () => {
  it("gives a burst of perMinute, then says how many seconds to wait; refills at perMinute a minute", () => {
    const limiter = new AddressLimiter(6);
    for (let i = 0; i < 6; i++) assert.equal(limiter.take("192.0.2.1", NOW), 0);
    assert.equal(limiter.take("192.0.2.1", NOW), 10, "one every 10 s");
    assert.equal(limiter.take("192.0.2.2", NOW), 0, "another address has its own bucket");
    assert.equal(limiter.take("192.0.2.1", NOW + 5000), 5);
    assert.equal(limiter.take("192.0.2.1", NOW + 10000), 0);
    assert.ok(limiter.take("192.0.2.1", NOW + 10000) > 0);
  });

  it("counts an IPv6 client as its /64", () => {
    assert.equal(clientKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
    assert.equal(clientKey("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
    assert.equal(clientKey("2001:db8::1"), "2001:db8:0:0::/64");
    assert.equal(clientKey("::1"), "0:0:0:0::/64");
    assert.equal(clientKey("64:ff9b::192.0.2.1"), "64:ff9b:0:0::/64");
    assert.equal(clientKey("fe80::1%eth0"), "fe80:0:0:0::/64");
    assert.equal(clientKey("192.0.2.1"), "192.0.2.1");
    const limiter = new AddressLimiter(2);
    assert.equal(limiter.take("2001:db8:1:2::1", NOW), 0);
    assert.equal(limiter.take("2001:db8:1:2::2", NOW), 0);
    assert.ok(limiter.take("2001:db8:1:2:dead:beef::3", NOW) > 0, "a new address in the same /64 is the same client");
    assert.equal(limiter.take("2001:db8:1:3::1", NOW), 0);
  });

  it("keeps at most maxAddresses however many addresses appear, and forgets full buckets first", () => {
    const limiter = new AddressLimiter(2, 1000);
    for (let i = 0; i < 100000; i++) limiter.take(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, NOW);
    assert.ok(limiter.size <= 1000, `${limiter.size} buckets`);
    // a limited address survives a flood of new ones once theirs refilled; the refilled ones are what goes
    const small = new AddressLimiter(1, 8);
    small.take("192.0.2.1", NOW);
    for (let i = 0; i < 7; i++) small.take(`198.51.100.${i}`, NOW - 60000);
    small.take("203.0.113.1", NOW);
    assert.ok(small.take("192.0.2.1", NOW) > 0, "still limited");
  });
});

describe("who may start a session", () => {
  const store = { connected: true, get: () => Promise.resolve(null) } as unknown as SessionStore;
  const request = (address: string): IncomingMessage => ({ socket: { remoteAddress: address }, headers: {} }) as unknown as IncomingMessage;
  const sessions = (o: { required?: boolean; perMinute?: number; ttlSec?: number } = {}): ViewerSessions =>
    new ViewerSessions({
      store, secret: SECRET, nodeId: "n1", ttlSec: o.ttlSec ?? 86400, playback: { required: o.required ?? false, secret: "play-secret" },
      startsPerMinute: o.perMinute ?? 60, addresses: new ClientAddresses([]),
    });

  it("starts sessions with a token alone, and answers 429 with Retry-After past the address's rate", () => {
    const s = sessions({ perMinute: 3 });
    for (let i = 0; i < 3; i++) {
      const { session, token } = s.start(request("192.0.2.7"), "show");
      assert.equal(s.check(token, "show")?.sessionId, session.id);
      assert.equal(session.position, null);
    }
    const limited = httpError(() => s.start(request("192.0.2.7"), "show"));
    assert.equal(limited.status, 429);
    assert.equal(limited.code, "TOO_MANY_SESSIONS");
    assert.equal(limited.headers["Retry-After"], "20");
    assert.doesNotThrow(() => s.start(request("192.0.2.8"), "show"));
  });

  it("asks for a playback token only when required", () => {
    assert.doesNotThrow(() => sessions().authorize("show", null));
    const s = sessions({ required: true });
    assert.equal(httpError(() => s.authorize("show", null)).status, 401);
    assert.equal(httpError(() => s.authorize("show", makePlaybackToken("play-secret", "other", 60).token)).status, 403);
    assert.doesNotThrow(() => s.authorize("show", makePlaybackToken("play-secret", "show", 60).token));
  });

  it("a session without a record is one while its token may still be used, then no more", async () => {
    const s = sessions({ ttlSec: 86400 });
    const { token } = s.start(request("192.0.2.9"), "show");
    const named = s.check(token)!;
    assert.equal(((await s.view(named)) as Session).streamId, "show");
    assert.equal(await s.loading(named), true);
    const old = newSessionId(Date.now() - startWindowMs(86400) - 2000);
    const stale = s.check(makeSessionToken(SECRET, old, "show"))!;
    assert.equal(await s.view(stale), null);
    assert.equal(await s.loading(stale), false);
  });

  it("bounds a reported position like the API: 0 to 1e9 seconds, and a paused flag", () => {
    assert.deepEqual(readReport(12.5, true), { position: 12.5, paused: true });
    assert.deepEqual(readReport(1e9, false), { position: 1e9, paused: false });
    for (const [position, paused] of [[1e9 + 1, false], [-1, false], [Infinity, false], [Number.NaN, false], ["1", false], [1, "true"], [1, undefined]]) {
      assert.equal(readReport(position, paused), null, `${String(position)} ${String(paused)}`);
    }
  });

  it("lets a token wait ten minutes for its first use, and at most half the TTL", () => {
    assert.equal(startWindowMs(86400), 600_000);
    assert.equal(startWindowMs(60), 30_000);
  });
});

describe("session write queue", () => {
  /** A Redis stand-in: its status, and a pipeline whose exec fails while `failing` and records each script call. */
  function fakeRedis(status: string) {
    const calls: unknown[][] = [];
    const state = { status, failing: false, calls };
    const pipeline = () =>
      new Proxy({}, {
        get: (_target, name) => (name === "exec"
          ? () => (state.failing ? Promise.reject(new Error("connection lost")) : Promise.resolve(calls.map(() => [null, 1])))
          : (...args: unknown[]) => calls.push(args)),
      });
    return { state, redis: { get status() { return state.status; }, pipeline } as unknown as Redis };
  }

  it("keeps one entry and one promise per session, however many writes it gathers while Redis is away", async () => {
    const { redis } = fakeRedis("reconnecting");
    const store = new SessionStore(redis, new Keys("u:"), { ttlSec: 60, flushIntervalMs: 1000 });
    const id = newSessionId();
    const first = store.update(id, { report: { position: 0, pdt: null, paused: false } });
    for (let i = 1; i < 60000; i++) assert.equal(store.update(id, { report: { position: i, pdt: null, paused: false } }), first);
    await store.flush();
    let settled = false;
    void first.then(() => (settled = true));
    await store.close();
    assert.equal(settled, true, "close settles what was waiting");
  });

  it("puts a failed batch back under what came since: the newer report wins, older facts stay, both callers settle", async () => {
    const { state, redis } = fakeRedis("ready");
    const store = new SessionStore(redis, new Keys("u:"), { ttlSec: 60, flushIntervalMs: 1000 });
    const id = newSessionId();
    const origin = { streamId: "show", issuedAt: issuedAt(id) };
    const older = store.update(id, { rendition: "360p", report: { position: 1, pdt: null, paused: true } }, origin);
    state.failing = true;
    const failed = store.flush();
    const newer = store.update(id, { report: { position: 2, pdt: null, paused: false } }, origin);
    await failed;
    state.failing = false;
    state.calls.length = 0;
    await store.flush();
    await Promise.all([older, newer]);
    assert.equal(state.calls.length, 1, "one write for the session");
    const args = state.calls[0]!;
    // key, ttl, now, rendition, node, reported?, position, pdt, paused, ..., stream to create with, issued at
    assert.deepEqual([args[3], args[5], args[6], args[8]], ["360p", "1", 2, "0"]);
    assert.deepEqual([args[13], args[14]], ["show", origin.issuedAt]);
  });

  it("asks to create the record only with a report or an inferred position, never for a playlist request", async () => {
    const { state, redis } = fakeRedis("ready");
    const store = new SessionStore(redis, new Keys("u:"), { ttlSec: 60, flushIntervalMs: 1000 });
    const [a, b] = [newSessionId(), newSessionId()];
    void store.update(a, { rendition: "360p" }, { streamId: "show", issuedAt: issuedAt(a) });
    void store.update(b, { inferred: { position: 3, pdt: 5 } }, { streamId: "show", issuedAt: issuedAt(b) });
    await store.flush();
    assert.deepEqual(state.calls.map((c) => c[13]), ["", "show"]);
  });
});
