// Benchmark: what a hot standby costs (redundant ingest, src/stream/standby.ts). A real redis-server and two
// baton nodes; one 720p source pushed twice, the primary to node 1 and the backup (`&role=backup`) to node 2,
// where it stands by: its transcoder runs to the stream's ladder, its segments stay unlisted. The figure is the
// CPU the standby's transcoder used over a window against the active one's over the same window (the baseline;
// every ffmpeg run of each, a preset switch included);
// beside it, each node process's own CPU (without its children), the active one writing to the store and Redis.
// --quick uses the tests' light ladder; the full run the production ladder and preset.
import { execFileSync } from "node:child_process";
import { compared, type Figure } from "./report.ts";
import { httpGet, processCpu, sleep, stop, waitFor } from "./procs.ts";
import { lightLadderEnv } from "./live.ts";
import { benchPrefix, publish, startBenchNode, startBenchRedis, streamName, type BenchNode } from "./stack.ts";

/**
 * CPU seconds a node's transcoders used so far: the ffmpeg runs it reaped (a preset switch or a restart starts a
 * new run) and the ones running now, read where a pid may be gone (ENOENT: it is being reaped).
 */
function transcoderCpu(node: BenchNode): number {
  let sum = processCpu(node.proc.child.pid!).reaped;
  for (const pid of transcoders(node)) {
    try {
      sum += processCpu(pid).own;
    } catch {
      // exited between the listing and the read: counted among the reaped at the next look
    }
  }
  return sum;
}

/** The ffmpeg processes a node runs (its transcoders). */
function transcoders(node: BenchNode): number[] {
  try {
    return execFileSync("pgrep", ["-P", String(node.proc.child.pid), "ffmpeg"], { encoding: "utf8" }).trim().split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function inputs(node: BenchNode, role: string, state: string): Promise<number> {
  const text = (await httpGet(node.http("/metrics"), node.agent)).text;
  const match = new RegExp(`^baton_ingest_inputs\\{[^}]*role="${role}"[^}]*state="${state}"[^}]*\\} (\\d+)$`, "m").exec(text);
  return match ? Number(match[1]) : 0;
}

export async function standbyCost(ctx: { quick: boolean; log: (line: string) => void }): Promise<Figure[]> {
  const redis = await startBenchRedis();
  const prefix = benchPrefix();
  const env = ctx.quick ? lightLadderEnv() : {};
  const [active, standby] = [
    await startBenchNode({ redisUrl: redis.url, prefix, id: "bench-active", env }),
    await startBenchNode({ redisUrl: redis.url, prefix, id: "bench-standby", env }),
  ];
  const id = streamName("standby");
  const primary = publish(active.rtmp(id));
  let backup: ReturnType<typeof publish> | null = null;
  try {
    await waitFor("the primary active", async () => ((await inputs(active, "primary", "active")) === 1 ? true : undefined), 60000, 250);
    backup = publish(`${standby.rtmp(id)}&role=backup`);
    await waitFor("the backup standing by, transcoding", async () => ((await inputs(standby, "backup", "standby")) === 1 && transcoders(standby).length === 1 ? true : undefined), 60000, 250);
    await sleep(5000); // past both transcoders' start (probe, first segments)
    const seconds = ctx.quick ? 15 : 60;
    ctx.log(`measuring both transcoders for ${seconds} s`);
    const sample = (): number[] => [transcoderCpu(active), transcoderCpu(standby), processCpu(active.proc.child.pid!).own, processCpu(standby.proc.child.pid!).own];
    const before = sample();
    await sleep(seconds * 1000);
    const used = sample().map((v, i) => v - before[i]!);
    const ladder = ctx.quick ? "light ladder" : "production ladder";
    return [
      compared(`hot standby's ffmpeg CPU over ${seconds} s (${ladder})`, "cpu s", used[1]!, "the active input's ffmpeg", used[0]!, { note: "a whole transcoder: ~1x" }),
      compared(`standby node process CPU (no children) over ${seconds} s`, "cpu s", used[3]!, "the active node process", used[2]!, { note: "no store or Redis writes" }),
    ];
  } finally {
    await stop(backup);
    await stop(primary);
    await Promise.all([active, standby].map((n) => stop(n.proc, "SIGTERM", 10000)));
    for (const n of [active, standby]) n.agent.destroy();
    await stop(redis.proc, "SIGTERM", 5000);
  }
}
