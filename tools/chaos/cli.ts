// `npm run chaos`: the resilience harness. Runs a scenario against the local cluster (or a running deployment
// with --url), prints progress and a summary, writes the JSON report and a PNG timeline (--out), and exits
// non-zero when an invariant broke.
//
//   npm run chaos -- --scenario rolling-update|node-crash|redis-restart|redis-freeze|redis-failover|publisher-flap|bad-release|all
//                    (or several, comma-separated, run one after the other)
//                    [--quick] [--backup] [--sentinel] [--streams N] [--viewers N] [--browsers N] [--nodes N] [--out FILE]
//                    [--url URL --admin-token TOKEN --publish-url URL ...]
import { writeFileSync } from "node:fs";
import { runChaos, type ChaosOptions } from "./harness.ts";
import { summary } from "./report.ts";
import { SCENARIOS, type ScenarioName } from "./scenarios.ts";
import { renderTimeline } from "./timeline-chart.ts";
import { errorMessage } from "../../src/core/errors.ts";

const USAGE = `usage: npm run chaos -- --scenario ${[...SCENARIOS, "all"].join("|")}[,...] [--quick] [--backup] [--sentinel] [--streams N] [--viewers N]
         [--browsers N] [--nodes N] [--out FILE] [--url URL --admin-token TOKEN --publish-url URL ...]`;

function parse(argv: string[]): ChaosOptions & { out: string | null } {
  const values = new Map<string, string[]>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--quick" || arg === "--backup" || arg === "--sentinel") flags.add(arg);
    else if (["--scenario", "--streams", "--viewers", "--browsers", "--nodes", "--out", "--url", "--admin-token", "--publish-url"].includes(arg)) {
      const value = argv[++i];
      if (value === undefined || value.startsWith("--")) throw new Error(`${arg} needs a value`);
      values.set(arg, [...(values.get(arg) ?? []), value]);
    } else throw new Error(`unknown argument ${arg}`);
  }
  const one = (name: string): string | undefined => values.get(name)?.[0];
  const scenario = one("--scenario");
  const names = scenario?.split(",") ?? [];
  const known = (name: string): name is ScenarioName => (SCENARIOS as readonly string[]).includes(name);
  if (scenario !== "all" && (names.length === 0 || !names.every(known))) {
    throw new Error(`--scenario is one of ${[...SCENARIOS, "all"].join(", ")}, or several of them comma-separated`);
  }
  const quick = flags.has("--quick");
  const count = (name: string, fallback: number, max: number): number => {
    const text = one(name);
    const n = text === undefined ? fallback : Number(text);
    if (!Number.isInteger(n) || n < 0 || n > max) throw new Error(`${name} takes a whole number from 0 to ${max}`);
    return n;
  };
  return {
    scenario: scenario === "all" ? "all" : names.filter(known),
    quick,
    streams: Math.max(1, count("--streams", quick ? 1 : 2, 16)),
    viewers: count("--viewers", quick ? 20 : 100, 5000),
    browsers: count("--browsers", quick ? 1 : 2, 8),
    nodes: Math.max(2, count("--nodes", 3, 16)),
    // a backup encoder per stream (redundant ingest): what a broadcaster who pays for no stall runs
    backup: flags.has("--backup"),
    sentinel: flags.has("--sentinel"),
    url: one("--url"),
    adminToken: one("--admin-token") ?? process.env.BATON_ADMIN_TOKEN,
    publishUrls: values.get("--publish-url"),
    out: one("--out") ?? null,
    progress: (line) => process.stderr.write(`chaos: ${line}\n`),
  };
}

async function main(): Promise<number> {
  const options = parse(process.argv.slice(2));
  const report = await runChaos(options);
  console.log(`\n${summary(report)}\n`);
  if (options.out) {
    writeFileSync(options.out, JSON.stringify(report, null, 2) + "\n");
    const png = options.out.replace(/\.json$/, "") + ".png";
    writeFileSync(png, renderTimeline(report.timeline));
    console.log(`report: ${options.out}\ntimeline: ${png}`);
  }
  return report.invariants.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`chaos: ${errorMessage(error)}\n`);
    if (/needs a value|unknown argument|--scenario|takes a whole/.test(errorMessage(error))) process.stderr.write(`${USAGE}\n`);
    process.exit(2);
  },
);
