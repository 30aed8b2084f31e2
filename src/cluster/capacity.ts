// How many more streams this node can transcode in real time, from what it measures: the machine's CPU use, the
// CPU each of its transcoders uses, and whether they keep real time. `transcode.capacity` is the operator's
// upper bound; the measurement can only lower it. The agent check and publish admission both ask here, so
// HAProxy sends new publishers only to nodes with room and a node never takes a stream it cannot keep up with.
import { cpus } from "node:os";
import { readFileSync } from "node:fs";
import type { Config } from "../config/defaults.ts";
import type { NodeRecord } from "../core/model.ts";
import { DEGRADE_BELOW } from "../transcode/degrade.ts";

/** One measured stream: its transcoder's pid (to read its CPU time) and speed (media s per s), when known. */
export interface TranscoderSample {
  pid: number | null;
  speed: number | null;
}

/** What the node reads from the machine each tick; replaced in unit tests. */
export interface MachineProbe {
  /** Cumulative busy and total CPU time of the whole machine, in ms. */
  machine(): { busyMs: number; totalMs: number; cores: number };
  /** Cumulative CPU time (user + system) of a process, in ms; null when it cannot be read. */
  processMs(pid: number): number | null;
}

/** Linux's clock ticks per second for /proc/<pid>/stat (sysconf(_SC_CLK_TCK) is 100 on every Linux baton targets). */
const CLOCK_TICKS = 100;

export const systemProbe: MachineProbe = {
  machine() {
    let busy = 0;
    let total = 0;
    const all = cpus();
    for (const cpu of all) {
      const t = cpu.times;
      busy += t.user + t.nice + t.sys + t.irq;
      total += t.user + t.nice + t.sys + t.irq + t.idle;
    }
    return { busyMs: busy, totalMs: total, cores: Math.max(1, all.length) };
  },
  processMs(pid) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // the command name (field 2) may hold spaces and parentheses: count fields after its closing one
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const ticks = Number(fields[11]) + Number(fields[12]);
      return Number.isFinite(ticks) ? (ticks * 1000) / CLOCK_TICKS : null;
    } catch {
      return null;
    }
  },
};

/**
 * Cores one stream's transcoder needs before it was measured, per million pixels per second it encodes, by
 * x264 preset. Calibrated on a 2-core x86 VM (the default 720p/480p/360p veryfast ladder used about 1.4 cores
 * at 30 fps); only a first guess: a node with running transcoders uses what they really cost.
 */
const CORES_PER_MPIXEL_S: Record<Config["transcode"]["preset"], number> = {
  ultrafast: 0.009,
  superfast: 0.014,
  veryfast: 0.028,
  faster: 0.04,
  fast: 0.05,
  medium: 0.06,
  slow: 0.09,
};
/** Decoding the source and muxing, per stream, in cores. */
const BASE_CORES = 0.1;
/** Frame rate assumed for a rendition without a cap (most sources). */
const ASSUMED_FPS = 30;

/**
 * The cores a stream of this ladder is expected to take on this machine before any was measured. A top
 * rendition that copies the source (passthrough) costs nothing to speak of: no scale, no encode (its decode is
 * the one the other renditions need anyway). `copiesTop` defaults to whether transcode.passthrough is
 * "always"; with "auto" the prior stays the full encode, since a node cannot know its sources will fit, and the
 * measured cost of its streams replaces it as soon as one runs.
 */
export function ladderCost(
  transcode: Pick<Config["transcode"], "preset" | "ladder"> & Partial<Pick<Config["transcode"], "passthrough">>,
  copiesTop = transcode.passthrough === "always",
): number {
  let mpixelsPerSecond = 0;
  for (const r of copiesTop ? transcode.ladder.slice(1) : transcode.ladder) {
    const width = Math.ceil((r.height * 16) / 9);
    mpixelsPerSecond += (width * r.height * (r.maxFrameRate || ASSUMED_FPS)) / 1e6;
  }
  return BASE_CORES + mpixelsPerSecond * CORES_PER_MPIXEL_S[transcode.preset];
}

/** A transcoder below this speed is falling behind: the node takes no more streams (and the stream degrades). */
export const BEHIND_SPEED = DEGRADE_BELOW;
/** Weight of a new sample in the moving averages (about the last five seconds at one tick a second). */
const SMOOTHING = 0.3;

export interface CapacityOptions {
  /** `transcode.capacity`: streams at most, whatever the measurement says. */
  limit: number;
  /** `transcode.cpuTarget`: the share of the machine's CPU new streams may fill; 0: count streams only. */
  cpuTarget: number;
  /** Expected cores of one stream before one was measured (ladderCost). */
  prior: number;
  probe?: MachineProbe;
}

export interface Room {
  /** Streams this node may still take now. */
  slots: number;
  /** Why it has none, for the refusal and the logs. */
  why: string;
}

export class Capacity {
  private readonly probe: MachineProbe;
  private lastMachine: { busyMs: number; totalMs: number; cores: number } | null = null;
  private busy: number | null = null;
  private readonly lastProcess = new Map<number, { ms: number; at: number }>();
  private readonly coresOf = new Map<number, number>();
  private streams: TranscoderSample[] = [];

  constructor(private readonly o: CapacityOptions) {
    this.probe = o.probe ?? systemProbe;
  }

  /** Takes one measurement (once a second) of the machine and of the node's transcoders. */
  tick(streams: TranscoderSample[], now = Date.now()): void {
    this.streams = streams;
    const machine = this.probe.machine();
    if (this.lastMachine && machine.totalMs > this.lastMachine.totalMs) {
      const busy = (machine.busyMs - this.lastMachine.busyMs) / (machine.totalMs - this.lastMachine.totalMs);
      this.busy = this.busy === null ? busy : this.busy + SMOOTHING * (busy - this.busy);
    }
    this.lastMachine = machine;
    const alive = new Set<number>();
    for (const { pid } of streams) {
      if (pid === null) continue;
      alive.add(pid);
      const ms = this.probe.processMs(pid);
      const last = this.lastProcess.get(pid);
      if (ms === null) continue;
      if (last && now > last.at) {
        const cores = (ms - last.ms) / (now - last.at);
        const old = this.coresOf.get(pid);
        this.coresOf.set(pid, old === undefined ? cores : old + SMOOTHING * (cores - old));
      }
      this.lastProcess.set(pid, { ms, at: now });
    }
    for (const pid of this.lastProcess.keys()) {
      if (!alive.has(pid)) {
        this.lastProcess.delete(pid);
        this.coresOf.delete(pid);
      }
    }
  }

  /** Cores one more stream is expected to take: what this node's streams take on average, else the prior. */
  get costPerStream(): number {
    const measured = [...this.coresOf.values()];
    if (measured.length === 0) return this.o.prior;
    return Math.max(measured.reduce((a, b) => a + b, 0) / measured.length, BASE_CORES);
  }

  /** The machine's smoothed CPU use (0 to 1), once measured. */
  get machineBusy(): number | null {
    return this.busy;
  }

  /** Room for more streams, given the streams the node holds now (the last tick's when not given). */
  room(streams: TranscoderSample[] = this.streams): Room {
    const count = streams.length;
    const byCount = this.o.limit - count;
    if (byCount <= 0) return { slots: 0, why: `${count} streams, transcode.capacity is ${this.o.limit}` };
    if (this.o.cpuTarget <= 0) return { slots: byCount, why: "" };
    // an empty node always takes one: a stream this machine cannot keep up with runs nowhere better here
    if (count === 0) return { slots: byCount, why: "" };
    const behind = streams.find((s) => s.speed !== null && s.speed < BEHIND_SPEED);
    if (behind) return { slots: 0, why: `a transcoder runs at ${behind.speed?.toFixed(2)}x real time` };
    const cores = this.lastMachine?.cores ?? 1;
    const cost = this.costPerStream;
    // streams admitted but not measured yet have not shown in the machine's use: count them at their cost
    const unmeasured = streams.filter((s) => s.pid === null || !this.coresOf.has(s.pid)).length;
    const used = (this.busy ?? 0) * cores + unmeasured * cost;
    const free = cores * this.o.cpuTarget - used;
    const slots = Math.min(byCount, Math.max(0, Math.floor(free / cost)));
    if (slots === 0) {
      return { slots, why: `CPU ${Math.round((used / cores) * 100)}% used, a stream takes about ${cost.toFixed(2)} of ${cores} cores (target ${Math.round(this.o.cpuTarget * 100)}%)` };
    }
    return { slots, why: "" };
  }
}

/**
 * Whether another node has room for a stream, by the registry's records (each says its slots): a full node
 * tells a refused encoder to retry (HAProxy sends it elsewhere) or that the whole cluster is full.
 */
export function roomElsewhere(records: NodeRecord[], selfId: string, now: number, freshMs: number): boolean {
  return records.some((r) => r.id !== selfId && r.state === "ready" && now - r.heartbeatAt < freshMs && (r.load.slots ?? 1) > 0);
}
