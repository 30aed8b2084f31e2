// Redundant ingest on the real stack: three nodes behind HAProxy, one redis-server, two real ffmpeg encoders
// pushing the same stream (the second with ?role=backup), reconnecting as OBS does. The backup lands on
// another node as a hot standby; killing the primary encoder, freezing the active node and SIGKILLing it
// each continue the timeline from the standby: the sequence numbers run on, and the program date-time moves
// on by no more than one segment across the switch. A returning input becomes the standby (no flapping back),
// and a frozen owner that wakes is fenced off.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import type { NodeRecord } from "../../src/core/model.ts";
import { status } from "../../tools/admin-cli.ts";
import { ReconnectingPublisher } from "../../tools/chaos/publisher.ts";
import { parseM3u8 } from "../helpers/hls.ts";
import {
  ADMIN, ADMIN_TOKEN, get, nodeMetric, publish, startTestHaproxy, startTestNode, startTestRedis, stopAll, testPrefix, waitFor,
  type TestHaproxy, type TestNode,
} from "../helpers/stack.ts";

const STREAM = "redundant";
/** The test nodes' segment duration (test/helpers/stack.ts), in ms: the most the switch may move the timeline's date-time. */
const SEGMENT_MS = 1000;

interface Input {
  node: TestNode;
  role: string;
  input: string;
  /** A standby's: whether its media is fresh enough to take over. */
  ready?: boolean;
}

interface Listed {
  seq: number;
  uriSeq: number;
  pdt: number;
  durationMs: number;
  disc: boolean;
}

describe("redundant ingest: a hot standby continues the timeline", function () {
  this.timeout(400000);
  let nodes: TestNode[];
  let lb: TestHaproxy;
  const publishers: ReconnectingPublisher[] = [];
  /** The encoder of each role running now. */
  const encoders = new Map<string, ReconnectingPublisher>();
  const down = new Set<TestNode>();

  function encoder(role: "primary" | "backup"): ReconnectingPublisher {
    const url = role === "backup" ? `${lb.rtmp(STREAM)}&role=backup` : lb.rtmp(STREAM);
    const p = new ReconnectingPublisher({ url, retryDelayMs: 500 });
    publishers.push(p);
    encoders.set(role, p);
    p.start();
    return p;
  }

  /** Where the stream's inputs are, from each running node's /admin/status. */
  async function inputs(): Promise<Input[]> {
    const out: Input[] = [];
    for (const node of nodes.filter((n) => !down.has(n))) {
      const status = JSON.parse((await get(node.http("/admin/status"), ADMIN)).text) as { publishers: { stream: string; role: string; input: string; ready?: boolean }[] };
      for (const p of status.publishers) if (p.stream === STREAM) out.push({ node, role: p.role, input: p.input, ready: p.ready });
    }
    return out;
  }

  /**
   * Waits for the stream's active input and a standby of `role` ready to take over (its media fresh: a standby
   * that just joined warms up first, and one that cannot take over loses the stream to whichever input has media).
   */
  async function standbyIs(role: string, what: string): Promise<{ active: Input; standby: Input }> {
    return waitFor(what, async () => {
      const all = await inputs();
      const active = all.find((i) => i.input === "active");
      const standby = all.find((i) => i.input === "standby" && i.role === role && i.ready === true);
      if (!active || !standby || all.length !== 2) return undefined;
      // and its registry record says so (what the active owner reads when its input leaves)
      const records = JSON.parse((await get(active.node.http("/api/nodes"), ADMIN)).text) as { nodes: NodeRecord[] };
      return records.nodes.find((n) => n.id === standby.node.id)?.load.inputs?.[STREAM]?.ready === true ? { active, standby } : undefined;
    }, 90000, 250);
  }

  async function listed(via: TestNode): Promise<Listed[]> {
    const r = await get(via.http(`/live/${STREAM}/360p/index.m3u8`));
    if (r.status !== 200) throw new Error(`playlist ${r.status}`);
    const p = parseM3u8(r.text);
    return p.segments.map((s, i) => ({
      seq: p.mediaSequence + i,
      uriSeq: Number(/(\d+)\.[0-9a-f]{12}\.ts/.exec(s.uri)?.[1]),
      pdt: Date.parse(s.dateTimeString ?? ""),
      durationMs: s.duration * 1000,
      disc: s.discontinuity === true,
    }));
  }

  /** The newest listed sequence number, once something is listed. */
  const newest = (via: TestNode): Promise<number> =>
    waitFor("a listed segment", async () => (await listed(via)).at(-1)?.seq, 60000, 250);

  const streamInfo = async (via: TestNode): Promise<{ owner: string; epoch: number }> => {
    const body = JSON.parse((await get(via.http("/api/streams"), ADMIN)).text) as { streams: { id: string; owner: string; epoch: number }[] };
    const info = body.streams.find((s) => s.id === STREAM);
    if (!info) throw new Error("stream not listed");
    return info;
  };

  /**
   * Waits for `after` more segments past the newest discontinuity beyond `fromSeq`, then checks the switch: every
   * sequence number listed once, in order, each URI naming its own, and the date-time moving on across the
   * discontinuity by the segment's duration give or take one segment. Returns the gap (ms, negative: overlap).
   */
  async function continuedAfter(via: TestNode, fromSeq: number, after = 3): Promise<number> {
    const segments = await waitFor("segments from the standby after a discontinuity", async () => {
      const s = await listed(via);
      const disc = s.findIndex((x) => x.disc && x.seq > fromSeq);
      return disc > 0 && s.length - disc >= after ? s : undefined;
    }, 90000, 250);
    for (const s of segments) assert.equal(s.uriSeq, s.seq, "each URI names its own sequence number");
    const disc = segments.findIndex((x) => x.disc && x.seq > fromSeq);
    const [before, first] = [segments[disc - 1]!, segments[disc]!];
    assert.equal(first.seq, before.seq + 1, "no gap in sequence numbers");
    const gap = first.pdt - (before.pdt + before.durationMs);
    assert.ok(Math.abs(gap) <= SEGMENT_MS, `the date-time moved ${gap} ms past the last segment's end across the switch`);
    return gap;
  }

  /** Prints the switch's figures: the timeline's date-time gap, and the media the standby repeated (<0) or skipped. */
  function report(what: string, gap: number, taker: TestNode): void {
    const line = taker.lines.filter((l) => /standby media continues the timeline stream=redundant/.test(l)).at(-1) ?? "";
    console.log(`      ${what}: date-time gap across the switch ${gap} ms, media repeated (<0) or skipped ${/mismatchMs=(\S+)/.exec(line)?.[1] ?? "?"} ms, date-times moved ${/shiftMs=(\S+)/.exec(line)?.[1] ?? "?"} ms`);
  }

  /** Total CPU ticks (user + system) of a node's ffmpeg children. */
  function transcoderTicks(node: TestNode): number {
    const pids = execFileSync("pgrep", ["-P", String(node.proc.child.pid), "ffmpeg"], { encoding: "utf8" }).trim().split("\n").filter(Boolean);
    return pids.reduce((sum, pid) => {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return sum + Number(fields[11]) + Number(fields[12]);
    }, 0);
  }

  before(async () => {
    const redis = await startTestRedis();
    const prefix = testPrefix();
    nodes = [];
    // a takeover after 3 s without a segment: three times the test nodes' 1-s segment, so a busy machine's late
    // segment is not mistaken for a stalled input
    for (const id of ["sb-a", "sb-b", "sb-c"]) nodes.push(await startTestNode({ redisUrl: redis.url, prefix, id, env: { BATON_STANDBY_TAKEOVERAFTER: "3" } }));
    lb = await startTestHaproxy(nodes);
  });
  after(async () => {
    await Promise.all(publishers.map((p) => p.stop()));
    await stopAll();
  });

  it("lands the backup on another node as a hot standby whose segments are not listed; the primary's node refuses it with the reason", async () => {
    encoder("primary");
    const primary = await waitFor("the primary active", async () => (await inputs()).find((i) => i.input === "active"), 60000, 250);
    assert.equal(primary.role, "primary");
    // pushed straight at the primary's node, the backup is refused there and told why
    const direct = publish(`${primary.node.rtmp(STREAM)}&role=backup`, { seconds: 5 });
    await primary.node.waitForLog(/publish refused reason=other_input_here/, 30000);
    await direct.exited;

    encoder("backup");
    const { active, standby } = await standbyIs("backup", "the backup standing by");
    assert.notEqual(standby.node.id, active.node.id, "the two inputs are on two nodes");
    assert.equal(await nodeMetric(standby.node, "baton_ingest_inputs", 'role="backup",state="standby"'), 1);
    assert.equal(await nodeMetric(active.node, "baton_ingest_inputs", 'role="primary",state="active"'), 1);

    // the standby transcodes all along, and nothing of it reaches the timeline
    const start = await newest(active.node);
    const ticks = [transcoderTicks(active.node), transcoderTicks(standby.node)];
    const segments = await waitFor("five more segments", async () => {
      const s = await listed(active.node);
      return (s.at(-1)?.seq ?? -1) >= start + 5 ? s : undefined;
    }, 60000, 250);
    const used = [transcoderTicks(active.node) - ticks[0]!, transcoderTicks(standby.node) - ticks[1]!];
    assert.ok(used[1]! > 0, "the standby's transcoder runs");
    console.log(`      standby transcoder CPU: ${used[1]} ticks against the active's ${used[0]} (${(used[1]! / Math.max(1, used[0]!)).toFixed(2)}x), load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]}`);
    assert.ok(segments.every((s) => !s.disc || s.seq <= start), "no discontinuity: the standby's groups are not listed");
    assert.equal((await streamInfo(active.node)).owner, active.node.id);
    // the operator sees it (in the nodes' records, written each heartbeat): the active input, and where its standby runs
    const shown = new RegExp(`${STREAM} .*primary \\(standby: backup on ${standby.node.id}\\)`);
    await waitFor("baton status to show the inputs", async () => {
      const table = await status({ url: lb.http(""), token: ADMIN_TOKEN, say: () => undefined });
      return shown.test(table) ? table : undefined;
    }, 20000, 250);
  });

  it("continues the timeline from the standby when the primary encoder is killed, and the returning primary stands by (no flapping back)", async () => {
    const { active, standby } = await standbyIs("backup", "the backup standing by");
    const before = await streamInfo(active.node);
    const last = await newest(active.node);
    await publishers[0]!.stop();
    const gap = await continuedAfter(active.node, last);
    report("primary encoder killed", gap, standby.node);
    const after = await streamInfo(active.node);
    assert.ok(after.epoch > before.epoch, "the standby took the stream at a higher epoch");
    const now = (await inputs()).find((i) => i.input === "active")!;
    assert.equal(now.role, "backup");

    encoder("primary");
    await standbyIs("primary", "the returning primary standing by");
    const from = await newest(now.node);
    await waitFor("four more segments", async () => (await newest(now.node) >= from + 4 ? true : undefined), 60000, 250);
    const held = await streamInfo(now.node);
    assert.deepEqual([held.owner, held.epoch], [after.owner, after.epoch], "the backup stays active while it is healthy");
  });

  it("takes over from a frozen active node at a higher epoch; the node, once thawed, is fenced off", async () => {
    const { active, standby } = await standbyIs("primary", "the primary standing by");
    const before = await streamInfo(standby.node);
    const last = await newest(standby.node);
    const publishedBefore = await nodeMetric(active.node, "baton_segments_published_total");
    active.node.proc.child.kill("SIGSTOP");
    let gap: number;
    try {
      gap = await continuedAfter(standby.node, last);
    } finally {
      active.node.proc.child.kill("SIGCONT");
    }
    report("active node frozen", gap, standby.node);
    assert.ok((await streamInfo(standby.node)).epoch > before.epoch);
    assert.equal((await streamInfo(standby.node)).owner, standby.node.id);
    await active.node.waitForLog(/stream lost to another owner; stopping stream=redundant/, 30000);
    const publishedAfter = await nodeMetric(active.node, "baton_segments_published_total");
    assert.ok(publishedAfter - publishedBefore <= 1, `the frozen node appended ${publishedAfter - publishedBefore} segments after it was frozen`);
  });

  it("continues the timeline from the standby when the active node is SIGKILLed", async () => {
    const { active, standby } = await standbyIs("backup", "the backup (dropped by its fenced node) standing by again");
    const before = await streamInfo(standby.node);
    const last = await newest(standby.node);
    down.add(active.node);
    active.node.proc.child.kill("SIGKILL");
    const gap = await continuedAfter(standby.node, last);
    report("active node SIGKILLed", gap, standby.node);
    // the standby's media continues the stream: at once, or (the slate won the race to the dead node's lease)
    // after a short slate, which a publish claim such as the standby's takes at once
    const after = await waitFor("the standby to own the stream", async () => {
      const info = await streamInfo(standby.node);
      return info.owner === standby.node.id ? info : undefined;
    }, 20000, 200);
    assert.ok(after.epoch > before.epoch);
  });

  it("continues the timeline from the standby when the active node drains; its encoder stands by again once the node is back", async () => {
    const { active, standby } = await standbyIs("primary", "the primary (its node killed) standing by again");
    const before = await streamInfo(standby.node);
    const last = await newest(standby.node);
    const post = (path: string): Promise<Response> => fetch(active.node.http(path), { method: "POST", headers: ADMIN, signal: AbortSignal.timeout(10000) });
    assert.equal((await post("/admin/drain")).status, 202);
    const gap = await continuedAfter(standby.node, last);
    report("active node drained", gap, standby.node);
    assert.ok((await streamInfo(standby.node)).epoch > before.epoch);
    assert.equal((await streamInfo(standby.node)).owner, standby.node.id);
    // the drained node's encoder is refused everywhere meanwhile (draining there, the other input here); back in
    // rotation, the node takes it as the standby
    assert.ok((await post("/admin/undrain")).ok);
    const now = await standbyIs(active.role, "the drained node's encoder standing by");
    assert.equal(now.active.node.id, standby.node.id, "no flapping back");
  });

  it("takes over from an active encoder gone silent (connected, sending nothing) once nothing was appended for standby.takeoverAfter", async () => {
    const { active, standby } = await standbyIs("backup", "the drained node's encoder standing by");
    const before = await streamInfo(standby.node);
    const last = await newest(standby.node);
    const stalled = await nodeMetric(standby.node, "baton_standby_takeovers_total", 'reason="stalled"');
    const silent = encoders.get(active.role)!;
    const pid = silent.pid!;
    process.kill(pid, "SIGSTOP");
    let gap: number;
    try {
      gap = await continuedAfter(standby.node, last);
    } finally {
      process.kill(pid, "SIGCONT");
    }
    report("active encoder silent", gap, standby.node);
    assert.ok((await streamInfo(standby.node)).epoch > before.epoch);
    assert.equal(await nodeMetric(standby.node, "baton_standby_takeovers_total", 'reason="stalled"'), stalled + 1, "taken from a held lease, not a released one");
    // the silent input's owner finds its lease taken and lets its publisher go: the encoder comes back as the standby
    await standbyIs(active.role, "the silent encoder back as the standby");
  });
});
