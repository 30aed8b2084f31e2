// `npm run chaos` in its quick form, as an operator runs it: the harness starts its own local cluster (three
// nodes, HAProxy, Redis), publishes, watches with 20 simulated viewers and a real browser, acts, and reports.
// The rolling update must hurt nobody; every scenario must keep the invariants.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ChaosReport } from "../../tools/chaos/report.ts";
import { ROOT, nodeCommand } from "../../tools/processes.ts";
import { localClusterEnv, tempDir } from "../helpers/stack.ts";

async function chaos(scenario: string, browsers: number, more: string[] = []): Promise<{ code: number; report: ChaosReport; png: Buffer; output: string }> {
  const dir = tempDir(`chaos-${scenario}`);
  const env = { ...process.env, ...(await localClusterEnv(3)) };
  const out = join(dir, "report.json");
  const [command, args] = nodeCommand([]);
  const chaosArgs = [...args.slice(0, -1), join(ROOT, "tools", "chaos", "cli.ts"), "--scenario", scenario, "--quick", "--browsers", String(browsers), "--out", out, ...more];
  const result = await new Promise<{ code: number; output: string }>((resolve) => {
    execFile(command, chaosArgs, { env, timeout: 240000, maxBuffer: 1 << 24 }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, output: `${stdout}\n${stderr}` }),
    );
  });
  assert.ok(existsSync(out), `no report written:\n${result.output}`);
  return { ...result, report: JSON.parse(readFileSync(out, "utf8")) as ChaosReport, png: readFileSync(out.replace(/\.json$/, ".png")) };
}

/**
 * Each standby took over on the boundary the active input's media ended on: both pipelines cut their segments on
 * the same wall-clock boundaries (job.ts wallClockCuts), so the switch repeats or skips about a frame. Before the
 * boundaries were locked it was anywhere within half of the 2-s segment; 250 ms leaves room for a busy machine's
 * late look at a run's first keyframe.
 */
function aligned(r: ChaosReport, switches: number, output: string): void {
  assert.ok(r.standbyShiftsMs.length >= switches, `${r.standbyShiftsMs.length} standby cuts logged for ${switches} switches\n${output}`);
  assert.deepEqual(r.standbyShiftsMs.filter((ms) => Math.abs(ms) > 250), [], `the standbys' media repeated or skipped ${r.standbyShiftsMs.join("/")} ms at the switches`);
}

/** When each viewer error came, in s after the run's start, beside the scenario's events: what to read when one fails. */
function errorTimes(r: ChaosReport): string {
  const t = (at: number): string => ((at - r.timeline.startedAt) / 1000).toFixed(1);
  return `errors at ${r.timeline.errors.map((e) => `${t(e.at)}s ${e.source} ${e.status}`).join(", ")}; events ${r.timeline.events.map((e) => `${t(e.at)}s ${e.label}`).join(", ")}`;
}

function invariants(r: ChaosReport, output: string): void {
  assert.equal(r.sequenceRegressions, 0, output);
  assert.equal(r.uriChanges, 0, output);
  assert.equal(r.endlistsWhileLive, 0, output);
  assert.equal(r.sessionsLost, 0, output);
  assert.equal(r.positionsReset, 0, output);
  assert.equal(r.segmentsLost, 0, `${r.segmentsLostExamples.join("\n")}\n${output}`);
  assert.equal(r.consistencyViolations, 0, `${r.consistencyExamples.join("\n")}\n${output}`);
  assert.ok(r.invariants.ok, r.invariants.broken.join("; "));
}

describe("chaos harness (quick)", function () {
  this.timeout(300000);

  it("rolling-update: every node drained and restarted under 20 viewers and a browser, and no viewer saw an error", async () => {
    const { code, report, png, output } = await chaos("rolling-update", 1);
    assert.equal(code, 0, output);
    invariants(report, output);
    assert.deepEqual(report.viewers, { simulated: 20, browser: 1 });
    assert.equal(report.errors.total, 0, JSON.stringify(report.errors));
    assert.equal(report.drains.length, 3);
    // the browser's node was drained at some point: it got a handoff and reconnected its channel
    assert.ok(report.browserChannel.handoffs >= 1, JSON.stringify(report.browserChannel));
    assert.ok(report.browserChannel.connects >= 2, JSON.stringify(report.browserChannel));
    assert.ok(report.publisherGapsMs.length >= 1, "the stream moved at least once");
    // its owner is drained last and its encoder steered to an updated node: it moves once, never twice
    assert.deepEqual(report.moves, [1], `moves per stream ${report.moves.join(", ")}\n${output}`);
    assert.ok(report.timeline.events.some((e) => e.kind === "drain"));
    assert.ok(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), "a PNG timeline");
    assert.match(output, /invariants\s+all hold/);
  });

  it("node-crash with a backup encoder: each SIGKILLed active node's stream continues from its hot standby, with no stall and no gap", async () => {
    const { code, report, output } = await chaos("node-crash", 1, ["--backup"]);
    assert.equal(code, 0, output);
    invariants(report, output);
    assert.equal(report.backup, true);
    // the owner, then the node that was its standby at the start, are killed: two switches at least
    assert.ok(report.publisherGapsMs.length >= 2, `the stream switched inputs ${report.publisherGapsMs.length} times\n${output}`);
    assert.deepEqual(report.publisherGapsMs.filter((g) => g > 0), [], "the standby's media continues the timeline's date-time");
    aligned(report, 2, output);
    assert.equal(report.stalls.simulated.count, 0, output);
    assert.equal(report.errors.total, 0, JSON.stringify(report.errors));
    // a real hls.js player in Chromium through both kills: no stall, no error of any kind
    assert.deepEqual(report.stalls.browser, { count: 0, seconds: 0 }, output);
    process.stderr.write(`      node-crash --backup: ${report.stalls.simulated.count} stalls (browser ${report.stalls.browser.count}), gaps ${report.publisherGapsMs.join("/")} ms, standby media shifts ${report.standbyShiftsMs.join("/")} ms, moves ${report.moves.join("/")}\n`);
  });

  it("rolling-update with a backup encoder: each drained active node hands its stream to the standby, with no stall, no gap and no browser error", async () => {
    const { code, report, output } = await chaos("rolling-update", 1, ["--backup"]);
    assert.equal(code, 0, output);
    invariants(report, output);
    assert.equal(report.drains.length, 3);
    assert.ok(report.publisherGapsMs.length >= 1, `the stream switched inputs ${report.publisherGapsMs.length} times\n${output}`);
    assert.deepEqual(report.publisherGapsMs.filter((g) => g > 0), [], "the standby's media continues the timeline's date-time");
    aligned(report, 1, output);
    // the standby's node is updated before the active input's: the stream switches once, to an updated node
    assert.deepEqual(report.moves, [1], `moves per stream ${report.moves.join(", ")}\n${output}`);
    assert.equal(report.stalls.simulated.count, 0, output);
    assert.equal(report.errors.total, 0, JSON.stringify(report.errors));
    process.stderr.write(`      rolling-update --backup: ${report.stalls.simulated.count} stalls (browser ${report.stalls.browser.count}), gaps ${report.publisherGapsMs.join("/")} ms, standby media shifts ${report.standbyShiftsMs.join("/")} ms, moves ${report.moves.join("/")}\n`);
  });

  // Redis away (stopped 10 s, then frozen 15 s, in one run) longer than a lease and a cached timeline's trust,
  // and a Sentinel failover (the primary SIGKILLed, its replica promoted): viewers see nothing
  for (const scenario of ["redis-restart,redis-freeze", "redis-failover"]) {
    it(`${scenario}: no viewer stalls or sees an error, a real hls.js player included`, async () => {
      const { code, report, output } = await chaos(scenario, 1);
      assert.equal(code, 0, output);
      invariants(report, output);
      // from Redis going away on (a stall at a viewer's start, before, is the busy machine's, not the outage's)
      const stops = report.timeline.events.filter((e) => e.kind === "redis-stop");
      assert.equal(stops.length, scenario.split(",").length, `the scenario marked Redis going away each time\n${output}`);
      const after = <T extends { at: number }>(list: T[]): T[] => list.filter((x) => x.at >= stops[0]!.at);
      assert.deepEqual(after(report.timeline.stalls), [], `no viewer stalled from Redis going away on\n${output}`);
      assert.deepEqual(after(report.timeline.errors), [], `no viewer saw an error from Redis going away on\n${output}`);
      if (scenario === "redis-failover") assert.match(output, /the sentinels promoted port \d+/);
    });
  }

  it("node-crash, then publisher-flap: the invariants hold, and the slate covers each input loss (no simulated viewer stalls)", async () => {
    const { code, report, output } = await chaos("node-crash,publisher-flap", 1);
    assert.equal(code, 0, output);
    invariants(report, output);
    assert.ok(report.timeline.events.some((e) => e.kind === "kill") && report.timeline.events.some((e) => e.kind === "publisher-drop"), "both scenarios ran");
    process.stderr.write(`      node-crash,publisher-flap: ${report.errors.total} errors ${JSON.stringify(report.errors.simulated)}, ${report.stalls.simulated.count} stalls (browser ${report.stalls.browser.count}), gaps ${report.publisherGapsMs.join("/")} ms, haproxy ${JSON.stringify(report.haproxy)}, slate ${JSON.stringify(report.slate)}\n`);
    // the input loss is covered by the slate: no simulated viewer (three segments behind live) stalls
    assert.equal(report.stalls.simulated.count, 0, `${report.stalls.simulated.count} stalls; slate ${JSON.stringify(report.slate)}\n${output}`);
    // and a real hls.js player in Chromium plays through the kills and the drops, the slate between
    assert.deepEqual(report.stalls.browser, { count: 0, seconds: 0 }, output);
    assert.equal(report.errors.total, 0, `${JSON.stringify(report.errors)}; ${errorTimes(report)}`);
    const ownerKill = report.slate.losses[0];
    assert.ok(ownerKill?.toSlateMs !== null && ownerKill?.toLiveMs !== null, `the owner's death was covered by the slate, then live media: ${JSON.stringify(report.slate)}`);
  });
});
