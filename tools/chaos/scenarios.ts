// The chaos scenarios. Each acts on the cluster while the harness's publishers and viewers run, and marks
// what it did on the timeline.
import { nodesOf, type AdminClient } from "../admin-cli.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { errorMessage } from "../../src/core/errors.ts";
import { rollingUpdate } from "../rollout/run.ts";
import { BAD_RELEASES, makeBadRelease } from "../rollout/bad-releases.ts";
import { updateToRelease, withRolloutStore } from "../rollout/cli.ts";
import type { RolloutStore } from "../../src/state/rollouts.ts";
import type { LocalCluster } from "../local-cluster.ts";
import { waitUntil } from "../processes.ts";
import type { ReconnectingPublisher } from "./publisher.ts";
import type { TimelineEventKind } from "./timeline-chart.ts";

export const SCENARIOS = ["rolling-update", "node-crash", "redis-restart", "redis-freeze", "redis-failover", "publisher-flap", "bad-release"] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface ScenarioContext {
  admin: AdminClient;
  /** Set when the harness runs its own local cluster: what only it can do (kill a node, stop Redis). */
  local: LocalCluster | null;
  publishers: ReconnectingPublisher[];
  streams: string[];
  quick: boolean;
  restartCommand: string[];
  drainDeadline: number;
  mark(kind: TimelineEventKind, label: string): void;
  progress(line: string): void;
  /** Resolves once every stream listed `count` more segments (viewers had time to notice). */
  settle(count: number): Promise<void>;
  /** Drain durations measured during the run (request to drained), ms by node. */
  drains: { node: string; ms: number }[];
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function needLocal(ctx: ScenarioContext, name: string): LocalCluster {
  if (!ctx.local) throw new Error(`the ${name} scenario needs the local cluster (it kills processes); run without --url`);
  return ctx.local;
}

async function streamOwners(ctx: ScenarioContext): Promise<Map<string, { owner: string; epoch: number }>> {
  const r = await fetch(`${ctx.admin.url}/api/streams`, { headers: { Authorization: `Bearer ${ctx.admin.token}` }, signal: AbortSignal.timeout(5000) });
  const body = (await r.json()) as { streams: { id: string; owner: string; epoch: number }[] };
  return new Map(body.streams.map((s) => [s.id, { owner: s.owner, epoch: s.epoch }]));
}

async function rolling(ctx: ScenarioContext): Promise<void> {
  const started = new Map<string, number>();
  const update = (store: RolloutStore | null): Promise<void> =>
    rollingUpdate(ctx.admin, {
      restartCommand: ctx.local ? [] : ctx.restartCommand,
      timeout: ctx.drainDeadline + 60,
      maxErrorRate: 0.01,
      readyChecks: 3,
      // the local cluster's Redis: its nodes steer publishers to the updated nodes (a stream moves once)
      store,
      onStep: (step, node) => {
        if (step === "drain") started.set(node, Date.now());
        if (step === "drained") ctx.drains.push({ node, ms: Date.now() - (started.get(node) ?? Date.now()) });
        ctx.mark(step === "back" ? "restart" : step, `${step} ${node}`);
      },
    });
  const local = ctx.local;
  await (local ? withRolloutStore(local.redisConfig, update) : update(null));
  await ctx.settle(2);
}

/** SIGKILL a node that owns a stream, then one that only serves viewers; each comes back by itself. */
async function nodeCrash(ctx: ScenarioContext): Promise<void> {
  const local = needLocal(ctx, "node-crash");
  const owners = await streamOwners(ctx);
  const nodes = (await nodesOf(ctx.admin)).map((n) => n.id);
  const owner = owners.get(ctx.streams[0]!)!.owner;
  const viewerOnly = nodes.find((n) => ![...owners.values()].some((o) => o.owner === n)) ?? nodes.find((n) => n !== owner)!;
  for (const victim of [owner, viewerOnly]) {
    const before = await nodesOf(ctx.admin);
    const startedAt = before.find((n) => n.id === victim)?.startedAt ?? 0;
    ctx.progress(`SIGKILL ${victim}`);
    ctx.mark("kill", `kill ${victim}`);
    local.kill(victim);
    await waitUntil(`${victim} back`, async () => (await nodesOf(ctx.admin)).some((n) => n.id === victim && n.startedAt > startedAt && n.state === "ready"), 60000);
    ctx.mark("restart", `${victim} back`);
    await ctx.settle(3);
  }
}

/**
 * Redis stopped for longer than the owner's lease and a cached timeline's trust: the owners offer their new
 * segments to the other nodes directly, every node keeps listing them, nothing is lost.
 */
async function redisRestart(ctx: ScenarioContext): Promise<void> {
  const local = needLocal(ctx, "redis-restart");
  ctx.progress("stopping Redis");
  ctx.mark("redis-stop", "redis stop");
  if (!(await local.stopRedis())) throw new Error("the redis-restart scenario needs the local cluster's own Redis (unset REDIS_URL)");
  await sleep(ctx.quick ? 10000 : 15000);
  ctx.progress("starting Redis");
  await local.startRedis();
  ctx.mark("redis-start", "redis start");
  await waitUntil("every node ready", async () => (await nodesOf(ctx.admin)).every((n) => n.state === "ready"), 30000);
  await ctx.settle(3);
}

/** Redis frozen (SIGSTOP: its sockets open, no answer) for 15 s, then thawed: the same as a stop for viewers. */
async function redisFreeze(ctx: ScenarioContext): Promise<void> {
  const local = needLocal(ctx, "redis-freeze");
  ctx.progress("freezing Redis (SIGSTOP)");
  ctx.mark("redis-stop", "redis freeze");
  if (!local.signalRedis("SIGSTOP")) throw new Error("the redis-freeze scenario needs the local cluster's own Redis (unset REDIS_URL)");
  try {
    await sleep(15000);
  } finally {
    local.signalRedis("SIGCONT");
  }
  ctx.mark("redis-start", "redis thaw");
  ctx.progress("Redis thawed (SIGCONT)");
  await waitUntil("every node ready", async () => (await nodesOf(ctx.admin)).every((n) => n.state === "ready"), 30000);
  await ctx.settle(3);
}

/**
 * A Redis Sentinel failover (the local cluster runs a primary, a replica and three sentinels): the primary is
 * SIGKILLed, the sentinels take seconds to agree and promote the replica, the nodes follow; viewers see nothing.
 */
async function redisFailover(ctx: ScenarioContext): Promise<void> {
  const local = needLocal(ctx, "redis-failover");
  ctx.progress("killing the Redis primary (SIGKILL); the sentinels promote its replica");
  ctx.mark("redis-stop", "redis primary killed");
  const { from, to } = await local.failoverRedis();
  ctx.mark("redis-start", `replica promoted (port ${from} to ${to})`);
  ctx.progress(`the sentinels promoted port ${to}; port ${from} is back as its replica`);
  await waitUntil("every node ready", async () => (await nodesOf(ctx.admin)).every((n) => n.state === "ready"), 30000);
  await ctx.settle(3);
}

/** The encoder's network drops and it reconnects, again and again. */
async function publisherFlap(ctx: ScenarioContext): Promise<void> {
  const flaps = ctx.quick ? 2 : 5;
  for (let i = 1; i <= flaps; i++) {
    const publisher = ctx.publishers[0]!;
    const pid = publisher.pid;
    ctx.progress(`publisher drop ${i}/${flaps}`);
    ctx.mark("publisher-drop", `drop ${i}`);
    if (pid) process.kill(pid, "SIGKILL");
    await ctx.settle(3);
  }
}

/**
 * Four bad releases, each refused or caught at the canary and rolled back with the other nodes untouched:
 * another segment duration (refused before anything is touched), segment requests that fail, a crash loop, a
 * transcoder too slow for real time. Throws if one gets through.
 */
async function badRelease(ctx: ScenarioContext): Promise<void> {
  const local = needLocal(ctx, "bad-release");
  const dir = mkdtempSync(join(tmpdir(), "baton-bad-release-"));
  const soak = (quick: number, full: number): number => (ctx.quick ? quick : full);
  const { rollout } = local.config;
  const config = { ...local.config, rollout: { ...rollout, canarySoak: soak(10, rollout.canarySoak), stepSoak: soak(5, rollout.stepSoak), readyTimeout: 30 } };
  try {
    await withRolloutStore(local.redisConfig, async (store) => {
      for (const kind of BAD_RELEASES) {
        const [flag, path] = makeBadRelease(kind, join(dir, kind), local.config.hls.segmentDuration);
        ctx.progress(`bad release ${kind} (${flag} ${path})`);
        ctx.mark("phase", `bad release ${kind}`);
        const caught = await updateToRelease({ client: ctx.admin, config, store, stateDir: local.dir }, flag === "--to" ? { to: path } : { config: path }).then(
          () => null,
          (error: unknown) => errorMessage(error),
        );
        if (caught === null) throw new Error(`the bad release ${kind} went through every gate`);
        ctx.progress(`bad release ${kind}: ${caught}`);
        await ctx.settle(2);
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const RUN: Record<ScenarioName, (ctx: ScenarioContext) => Promise<void>> = {
  "bad-release": badRelease,
  "rolling-update": rolling,
  "node-crash": nodeCrash,
  "redis-restart": redisRestart,
  "redis-freeze": redisFreeze,
  "redis-failover": redisFailover,
  "publisher-flap": publisherFlap,
};
