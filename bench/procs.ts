// What every benchmark shares: child processes and temp dirs tracked for cleanup (by pid, also on Ctrl-C),
// the CPU time of reaped children, HTTP GETs on a keep-alive connection, polling helpers.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startProcess, stopProcess, type Managed, type SpawnOptions } from "../tools/processes.ts";

const running = new Set<Managed>();
const dirs = new Set<string>();
let stopping = false;

/** Starts a child process (argument list, no shell) that cleanup() stops if nobody else did. */
export function spawnTracked(name: string, command: string, args: string[], options: SpawnOptions = {}): Managed {
  if (stopping) throw new Error("benchmark interrupted");
  return track(startProcess(name, command, args, options));
}

/** Registers a process started elsewhere (startRedis) for cleanup. */
export function track(p: Managed): Managed {
  running.add(p);
  void p.exited.then(() => running.delete(p));
  return p;
}

/** Stops one process by pid: `signal`, then SIGKILL after `graceMs`. */
export async function stop(p: Managed | null | undefined, signal: NodeJS.Signals = "SIGTERM", graceMs = 5000): Promise<void> {
  if (!p) return;
  await stopProcess(p, signal, graceMs);
  running.delete(p);
}

export function tempDir(name: string): string {
  if (stopping) throw new Error("benchmark interrupted");
  const dir = mkdtempSync(join(tmpdir(), `baton-bench-${name}-`));
  dirs.add(dir);
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

/** Stops every process still running (SIGTERM, SIGKILL after 5 s) and removes every temp dir. */
export async function cleanup(interrupted = false): Promise<void> {
  if (interrupted) stopping = true;
  await Promise.all([...running].map((p) => stop(p, "SIGTERM", 5000)));
  for (const dir of [...dirs]) removeDir(dir);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let ticksPerSecond = 0;

function ticks(): number {
  if (!ticksPerSecond) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** Fields 3 onwards of /proc/self/stat (after the command name, which may hold spaces): index 0 is field 3. */
function selfStat(pid: number | "self" = "self"): number[] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
}

/** CPU seconds (user + system, all threads) a running process has used so far, and its reaped children. */
export function processCpu(pid: number): { own: number; reaped: number } {
  const f = selfStat(pid);
  return { own: (f[11]! + f[12]!) / ticks(), reaped: (f[13]! + f[14]!) / ticks() };
}

/**
 * CPU seconds used by the whole machine (busy time of /proc/stat) and by this process with every child it
 * reaped. After cleanup, the difference between the two deltas is what other processes used meanwhile.
 */
export function cpuTotals(): { machine: number; ours: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: idle and iowait are not busy
  const busy = line.slice(0, 8).reduce((sum, v, i) => (i === 3 || i === 4 ? sum : sum + v), 0);
  const f = selfStat();
  return { machine: busy / ticks(), ours: (f[11]! + f[12]! + f[13]! + f[14]!) / ticks() };
}

/**
 * CPU seconds (user + system) of every child this process has reaped so far: fields 16 and 17 (cutime,
 * cstime) of /proc/self/stat. The difference around a child's whole life is exactly the CPU it used, all
 * threads included, as long as no other child is reaped in between.
 */
export function reapedChildrenCpu(): number {
  const f = selfStat();
  return (f[13]! + f[14]!) / ticks();
}

/** One GET; `agent` keeps the connection open between polls. */
export function httpGet(url: string, agent?: Agent, timeoutMs = 5000): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

export function keepAlive(): Agent {
  return new Agent({ keepAlive: true, maxSockets: 1 });
}

/** Highest sequence number a media playlist lists (its `N.{claim}.ts` lines), or -1. */
export function lastListedSeq(playlist: string): number {
  let last = -1;
  for (const match of playlist.matchAll(/^(\d+)\.[0-9a-f]{12}\.ts/gm)) last = Math.max(last, Number(match[1]));
  return last;
}

/** Polls until `probe` returns a value other than undefined; throws naming `what` after the timeout. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    if (stopping) throw new Error("benchmark interrupted");
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ""}`);
    await sleep(everyMs);
  }
}

/** Keeps the last `n` output lines of a process, to explain a failure. */
export function tail(n = 12): { lines: string[]; onLine: (line: string) => void } {
  const lines: string[] = [];
  return {
    lines,
    onLine: (line) => {
      lines.push(line.length > 400 ? `${line.slice(0, 400)}...` : line);
      if (lines.length > n) lines.shift();
    },
  };
}

/** Resolves with the exit; throws with the output's tail unless ffmpeg (or another tool) exited 0. */
export async function succeeded(p: Managed, lines: string[]): Promise<void> {
  const exit = await p.exited;
  if (exit.code !== 0) throw new Error(`${p.name} exited with ${exit.code ?? exit.signal}: ${lines.slice(-4).join(" | ")}`);
}
