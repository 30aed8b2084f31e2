// The rollout's pure parts: the gates against a baseline, the update order and stages, steering, and how a
// release is prepared (a git ref as a worktree with shared packages, a directory, a config file).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULTS } from "../../src/config/defaults.ts";
import type { NodeRecord } from "../../src/core/model.ts";
import { agentAnswer } from "../../src/cluster/agent.ts";
import { steeredAway } from "../../src/cluster/steering.ts";
import { addNode, emptyWindow, judge, p99, parseSample, type Window } from "../../tools/rollout/gates.ts";
import { assignRelease, assignedRelease, configKeysEnv, loadReleaseConfig, prepareRelease, startingRelease } from "../../tools/rollout/release.ts";
import { orderNodes, stageEnds, warmingStandbys } from "../../tools/rollout/run.ts";
import { schemaRefusal } from "../../src/state/schema.ts";
import { ROOT } from "../../tools/processes.ts";
import { stopAll, tempDir } from "../helpers/stack.ts";

const GATES = DEFAULTS.rollout;

/** Prometheus text of a node that answered `ok` and `failed` segment requests taking `seconds` each. */
function metrics(o: { ok: number; failed: number; seconds?: number; degraded?: number }): string {
  const le = [0.001, 0.01, 0.1, 0.25, 0.5, 1, 2.5];
  const total = o.ok + o.failed;
  const seconds = o.seconds ?? 0.005;
  return [
    `baton_http_requests_total{route="segment",status="200"} ${o.ok}`,
    `baton_http_requests_total{route="segment",status="500"} ${o.failed}`,
    `baton_http_requests_total{route="metrics",status="500"} 99`,
    ...le.map((b) => `baton_http_request_duration_seconds_bucket{le="${b}",route="segment"} ${b >= seconds ? total : 0}`),
    `baton_http_request_duration_seconds_bucket{le="+Inf",route="segment"} ${total}`,
    `baton_transcoder_preset_changes_total{direction="degrade"} ${o.degraded ?? 0}`,
  ].join("\n");
}

function side(id: string, before: string, after: string, speeds: number[] = []): Window {
  const w: Window = { ...emptyWindow(), speeds };
  addNode(w, id, parseSample(before, 1), parseSample(after, 1));
  return w;
}

describe("rollout gates", () => {
  it("reads viewer requests, errors and latency buckets, not the operators' endpoints", () => {
    const s = parseSample(metrics({ ok: 90, failed: 10, seconds: 0.1 }), 1);
    assert.equal(s.requests, 100);
    assert.equal(s.errors, 10);
    assert.equal(p99(s.segment), 0.1);
  });

  it("fails the errors gate when the updated nodes' error ratio exceeds the others' by more than gateErrorRatio", () => {
    const updated = side("a", metrics({ ok: 0, failed: 0 }), metrics({ ok: 80, failed: 20 }));
    const baseline = side("b", metrics({ ok: 0, failed: 0 }), metrics({ ok: 100, failed: 0 }));
    const failures = judge(GATES, updated, baseline);
    assert.deepEqual(failures.map((f) => f.gate), ["errors"]);
    assert.match(failures[0]!.updated, /20\.0% \(20 of 100\)/);
    assert.match(failures[0]!.baseline, /0\.0% \(0 of 100\)/);
  });

  it("passes when both sides fail alike (the machine, not the release), and judges nothing on too few requests", () => {
    const both = side("a", metrics({ ok: 0, failed: 0 }), metrics({ ok: 95, failed: 5 }));
    assert.deepEqual(judge(GATES, both, side("b", metrics({ ok: 0, failed: 0 }), metrics({ ok: 95, failed: 5 }))), []);
    const few = side("a", metrics({ ok: 0, failed: 0 }), metrics({ ok: 2, failed: 5 }));
    assert.deepEqual(judge(GATES, few, null), []);
  });

  it("counts a restarted node's counters from zero", () => {
    const w = emptyWindow();
    addNode(w, "a", parseSample(metrics({ ok: 1000, failed: 0 }), 1), parseSample(metrics({ ok: 30, failed: 0 }), 2));
    assert.equal(w.requests, 30);
  });

  it("fails segment latency against a fast baseline, beyond the floor", () => {
    const slow = side("a", metrics({ ok: 0, failed: 0 }), metrics({ ok: 100, failed: 0, seconds: 2.5 }));
    const fast = side("b", metrics({ ok: 0, failed: 0 }), metrics({ ok: 100, failed: 0, seconds: 0.01 }));
    assert.deepEqual(judge(GATES, slow, fast).map((f) => f.gate), ["segment_latency"]);
    assert.deepEqual(judge(GATES, fast, slow), []);
  });

  it("fails transcoder speed below real time against a faster baseline, or when the updated side stepped its preset down", () => {
    const quiet = metrics({ ok: 0, failed: 0 });
    assert.deepEqual(judge(GATES, side("a", quiet, quiet, [0.5, 0.6, 0.55]), side("b", quiet, quiet, [1.0, 1.01])).map((f) => f.gate), ["transcoder_speed"]);
    // no other node transcodes: the speeds before the update are the baseline
    assert.deepEqual(judge(GATES, side("a", quiet, quiet, [0.5]), null, [1.02]).map((f) => f.gate), ["transcoder_speed"]);
    // everyone slow alike: not this release
    assert.deepEqual(judge(GATES, side("a", quiet, quiet, [0.7]), side("b", quiet, quiet, [0.7])), []);
    const degraded = side("a", quiet, metrics({ ok: 0, failed: 0, degraded: 1 }), [1.0]);
    assert.deepEqual(judge(GATES, degraded, side("b", quiet, quiet, [1.0])).map((f) => f.gate), ["transcoder_speed"]);
  });
});

const record = (id: string, publishers: number, viewers: number, state: NodeRecord["state"] = "ready"): NodeRecord =>
  ({
    id, state, httpUrl: "", rtmpUrl: "", version: "0", startedAt: 1, heartbeatAt: 1000,
    load: { publishers, viewers: viewers ? { s: viewers } : {}, cpu: 0, readyChecks: 3 },
  }) as NodeRecord;

describe("rollout order, stages and steering", () => {
  it("updates the nodes that own no stream first, the one serving most viewers first of those", () => {
    const order = orderNodes([record("node-1", 1, 9), record("node-2", 0, 1), record("node-3", 0, 5)]);
    assert.deepEqual(order.map((n) => n.id), ["node-3", "node-2", "node-1"]);
  });

  it("updates a node holding only a hot standby before the active input's node", () => {
    const inputs = (state: "active" | "standby"): NonNullable<NodeRecord["load"]["inputs"]> => ({ s: { role: state === "active" ? "primary" : "backup", state } });
    const withInputs = (id: string, state: "active" | "standby", viewers: number): NodeRecord => {
      const r = record(id, 1, viewers);
      return { ...r, load: { ...r.load, inputs: inputs(state) } };
    };
    const order = orderNodes([withInputs("node-1", "active", 0), withInputs("node-2", "standby", 0), record("node-3", 0, 0)]);
    assert.deepEqual(order.map((n) => n.id), ["node-3", "node-2", "node-1"]);
    // by publishers alone, node-1 (the first id) would have come before node-2
    assert.deepEqual(orderNodes([withInputs("node-2", "standby", 0), withInputs("node-1", "active", 0)]).map((n) => n.id), ["node-2", "node-1"]);
  });

  it("holds the drain of an active input's node while that stream's hot standby elsewhere warms up or reconnects", () => {
    const holding = (id: string, inputs: NonNullable<NodeRecord["load"]["inputs"]>): NodeRecord => {
      const r = record(id, 1, 0);
      return { ...r, load: { ...r.load, inputs } };
    };
    const active = holding("node-1", { a: { role: "primary", state: "active" }, b: { role: "primary", state: "active" }, c: { role: "backup", state: "standby", ready: false } });
    const warming = holding("node-2", { a: { role: "backup", state: "standby", ready: false }, b: { role: "backup", state: "standby", ready: true } });
    assert.deepEqual(warmingStandbys([active, warming, record("node-3", 0, 0)], "node-1"), ["a"]);
    // a ready standby, one of a release that does not report readiness, none at all, or a standby on the node itself: no wait
    const ready = holding("node-2", { a: { role: "backup", state: "standby", ready: true }, b: { role: "backup", state: "standby" } });
    assert.deepEqual(warmingStandbys([active, ready], "node-1"), []);
    assert.deepEqual(warmingStandbys([active, record("node-2", 0, 0)], "node-1"), []);
    assert.deepEqual(warmingStandbys([active, warming], "node-2"), [], "node-2 is no stream's active input");
    // a standby seen earlier in the update whose encoder is reconnecting (no record lists it now): wait for it too
    assert.deepEqual(warmingStandbys([active, record("node-2", 0, 0)], "node-1", new Set(["a", "b"])), ["a", "b"]);
    assert.deepEqual(warmingStandbys([active, ready], "node-1", new Set(["a", "b"])), [], "back and ready");
  });

  it("stages: the canary, then each step as a count or a share, always ending with every node", () => {
    assert.deepEqual(stageEnds(["1", "50%", "100%"], 4), [1, 2, 4]);
    assert.deepEqual(stageEnds(["1", "50%", "100%"], 2), [1, 2]);
    assert.deepEqual(stageEnds(["2"], 5), [1, 2, 5]);
    assert.deepEqual(stageEnds([], 3), [1, 3]);
  });

  it("a not-updated node steers new publishers away only while an updated node is ready", () => {
    const active = { startedAt: 1, to: "v2", steerTo: ["node-2"] };
    assert.match(steeredAway(active, [record("node-1", 1, 0), record("node-2", 0, 0)], "node-1", 1500, 3000) ?? "", /go to node-2/);
    assert.equal(steeredAway(active, [record("node-2", 0, 0)], "node-2", 1500, 3000), null, "an updated node takes them");
    assert.equal(steeredAway(active, [record("node-2", 0, 0, "draining")], "node-1", 1500, 3000), null, "no updated node ready: nowhere to send them");
    assert.equal(steeredAway(active, [record("node-2", 0, 0)], "node-1", 9000, 3000), null, "its record is stale");
    const full = { ...record("node-2", 0, 0), load: { ...record("node-2", 0, 0).load, slots: 0 } };
    assert.equal(steeredAway(active, [full], "node-1", 1500, 3000), null, "the updated node has no room");
    assert.equal(steeredAway(null, [], "node-1", 0, 3000), null);
    assert.equal(agentAnswer("ready", { publishers: 0, capacity: 4, slots: 4, steered: true }, "rtmp"), "drain\n");
    assert.equal(agentAnswer("ready", { publishers: 0, capacity: 4, slots: 4, steered: true }, "http"), "up ready 100%\n", "viewers still come");
  });
});

describe("rollout releases", function () {
  this.timeout(60000);
  after(stopAll);

  /** A git repository holding a minimal baton checkout with this checkout's lockfile, one commit. */
  function tinyRepo(): { repo: string; commit: string } {
    const repo = tempDir("release-repo");
    mkdirSync(join(repo, "src", "bin"), { recursive: true });
    writeFileSync(join(repo, "src", "bin", "baton.ts"), "// a node\n");
    writeFileSync(join(repo, "package.json"), "{}\n");
    copyFileSync(join(ROOT, "package-lock.json"), join(repo, "package-lock.json"));
    const git = (...args: string[]): string => execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd: repo, encoding: "utf8" }).trim();
    git("init", "--quiet");
    git("add", ".");
    git("commit", "--quiet", "-m", "one");
    return { repo, commit: git("rev-parse", "HEAD") };
  }

  it("a git ref becomes a worktree under releases/<commit>, made once, sharing the packages of an equal lockfile", async () => {
    const { repo, commit } = tinyRepo();
    const dir = tempDir("state");
    const said: string[] = [];
    const request = { to: "HEAD", base: startingRelease(), repo, stateDir: dir, say: (l: string) => said.push(l) };
    const release = await prepareRelease(request);
    assert.equal(release.root, join(dir, "releases", commit.slice(0, 12)));
    assert.equal(release.label, `HEAD (${commit.slice(0, 12)})`);
    assert.ok(existsSync(join(release.root, "src", "bin", "baton.ts")));
    assert.ok(lstatSync(join(release.root, "node_modules")).isSymbolicLink());
    assert.equal(release.config, null);
    assert.deepEqual(await prepareRelease(request), release, "the second time finds it");
    assert.equal(said.filter((l) => /worktree add/.test(l)).length, 1);
    execFileSync("git", ["worktree", "remove", "--force", release.root], { cwd: repo });
  });

  it("refuses what is neither a checkout directory nor a ref, and an option passed as a ref", async () => {
    const { repo } = tinyRepo();
    const base = { base: startingRelease(), repo, stateDir: tempDir("state"), say: () => undefined };
    await assert.rejects(prepareRelease({ ...base, to: "no-such-branch" }), /no such directory, and no such git ref/);
    await assert.rejects(prepareRelease({ ...base, to: "--upload-pack=x" }), /expected a directory holding a baton checkout, or a git ref/);
    await assert.rejects(prepareRelease({ ...base, to: tempDir("empty") }), /holds no baton checkout/);
  });

  it("a config file is validated as its nodes load it (its keys over the environment) and kept as a copy", async () => {
    const dir = tempDir("state");
    const file = join(dir, "release.json");
    writeFileSync(file, JSON.stringify({ hls: { segmentDuration: 2 } }));
    assert.deepEqual(configKeysEnv(file), ["BATON_HLS_SEGMENTDURATION"]);
    assert.equal(loadReleaseConfig(file, { BATON_HLS_SEGMENTDURATION: "1" }).hls.segmentDuration, 2);
    const release = await prepareRelease({ config: file, base: startingRelease(), stateDir: dir, say: () => undefined });
    assert.equal(release.root, ROOT);
    assert.notEqual(release.config, file);
    assert.equal(readFileSync(release.config!, "utf8"), readFileSync(file, "utf8"));
    writeFileSync(file, JSON.stringify({ transcode: { preset: "glacial" } }));
    await assert.rejects(prepareRelease({ config: file, base: startingRelease(), stateDir: dir, say: () => undefined }), /transcode\.preset/);
  });

  it("the supervisor's assignment: what was assigned, else the starting release", () => {
    const dir = tempDir("state");
    assert.deepEqual(assignedRelease(dir, "node-1"), startingRelease());
    const target = { label: "x", root: ROOT, config: null };
    assignRelease(dir, "node-1", target);
    assert.deepEqual(assignedRelease(dir, "node-1"), target);
    assert.throws(() => assignRelease(dir, "../evil", target), /invalid node id/);
    assert.deepEqual(assignedRelease(dir, "../evil"), startingRelease());
  });
});

describe("schema version", () => {
  it("a node may use the cluster's data of its own schema or an older one, not a newer or unreadable one", () => {
    assert.equal(schemaRefusal(null, 2), null);
    assert.equal(schemaRefusal("1", 2), null);
    assert.equal(schemaRefusal("2", 2), null);
    assert.match(schemaRefusal("3", 2) ?? "", /schema 3; this release reads schema 2 at most/);
    assert.match(schemaRefusal("x", 2) ?? "", /unreadable/);
  });
});
