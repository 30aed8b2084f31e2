// auth.requirePlaybackToken: a viewer needs a signed playback token to start a session (master playlist, POST
// /api/sessions); a bad, expired or other stream's token is refused; a good one plays; sessions started before
// keep working; tokens come from `baton token --play` and from POST /admin/playback-tokens. Off: as before.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { makePlaybackToken } from "../../src/delivery/playback-token.ts";
import { makePublishToken } from "../../src/ingest/token.ts";
import { nodeCommand } from "../../tools/processes.ts";
import { parseM3u8, sessionOf } from "../helpers/hls.ts";
import {
  ADMIN, HOST, SECRET, SESSION_SECRET, get, publish, startTestNode, startTestRedis, stopAll, tempDir, testPrefix, waitFor, type TestNode,
} from "../helpers/stack.ts";
import { auth, call, json, PLAYBACK_SECRET as secret } from "../helpers/viewer-api.ts";

const run = promisify(execFile);

describe("playback tokens", function () {
  this.timeout(120000);
  let guarded: TestNode;
  let open: TestNode;

  /** Master playlist, a media playlist and its newest segment, as an HLS client fetches them. */
  async function play(node: TestNode, masterPath: string): Promise<void> {
    const master = await get(node.http(masterPath));
    assert.equal(master.status, 200, master.text);
    const variant = parseM3u8(master.text).playlists![0]!.uri;
    assert.match(variant, /^s\/[^/]+\//, "the session rides in the path");
    assert.doesNotMatch(variant, /token=/, "the playback token is not passed on: the session is");
    const mediaUrl = node.http(`/live/show/${variant}`);
    const media = await get(mediaUrl);
    assert.equal(media.status, 200);
    const segment = parseM3u8(media.text).segments.at(-1)!;
    const bytes = await get(new URL(segment.uri, mediaUrl).href);
    assert.equal(bytes.status, 200);
    assert.ok(bytes.bytes.length > 1000);
  }

  before(async () => {
    const redis = await startTestRedis();
    const prefix = testPrefix();
    guarded = await startTestNode({ redisUrl: redis.url, prefix, id: "guarded", env: { BATON_AUTH_REQUIREPLAYBACKTOKEN: "true" } });
    open = await startTestNode({ redisUrl: redis.url, prefix, id: "open" });
    publish(guarded.rtmp("show"));
    publish(guarded.rtmp("other"));
    await waitFor("the streams", async () => {
      const [a, b] = [await get(open.http("/live/show/360p/index.m3u8")), await get(open.http("/live/other/360p/index.m3u8"))];
      return a.status === 200 && b.status === 200 && parseM3u8(a.text).segments.length >= 2 ? true : undefined;
    }, 40000);
  });
  after(stopAll);

  it("without a token, refuses to start a session with 401 and a clear error", async () => {
    for (const r of [await call(guarded.http("/live/show/index.m3u8")), await call(guarded.http("/api/sessions"), json({ streamId: "show" }))]) {
      assert.equal(r.status, 401, r.text);
      assert.equal((r.body as { error: string }).error, "PLAYBACK_TOKEN_REQUIRED");
      assert.match((r.body as { message: string }).message, /playback token/);
    }
  });

  it("refuses a bad, an expired, another stream's or a publish token with 403", async () => {
    const tokens = {
      BAD_PLAYBACK_TOKEN: [
        "12345.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        makePlaybackToken(secret, "other", 600).token,
        makePlaybackToken("another-secret-0123456789abcdef0123456789", "show", 600).token,
        makePublishToken(SECRET, "show", 600),
        makePublishToken(secret, "show", 600),
      ],
      EXPIRED_PLAYBACK_TOKEN: [makePlaybackToken(secret, "show", 60, Date.now() - 3600_000).token],
    };
    for (const [code, list] of Object.entries(tokens)) {
      for (const token of list) {
        for (const r of [
          await call(guarded.http(`/live/show/index.m3u8?token=${token}`)),
          await call(guarded.http("/api/sessions"), json({ streamId: "show", token })),
        ]) {
          assert.equal(r.status, 403, `${token}: ${r.text}`);
          assert.equal((r.body as { error: string }).error, code);
        }
      }
    }
  });

  it("plays with a good token: playlists and segments, through the master playlist or the API", async () => {
    const { token } = makePlaybackToken(secret, "show", 600);
    await play(guarded, `/live/show/index.m3u8?token=${token}`);
    const r = await call(guarded.http("/api/sessions"), json({ streamId: "show", token }));
    assert.equal(r.status, 201, r.text);
    await play(guarded, `/live/show/index.m3u8?session=${(r.body as { token: string }).token}`);
  });

  it("keeps a session started before working, token or not", async () => {
    const master = await get(open.http("/live/show/index.m3u8"));
    const session = sessionOf(master.text);
    await play(guarded, `/live/show/index.m3u8?session=${session}`);
    const view = await call(guarded.http(`/api/sessions/${session.split(".")[0]}`), { headers: auth(session) });
    assert.equal(view.status, 200, view.text);
  });

  it("makes tokens for a site's backend behind the admin token: POST /admin/playback-tokens", async () => {
    const ask = (body: unknown, headers: Record<string, string> = ADMIN) => call(guarded.http("/admin/playback-tokens"), json(body, headers));
    assert.equal((await ask({ streamId: "show" }, {})).status, 401);
    assert.equal((await ask({ streamId: "show" }, auth("not-the-admin-token-at-all-0123"))).status, 403);
    assert.equal((await ask({ streamId: "../x" })).status, 400);
    assert.equal((await ask({ streamId: "show", ttl: 0 })).status, 400);
    assert.equal((await ask({ streamId: "show", ttl: "60" })).status, 400);
    const before = Date.now();
    const r = await ask({ streamId: "show", ttl: 120 });
    assert.equal(r.status, 201, r.text);
    assert.match(r.headers.get("cache-control") ?? "", /^private/);
    const made = r.body as { token: string; expiresAt: string; url: string; playlistUrl: string };
    assert.ok(Math.abs(Date.parse(made.expiresAt) - (before + 120_000)) < 2000, made.expiresAt);
    assert.equal(made.url, `/watch/show?token=${made.token}`);
    assert.equal(made.playlistUrl, `/live/show/index.m3u8?token=${made.token}`);
    assert.equal((await get(guarded.http(made.url))).status, 200);
    await play(guarded, made.playlistUrl);
  });

  it("`baton token --play` prints a watch URL and a playlist URL that play", async () => {
    const [command, args] = nodeCommand(["token", "--play", "show"]);
    const env = {
      ...process.env, BATON_STATE_DIR: join(tempDir("cli"), "var"), BATON_SESSIONS_SECRET: SESSION_SECRET,
      BATON_NODE_PUBLICHOST: HOST, BATON_HTTP_PORT: String(guarded.httpPort), BATON_AUTH_REQUIREPLAYBACKTOKEN: "true",
    };
    const { stdout } = await run(command, args, { env, timeout: 30000 });
    const [watch, playlist] = stdout.trim().split("\n");
    const base = `http://${HOST}:${guarded.httpPort}`;
    assert.match(watch!, new RegExp(`^${base}/watch/show\\?token=\\d+\\.[A-Za-z0-9_-]{43}$`));
    assert.equal(playlist, `${base}/live/show/index.m3u8?token=${watch!.split("token=")[1]}`);
    assert.equal((await get(watch!)).status, 200);
    await play(guarded, playlist!.slice(base.length));
  });

  it("with the option off, needs no token", async () => {
    await play(open, "/live/show/index.m3u8");
    assert.equal((await call(open.http("/api/sessions"), json({ streamId: "show" }))).status, 201);
  });
});
