// CTA-5004 client data as players send it (hls.js's query argument, dash.js's headers), and the player page's
// reports: what is read, what is ignored, and the metrics they feed (bounded labels only).
import assert from "node:assert/strict";
import { Metrics } from "../../src/core/metrics.ts";
import { ViewerExperience, readCmcd, readPlayerReport } from "../../src/delivery/cmcd.ts";

describe("CMCD", () => {
  it("reads hls.js's query argument: buffer starvation, startup, buffer length, bitrate, duration", () => {
    // what hls.js 1.x sends (keys sorted, strings quoted, booleans bare)
    const c = readCmcd('bl=2100,br=564,bs,cid="x",d=1000,mtp=15800,ot=v,sf=h,sid="a-b",su,tb=564', {});
    assert.deepEqual(c, { starved: true, startup: true, bufferMs: 2100, bitrateKbps: 564, durationMs: 1000 });
  });

  it("reads the CMCD-* headers (dash.js, Shaka, ExoPlayer in header mode)", () => {
    const c = readCmcd(undefined, { "cmcd-request": "bl=500", "cmcd-object": "br=800,d=2000", "cmcd-status": "bs", "cmcd-session": 'sid="s"' });
    assert.deepEqual(c, { starved: true, startup: false, bufferMs: 500, bitrateKbps: 800, durationMs: 2000 });
  });

  it("ignores what it cannot read, never throws: absent, oversized, bad numbers, odd keys", () => {
    assert.equal(readCmcd(undefined, {}), null);
    assert.equal(readCmcd("", {}), null);
    assert.equal(readCmcd(`bl=1,${"x".repeat(2000)}`, {}), null);
    assert.deepEqual(readCmcd("bl=-5,br=1e9,d=abc,BS,<script>", {}), { starved: false, startup: false, bufferMs: null, bitrateKbps: null, durationMs: null });
    assert.equal(readCmcd("d=3600000", {})?.durationMs ?? null, null, "no segment lasts an hour: it would inflate the watched time");
    assert.deepEqual(readCmcd(["bs", "su"], {})?.starved, true, "a repeated argument: the first");
  });

  it("the player page's reports: a stall, a startup time, an error by a bounded kind", () => {
    assert.deepEqual(readPlayerReport({ type: "stall" }), { type: "stall" });
    assert.deepEqual(readPlayerReport({ type: "startup", ms: 850 }), { type: "startup", ms: 850 });
    assert.equal(readPlayerReport({ type: "startup", ms: -1 }), null);
    assert.equal(readPlayerReport({ type: "startup", ms: "soon" }), null);
    assert.deepEqual(readPlayerReport({ type: "player_error", kind: "network" }), { type: "player_error", kind: "network" });
    assert.deepEqual(readPlayerReport({ type: "player_error", kind: "203.0.113.9" }), { type: "player_error", kind: "other" }, "no free text as a label");
    assert.equal(readPlayerReport({ type: "position" }), null);
  });

  it("counts stalls per source, watched seconds from segment durations, startup and errors", async () => {
    const metrics = new Metrics({ node: "t" });
    const x = new ViewerExperience(metrics);
    x.request(readCmcd("bs,d=2000,bl=1500", {})!, "segment", "s1");
    x.request(readCmcd("d=4000", {})!, "media", "s1");
    x.report({ type: "stall" });
    x.report({ type: "startup", ms: 1200 });
    x.report({ type: "player_error", kind: "media" });
    x.watched(3);
    const text = await metrics.registry.metrics();
    assert.match(text, /baton_viewer_stalls_total\{source="cmcd",node="t"\} 1/);
    assert.match(text, /baton_viewer_stalls_total\{source="player",node="t"\} 1/);
    assert.match(text, /baton_viewer_watched_seconds_total\{source="cmcd",node="t"\} 2\b/, "a playlist's d is not watched time");
    assert.match(text, /baton_viewer_watched_seconds_total\{source="player",node="t"\} 3\b/);
    assert.match(text, /baton_viewer_startup_seconds_count\{node="t"\} 1/);
    assert.match(text, /baton_viewer_errors_total\{kind="media",node="t"\} 1/);
    assert.match(text, /baton_viewer_buffer_seconds_count\{node="t"\} 1/);
  });

  it("one session's CMCD counts a stall at most every 2 s and no more watched time than the clock gave it", async () => {
    const metrics = new Metrics({ node: "t" });
    const x = new ViewerExperience(metrics);
    const value = async (name: string): Promise<number> => (await metrics.registry.getSingleMetric(name)!.get()).values.find((v) => v.labels.source === "cmcd")?.value ?? 0;
    // a hostile player: bs and the same 2-s segment's d on 100 requests in one second
    for (let i = 0; i < 100; i++) x.request(readCmcd("bs,d=2000", {})!, "segment", "greedy", 1_000_000 + i * 10);
    assert.equal(await value("baton_viewer_stalls_total"), 1);
    assert.equal(Math.round(await value("baton_viewer_watched_seconds_total")), 31, "the second that passed and what a player may fetch ahead, no more");
    // a minute on, a real player's pace (a 2-s segment every 2 s) counts in full, and a new stall counts
    for (let i = 0; i < 30; i++) x.request(readCmcd(i === 0 ? "bs,d=2000" : "d=2000", {})!, "segment", "greedy", 1_061_000 + i * 2000);
    assert.equal(await value("baton_viewer_stalls_total"), 2);
    assert.equal(Math.round(await value("baton_viewer_watched_seconds_total")), 91);
    // another session has its own budget
    x.request(readCmcd("bs,d=2000", {})!, "segment", "other", 1_061_000);
    assert.equal(await value("baton_viewer_stalls_total"), 3);
  });
});
