// The player page in a real browser (Debian's chromium driven by playwright-core) through HAProxy in front of
// two nodes: the video plays (reloading its playlists with gzip-compressed delta updates), pausing stores the
// position, a reload resumes within one segment of it. On a node that requires playback tokens, the page
// passes on the one in its URL, and says so when there is none.
import assert from "node:assert/strict";
import { chromium, type Browser, type Page } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "../../tools/chaos/browsers.ts";
import { makePlaybackToken } from "../../src/delivery/playback-token.ts";
import {
  get, nodeMetric, publish, startTestHaproxy, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestHaproxy, type TestNode,
} from "../helpers/stack.ts";
import { parseM3u8 } from "../helpers/hls.ts";
import { PLAYBACK_SECRET } from "../helpers/viewer-api.ts";

function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30000 });
}

interface PlayerState {
  sessionId: string | null;
  token: string | null;
  playingDate: number | null;
  reports: number;
  wsConnects: number;
  errors: { type: string; details: string; fatal: boolean }[];
}

const playerState = (page: Page): Promise<PlayerState> =>
  page.evaluate(() => {
    const s = (window as unknown as { batonPlayer: PlayerState & { hls?: { playingDate: Date | null } } }).batonPlayer;
    const date = s.hls?.playingDate;
    return { sessionId: s.sessionId, token: s.token, playingDate: date ? date.getTime() : null, reports: s.reports, wsConnects: s.wsConnects, errors: s.errors };
  });

const currentTime = (page: Page): Promise<number> => page.evaluate(() => document.querySelector("video")!.currentTime);

describe("player page in a real browser", function () {
  this.timeout(120000);
  let lb: TestHaproxy;
  let guarded: TestNode;
  let nodes: TestNode[] = [];
  let browser: Browser | null = null;

  before(async () => {
    const redis = await startTestRedis();
    const prefix = testPrefix();
    // a 20-segment playlist window, so a paused position stays in it through the reload even without the
    // DVR window (on by default)
    const env = { BATON_HLS_PLAYLISTWINDOW: "20" };
    nodes = [await startTestNode({ redisUrl: redis.url, prefix, env }), await startTestNode({ redisUrl: redis.url, prefix, env })];
    lb = await startTestHaproxy(nodes);
    guarded = await startTestNode({ redisUrl: redis.url, prefix, env: { ...env, BATON_AUTH_REQUIREPLAYBACKTOKEN: "true" } });
    publish(nodes[0]!.rtmp("tv"));
    await waitFor("the stream", async () => {
      const r = await get(lb.http("/live/tv/360p/index.m3u8"));
      return r.status === 200 && (r.text.match(/#EXTINF/g) ?? []).length >= 3 ? true : undefined;
    }, 30000);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await stopAll();
  });

  it("plays, stores the paused position, and resumes there after a reload", async () => {
    const page = await browser!.newPage();
    // what hls.js fetched: its media playlist reloads (delta updates, gzip) and its segments' paths
    const playlists: { url: string; status: number; encoding: string }[] = [];
    const segments: string[] = [];
    page.on("response", (r) => {
      const path = new URL(r.url()).pathname;
      if (/\/360p\/index\.m3u8$|\/240p\/index\.m3u8$/.test(path)) playlists.push({ url: r.url(), status: r.status(), encoding: r.headers()["content-encoding"] ?? "" });
      if (path.endsWith(".ts")) segments.push(path);
    });
    await page.goto(lb.http("/watch/tv"));
    await page.waitForFunction(() => document.querySelector("video")!.currentTime > 2, null, { timeout: 30000 });
    const t1 = await currentTime(page);
    await page.waitForFunction((t) => document.querySelector("video")!.currentTime > t + 1, t1, { timeout: 15000 });
    const playing = await playerState(page);
    assert.ok(playing.sessionId && playing.wsConnects >= 1);
    // hls.js reloads with delta updates (the 20-segment window is past CAN-SKIP-UNTIL, six 1 s segments), gzip
    // compressed, and plays on through them; every segment it fetched named its session in the path
    const deltas = (): number => playlists.filter((p) => new URL(p.url).searchParams.get("_HLS_skip") === "YES" && p.status === 200).length;
    await waitFor("delta-update reloads", () => (deltas() >= 2 ? true : undefined), 20000);
    const t2 = await currentTime(page);
    await page.waitForFunction((t) => document.querySelector("video")!.currentTime > t + 2, t2, { timeout: 15000 });
    assert.ok(playlists.every((p) => p.status === 200 && p.encoding === "gzip"), JSON.stringify(playlists.slice(0, 3)));
    assert.ok(segments.length > 0 && segments.every((path) => path.startsWith(`/live/tv/s/${playing.token!}/`)), segments[0]);

    await page.evaluate(() => document.querySelector("video")!.pause());
    const paused = await playerState(page);
    const token = paused.token!;
    const stored = await waitFor("the paused position in the session", async () => {
      const r = await fetch(lb.http(`/api/sessions/${paused.sessionId}`), { headers: { Authorization: `Bearer ${token}` } });
      const view = (await r.json()) as { paused: boolean; programDateTime: string | null; position: number | null };
      return view.paused && view.programDateTime ? view : undefined;
    });
    assert.ok(Math.abs(Date.parse(stored.programDateTime!) - paused.playingDate!) < 1000, "the stored position is where the video paused");
    assert.match(await page.textContent("#status") ?? "", /Paused at/);

    // let live move on well past the paused point, so a player starting at the live edge would be seconds off
    await waitFor("live to move 5 s past the pause", async () => {
      const text = (await get(lb.http("/live/tv/360p/index.m3u8"))).text;
      const dates = [...text.matchAll(/PROGRAM-DATE-TIME:(\S+)/g)].map((m) => Date.parse(m[1]!));
      return dates[dates.length - 1]! > Date.parse(stored.programDateTime!) + 5000 ? true : undefined;
    });
    await page.reload();
    await page.waitForFunction(() => {
      const s = (window as unknown as { batonPlayer: { hls?: { playingDate: Date | null } } }).batonPlayer;
      return document.querySelector("video")!.currentTime > 0 && !!s.hls?.playingDate;
    }, null, { timeout: 30000 });
    const resumed = await playerState(page);
    assert.equal(resumed.sessionId, paused.sessionId, "the reload kept the session (local storage)");
    const drift = (resumed.playingDate! - Date.parse(stored.programDateTime!)) / 1000;
    assert.ok(Math.abs(drift) <= 1, `resumed ${drift.toFixed(2)} s from the paused position (one segment is 1 s)`);
    assert.deepEqual(resumed.errors.filter((e) => e.fatal), []);
    await page.close();
  });

  it("reports what its viewer experiences: hls.js sends CMCD with each request, the page its startup time", async () => {
    const page = await browser!.newPage();
    const cmcd: string[] = [];
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (url.pathname.endsWith(".ts")) cmcd.push(url.searchParams.get("CMCD") ?? "");
    });
    await page.goto(lb.http("/watch/tv"));
    await page.waitForFunction(() => document.querySelector("video")!.currentTime > 2, null, { timeout: 30000 });
    assert.ok(cmcd.length > 0 && cmcd.every((q) => /(^|,)d=\d+/.test(q) && /(^|,)br=\d+/.test(q)), `segment requests' CMCD: ${cmcd.slice(0, 2).join(" | ")}`);
    const sum = async (name: string, label = ""): Promise<number> => (await Promise.all(nodes.map((n) => nodeMetric(n, name, label)))).reduce((a, b) => a + b, 0);
    await waitFor("watched seconds from CMCD", async () => ((await sum("baton_viewer_watched_seconds_total", 'source="cmcd"')) > 0 ? true : undefined));
    await waitFor("the page's startup report", async () => ((await sum("baton_viewer_startup_seconds_count")) >= 1 ? true : undefined));
    await page.close();
  });

  it("starts a fresh viewer at the live edge of a playlist that lists the whole DVR window", async () => {
    const listed = await waitFor("a DVR playlist far longer than the live edge", async () => {
      const p = parseM3u8((await get(lb.http("/live/tv/360p/index.m3u8"))).text);
      return p.segments.length >= 30 ? p : undefined;
    }, 60000, 500);
    // the player's playlist is this one or a newer one: its live edge is at least this one's
    const edge = Date.parse(listed.segments[listed.segments.length - 4]!.dateTimeString!);
    const page = await browser!.newPage();
    await page.goto(lb.http("/watch/tv"));
    await page.waitForFunction(() => {
      const s = (window as unknown as { batonPlayer: { hls?: { playingDate: Date | null } } }).batonPlayer;
      return document.querySelector("video")!.currentTime > 0 && !!s.hls?.playingDate;
    }, null, { timeout: 30000 });
    const started = (await playerState(page)).playingDate!;
    const first = Date.parse(listed.segments[0]!.dateTimeString!);
    assert.ok(started >= edge, `started ${((edge - started) / 1000).toFixed(1)} s before the live edge's last segments, ${((started - first) / 1000).toFixed(0)} s into the window`);
    await page.close();
  });

  it("passes the page's playback token on to start its session; without one, says that one is needed", async () => {
    const page = await browser!.newPage();
    await page.goto(guarded.http(`/watch/tv?token=${makePlaybackToken(PLAYBACK_SECRET, "tv", 600).token}`));
    await page.waitForFunction(() => document.querySelector("video")!.currentTime > 1, null, { timeout: 30000 });
    const state = await playerState(page);
    assert.ok(state.sessionId);
    assert.deepEqual(state.errors.filter((e) => e.fatal), []);
    await page.evaluate(() => localStorage.clear());
    await page.goto(guarded.http("/watch/tv"));
    await page.waitForFunction(() => /playback token/.test(document.querySelector("#status")!.textContent ?? ""), null, { timeout: 15000 });
    await page.close();
  });
});
