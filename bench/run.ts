// baton's benchmarks: `npm run bench -- [--quick] [--out FILE] [--only NAME,...]`.
// Runs each benchmark in turn, prints a table of the figures, each beside a baseline measured in the same run
// where one exists, and writes the figures as JSON to --out. Every process started is stopped by pid and
// every temp dir removed, also on Ctrl-C. Exits 1 if a benchmark failed (targets are printed, not enforced).
import { execFileSync } from "node:child_process";
import { loadavg } from "node:os";
import { errorMessage } from "../src/core/errors.ts";
import { delivery } from "./delivery.ts";
import { drain } from "./drain.ts";
import { firstPlaylist } from "./first-playlist.ts";
import { capacity } from "./capacity.ts";
import { hostile } from "./hostile.ts";
import { redisFootprint } from "./redis-footprint.ts";
import { cleanup, cpuTotals } from "./procs.ts";
import { PROPAGATION_ENV, frozenFigure, frozenPropagation, measurePropagation, propagationFigures, s3Propagation, type LiveStream } from "./propagation.ts";
import { reconnect } from "./reconnect.ts";
import { rollout } from "./rollout.ts";
import { sessions } from "./sessions.ts";
import { standbyCost } from "./standby.ts";
import { formatTable, machineInfo, writeJson, type BenchResult, type Figure, type RunReport } from "./report.ts";
import { startCluster, stopCluster, type Cluster } from "./stack.ts";
import { transcodeCpu } from "./transcode-cpu.ts";
import { passthroughBench } from "./passthrough.ts";
import { viewersPerNode } from "./viewers-per-node.ts";

const USAGE = "usage: npm run bench -- [--quick] [--out FILE] [--only transcode-cpu,passthrough,first-playlist,propagation,reconnect,sessions,delivery,viewers,drain,hostile,redis-footprint,capacity,rollout,standby]";

interface Context {
  quick: boolean;
  log: (line: string) => void;
  cluster: Cluster | null;
  live: LiveStream | null;
}

interface Bench {
  name: string;
  run: (ctx: Context) => Promise<Figure[]>;
}

async function cluster(ctx: Context): Promise<Cluster> {
  if (!ctx.cluster) {
    ctx.log("starting redis-server and 3 baton nodes");
    // the propagation bench starts it (reconnect then reuses it and its live stream)
    ctx.cluster = await startCluster(3, PROPAGATION_ENV);
  }
  return ctx.cluster;
}

const BENCHES: Bench[] = [
  { name: "transcode-cpu", run: (ctx) => transcodeCpu(ctx) },
  { name: "passthrough", run: (ctx) => passthroughBench(ctx) },
  { name: "first-playlist", run: (ctx) => firstPlaylist(ctx) },
  {
    name: "propagation",
    run: async (ctx) => {
      const count = ctx.quick ? 20 : 60;
      // s3 first, on a cluster of its own stopped after, so that no other stream transcodes meanwhile
      const s3 = await s3Propagation({ count, log: ctx.log });
      const fs = await measurePropagation(await cluster(ctx), { count, store: "fs", log: ctx.log });
      ctx.live = fs.live;
      const frozen = await frozenPropagation(await cluster(ctx), fs.live, { count: ctx.quick ? 6 : 15, log: ctx.log });
      return [...propagationFigures(fs, s3), frozenFigure(frozen, fs)];
    },
  },
  { name: "reconnect", run: async (ctx) => reconnect(await cluster(ctx), ctx.live, ctx) },
  { name: "sessions", run: (ctx) => sessions(ctx) },
  { name: "delivery", run: (ctx) => delivery(ctx) },
  { name: "viewers", run: (ctx) => viewersPerNode(ctx) },
  { name: "drain", run: (ctx) => drain(ctx) },
  { name: "hostile", run: (ctx) => hostile(ctx) },
  { name: "capacity", run: (ctx) => capacity(ctx) },
  { name: "redis-footprint", run: (ctx) => redisFootprint(ctx) },
  { name: "rollout", run: (ctx) => rollout(ctx) },
  { name: "standby", run: (ctx) => standbyCost(ctx) },
];

function parseArgs(argv: string[]): { quick: boolean; out: string | null; only: string[] | null } {
  const parsed = { quick: false, out: null as string | null, only: null as string[] | null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--quick") parsed.quick = true;
    else if (arg === "--out" || arg === "--only") {
      const value = argv[++i];
      if (!value || value.startsWith("--")) throw new Error(`${arg} needs a value`);
      if (arg === "--out") parsed.out = value;
      else parsed.only = value.split(",");
    } else if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument ${arg}`);
  }
  const unknown = parsed.only?.filter((name) => !BENCHES.some((b) => b.name === name)) ?? [];
  if (unknown.length > 0) throw new Error(`no benchmark named ${unknown.join(", ")}`);
  return parsed;
}

function ffmpegVersion(): string {
  try {
    return execFileSync("ffmpeg", ["-version"], { encoding: "utf8" }).split("\n")[0]!.split(" Copyright")[0]!.trim();
  } catch {
    return "ffmpeg not found";
  }
}

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench: ${errorMessage(error)}\n${USAGE}\n`);
    return 2;
  }
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\nbench: ${signal}: stopping every process started, removing temp dirs\n`);
    void cleanup(true).finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const report: RunReport = {
    date: new Date().toISOString(),
    quick: args.quick,
    machine: machineInfo(ffmpegVersion()),
    results: [],
  };
  const started = Date.now();
  const cpuStart = cpuTotals();
  const ctx: Context = { quick: args.quick, log: () => undefined, cluster: null, live: null };
  try {
    for (const bench of BENCHES) {
      if (args.only && !args.only.includes(bench.name)) continue;
      const t0 = Date.now();
      ctx.log = (line) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${bench.name}: ${line}\n`);
      ctx.log("start");
      const result: BenchResult = { bench: bench.name, seconds: 0, figures: [] };
      try {
        result.figures = await bench.run(ctx);
      } catch (error) {
        result.error = errorMessage(error);
        ctx.log(`FAILED: ${result.error}`);
      }
      result.seconds = (Date.now() - t0) / 1000;
      report.results.push(result);
      if (interrupted) break;
    }
  } finally {
    if (ctx.cluster) await stopCluster(ctx.cluster).catch(() => undefined);
    await cleanup();
  }
  report.machine.loadEnd = loadavg().map((l) => Math.round(l * 100) / 100);
  const cpuEnd = cpuTotals();
  const other = Math.max(0, cpuEnd.machine - cpuStart.machine - (cpuEnd.ours - cpuStart.ours));
  report.machine.otherCpu = { seconds: other, share: other / (((Date.now() - started) / 1000) * report.machine.cpus) };
  process.stdout.write(`\n${formatTable(report)}`);
  if (args.out) {
    writeJson(args.out, report);
    process.stdout.write(`figures written to ${args.out}\n`);
  }
  return report.results.some((r) => r.error) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench: ${errorMessage(error)}\n`);
    void cleanup().finally(() => process.exit(1));
  },
);
