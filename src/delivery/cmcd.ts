// What viewers' players say about their playback: CTA-5004 Common Media Client Data (the `CMCD` query argument
// or the CMCD-Request/-Object/-Status/-Session headers, as hls.js's `cmcd` option, dash.js, Shaka and
// ExoPlayer send it), and the player page's reports over the WebSocket. Counted per node with bounded labels
// (never a session id or an address): stalls, viewer-seconds watched (so stalls per viewer-minute), startup
// time, buffer length, errors by kind. A release that makes players stall fails its canary (tools/rollout)
// even when every HTTP answer is a 200.
import type { IncomingHttpHeaders } from "node:http";
import type { Metrics } from "../core/metrics.ts";

/** The CMCD keys baton reads; the rest are ignored. */
export interface Cmcd {
  /** bs: the buffer was starved (a stall) since the previous request. */
  starved: boolean;
  /** su: the object is needed urgently: startup, a seek, or recovery after a stall. */
  startup: boolean;
  /** bl: buffer length in ms. */
  bufferMs: number | null;
  /** br: the encoded bitrate of the object in kbit/s. */
  bitrateKbps: number | null;
  /** d: the object's playback duration in ms. */
  durationMs: number | null;
}

/** Longer CMCD data than this is not read (real players send well under 500 characters). */
const MAX_CMCD = 1024;
const MAX_PAIRS = 32;
const HEADERS = ["cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session"] as const;

/** An integer key's value, or null when absent or not an integer within `max`. */
function integer(pairs: Map<string, string | true>, key: string, max: number): number | null {
  const value = pairs.get(key);
  if (typeof value !== "string" || !/^\d{1,9}$/.test(value)) return null;
  const n = Number(value);
  return n <= max ? n : null;
}

/**
 * CMCD from a request's query argument (already URL-decoded) and headers; null when it carries none or it
 * cannot be read (CMCD is advisory: a bad one is ignored, never an error for the viewer).
 */
export function readCmcd(query: string | string[] | undefined, headers: IncomingHttpHeaders): Cmcd | null {
  const parts: string[] = [];
  const q = Array.isArray(query) ? query[0] : query;
  if (typeof q === "string") parts.push(q);
  for (const name of HEADERS) {
    const value = headers[name];
    if (typeof value === "string") parts.push(value);
  }
  const text = parts.join(",");
  if (text === "" || text.length > MAX_CMCD) return null;
  const pairs = new Map<string, string | true>();
  for (const item of text.split(",").slice(0, MAX_PAIRS)) {
    const eq = item.indexOf("=");
    const key = (eq === -1 ? item : item.slice(0, eq)).trim();
    if (!/^[a-z-]{1,16}$/.test(key)) continue;
    // a key with no value is a true boolean (CTA-5004 3.2); `key=false` is not sent but is read as false
    pairs.set(key, eq === -1 ? true : item.slice(eq + 1).trim());
  }
  if (pairs.size === 0) return null;
  const flag = (key: string): boolean => pairs.get(key) === true || pairs.get(key) === "true";
  return {
    starved: flag("bs"),
    startup: flag("su"),
    bufferMs: integer(pairs, "bl", 3600000),
    bitrateKbps: integer(pairs, "br", 1000000),
    // a segment is at most a minute long (hls.segmentDuration): more would inflate the watched time
    durationMs: integer(pairs, "d", 60000),
  };
}

/** What the player page reports over the WebSocket besides positions. */
export type PlayerReport =
  | { type: "stall" }
  | { type: "startup"; ms: number }
  | { type: "player_error"; kind: PlayerErrorKind };

/** hls.js's error types, the bounded label of `baton_viewer_errors_total`. */
export const PLAYER_ERROR_KINDS = ["network", "media", "mux", "key", "other"] as const;
export type PlayerErrorKind = (typeof PLAYER_ERROR_KINDS)[number];

/** A player report from a WebSocket message, or null when it is not one (or out of range). */
export function readPlayerReport(m: { type?: unknown; ms?: unknown; kind?: unknown }): PlayerReport | null {
  if (m.type === "stall") return { type: "stall" };
  if (m.type === "startup" && typeof m.ms === "number" && Number.isFinite(m.ms) && m.ms >= 0 && m.ms <= 600000) return { type: "startup", ms: m.ms };
  if (m.type === "player_error") {
    const kind = PLAYER_ERROR_KINDS.find((k) => k === m.kind) ?? "other";
    return { type: "player_error", kind };
  }
  return null;
}

/** A session's CMCD counts at most one stall in this long (a player reports `bs` on the request after one). */
export const CMCD_STALL_EVERY_MS = 2000;
/** Watched time a session may claim ahead of the clock (a player fetches a few segments ahead of playback). */
export const CMCD_WATCH_AHEAD_S = 30;
/** Sessions whose CMCD budget is remembered; the oldest is forgotten beyond this. */
const MAX_BUDGETS = 50000;

interface Budget {
  /** When the last stall was counted (ms). */
  stallAt: number;
  /** Watched seconds it may still claim, as of `at`. */
  watch: number;
  at: number;
}

/** Counts what viewers experience into the node's metrics. */
export class ViewerExperience {
  /**
   * Per session: what its CMCD may still count. One viewer's player could otherwise send `bs` on every
   * request, or the same segment's `d` again and again, and fail or pass a rollout's stall gate by itself.
   */
  private readonly budgets = new Map<string, Budget>();

  constructor(private readonly metrics: Pick<Metrics, "viewerStalls" | "viewerWatchedSeconds" | "viewerStartup" | "viewerBuffer" | "viewerErrors">) {}

  /**
   * A request's CMCD from session `sessionId`: a segment request's object duration counts as watched time, at
   * most as much as the clock gave the session (plus CMCD_WATCH_AHEAD_S); a stall at most every
   * CMCD_STALL_EVERY_MS.
   */
  request(cmcd: Cmcd, route: "media" | "segment", sessionId: string, now = Date.now()): void {
    let budget = this.budgets.get(sessionId);
    if (budget) this.budgets.delete(sessionId);
    else budget = { stallAt: -Infinity, watch: CMCD_WATCH_AHEAD_S, at: now };
    this.budgets.set(sessionId, budget);
    if (this.budgets.size > MAX_BUDGETS) this.budgets.delete(this.budgets.keys().next().value!);
    budget.watch = Math.min(CMCD_WATCH_AHEAD_S, budget.watch + Math.max(0, now - budget.at) / 1000);
    budget.at = now;
    if (cmcd.starved && now - budget.stallAt >= CMCD_STALL_EVERY_MS) {
      budget.stallAt = now;
      this.metrics.viewerStalls.inc({ source: "cmcd" });
    }
    if (route === "segment" && cmcd.durationMs !== null) {
      const seconds = Math.min(budget.watch, cmcd.durationMs / 1000);
      budget.watch -= seconds;
      if (seconds > 0) this.metrics.viewerWatchedSeconds.inc({ source: "cmcd" }, seconds);
    }
    if (cmcd.bufferMs !== null) this.metrics.viewerBuffer.observe(cmcd.bufferMs / 1000);
  }

  /** Seconds a player page's WebSocket reported playing (between two position reports, bounded by the caller). */
  watched(seconds: number): void {
    this.metrics.viewerWatchedSeconds.inc({ source: "player" }, seconds);
  }

  report(r: PlayerReport): void {
    if (r.type === "stall") this.metrics.viewerStalls.inc({ source: "player" });
    else if (r.type === "startup") this.metrics.viewerStartup.observe(r.ms / 1000);
    else this.metrics.viewerErrors.inc({ kind: r.kind });
  }
}
