// The rolling update: every node in turn is drained, restarted (on a new release, or the same one) and
// waited for until ready, in an order that moves each stream once: nodes that own no stream first, and while
// the update runs the nodes not yet updated send new publishers to the updated ones (cluster/steering.ts).
// Going to a new release it is staged and gated: a canary first (given a stream, if one is live), watched for
// rollout.canarySoak against the not-updated nodes, then rollout.steps, each watched for rollout.stepSoak. A
// failed gate rolls every updated node back to the release the cluster ran before, and says why.
import { execFile } from "node:child_process";
import type { Config } from "../../src/config/defaults.ts";
import { errorMessage } from "../../src/core/errors.ts";
import type { NodeRecord } from "../../src/core/model.ts";
import { readyStandbyElsewhere } from "../../src/stream/standby.ts";
import type { ActiveRollout, ReleaseTarget, RolloutEvent, RolloutStore } from "../../src/state/rollouts.ts";
import { call, drain, nodesOf, streamsOf, undrain, type AdminClient } from "../admin-cli.ts";
import { addNode, describeFailure, emptyWindow, judge, parseSample, type GateFailure, type Sample, type Window } from "./gates.ts";
import { assignRelease, assignedRelease } from "./release.ts";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const viewersOf = (n: NodeRecord): number => Object.values(n.load.viewers).reduce((a, b) => a + b, 0);

/** Streams whose active input a node holds (its publishers, for a record without inputs). */
const activeOf = (n: NodeRecord): number =>
  n.load.inputs ? Object.values(n.load.inputs).filter((i) => i.state === "active").length : n.load.publishers;

/**
 * The update order: nodes that own no stream first (the most viewers first: the canary serves viewers), then
 * nodes holding only hot standbys, the active inputs' nodes last: a standby's encoder reconnects to an
 * updated node before its active input is handed to it, so a redundant broadcast moves once, like any stream.
 */
export function orderNodes(nodes: NodeRecord[]): NodeRecord[] {
  return [...nodes].sort((a, b) =>
    activeOf(a) - activeOf(b) || a.load.publishers - b.load.publishers || viewersOf(b) - viewersOf(a) || a.id.localeCompare(b.id));
}

/**
 * The streams whose active input `nodeId` holds, that have a hot standby (on some node's record now, or in
 * `backed`: seen with one earlier in the update, whose encoder may be reconnecting from a drained node), and
 * no standby on another node ready to take over (a record without `ready` is an older release's: ready).
 * Drained now, such a stream would go to the slate and its encoder would move it, where a moment later the
 * standby takes it over with no gap.
 */
export function warmingStandbys(records: readonly NodeRecord[], nodeId: string, backed: ReadonlySet<string> = new Set()): string[] {
  const inputs = records.find((n) => n.id === nodeId)?.load.inputs ?? {};
  const hasStandby = (stream: string): boolean => records.some((n) => n.id !== nodeId && n.load.inputs?.[stream]?.state === "standby");
  // the registry's records are the live nodes' (their keys expire): no heartbeat to judge here
  return Object.keys(inputs)
    .filter((stream) => inputs[stream]!.state === "active" && (backed.has(stream) || hasStandby(stream)))
    .filter((stream) => !readyStandbyElsewhere(records, nodeId, stream, 0, Number.POSITIVE_INFINITY));
}

/** Adds the streams these records show with a hot standby to `backed`. */
function noteStandbys(records: readonly NodeRecord[], backed: Set<string>): void {
  for (const n of records) for (const [stream, input] of Object.entries(n.load.inputs ?? {})) if (input.state === "standby") backed.add(stream);
}

/** How many nodes are updated at the end of each stage: the canary (1), then each step, then all. */
export function stageEnds(steps: string[], count: number): number[] {
  const ends = [1];
  for (const step of steps) {
    const wanted = step.endsWith("%") ? Math.ceil((count * Number(step.slice(0, -1))) / 100) : Number(step);
    const end = Math.min(count, Math.max(1, wanted));
    if (end > ends[ends.length - 1]!) ends.push(end);
  }
  if (ends[ends.length - 1]! < count) ends.push(count);
  return ends;
}

/** A gate failed: the update rolled back (or, for a rollback, could not finish). */
export class RolloutFailed extends Error {
  constructor(readonly failures: GateFailure[], message: string) {
    super(message);
  }
}

export interface RollingOptions {
  /** argv run to restart a drained node (`{node}`, `{release}`, `{config}` replaced); empty: the local cluster's supervisor restarts it. */
  restartCommand: string[];
  /** Seconds a node may take to drain. */
  timeout: number;
  /** Restarting in place (no new release): stop when this share of requests failed (5xx) during one node's update. */
  maxErrorRate: number;
  /** Readiness checks in a row a returning node must have answered before the next node drains. */
  readyChecks: number;
  /** Told of each step (the chaos harness marks them on its timeline). */
  onStep?: (step: "drain" | "drained" | "back", node: string) => void;
  /** Where the update is kept for the nodes (steering) and the history; null: no steering, no history. */
  store?: RolloutStore | null;
  /** The local cluster's state dir (releases, assignments). */
  stateDir?: string;
  /** Stages and gates; absent: no soak and no gates (a restart in place). */
  rollout?: Config["rollout"];
}

export interface ReleaseChange {
  /** The release the cluster runs now (what a rollback returns to). */
  from: ReleaseTarget;
  to: ReleaseTarget;
}

/** Requests and 5xx answers per node, and the gates' readings, from each node's /metrics (counters restart with the process). */
async function sampleAll(c: AdminClient, nodes: NodeRecord[]): Promise<Map<string, Sample>> {
  const out = new Map<string, Sample>();
  await Promise.all(nodes.map(async (n) => {
    const text = await fetch(`${n.httpUrl}/metrics`, { headers: { Authorization: `Bearer ${c.token}` }, signal: AbortSignal.timeout(5000) })
      .then((r) => r.text())
      .catch(() => "");
    out.set(n.id, parseSample(text, n.startedAt));
  }));
  return out;
}

class Update {
  readonly updated: NodeRecord[] = [];
  private active: ActiveRollout;
  private refresher: NodeJS.Timeout | null = null;

  constructor(
    private readonly c: AdminClient,
    private readonly o: RollingOptions,
    private readonly change: ReleaseChange | null,
    private readonly total: number,
  ) {
    this.active = { startedAt: Date.now(), to: change?.to.label ?? "a restart", steerTo: [] };
  }

  /** Keeps the update visible to the nodes (a TTL, so a CLI that dies stops steering within half a minute). */
  async begin(): Promise<void> {
    const store = this.o.store;
    if (!store) return;
    await store.setActive(this.active, 30000);
    this.refresher = setInterval(() => void store.setActive(this.active, 30000).catch(() => undefined), 5000);
  }

  async end(): Promise<void> {
    if (this.refresher) clearInterval(this.refresher);
    this.refresher = null;
    await this.o.store?.clearActive().catch(() => undefined);
  }

  async steer(to: string[]): Promise<void> {
    this.active = { ...this.active, steerTo: to };
    await this.o.store?.setActive(this.active, 30000);
  }

  /** Drains a node, restarts it on `target` (null: as it was) and waits until it is back and ready. */
  async restart(node: NodeRecord, target: ReleaseTarget | null, step: string): Promise<NodeRecord> {
    const { c, o } = this;
    const deadline = Date.now() + o.timeout * 1000;
    const local = o.restartCommand.length === 0;
    if (local && target && o.stateDir) assignRelease(o.stateDir, node.id, target);
    // a node that crash-loops is not in the registry to drain: its supervisor starts it on the release above
    const running = (await nodesOf(c)).some((n) => n.id === node.id && n.startedAt === node.startedAt);
    c.say(`${step}: ${running ? "draining" : "not running; waiting for its supervisor to start it"}${target ? ` (to ${target.label})` : ""}`);
    o.onStep?.("drain", node.id);
    if (running) await drain(c, node.id, local);
    // drained: it says so, or (asked to exit once drained) it is gone or already back
    for (; running; ) {
      const record = (await nodesOf(c).catch(() => [])).find((n) => n.id === node.id);
      if (!record || record.state === "drained" || record.startedAt > node.startedAt) break;
      if (Date.now() > deadline) {
        await undrain(c, node.id).catch(() => undefined);
        throw new Error(`${step}: did not drain in time; stopped the rolling update (the node was asked to undrain)`);
      }
      await sleep(100);
    }
    o.onStep?.("drained", node.id);
    if (!local && running) {
      const argv = o.restartCommand.map((part) =>
        part.replaceAll("{node}", node.id).replaceAll("{release}", target?.label ?? "").replaceAll("{config}", target?.config ?? ""),
      );
      c.say(`${step}: drained; restarting (${argv.join(" ")})`);
      const [command, ...args] = argv;
      await new Promise<void>((resolve, reject) => execFile(command!, args, (error) => (error ? reject(error) : resolve()))).catch(async (error: unknown) => {
        await undrain(c, node.id).catch(() => undefined);
        throw new Error(`${step}: restart command failed: ${errorMessage(error)}`);
      });
    } else if (running) {
      c.say(`${step}: drained; restarting`);
    }
    const readyBy = Date.now() + (o.rollout?.readyTimeout ?? o.timeout) * 1000;
    for (;;) {
      const record = (await nodesOf(c).catch(() => [])).find((n) => n.id === node.id);
      // ready, and the balancer has checked it ready a few times (HAProxy's rise is 2), so it sends it traffic
      if (record && record.startedAt > node.startedAt && record.state === "ready" && record.load.readyChecks >= o.readyChecks) {
        const ready = await fetch(`${record.httpUrl}/readyz`, { signal: AbortSignal.timeout(5000) }).then((r) => r.ok).catch(() => false);
        if (ready) {
          o.onStep?.("back", node.id);
          return record;
        }
      }
      if (Date.now() > readyBy) {
        const seconds = o.rollout?.readyTimeout ?? o.timeout;
        throw new RolloutFailed(
          [{ gate: "node_back", updated: `${node.id} not ready ${seconds} s after its restart (a crash loop? see its log)`, baseline: `${this.total - 1} other node(s) serving` }],
          `${step}: did not come back ready within ${seconds} s`,
        );
      }
      await sleep(250);
    }
  }

  /**
   * A live stream moved onto the canary (its encoder reconnects; steering sends it there), when it owns none.
   * The move waits until the nodes not updated steer publishers away (they learn of the update once a second),
   * or the reconnecting encoder could land on one of them again; if it does all the same, it is moved again.
   */
  async giveStream(canary: NodeRecord): Promise<void> {
    // a stream on the slate has no encoder to reconnect: only one with a publisher can be moved
    const streams = (await streamsOf(this.c)).filter((s) => s.state === "live" && !s.slate);
    if (streams.length === 0 || streams.some((s) => s.owner === canary.id)) return;
    const stream = [...streams].sort((a, b) => b.viewers - a.viewers)[0]!;
    await this.steering();
    let where = `still on ${stream.owner}`;
    for (let attempt = 1; attempt <= 3; attempt++) {
      const from = (await streamsOf(this.c).catch(() => [])).find((s) => s.id === stream.id) ?? stream;
      this.c.say(`canary ${canary.id}: moving stream ${stream.id} onto it (from ${from.owner})${attempt > 1 ? `, attempt ${attempt}` : ""}`);
      await call(this.c, `/admin/streams/${encodeURIComponent(stream.id)}/move`, { method: "POST", body: "{}" });
      const deadline = Date.now() + 15000;
      let elsewhere = false;
      while (Date.now() < deadline && !elsewhere) {
        const now = (await streamsOf(this.c).catch(() => [])).find((s) => s.id === stream.id);
        if (now?.owner === canary.id && now.state === "live" && !now.slate) return;
        // the encoder is back, on a node that is not the canary
        elsewhere = now !== undefined && now.epoch > from.epoch && now.owner !== canary.id && !now.slate;
        where = now ? `${now.slate ? "showing the slate" : "live"} on ${now.owner} (epoch ${now.epoch})` : "not live";
        if (!elsewhere) await sleep(250);
      }
    }
    this.c.say(`canary ${canary.id}: stream ${stream.id} did not land on it (it is ${where}); the canary is watched without it`);
  }

  /** Waits (10 s at most) until every ready node the update does not steer to says it steers publishers away. */
  private async steering(): Promise<void> {
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      const others = (await nodesOf(this.c).catch(() => [])).filter((n) => !this.active.steerTo.includes(n.id) && n.state === "ready");
      if (others.every((n) => n.load.steered === true)) return;
      // a release that does not report it: its nodes look for an update once a second
      if (others.some((n) => n.load.steered === undefined)) {
        await sleep(2000);
        return;
      }
      await sleep(250);
    }
  }

  /**
   * Watches the updated nodes against the others for `seconds`; the gates that failed. A release that breaks
   * requests (gate errors) or a node that falls over is stopped at the poll that sees it; the other gates
   * judge the whole window.
   */
  async soak(seconds: number, beforeSpeeds: number[]): Promise<GateFailure[]> {
    const { c } = this;
    const gates = this.o.rollout!;
    const updatedIds = new Set(this.updated.map((n) => n.id));
    const before = await sampleAll(c, await nodesOf(c));
    const speeds = { updated: [] as number[], others: [] as number[] };
    const sides = async (records: NodeRecord[]): Promise<{ updated: Window; others: Window }> => {
      const after = await sampleAll(c, records);
      const out = { updated: { ...emptyWindow(), speeds: speeds.updated }, others: { ...emptyWindow(), speeds: speeds.others } };
      for (const r of records) {
        const sample = after.get(r.id);
        if (sample) addNode(updatedIds.has(r.id) ? out.updated : out.others, r.id, before.get(r.id), sample);
      }
      return out;
    };
    const started = Date.now();
    const end = started + seconds * 1000;
    while (Date.now() < end) {
      await sleep(Math.min(2000, Math.max(0, end - Date.now())));
      const records = await nodesOf(c).catch(() => [] as NodeRecord[]);
      for (const n of this.updated) {
        const now = records.find((r) => r.id === n.id);
        if (!now || now.startedAt !== n.startedAt || now.state !== "ready") {
          return [{ gate: "node_back", updated: `${n.id} ${now ? (now.startedAt !== n.startedAt ? "restarted" : now.state) : "left the cluster"} during its soak (a crash loop?)`, baseline: "-" }];
        }
      }
      const sofar = await sides(records);
      const broken = judge(gates, sofar.updated, sofar.others.nodes.length > 0 ? sofar.others : null).filter((f) => f.gate === "errors");
      if (broken.length > 0) return broken;
      // the first seconds of a moved stream's transcoder say little (ffmpeg's speed starts low)
      if (Date.now() - started < 4000) continue;
      for (const r of records) for (const speed of Object.values(r.load.transcoders ?? {})) (updatedIds.has(r.id) ? speeds.updated : speeds.others).push(speed);
    }
    const { updated, others } = await sides(await nodesOf(c));
    c.say(
      `  watched ${seconds} s: updated ${[...updatedIds].join(",")} ${updated.errors}/${updated.requests} errors; ` +
        `not updated ${others.nodes.join(",") || "-"} ${others.errors}/${others.requests} errors; ` +
        `transcoder speeds ${speeds.updated.map((v) => v.toFixed(2)).join(",") || "-"} against ${speeds.others.map((v) => v.toFixed(2)).join(",") || "-"}`,
    );
    return judge(gates, updated, others.nodes.length > 0 ? others : null, beforeSpeeds);
  }
}

/**
 * Before a node drains: waits (the drain timeout at most) until each stream it is the active input of, and
 * that has had a hot standby in this update, has one ready on another node.
 */
async function standbysWarm(c: AdminClient, nodeId: string, step: string, timeoutMs: number, backed: Set<string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let said = false;
  for (;;) {
    const records = await nodesOf(c).catch(() => null);
    if (records) noteStandbys(records, backed);
    const warming = records ? warmingStandbys(records, nodeId, backed) : null;
    if (warming?.length === 0) return;
    const which = warming ? `the hot standby of ${warming.join(", ")}` : "the hot standbys (the registry did not answer)";
    if (Date.now() > deadline) {
      c.say(`${step}: ${which} not ready; draining anyway (the slate covers the switch)`);
      return;
    }
    if (!said) c.say(`${step}: waiting for ${which} to be ready`);
    said = true;
    await sleep(250);
  }
}

async function record(store: RolloutStore | null | undefined, event: RolloutEvent, say: (line: string) => void): Promise<void> {
  await store?.record(event).catch((error: unknown) => say(`could not record the history: ${errorMessage(error)}`));
}

/**
 * The rolling update. With `change`, a staged, gated update to its release that rolls back by itself on a
 * failed gate (throws RolloutFailed); without, every node restarts in place, stopping when errors rise.
 */
export async function rollingUpdate(c: AdminClient, o: RollingOptions, change: ReleaseChange | null = null): Promise<void> {
  const nodes = orderNodes(await nodesOf(c));
  if (nodes.length < 2) throw new Error(`a rolling update needs at least two nodes; the cluster has ${nodes.length}`);
  const readyBefore = nodes.filter((n) => n.state === "ready").length;
  const beforeSpeeds = nodes.flatMap((n) => Object.values(n.load.transcoders ?? {}));
  const ends = change && o.rollout ? stageEnds(o.rollout.steps, nodes.length) : [nodes.length];
  c.say(`rolling update of ${nodes.length} nodes: ${nodes.map((n) => n.id).join(", ")}${change ? ` to ${change.to.label}; stages ${ends.join(", ")}` : ""}`);
  const update = new Update(c, o, change, nodes.length);
  await update.begin();
  const startedAt = Date.now();
  try {
    let pending = nodes;
    const backed = new Set<string>();
    noteStandbys(nodes, backed);
    for (let i = 0; pending.length > 0; i++) {
      // the order again from what the nodes hold now: a standby's encoder that reconnected during the last
      // step may have landed on a node not updated yet, which then goes before the active input's node
      if (i > 0) {
        const fresh = await nodesOf(c).catch(() => []);
        pending = orderNodes(pending.map((n) => fresh.find((f) => f.id === n.id) ?? n));
      }
      const node = pending[0]!;
      pending = pending.slice(1);
      const step = `[${i + 1}/${nodes.length}] ${node.id}`;
      await standbysWarm(c, node.id, step, o.timeout * 1000, backed);
      const errorsBefore = await sampleAll(c, await nodesOf(c));
      const started = Date.now();
      let back: NodeRecord;
      try {
        back = await update.restart(node, change?.to ?? null, step);
      } catch (error) {
        if (error instanceof RolloutFailed && change) update.updated.push(node);
        throw error;
      }
      update.updated.push(back);
      await update.steer(update.updated.map((n) => n.id));
      const window = emptyWindow();
      const errorsAfter = await sampleAll(c, await nodesOf(c));
      for (const [id, sample] of errorsAfter) addNode(window, id, errorsBefore.get(id), sample);
      c.say(`${step}: back and ready in ${((Date.now() - started) / 1000).toFixed(1)} s (${window.errors} errors in ${window.requests} requests)`);
      if (!change && window.errors > 5 && window.errors / Math.max(1, window.requests) > o.maxErrorRate) {
        throw new Error(`${step}: error rate rose to ${((100 * window.errors) / window.requests).toFixed(1)}%; stopped the rolling update`);
      }
      if (change && o.rollout && ends.includes(i + 1)) {
        const canary = i === 0;
        if (canary) await update.giveStream(back);
        const seconds = canary ? o.rollout.canarySoak : o.rollout.stepSoak;
        c.say(`${canary ? `canary ${back.id}` : `step of ${i + 1} nodes`}: watching for ${seconds} s against the nodes not updated`);
        const failures = await update.soak(seconds, beforeSpeeds);
        if (failures.length > 0) throw new RolloutFailed(failures, `${canary ? "canary" : "step"} failed its gates`);
        c.say(`${canary ? "canary" : "step"} passed its gates`);
      }
      const ready = (await nodesOf(c)).filter((n) => n.state === "ready").length;
      if (ready < readyBefore) c.say(`warning: ${ready} nodes ready, fewer than the ${readyBefore} before the update`);
    }
  } catch (error) {
    if (!(error instanceof RolloutFailed) || !change) {
      await update.end();
      throw error;
    }
    const why = error.failures.map(describeFailure).join("; ");
    c.say(`rolling back: ${why}`);
    const restarted = update.updated.map((n) => n.id);
    await update.steer(nodes.filter((n) => !restarted.includes(n.id)).map((n) => n.id));
    const problems: string[] = [];
    for (const [i, node] of [...update.updated].reverse().entries()) {
      const current = (await nodesOf(c).catch(() => [])).find((n) => n.id === node.id) ?? node;
      await update.restart(current, change.from, `[rollback ${i + 1}/${update.updated.length}] ${node.id}`).catch((e: unknown) => problems.push(`${node.id}: ${errorMessage(e)}`));
    }
    await update.end();
    await record(o.store, { at: startedAt, kind: "update", from: change.from.label, to: change.to.label, outcome: problems.length ? "failed" : "rolled_back", why, nodes: restarted }, c.say);
    const tail = problems.length ? `; the rollback did not finish: ${problems.join("; ")}` : `; rolled back ${restarted.join(", ")} to ${change.from.label}`;
    throw new RolloutFailed(error.failures, `${why}${tail}`);
  }
  await update.end();
  if (change) {
    await o.store?.setLastGood(change.to);
    await record(o.store, { at: startedAt, kind: "update", from: change.from.label, to: change.to.label, outcome: "done", why: "every gate passed", nodes: nodes.map((n) => n.id) }, c.say);
  }
  c.say("rolling update done");
}

/**
 * `baton rollback`: every node not on the last good release (the local cluster's assignments) is drained
 * and restarted on it, one at a time.
 */
export async function rollback(c: AdminClient, o: RollingOptions & { stateDir: string; store: RolloutStore }, lastGood: ReleaseTarget): Promise<void> {
  const nodes = orderNodes(await nodesOf(c));
  const local = o.restartCommand.length === 0;
  const same = (a: ReleaseTarget): boolean => a.root === lastGood.root && a.config === lastGood.config;
  const off = local ? nodes.filter((n) => !same(assignedRelease(o.stateDir, n.id))) : nodes;
  if (off.length === 0) {
    c.say(`every node already runs the last good release (${lastGood.label})`);
    return;
  }
  const at = Date.now();
  const from = local ? assignedRelease(o.stateDir, off[0]!.id).label : "(the nodes' releases)";
  c.say(`rolling back ${off.map((n) => n.id).join(", ")} to ${lastGood.label}`);
  const update = new Update(c, { ...o, rollout: undefined }, null, nodes.length);
  await update.begin();
  await update.steer(nodes.filter((n) => !off.includes(n)).map((n) => n.id));
  try {
    for (const [i, node] of off.entries()) {
      await update.restart(node, lastGood, `[rollback ${i + 1}/${off.length}] ${node.id}`);
    }
  } catch (error) {
    await update.end();
    await record(o.store, { at, kind: "rollback", from, to: lastGood.label, outcome: "failed", why: errorMessage(error), nodes: off.map((n) => n.id) }, c.say);
    throw error;
  }
  await update.end();
  await record(o.store, { at, kind: "rollback", from, to: lastGood.label, outcome: "done", why: "by hand (baton rollback)", nodes: off.map((n) => n.id) }, c.say);
  c.say("rollback done");
}

/** `baton history`: past updates and rollbacks, newest first. */
export function historyTable(events: RolloutEvent[]): string {
  if (events.length === 0) return "no rolling update recorded";
  return events
    .map((e) => `${new Date(e.at).toISOString()}  ${e.kind.padEnd(8)}  ${e.outcome.padEnd(11)}  from ${e.from}  to ${e.to}  nodes ${e.nodes.join(",")}\n    why: ${e.why}`)
    .join("\n");
}
