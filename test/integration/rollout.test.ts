// Staged rolling updates on a real local cluster (`baton start`: Redis, two nodes, HAProxy) with a live
// stream and simulated viewers: bad releases are refused or caught at the canary and rolled back with the
// other node untouched; a good release rolls through with no viewer error, moving the stream once, while
// hls.js in Chromium (the player page, whose reports feed the gates) plays it with no stall.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BrowserViewers, STALL_DETAILS } from "../../tools/chaos/browsers.ts";
import { ReconnectingPublisher } from "../../tools/chaos/publisher.ts";
import { SimulatedViewer, type ViewerReport } from "../../tools/chaos/viewer.ts";
import { makePublishToken } from "../../src/ingest/token.ts";
import { nodeCommand, startProcess, type Managed } from "../../tools/processes.ts";
import { makeBadRelease } from "../../tools/rollout/bad-releases.ts";
import { parseM3u8 } from "../helpers/hls.ts";
import { ADMIN, HOST, get, localClusterEnv, stopAll, tempDir, waitFor } from "../helpers/stack.ts";

interface NodeInfo {
  id: string;
  startedAt: number;
  state: string;
  httpUrl: string;
  release?: { commit: string; config: string };
}

describe("rolling updates to a release: canary, gates, rollback", function () {
  this.timeout(600000);
  let launcher: Managed;
  let env: Record<string, string>;
  let http: string;
  let publisher: ReconnectingPublisher;
  const stop = new AbortController();
  const viewers: Promise<ViewerReport>[] = [];
  const players: BrowserViewers[] = [];

  const nodes = async (): Promise<NodeInfo[]> => (JSON.parse((await get(`${http}/api/nodes`, ADMIN)).text) as { nodes: NodeInfo[] }).nodes;
  const owner = async (): Promise<string | undefined> =>
    (JSON.parse((await get(`${http}/api/streams`, ADMIN)).text) as { streams: { id: string; owner: string; state: string }[] }).streams.find((s) => s.id === "roll" && s.state === "live")?.owner;

  const baton = (args: string[], more: Record<string, string> = {}): Promise<{ code: number; out: string }> => {
    const [command, argv] = nodeCommand([...args, "--url", http]);
    return new Promise((resolve) =>
      execFile(command, argv, { env: { ...process.env, ...env, ...more }, encoding: "utf8", timeout: 300000 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code ?? 1) : 0, out: `${stdout}\n${stderr}` }),
      ),
    );
  };

  /** Both nodes ready, the stream live with an owner. */
  const settled = (): Promise<true> =>
    waitFor("both nodes ready and the stream live", async () => {
      const list = await nodes();
      return list.length === 2 && list.every((n) => n.state === "ready") && (await owner()) !== undefined ? true : undefined;
    }, 90000, 500);

  before(async () => {
    env = await localClusterEnv(2, {
      BATON_HLS_SEGMENTDURATION: "1",
      // admission counts streams, not this shared machine's CPU (which would decide whether the canary takes one)
      BATON_TRANSCODE_CPUTARGET: "0",
      BATON_ROLLOUT_CANARYSOAK: "12",
      BATON_ROLLOUT_STEPSOAK: "4",
      BATON_ROLLOUT_READYTIMEOUT: "30",
      BATON_ROLLOUT_GATEMINREQUESTS: "10",
    });
    http = `http://${HOST}:${env.BATON_HTTP_PORT}`;
    const [command, args] = nodeCommand(["start", "--nodes", "2"]);
    const output: string[] = [];
    launcher = startProcess("launcher", command, args, { env, onLine: (line) => output.push(line) });
    await waitFor("the cluster", () => (output.some((l) => /Push \(ffmpeg\):/.test(l)) ? true : undefined), 90000);
    const secret = readFileSync(join(env.BATON_STATE_DIR!, "secret"), "utf8").trim();
    publisher = new ReconnectingPublisher({ url: `rtmp://${HOST}:${env.BATON_RTMP_PORT}/live/roll?token=${makePublishToken(secret, "roll", 3600)}`, retryDelayMs: 300 });
    publisher.start();
    await waitFor("the stream", async () => {
      const r = await get(`${http}/live/roll/360p/index.m3u8`);
      return r.status === 200 && parseM3u8(r.text).segments.length >= 3 ? true : undefined;
    }, 60000, 500);
    // viewers pinned to each node (as a CDN's origin pulls are), so the canary serves viewers whichever it is;
    // through the balancer, viewers hash by stream to one node
    for (const [i, port] of [Number(env.BATON_HTTP_PORT) + 1, Number(env.BATON_HTTP_PORT) + 2].entries()) {
      for (let j = 0; j < 2; j++) viewers.push(new SimulatedViewer({ baseUrl: `http://${HOST}:${port}`, streamId: "roll", id: 100 + i * 10 + j, signal: stop.signal }).run());
    }
  });

  after(async () => {
    await Promise.all(players.map((p) => p.close()));
    stop.abort();
    await Promise.all(viewers);
    await publisher?.stop();
    if (launcher) {
      launcher.child.kill("SIGINT");
      await launcher.exited;
    }
    await stopAll();
  });

  /** A bad release: the command fails naming `gate`, the canary is back on the old release, the other node never restarted. */
  async function caughtAtCanary(args: string[], gate: RegExp, more: Record<string, string> = {}): Promise<string> {
    await settled();
    const before = await nodes();
    const result = await baton(["rolling-update", ...args], more);
    assert.notEqual(result.code, 0, result.out);
    assert.match(result.out, gate);
    assert.match(result.out, /rolled back node-\d to /, result.out);
    const canary = /canary (node-\d): watching|\[1\/2\] (node-\d): /.exec(result.out);
    const canaryId = canary?.[1] ?? canary?.[2];
    assert.ok(canaryId, result.out);
    await settled();
    const afterwards = await nodes();
    for (const n of before) {
      const now = afterwards.find((m) => m.id === n.id)!;
      if (n.id === canaryId) assert.ok(now.startedAt > n.startedAt, `${n.id}, the canary, was restarted (and back)`);
      else assert.equal(now.startedAt, n.startedAt, `${n.id} was never touched`);
      assert.deepEqual(now.release, n.release, `${n.id} runs the release it ran before`);
    }
    return result.out;
  }

  it("refuses a config that changes the segment duration of a live stream before touching any node", async () => {
    await settled();
    const before = await nodes();
    const result = await baton(["rolling-update", ...makeBadRelease("segment-duration", tempDir("release"))]);
    assert.equal(result.code, 1, result.out);
    assert.match(result.out, /segmentDuration 2 differs from the target duration of live stream\(s\) roll \(1 s\)/);
    assert.deepEqual((await nodes()).map((n) => n.startedAt), before.map((n) => n.startedAt));
  });

  it("rejects a config file that does not validate, naming the key", async () => {
    const file = join(tempDir("config"), "bad.json");
    writeFileSync(file, JSON.stringify({ transcode: { preset: "glacial" } }));
    const result = await baton(["rolling-update", "--config", file]);
    assert.equal(result.code, 1, result.out);
    assert.match(result.out, /transcode\.preset/);
  });

  it("catches a release whose segment requests fail at the canary, and rolls it back", async () => {
    const out = await caughtAtCanary(makeBadRelease("segments-fail", tempDir("release")), /gate errors failed: updated nodes \d+\.\d% \(\d+ of \d+\), not-updated nodes/);
    assert.match(out, /moving stream roll onto it|canary node-\d: watching/);
  });

  it("catches a release that crash-loops on start (it never comes back) and rolls it back", async () => {
    await caughtAtCanary(makeBadRelease("crash-loop", tempDir("release")), /gate node_back failed: updated nodes node-\d not ready 30 s after its restart/);
  });

  it("catches a release whose transcoder cannot keep up (it reads its input at half real time) at the canary, and rolls it back", async () => {
    // long enough for the moved stream's transcoder to be measured and, behind real time, step its preset down
    await caughtAtCanary(makeBadRelease("slow-transcoder", tempDir("release")), /gate transcoder_speed failed/, { BATON_ROLLOUT_CANARYSOAK: "24" });
  });

  it("rolls a good release through every node with no viewer error and no stall of a real player, moving the stream once; history lists every update", async () => {
    await settled();
    const before = await nodes();
    // a real player through the balancer, as a viewer on a phone watches
    const player = new BrowserViewers();
    players.push(player);
    await player.start(`${http}/watch/roll`, 1);
    const [startedAt] = await player.reports();
    const file = join(tempDir("config"), "good.json");
    writeFileSync(file, JSON.stringify({ sessions: { startsPerMinute: 600 } }));
    const watching = new AbortController();
    const balanced = Array.from({ length: 4 }, (_, id) => new SimulatedViewer({ baseUrl: http, streamId: "roll", id, signal: watching.signal }));
    const running = balanced.map((v) => v.run());
    await waitFor("viewers playing", () => (balanced.every((v) => v.report.segments >= 1) ? true : undefined), 30000);
    const owners: string[] = [(await owner())!];
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const now = await owner().catch(() => undefined);
        if (now && now !== owners[owners.length - 1]) owners.push(now);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();
    const result = await baton(["rolling-update", "--config", file]);
    polling = false;
    await poll;
    assert.equal(result.code, 0, result.out);
    assert.match(result.out, /canary passed its gates/);
    assert.match(result.out, /rolling update done/);
    const seen = balanced[0]!.report.segments;
    await waitFor("viewers still getting segments", () => (balanced[0]!.report.segments >= seen + 2 ? true : undefined), 30000);
    watching.abort();
    const reports = await Promise.all(running);
    assert.deepEqual(reports.flatMap((r) => Object.entries(r.errors)), [], "no viewer through the balancer saw an error");
    assert.equal(reports.reduce((n, r) => n + r.sequenceRegressions + r.uriChanges + r.endlists, 0), 0);
    assert.equal(owners.length - 1, 1, `the stream moved once (owners ${owners.join(" -> ")})`);
    const [played] = await player.reports();
    await player.close();
    assert.deepEqual(played!.errors.filter((e) => e.fatal || !STALL_DETAILS.has(e.details)), [], "the player saw no error");
    assert.equal(played!.stalls, 0, `the player stalled: ${JSON.stringify(played!.stallLog)}`);
    const advanced = played!.playedSeconds - startedAt!.playedSeconds;
    assert.ok(advanced > 10, `the player's playhead moved on through the update (${advanced.toFixed(1)} s)`);
    console.log(`      hls.js through the update: ${advanced.toFixed(1)} s played, ${played!.stalls} stalls, ${played!.handoffs} handoffs`);

    const afterwards = await nodes();
    const digests = new Set(afterwards.map((n) => n.release?.config));
    assert.equal(digests.size, 1, "every node runs the same release");
    assert.notEqual([...digests][0], before[0]!.release?.config, "and it is the new one");
    for (const n of before) assert.ok(afterwards.find((m) => m.id === n.id)!.startedAt > n.startedAt, `${n.id} was restarted`);

    const history = await baton(["history"]);
    assert.equal(history.code, 0, history.out);
    const lines = history.out.split("\n").filter((l) => /^\d{4}-/.test(l));
    assert.deepEqual(lines.map((l) => /update\s+(\w+)/.exec(l)?.[1]), ["done", "rolled_back", "rolled_back", "rolled_back"]);
    assert.match(history.out, /why: gate transcoder_speed failed/);
    assert.match(history.out, /why: gate node_back failed/);
    assert.match(history.out, /why: gate errors failed/);

    const rollback = await baton(["rollback"]);
    assert.equal(rollback.code, 0, rollback.out);
    assert.match(rollback.out, /every node already runs the last good release/);
  });
});
