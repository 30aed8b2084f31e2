// The rollout's gates: what the updated nodes did over a window, against what the not-updated nodes did over
// the same window (Kayenta's canary-against-baseline). Each node's /metrics is read at the window's start and
// end; a node that restarted in between counts from zero. Pure functions: the runner (run.ts) samples, these
// judge.
import type { Config } from "../../src/config/defaults.ts";

/** Cumulative histogram buckets: upper bound in seconds -> observations at or below it (+Inf included). */
type Buckets = Map<number, number>;

/** The counters the gates read, of one node at one moment (since its process started) or of a side over a window. */
interface Readings {
  /** Viewer HLS requests (master, media playlists, segments) and those answered 5xx. */
  requests: number;
  errors: number;
  playlist: Buckets;
  segment: Buckets;
  publish: Buckets;
  /** Streams the transcoder stepped down to a faster preset (it fell behind real time). */
  degraded: number;
  /** Viewer stalls players reported (CMCD buffer starvation and the player page), and viewer-seconds watched. */
  stalls: number;
  watchedSeconds: number;
}

const noReadings = (): Readings => ({ requests: 0, errors: 0, playlist: new Map(), segment: new Map(), publish: new Map(), degraded: 0, stalls: 0, watchedSeconds: 0 });

/** What one node's /metrics said at one moment. */
export interface Sample extends Readings {
  startedAt: number;
}

const VIEWER_ROUTES = new Set(["master", "media", "segment"]);

function labelsOf(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/(\w+)="([^"]*)"/g)) out[m[1]!] = m[2]!;
  return out;
}

/** Reads what the gates need from a node's Prometheus text. */
export function parseSample(text: string, startedAt: number): Sample {
  const s: Sample = { ...noReadings(), startedAt };
  const add = (b: Buckets, le: string | undefined, value: number): void => {
    const bound = le === "+Inf" ? Infinity : Number(le);
    if (!Number.isNaN(bound)) b.set(bound, (b.get(bound) ?? 0) + value);
  };
  for (const line of text.split("\n")) {
    const m = /^(\w+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const [, name, labelText, valueText] = m;
    const value = Number(valueText);
    if (!Number.isFinite(value)) continue;
    const labels = labelsOf(labelText ?? "");
    if (name === "baton_http_requests_total" && VIEWER_ROUTES.has(labels.route ?? "")) {
      s.requests += value;
      if (/^5\d\d$/.test(labels.status ?? "")) s.errors += value;
    } else if (name === "baton_http_request_duration_seconds_bucket" && labels.route === "media") add(s.playlist, labels.le, value);
    else if (name === "baton_http_request_duration_seconds_bucket" && labels.route === "segment") add(s.segment, labels.le, value);
    else if (name === "baton_segment_publish_latency_seconds_bucket") add(s.publish, labels.le, value);
    else if (name === "baton_transcoder_preset_changes_total" && labels.direction === "degrade") s.degraded += value;
    else if (name === "baton_viewer_stalls_total") s.stalls += value;
    else if (name === "baton_viewer_watched_seconds_total") s.watchedSeconds += value;
  }
  return s;
}

/** What one side (updated, or not) did in the window: the nodes' deltas summed. */
export interface Window extends Readings {
  nodes: string[];
  /** Transcoder speeds seen on the side's nodes during the window (registry records, one per stream a poll). */
  speeds: number[];
}

export function emptyWindow(): Window {
  return { ...noReadings(), nodes: [], speeds: [] };
}

function addBuckets(into: Buckets, after: Buckets, before: Buckets | null): void {
  for (const [le, count] of after) into.set(le, (into.get(le) ?? 0) + count - (before?.get(le) ?? 0));
}

/** Adds a node's window (its sample at the start and at the end) to a side. */
export function addNode(side: Window, id: string, before: Sample | undefined, after: Sample): void {
  const from = before && before.startedAt === after.startedAt ? before : null;
  side.nodes.push(id);
  side.requests += after.requests - (from?.requests ?? 0);
  side.errors += after.errors - (from?.errors ?? 0);
  side.degraded += after.degraded - (from?.degraded ?? 0);
  side.stalls += after.stalls - (from?.stalls ?? 0);
  side.watchedSeconds += after.watchedSeconds - (from?.watchedSeconds ?? 0);
  addBuckets(side.playlist, after.playlist, from?.playlist ?? null);
  addBuckets(side.segment, after.segment, from?.segment ?? null);
  addBuckets(side.publish, after.publish, from?.publish ?? null);
}

/** Observations in a histogram. */
const countOf = (b: Buckets): number => b.get(Infinity) ?? Math.max(0, ...b.values());

/** The 99th percentile as the upper bound of its bucket (Infinity past the last finite bound); null when empty. */
export function p99(b: Buckets): number | null {
  const total = countOf(b);
  if (total <= 0) return null;
  for (const le of [...b.keys()].sort((x, y) => x - y)) if ((b.get(le) ?? 0) >= 0.99 * total) return le;
  return Infinity;
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export type GateName = "errors" | "playlist_latency" | "segment_latency" | "publish_latency" | "transcoder_speed" | "viewer_stalls" | "node_back";

export interface GateFailure {
  gate: GateName;
  /** The updated nodes' value and the not-updated ones' (or what they had before the update), as read. */
  updated: string;
  baseline: string;
}

export type Gates = Pick<
  Config["rollout"],
  "gateErrorRatio" | "gateMinRequests" | "gateLatencyFactor" | "gateLatencyFloor" | "gatePublishLatencyFloor" | "gateMinSpeed" | "gateStallsPerMinute"
>;

const seconds = (v: number | null): string => (v === null ? "none" : v === Infinity ? "above the last bucket" : `${v} s`);
const percent = (errors: number, requests: number): string => `${((100 * errors) / Math.max(1, requests)).toFixed(1)}% (${errors} of ${requests})`;

/**
 * The gates that fail for the updated side against the baseline (the not-updated nodes over the same window;
 * null when none is left, then only absolute limits apply). `before` is what the transcoders ran at before
 * the update started, the baseline for speed when no not-updated node transcodes.
 */
export function judge(g: Gates, updated: Window, baseline: Window | null, beforeSpeeds: number[] = []): GateFailure[] {
  const failures: GateFailure[] = [];
  const judged = (w: Window | null): w is Window => w !== null && w.requests >= g.gateMinRequests && g.gateMinRequests >= 0;
  if (judged(updated)) {
    const ratio = updated.errors / updated.requests;
    const base = judged(baseline) ? baseline.errors / baseline.requests : 0;
    // a single error is noise on a busy machine; a release that breaks requests fails many
    if (updated.errors >= 3 && ratio - base > g.gateErrorRatio) {
      failures.push({ gate: "errors", updated: percent(updated.errors, updated.requests), baseline: baseline ? percent(baseline.errors, baseline.requests) : "none" });
    }
  }
  const latency = (gate: GateName, pick: (w: Window) => Buckets, floor: number, minCount: number): void => {
    const mine = pick(updated);
    if (countOf(mine) < minCount) return;
    const u = p99(mine);
    const b = baseline && countOf(pick(baseline)) >= minCount ? p99(pick(baseline)) : null;
    const limit = Math.max(floor, b === null ? 0 : g.gateLatencyFactor * b);
    if (u !== null && u > limit) failures.push({ gate, updated: `p99 ${seconds(u)}`, baseline: `p99 ${seconds(b)} (limit ${limit} s)` });
  };
  latency("playlist_latency", (w) => w.playlist, g.gateLatencyFloor, g.gateMinRequests);
  latency("segment_latency", (w) => w.segment, g.gateLatencyFloor, g.gateMinRequests);
  latency("publish_latency", (w) => w.publish, g.gatePublishLatencyFloor, 3);

  const speed = median(updated.speeds);
  const baseSpeed = median(baseline && baseline.speeds.length > 0 ? baseline.speeds : beforeSpeeds);
  // a machine too busy for every release is not this release's fault: slow only against a faster baseline
  const slowerThanBase = baseSpeed === null || baseSpeed - (speed ?? 0) > 0.05;
  const baseDegraded = baseline?.degraded ?? 0;
  if ((speed !== null && speed < g.gateMinSpeed && slowerThanBase) || updated.degraded > baseDegraded) {
    failures.push({
      gate: "transcoder_speed",
      updated: `median ${speed === null ? "none" : `${speed.toFixed(2)}x`}, ${updated.degraded} step(s) to a faster preset`,
      baseline: `median ${baseSpeed === null ? "none" : `${baseSpeed.toFixed(2)}x`}, ${baseDegraded} step(s)`,
    });
  }

  const rate = (w: Window): number => (w.watchedSeconds > 0 ? (60 * w.stalls) / w.watchedSeconds : 0);
  if (updated.watchedSeconds >= 60 && rate(updated) - (baseline ? rate(baseline) : 0) > g.gateStallsPerMinute) {
    failures.push({
      gate: "viewer_stalls",
      updated: `${rate(updated).toFixed(2)} stalls per viewer-minute`,
      baseline: baseline ? `${rate(baseline).toFixed(2)} stalls per viewer-minute` : "none",
    });
  }
  return failures;
}

/** One line naming a failed gate and both sides' values (the CLI's exit message, the history's why). */
export function describeFailure(f: GateFailure): string {
  return `gate ${f.gate} failed: updated nodes ${f.updated}, not-updated nodes ${f.baseline}`;
}
