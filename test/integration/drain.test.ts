// Drain and handoff on three nodes, Redis and HAProxy, with a live stream whose publisher reconnects like OBS
// and 20 simulated viewers polling through HAProxy: drain the owner, then a node with only viewers, then
// SIGKILL one. Plus the agent's answers, undrain, the drain deadline, and SIGTERM.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { ReconnectingPublisher } from "../../tools/chaos/publisher.ts";
import { SimulatedViewer, type ViewerReport } from "../../tools/chaos/viewer.ts";
import { makePublishToken } from "../../src/ingest/token.ts";
import { parseM3u8 } from "../helpers/hls.ts";
import {
  ADMIN_TOKEN, HOST, SECRET, get, startTestHaproxy, startTestNode, startTestRedis, stopAll, testPrefix, waitFor,
  type TestHaproxy, type TestNode, ADMIN,
} from "../helpers/stack.ts";

/** The agent's answer to one backend, as HAProxy asks (agent-send), or to a caller that sends nothing. */
function agent(port: number, backend: "rtmp" | "http" | null = null): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: HOST, port });
    if (backend) socket.on("connect", () => socket.write(`${backend}\n`));
    let text = "";
    socket.on("data", (d) => (text += d.toString()));
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
  });
}

async function admin(url: string, method = "POST", body: unknown = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(url, {
    method, headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: method === "GET" ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10000),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

interface StreamInfo {
  id: string;
  owner: string;
  epoch: number;
  state: string;
}

async function streamInfo(lb: TestHaproxy, id: string): Promise<StreamInfo | undefined> {
  const r = await get(lb.http("/api/streams"), ADMIN);
  return (JSON.parse(r.text) as { streams: StreamInfo[] }).streams.find((s) => s.id === id);
}

async function nodeState(lb: TestHaproxy, id: string): Promise<string | undefined> {
  const r = await get(lb.http("/api/nodes"), ADMIN);
  return (JSON.parse(r.text) as { nodes: { id: string; state: string }[] }).nodes.find((n) => n.id === id)?.state;
}

function total(reports: ViewerReport[], pick: (r: ViewerReport) => number): number {
  return reports.reduce((sum, r) => sum + pick(r), 0);
}

describe("drain and handoff", function () {
  this.timeout(240000);
  let nodes: TestNode[];
  let lb: TestHaproxy;
  let publisher: ReconnectingPublisher;

  before(async () => {
    const redis = await startTestRedis({ persistent: true });
    const prefix = testPrefix();
    nodes = [];
    // production-shaped 2-s segments: the default hls.js buffer (three segments) must ride out the moves
    const env = { BATON_HLS_SEGMENTDURATION: "2" };
    for (const id of ["d1", "d2", "d3"]) nodes.push(await startTestNode({ redisUrl: redis.url, prefix, id, env }));
    lb = await startTestHaproxy(nodes);
    publisher = new ReconnectingPublisher({ url: lb.rtmp("show"), retryDelayMs: 300 });
    publisher.start();
    // viewers join a stream that has been live for a while (a player starts three segments behind live)
    await waitFor("four segments through HAProxy", async () => {
      const r = await get(lb.http("/live/show/360p/index.m3u8"));
      return r.status === 200 && parseM3u8(r.text).segments.length >= 4 ? true : undefined;
    }, 40000);
  });
  after(async () => {
    await publisher?.stop();
    await stopAll();
  });

  it("answers HAProxy's agent check: spare capacity to the publishers' backend, full weight to the viewers'", async () => {
    for (const n of nodes) assert.match(await agent(n.agentPort, "rtmp"), /^up ready \d{1,3}%\n$/);
    const owner = (await streamInfo(lb, "show"))!.owner;
    const ownerNode = nodes.find((n) => n.id === owner)!;
    assert.equal(await agent(ownerNode.agentPort, "rtmp"), "up ready 75%\n", "one stream of a capacity of four");
    // the viewers' hash ring must not move with publishers
    assert.equal(await agent(ownerNode.agentPort, "http"), "up ready 100%\n");
    assert.equal(await agent(ownerNode.agentPort), "up ready 100%\n", "a caller that sends nothing is answered as for viewers");
  });

  it("refuses the admin API without the admin token", async () => {
    assert.equal((await fetch(lb.http("/admin/status"))).status, 401);
    assert.equal((await fetch(lb.http("/admin/status"), { headers: { Authorization: "Bearer wrong" } })).status, 403);
  });

  it("moves viewers and the publisher off a draining owner, then a viewer-only node, with no error seen by viewers", async () => {
    const stop = new AbortController();
    const viewers = Array.from({ length: 20 }, (_, id) => new SimulatedViewer({ baseUrl: lb.http(""), streamId: "show", id, reportEveryMs: 2000, signal: stop.signal }));
    const running = viewers.map((v) => v.run());
    await waitFor("every viewer playing", () => (viewers.every((v) => v.report.segments >= 2) ? true : undefined), 30000);

    const before = (await streamInfo(lb, "show"))!;
    const owner = nodes.find((n) => n.id === before.owner)!;
    const drainAt = Date.now();
    const answer = await admin(lb.http(`/admin/nodes/${owner.id}/drain`));
    assert.equal(answer.status, 202);
    assert.match(String(answer.body.state), /draining|drained/);
    assert.equal((await get(owner.http("/readyz"))).status, 503);
    assert.match(await agent(owner.agentPort), /^(drain|maint)\n$/);
    await waitFor("the owner drained", async () => ((await nodeState(lb, owner.id)) === "drained" ? true : undefined), 30000);
    assert.equal(await agent(owner.agentPort), "maint\n");
    const moved = await waitFor("the stream on another node", async () => {
      const s = await streamInfo(lb, "show");
      return s && s.owner !== owner.id && s.state === "live" ? s : undefined;
    }, 30000);
    assert.ok(moved.epoch > before.epoch);
    const playlist = parseM3u8((await get(lb.http("/live/show/360p/index.m3u8"))).text);
    await waitFor("the new owner's segments after a discontinuity", async () => {
      const p = parseM3u8((await get(lb.http("/live/show/360p/index.m3u8"))).text);
      return p.segments.some((s) => s.discontinuity) ? true : undefined;
    }, 30000);
    assert.ok(playlist.mediaSequence >= 0);
    const status = await admin(owner.http("/admin/status"), "GET");
    const lastDrain = status.body.lastDrain as { publishersMoved: number; forced: boolean; durationMs: number };
    assert.equal(lastDrain.publishersMoved, 1);
    assert.equal(lastDrain.forced, false);
    process.stderr.write(`      owner drain took ${lastDrain.durationMs} ms (requested ${Date.now() - drainAt} ms ago)\n`);

    // a node with only viewers
    const viewerOnly = nodes.find((n) => n.id !== owner.id && n.id !== moved.owner)!;
    await admin(lb.http(`/admin/nodes/${owner.id}/undrain`));
    await waitFor("the first node ready again", async () => ((await nodeState(lb, owner.id)) === "ready" ? true : undefined));
    assert.equal((await admin(lb.http(`/admin/nodes/${viewerOnly.id}/drain`))).status, 202);
    await waitFor("the viewer-only node drained", async () => ((await nodeState(lb, viewerOnly.id)) === "drained" ? true : undefined), 30000);
    await admin(lb.http(`/admin/nodes/${viewerOnly.id}/undrain`));
    await waitFor("ready again", async () => ((await nodeState(lb, viewerOnly.id)) === "ready" ? true : undefined));
    // keep watching a little past the drains: late effects count too
    const seen = viewers[0]!.report.segments;
    await waitFor("three more segments", () => (viewers[0]!.report.segments >= seen + 3 ? true : undefined), 20000);

    stop.abort();
    const reports = await Promise.all(running);
    const errors = reports.flatMap((r) => Object.entries(r.errors));
    assert.deepEqual(errors, [], "no viewer saw a non-200 answer");
    assert.equal(total(reports, (r) => r.sequenceRegressions), 0);
    assert.equal(total(reports, (r) => r.uriChanges), 0);
    assert.equal(total(reports, (r) => r.endlists), 0);
    for (const [i, v] of viewers.entries()) {
      const held = await v.sessionPosition();
      assert.notEqual(held, "lost", `viewer ${i} lost its session`);
      assert.equal(held, reports[i]!.lastReported, `viewer ${i}'s position was kept`);
    }
    const stalls = total(reports, (r) => r.stalls);
    assert.equal(stalls, 0, "no viewer stalled: the encoder reconnected within the buffer");
    process.stderr.write(`      ${reports.length} viewers: ${total(reports, (r) => r.requests)} requests, ${stalls} stalls, ${total(reports, (r) => r.stalledMs)} ms stalled\n`);
  });

  it("survives a SIGKILLed owner: HAProxy retries, the publisher reconnects elsewhere, and the test reports what viewers saw", async () => {
    const stop = new AbortController();
    const failures: string[] = [];
    const viewers = Array.from({ length: 20 }, (_, id) => new SimulatedViewer({
      baseUrl: lb.http(""), streamId: "show", id, signal: stop.signal, onError: (status, url) => failures.push(`${status} ${url.replace(/\?.*/, "")}`),
    }));
    const running = viewers.map((v) => v.run());
    await waitFor("every viewer playing", () => (viewers.every((v) => v.report.segments >= 2) ? true : undefined), 30000);
    const before = (await streamInfo(lb, "show"))!;
    const victim = nodes.find((n) => n.id === before.owner)!;
    victim.proc.child.kill("SIGKILL");
    const after = await waitFor("the stream taken by a surviving node", async () => {
      const s = await streamInfo(lb, "show").catch(() => undefined);
      return s && s.owner !== victim.id && s.epoch > before.epoch ? s : undefined;
    }, 30000);
    const seen = viewers[0]!.report.segments;
    await waitFor("viewers getting new segments", () => (viewers[0]!.report.segments >= seen + 3 ? true : undefined), 30000);
    stop.abort();
    const reports = await Promise.all(running);
    assert.equal(total(reports, (r) => r.sequenceRegressions), 0);
    assert.equal(total(reports, (r) => r.uriChanges), 0);
    assert.notEqual(after.owner, victim.id);
    process.stderr.write(`      after SIGKILL of ${victim.id}: ${failures.length} errors HAProxy could not retry${failures.length ? `: ${[...new Set(failures)].join(", ")}` : ""}\n`);
  });
});

describe("drain: deadline and SIGTERM", function () {
  this.timeout(60000);
  after(stopAll);

  it("finishes a drain at its deadline even with a request that never ends", async () => {
    const redis = await startTestRedis();
    const node = await startTestNode({ redisUrl: redis.url, prefix: testPrefix(), env: { BATON_DRAIN_DEADLINE: "2" } });
    // a request whose body never finishes keeps one request in flight
    const stuck = connect({ host: HOST, port: node.httpPort });
    await new Promise((resolve) => stuck.once("connect", resolve));
    stuck.write("POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"stre");
    stuck.on("error", () => undefined);
    const started = Date.now();
    assert.equal((await admin(node.http("/admin/drain"))).status, 202);
    await node.waitForLog(/drain deadline passed/, 10000);
    await node.waitForLog(/drained durationMs=\d+ .*forced=true/, 10000);
    assert.ok(Date.now() - started >= 1900, "not before the deadline");
    assert.equal((await admin(node.http("/admin/status"), "GET")).body.state, "drained");
    assert.equal((await admin(node.http("/admin/undrain"))).body.state, "ready");
    assert.equal((await get(node.http("/readyz"))).status, 200);
    stuck.destroy();
  });

  it("drains on SIGTERM, hands its publisher over, and exits 0", async () => {
    const redis = await startTestRedis();
    const prefix = testPrefix();
    const [a, b] = [await startTestNode({ redisUrl: redis.url, prefix, id: "t1" }), await startTestNode({ redisUrl: redis.url, prefix, id: "t2" })];
    const token = makePublishToken(SECRET, "term", 600);
    const pub = new ReconnectingPublisher({ url: `rtmp://${HOST}:${a.rtmpPort}/live/term?token=${token}`, retryDelayMs: 200 });
    pub.start();
    try {
      await waitFor("segments on t1", async () => {
        const r = await get(a.http("/live/term/360p/index.m3u8"));
        return r.status === 200 && parseM3u8(r.text).segments.length >= 2 ? true : undefined;
      }, 30000);
      // once t1 drops it, the encoder reconnects to t2 (standing in for the balancer's choice)
      pub.retarget(`rtmp://${HOST}:${b.rtmpPort}/live/term?token=${token}`);
      a.proc.child.kill("SIGTERM");
      const exit = await a.proc.exited;
      assert.equal(exit.code, 0);
      await a.waitForLog(/drained/);
      await b.waitForLog(/publish accepted stream=term/, 20000);
      await waitFor("the timeline continued on t2 after a discontinuity", async () => {
        const p = parseM3u8((await get(b.http("/live/term/360p/index.m3u8"))).text);
        return p.segments.some((s) => s.discontinuity) && !p.endList ? true : undefined;
      }, 20000);
    } finally {
      await pub.stop();
    }
  });
});
