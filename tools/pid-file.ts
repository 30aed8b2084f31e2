// The local cluster's record of the processes it started (var/local-cluster.pids), so that a launcher that died
// without stopping them (SIGKILL, a crash, a closed terminal on a system that does not pass SIGHUP on) leaves
// nothing that the next `npm start` cannot find and stop. Each entry names the process by pid and by its start
// time from /proc, so a pid the system has since given to another program is never touched.
import { readFileSync, rmSync, writeFileSync } from "node:fs";

export interface Recorded {
  name: string;
  pid: number;
  /** Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. */
  startTime: string;
}

/** The start time of a running process, or null when it is gone (or a zombie) or /proc is not there. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // the command name (field 2) is in parentheses and may hold spaces: count fields after its closing one
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z") return null;
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

export class PidFile {
  private readonly entries = new Map<string, Recorded>();

  constructor(readonly path: string) {}

  /** Records a child the launcher started (a node started again replaces its entry). */
  add(name: string, pid: number | undefined): void {
    if (pid === undefined) return;
    const startTime = processStartTime(pid);
    if (startTime === null) return;
    this.entries.set(name, { name, pid, startTime });
    this.write();
  }

  /** A clean stop: nothing is left to find. */
  clear(): void {
    this.entries.clear();
    rmSync(this.path, { force: true });
  }

  /** Every recorded process still running (same pid, same start time), for a last-moment kill on exit. */
  running(): Recorded[] {
    return [...this.entries.values()].filter((e) => processStartTime(e.pid) === e.startTime);
  }

  private write(): void {
    try {
      writeFileSync(this.path, JSON.stringify([...this.entries.values()]) + "\n");
    } catch {
      // the state dir went away: nothing to record into
    }
  }

  /**
   * Stops what a previous launcher recorded and left running (SIGTERM, then SIGKILL after `graceMs`); returns
   * their names. Entries whose pid is gone or now names another process are ignored.
   */
  static async stopLeftovers(path: string, graceMs = 5000): Promise<string[]> {
    let recorded: Recorded[];
    try {
      recorded = JSON.parse(readFileSync(path, "utf8")) as Recorded[];
    } catch {
      return [];
    }
    const alive = (e: Recorded): boolean => processStartTime(e.pid) === e.startTime;
    const left = Array.isArray(recorded) ? recorded.filter((e) => Number.isInteger(e?.pid) && typeof e.startTime === "string" && alive(e)) : [];
    for (const e of left) signal(e.pid, "SIGTERM");
    const deadline = Date.now() + graceMs;
    while (left.some(alive) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    for (const e of left.filter(alive)) signal(e.pid, "SIGKILL");
    while (left.some(alive) && Date.now() < deadline + 2000) await new Promise((resolve) => setTimeout(resolve, 50));
    rmSync(path, { force: true });
    return left.map((e) => `${e.name} (pid ${e.pid})`);
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}
