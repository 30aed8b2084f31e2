// Viewer sessions across two nodes on one Redis: created by the API or by a master playlist request, isolated
// from each other, positions written on one node read on another, inferred from segments, resumed with
// EXT-X-START, kept over a Redis restart, expiring after their TTL; what may be cached; the WebSocket channel.
import assert from "node:assert/strict";
import WebSocket from "ws";
import { makeSessionToken } from "../../src/delivery/session-token.ts";
import { MAX_SOCKETS_PER_SESSION } from "../../src/delivery/ws.ts";
import { parseM3u8, sessionOf, type ParsedPlaylist } from "../helpers/hls.ts";
import { get, publish, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestNode, type TestRedis, ADMIN } from "../helpers/stack.ts";
import { auth, call, createSession, getSession, json, putPosition, type View } from "../helpers/viewer-api.ts";

const wsUrl = (node: TestNode, token: string): string => node.http(`/ws?session=${token}`).replace("http", "ws");
const opened = (ws: WebSocket): Promise<void> => new Promise((resolve, reject) => (ws.once("open", () => resolve()), ws.once("error", reject)));
/** A media playlist's text but for a paused viewer's own EXT-X-START (and the moment: both read now). */
const withoutStart = (text: string): string => text.replace(/^#EXT-X-START:.*\n/m, "");
const closedWith = (ws: WebSocket): Promise<number> => new Promise((resolve) => ws.once("close", (code) => resolve(code)));

describe("viewer sessions", function () {
  this.timeout(120000);
  let redis: TestRedis;
  let a: TestNode;
  let b: TestNode;
  /** A node whose sessions live 3 s (sessions.ttl), on the same Redis. */
  let short: TestNode;
  let live: ParsedPlaylist;

  before(async () => {
    redis = await startTestRedis({ persistent: true });
    const prefix = testPrefix();
    // no DVR window: the playlist window (6 s) is what a position leaves here (dvr.test.ts pauses in a DVR window)
    const env = { BATON_HLS_DVRWINDOW: "0" };
    a = await startTestNode({ redisUrl: redis.url, prefix, id: "sess-a", env });
    b = await startTestNode({ redisUrl: redis.url, prefix, id: "sess-b", env });
    short = await startTestNode({ redisUrl: redis.url, prefix, id: "sess-ttl", env: { ...env, BATON_SESSIONS_TTL: "3" } });
    publish(a.rtmp("show"));
    publish(a.rtmp("other"));
    live = await waitFor("four segments of the show", async () => {
      const r = await get(b.http("/live/show/360p/index.m3u8"));
      const p = r.status === 200 ? parseM3u8(r.text) : null;
      return p && p.segments.length >= 4 ? p : undefined;
    });
    await waitFor("the other stream", async () => ((await get(b.http("/live/other/index.m3u8"))).status === 200 ? true : undefined));
  });
  after(stopAll);

  it("creates a session with an unguessable id and a signed token; refuses a bad stream id or body", async () => {
    const s = await createSession(a, "show");
    assert.match(s.id, /^[0-9a-f]{32}$/);
    assert.match(s.token, new RegExp(`^${s.id}\\.show\\.[A-Za-z0-9_-]{43}$`));
    assert.equal(s.streamId, "show");
    assert.equal((await call(a.http("/api/sessions"), json({ streamId: "../x" }))).status, 400);
    assert.equal((await call(a.http("/api/sessions"), { method: "POST", body: "{nope" })).status, 400);
    assert.equal((await call(a.http("/api/sessions"), { method: "POST", body: JSON.stringify({ streamId: "x".repeat(5000) }) })).status, 413);
    const unknown = await call(a.http("/api/sessions"), json({ streamId: "never-published" }));
    assert.equal(unknown.status, 404, "only for a stream that is live or recorded");
    assert.equal((unknown.body as { error: string }).error, "UNKNOWN_STREAM");
  });

  it("reads on one node the position written on another", async () => {
    const s = await createSession(a, "show");
    await putPosition(a, s, 12.5, true);
    const view = await getSession(b, s);
    assert.equal(view.position, 12.5);
    assert.equal(view.paused, true);
    assert.equal(view.source, "reported");
    assert.equal(view.node, "sess-a");
  });

  it("never shows or changes another viewer's session", async () => {
    const mine = await createSession(a, "show");
    const theirs = await createSession(b, "show");
    await putPosition(b, theirs, 30, true);
    const noToken = await call(a.http(`/api/sessions/${theirs.id}`));
    assert.equal(noToken.status, 401);
    const other = await call(a.http(`/api/sessions/${theirs.id}`), { headers: auth(mine.token) });
    assert.equal(other.status, 403);
    assert.doesNotMatch(other.text, /"position"/);
    const write = await call(a.http(`/api/sessions/${theirs.id}/position`), {
      method: "PUT", headers: auth(mine.token), body: JSON.stringify({ position: 1, paused: false }),
    });
    assert.equal(write.status, 403);
    assert.equal((await getSession(b, theirs)).position, 30, "unchanged");
    const forged = makeSessionToken("not-the-secret", theirs.id, "show");
    assert.equal((await call(a.http(`/api/sessions/${theirs.id}`), { headers: auth(forged) })).status, 403);
    assert.equal((await call(a.http(`/api/sessions/${theirs.id}?session=${forged}`))).status, 403);
    // a session of one stream opens no other stream's playlists or segments, in the path or the query
    const segment = live.segments[0]!.uri;
    for (const path of ["/live/other/index.m3u8", "/live/other/360p/index.m3u8", `/live/other/360p/${segment}`]) {
      assert.equal((await get(a.http(`${path}?session=${mine.token}`))).status, 403, path);
    }
    for (const path of [`/live/other/s/${mine.token}/360p/index.m3u8`, `/live/other/s/${mine.token}/360p/${segment}`, `/live/show/s/${forged}/360p/index.m3u8`]) {
      assert.equal((await get(a.http(path))).status, 403, path);
    }
  });

  it("starts a session on a master playlist request without one, and carries it in the path of every URI", async () => {
    const master = await get(b.http("/live/show/index.m3u8"));
    const token = sessionOf(master.text);
    const id = token.split(".")[0]!;
    assert.deepEqual(parseM3u8(master.text).playlists!.map((p) => p.uri), ["360p", "240p"].map((r) => `s/${token}/${r}/index.m3u8`));
    const media = await get(a.http(`/live/show/s/${token}/240p/index.m3u8`));
    assert.equal(media.status, 200);
    const parsed = parseM3u8(media.text);
    // relative segment URIs: fetched under the session's path; the text is every viewer's
    assert.ok(parsed.segments.length > 0 && parsed.segments.every((s) => /^\d+\.[0-9a-f]{12}\.ts$/.test(s.uri)));
    // (both read in one moment: a new segment between the two reads tries again)
    await waitFor("the session's text to be the session-free one", async () => {
      const [mine, everyone] = await Promise.all([get(a.http(`/live/show/s/${token}/240p/index.m3u8`)), get(a.http("/live/show/240p/index.m3u8"))]);
      return withoutStart(mine.text) === withoutStart(everyone.text) ? true : undefined;
    }, 10000);
    // the session is its token until first used: the API answers from the token, with nothing recorded yet
    const unused = await getSession(b, { id, token });
    assert.deepEqual([unused.streamId, unused.position, unused.rendition], ["show", null, null]);
    assert.equal((await get(a.http(`/live/show/s/${token}/240p/${parsed.segments[0]!.uri}`))).status, 200);
    const view = await waitFor("the rendition recorded by the first segment", async () => {
      const v = await getSession(b, { id, token });
      return v.rendition === "240p" ? v : undefined;
    });
    assert.deepEqual([view.streamId, view.source], ["show", "inferred"]);
  });

  it("sends whatever has a session in its URL private, what has none public; API answers private", async () => {
    const s = await createSession(a, "show");
    const cacheControl = async (url: string, init?: RequestInit): Promise<string> => (await call(url, init)).headers.get("cache-control") ?? "";
    const segment = live.segments[live.segments.length - 1]!.uri;
    assert.match(await cacheControl(a.http("/live/show/index.m3u8")), /^private, max-age=1$/, "a new session's master playlist");
    assert.match(await cacheControl(a.http(`/live/show/index.m3u8?session=${s.token}`)), /^private, max-age=1$/);
    assert.match(await cacheControl(a.http(`/live/show/s/${s.token}/360p/index.m3u8`)), /^private, max-age=1$/);
    assert.match(await cacheControl(a.http(`/live/show/s/${s.token}/360p/${segment}`)), /^private, max-age=31536000, immutable$/);
    assert.match(await cacheControl(a.http("/live/show/360p/index.m3u8")), /^public, max-age=1$/, "no session: one text for everyone");
    assert.match(await cacheControl(a.http(`/live/show/360p/${segment}`)), /^public, max-age=31536000, immutable$/);
    for (const path of ["/live/show/360p/index.m3u8", `/live/show/s/${s.token}/360p/index.m3u8`, "/live/show/index.m3u8"]) {
      const r = await get(a.http(path), { "Accept-Encoding": "gzip" });
      assert.equal(r.headers.get("vary"), "Accept-Encoding", path);
    }
    // the HLS routes write their heads from precomputed objects: CORS is in each, errors included
    for (const path of [`/live/show/s/${s.token}/360p/index.m3u8`, `/live/show/s/${s.token}/360p/${segment}`, "/live/show/360p/1.000000000000.ts", "/live/nope/index.m3u8"]) {
      const r = await get(a.http(path));
      assert.equal(r.headers.get("access-control-allow-origin"), "*", `${path}: ${r.status}`);
    }
    // an earlier release's ?session= URI leads to the session's path, privately
    const legacy = await fetch(a.http(`/live/show/360p/index.m3u8?session=${s.token}`), { redirect: "manual" });
    assert.equal(legacy.status, 302);
    assert.equal(legacy.headers.get("location"), `/live/show/s/${s.token}/360p/index.m3u8`);
    assert.match(legacy.headers.get("cache-control") ?? "", /^private/);
    assert.match(await cacheControl(a.http("/api/sessions"), json({ streamId: "show" })), /^private, no-store$/);
    assert.match(await cacheControl(a.http(`/api/sessions/${s.id}`), { headers: auth(s.token) }), /^private, no-store$/);
    const put = { method: "PUT", headers: { ...auth(s.token), "Content-Type": "application/json" }, body: JSON.stringify({ position: 1, paused: false }) };
    assert.match(await cacheControl(a.http(`/api/sessions/${s.id}/position`), put), /^private, no-store$/);
  });

  it("infers the position from fetched segments, and lets an explicit report win", async () => {
    const s = await createSession(a, "show");
    const media = parseM3u8((await get(a.http(`/live/show/s/${s.token}/360p/index.m3u8`))).text);
    const segment = media.segments[media.segments.length - 2]!;
    assert.equal((await get(a.http(`/live/show/s/${s.token}/360p/${segment.uri}`))).status, 200);
    const inferred = await waitFor("an inferred position", async () => {
      const v = await getSession(b, s);
      return v.source === "inferred" ? v : undefined;
    });
    assert.equal(inferred.programDateTime, new Date(segment.dateTimeString!).toISOString());
    await putPosition(a, s, inferred.position! - 1, false);
    const last = media.segments[media.segments.length - 1]!;
    await get(a.http(`/live/show/s/${s.token}/360p/${last.uri}`));
    const after = await getSession(b, s);
    assert.equal(after.source, "reported");
    assert.equal(after.position, inferred.position! - 1);
  });

  it("points a paused viewer's playlists at the paused position, and says when it left the window", async () => {
    const s = await createSession(a, "show");
    const view = await getSession(a, s);
    const media = parseM3u8((await get(b.http(`/live/show/s/${s.token}/360p/index.m3u8`))).text);
    const target = media.segments[1]!;
    const position = (Date.parse(target.dateTimeString!) - view.streamStartedAt!) / 1000 + 0.5;
    await putPosition(a, s, position, true);
    // a player coming back loads the master playlist, then the media playlist (on another node here)
    const load = async (node: TestNode): Promise<string> => {
      const master = await get(node.http(`/live/show/index.m3u8?session=${s.token}`));
      assert.equal(master.status, 200);
      return (await get(node.http(`/live/show/${parseM3u8(master.text).playlists!.find((p) => p.uri.includes("/360p/"))!.uri}`))).text;
    };
    const text = await load(b);
    assert.match(text, /#EXT-X-START/);
    const parsed = parseM3u8(text);
    const offset = Number(/TIME-OFFSET=([\d.]+),PRECISE=YES/.exec(text)![1]);
    const startOfTarget = parsed.segments.findIndex((x) => x.uri === target.uri);
    const expected = parsed.segments.slice(0, startOfTarget).reduce((sum, x) => sum + x.duration, 0) + 0.5;
    assert.ok(startOfTarget >= 0);
    assert.ok(Math.abs(offset - expected) < 0.01, `${offset} vs ${expected}`);
    assert.deepEqual((await getSession(b, s)).resume, { position, inWindow: true });

    // a position from the stream's first second, once that second has left the window
    await waitFor("the first segments out of the window", async () => (parseM3u8((await get(a.http("/live/show/360p/index.m3u8"))).text).mediaSequence > 2 ? true : undefined), 30000);
    await putPosition(a, s, 0.5, true);
    const gone = await getSession(b, s);
    assert.equal(gone.resume?.inWindow, false);
    assert.match(gone.resume?.reason ?? "", /oldest available/);
    assert.match(await load(b), /#EXT-X-START:TIME-OFFSET=0\.000/);
    await putPosition(a, s, position, false);
    assert.doesNotMatch((await get(a.http(`/live/show/s/${s.token}/360p/index.m3u8`))).text, /EXT-X-START/);
  });

  it("a paused viewer's media playlist starts at its position on a node whose copy of the session is from before the pause", async () => {
    const s = await createSession(a, "show");
    const view = await getSession(a, s);
    const media = parseM3u8((await get(a.http("/live/show/360p/index.m3u8"))).text);
    const position = (Date.parse(media.segments[1]!.dateTimeString!) - view.streamStartedAt!) / 1000 + 0.5;
    await putPosition(a, s, position, false);
    // b serves the playing viewer, and keeps its copy of the session (not paused) for its playlists
    assert.doesNotMatch((await get(b.http(`/live/show/s/${s.token}/360p/index.m3u8`))).text, /EXT-X-START/);
    await putPosition(a, s, position, true);
    // the reload: the master playlist on a (which reads the session afresh), the media playlist on b
    const master = parseM3u8((await get(a.http(`/live/show/index.m3u8?session=${s.token}`))).text);
    const uri = master.playlists!.find((p) => p.uri.includes("/360p/"))!.uri;
    assert.match(uri, /^s\/[^/]+\/360p\/index\.m3u8\?resume=\d{13}$/, "the master playlist carries the resume point");
    assert.match((await get(b.http(`/live/show/${uri}`))).text, /#EXT-X-START:TIME-OFFSET=[\d.]+,PRECISE=YES/);
    await putPosition(a, s, position, false);
  });

  it("takes positions over the WebSocket, and closes on bad or oversized messages", async () => {
    const s = await createSession(a, "show");
    const ws = new WebSocket(b.http(`/ws?session=${s.token}`).replace("http", "ws"));
    const hello = await new Promise<{ type: string; sessionId: string }>((resolve, reject) => {
      ws.once("message", (data) => resolve(JSON.parse(String(data)) as { type: string; sessionId: string }));
      ws.once("error", reject);
    });
    assert.deepEqual(hello, { type: "hello", sessionId: s.id, streamId: "show" });
    ws.send(JSON.stringify({ type: "position", position: 42.25, paused: true }));
    await waitFor("the reported position", async () => ((await getSession(a, s)).position === 42.25 ? true : undefined));
    ws.send("not json");
    assert.equal(await closedWith(ws), 1008);

    // bounded like the HTTP API: a position past 1e9 s is refused, and the stored one stays
    const far = new WebSocket(wsUrl(b, s.token));
    await opened(far);
    far.send(JSON.stringify({ type: "position", position: 1e9 + 1, paused: false }));
    assert.equal(await closedWith(far), 1008);
    assert.equal((await getSession(a, s)).position, 42.25);

    const big = new WebSocket(b.http(`/ws?session=${s.token}`).replace("http", "ws"));
    await new Promise((resolve) => big.once("open", resolve));
    big.send("x".repeat(5000));
    assert.equal(await new Promise<number>((resolve) => big.once("close", (c) => resolve(c))), 1009);

    const refused = new WebSocket(b.http("/ws").replace("http", "ws"));
    const status = await new Promise<number>((resolve) => refused.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0)));
    assert.equal(status, 401);
    assert.equal(b.proc.child.exitCode, null);
  });

  it("rate-limits position reports per connection, before parsing them", async () => {
    const s = await createSession(a, "show");
    const ws = new WebSocket(wsUrl(b, s.token));
    await opened(ws);
    const dropped = async (): Promise<number> => {
      const line = (await get(b.http("/metrics"), ADMIN)).text.split("\n").find((l) => l.startsWith("baton_ws_reports_dropped_total"));
      return Number(line?.split(" ").pop() ?? 0);
    };
    const before = await dropped();
    for (let i = 1; i <= 40; i++) ws.send(JSON.stringify({ type: "position", position: i, paused: false }));
    // over the rate, a message is dropped unread: this one would close the socket if it were parsed
    ws.send("not json");
    await waitFor("dropped reports counted", async () => ((await dropped()) - before >= 31 ? true : undefined));
    assert.equal(ws.readyState, WebSocket.OPEN);
    const stored = (await waitFor("the first burst stored", async () => (await getSession(a, s)).position ?? undefined))!;
    assert.ok(stored <= 10, `only the first burst is taken, stored ${stored}`);
    ws.close();
  });

  it(`holds at most ${MAX_SOCKETS_PER_SESSION} sockets per session on a node; one more is refused with 429`, async () => {
    const s = await createSession(a, "show");
    const sockets = Array.from({ length: MAX_SOCKETS_PER_SESSION }, () => new WebSocket(wsUrl(b, s.token)));
    await Promise.all(sockets.map(opened));
    const refused = new WebSocket(wsUrl(b, s.token));
    const status = await new Promise<number>((resolve) => refused.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0)));
    assert.equal(status, 429);
    const other = await createSession(a, "show");
    const elsewhere = new WebSocket(wsUrl(b, other.token));
    await opened(elsewhere);
    // a socket closed gives its place back
    sockets[0]!.close();
    await closedWith(sockets[0]!);
    const again = await waitFor("a place for the session again", async () => {
      const ws = new WebSocket(wsUrl(b, s.token));
      return new Promise<WebSocket | undefined>((resolve) => {
        ws.once("open", () => resolve(ws));
        ws.once("unexpected-response", () => resolve(undefined));
      });
    });
    for (const ws of [...sockets, elsewhere, again]) ws.close();
    assert.equal(b.proc.child.exitCode, null);
  });

  it("keeps sessions over a Redis restart", async () => {
    const s = await createSession(a, "show");
    await putPosition(a, s, 77, true);
    await redis.stop();
    await redis.start();
    const view = await waitFor("the session after the restart", async () => {
      const r = await call(b.http(`/api/sessions/${s.id}`), { headers: auth(s.token) });
      return r.status === 200 ? (r.body as View) : undefined;
    });
    assert.equal(view.position, 77);
    assert.equal(view.paused, true);
  });

  it("expires a session after its TTL without activity; a late write does not bring it back", async () => {
    const s = await createSession(short, "show");
    const started = Date.now();
    await putPosition(short, s, 1, true);
    assert.equal((await getSession(short, s)).position, 1);
    await waitFor("the session to expire", async () => {
      const r = await call(short.http(`/api/sessions/${s.id}`), { headers: auth(s.token) });
      return r.status === 404 ? true : undefined;
    }, 10000);
    assert.ok(Date.now() - started >= 2500, "not before its TTL");
    // an expired session is not brought back by a late write
    await putPosition(short, s, 2, false, 404);
  });

  it("lets a token that was never used expire: past its start window it is no session", async () => {
    // sessions.ttl 3 s: a token may wait 1.5 s for its first use
    const s = await createSession(short, "show");
    await waitFor("the start window to pass", () => (Date.now() - s.createdAt > 2000 ? true : undefined));
    assert.equal((await call(short.http(`/api/sessions/${s.id}`), { headers: auth(s.token) })).status, 404);
    await putPosition(short, s, 5, true, 404);
    // its playlists start another session
    const master = await get(short.http(`/live/show/index.m3u8?session=${s.token}`));
    assert.equal(master.status, 200);
    assert.doesNotMatch(master.text, new RegExp(s.id));
  });
});
