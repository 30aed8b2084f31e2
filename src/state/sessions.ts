// Viewer sessions in Redis: one hash per session with a TTL that outlives a pause. A session starts as a signed
// token only; its record is made by its first use (a position report, or an inferred position from a segment
// fetched), so a session never used costs Redis nothing. Writes from playlist and segment requests and from
// position reports are gathered for `flushInterval` ms and sent as one pipeline (one per shard of a Redis
// Cluster), so thousands of viewers reporting every few seconds cost a few round trips a second. A write is
// retried with the next batch while Redis is away (bounded, one entry and one promise per session however many
// writes it gathers), and never recreates an expired session.
import { byShard, type RedisClient } from "./client.ts";
import type { Keys } from "./keys.ts";
import { SCHEMA_VERSION, checkRecord } from "./schema.ts";
import { queueScript } from "./scripts.ts";

export interface Session {
  id: string;
  streamId: string;
  rendition: string | null;
  node: string;
  createdAt: number;
  lastSeen: number;
  /** Seconds on the stream's timeline (since the stream's first segment's clock origin, createdAt). */
  position: number | null;
  /** Program date-time of the position, ms. */
  pdt: number | null;
  paused: boolean;
  source: "reported" | "inferred" | null;
  updatedAt: number | null;
}

export interface PositionReport {
  position: number;
  pdt: number | null;
  paused: boolean;
}

export interface SessionChange {
  rendition?: string;
  node?: string;
  report?: PositionReport;
  inferred?: { position: number; pdt: number };
}

/** What a session's token says, from which its first use creates its record. */
export interface SessionOrigin {
  streamId: string;
  /** When the token was issued, unix ms. */
  issuedAt: number;
}

interface Pending extends SessionChange {
  origin?: SessionOrigin;
  /** When a write that may create the record (a report, an inferred position) was first made, ms. */
  usedAt?: number;
  /** Settles once the entry is in Redis (or dropped): one promise however many writes the entry gathered. */
  done: Promise<void>;
  settle: () => void;
}

function pendingEntry(): Pending {
  let settle: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (settle = resolve));
  return { done, settle };
}

/** Folds a change into a queued entry: the later report wins; an inferred position never replaces a report. */
function apply(entry: Pending, change: SessionChange, origin: SessionOrigin | undefined, at: number): void {
  if (change.rendition) entry.rendition = change.rendition;
  if (change.node) entry.node = change.node;
  if (change.report) {
    entry.report = change.report;
    entry.inferred = undefined;
  }
  if (change.inferred && !entry.report) entry.inferred = change.inferred;
  if (origin) entry.origin ??= origin;
  if (change.report || change.inferred) entry.usedAt = Math.min(entry.usedAt ?? at, at);
}

/** A reported position wins over inferred ones for this long. */
const REPORT_GRACE_MS = 60000;
/** Sessions with writes waiting; beyond this, new writes are dropped (counted) until Redis keeps up. */
const MAX_PENDING = 200000;
/** The longest a token may wait for its first use before it can no longer become a session. */
const START_WINDOW_MS = 10 * 60000;

/**
 * How far apart a token's issue and its first use may be: ten minutes (a player uses its session within
 * seconds of loading; a page whose viewer presses play late, or Safari's player that fetches no segment until
 * then, still keeps its session), and at most half the TTL, so a token issued long enough ago to have had a
 * record that expired can never create one again.
 */
export function startWindowMs(ttlSec: number): number {
  return Math.min(START_WINDOW_MS, (ttlSec * 1000) / 2);
}

export class SessionStore {
  private pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | null = null;
  private flushing = false;
  dropped = 0;
  written = 0;
  /** Records made by a first use. */
  created = 0;
  /** Updates not written: the session was written in a newer schema (state/schema.ts), which this release does not know. */
  newerSchema = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly o: { ttlSec: number; flushIntervalMs: number },
  ) {}

  /** Whether writes reach Redis now (else they wait in the queue). */
  get connected(): boolean {
    return this.redis.status === "ready";
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.o.flushIntervalMs);
  }

  async get(id: string): Promise<Session | null> {
    const h = await this.redis.hgetall(this.keys.session(id));
    if (!h.streamId) return null;
    checkRecord("a session record", h.v);
    const num = (v: string | undefined): number | null => (v === undefined || v === "" ? null : Number(v));
    return {
      id,
      streamId: h.streamId,
      rendition: h.rendition ?? null,
      node: h.node ?? "",
      createdAt: Number(h.createdAt),
      lastSeen: Number(h.lastSeen),
      position: num(h.position),
      pdt: num(h.pdt),
      paused: h.paused === "1",
      source: (h.source as Session["source"]) ?? null,
      updatedAt: num(h.updatedAt),
    };
  }

  /** Seconds until the session expires (for tests and the API), or null when it does not exist. */
  async ttl(id: string): Promise<number | null> {
    const ms = await this.redis.pttl(this.keys.session(id));
    return ms < 0 ? null : ms / 1000;
  }

  /**
   * Queues an update; resolves once it is in Redis (or dropped). With the session's origin, a report or an
   * inferred position creates the record when there is none yet (see session-1.lua).
   */
  update(id: string, change: SessionChange, origin?: SessionOrigin): Promise<void> {
    let entry = this.pending.get(id);
    if (!entry) {
      if (this.pending.size >= MAX_PENDING) {
        this.dropped += 1;
        return Promise.resolve();
      }
      entry = pendingEntry();
      this.pending.set(id, entry);
    }
    apply(entry, change, origin, Date.now());
    return entry.done;
  }

  /** Sends every queued update: one pipeline, or one per shard of a Redis Cluster (a pipeline goes to one shard). */
  async flush(): Promise<void> {
    if (this.flushing || this.pending.size === 0 || this.redis.status !== "ready") return;
    this.flushing = true;
    const batch = this.pending;
    this.pending = new Map();
    try {
      const groups = byShard(this.redis, [...batch], ([id]) => this.keys.session(id));
      await Promise.all(groups.map((group) => this.send(group, Date.now())));
    } finally {
      this.flushing = false;
    }
  }

  private async send(group: [string, Pending][], now: number): Promise<void> {
    const pipeline = this.redis.pipeline();
    const window = startWindowMs(this.o.ttlSec);
    for (const [id, p] of group) {
      const create = p.origin && p.usedAt !== undefined ? p.origin : null;
      const args = [
        this.keys.session(id), this.o.ttlSec * 1000, now, p.rendition ?? "", p.node ?? "",
        p.report ? "1" : "0", p.report?.position ?? "", p.report?.pdt ?? "", p.report?.paused ? "1" : "0",
        p.inferred ? "1" : "0", p.inferred?.position ?? "", p.inferred?.pdt ?? "", REPORT_GRACE_MS,
        create?.streamId ?? "", create?.issuedAt ?? "", p.usedAt ?? "", window, SCHEMA_VERSION,
      ];
      queueScript(pipeline, "session", args);
    }
    try {
      const results = await pipeline.exec();
      if (!results) throw new Error("pipeline aborted");
      const newer = results.filter(([error, result]) => !error && result === 3).length;
      this.written += group.length - newer;
      this.created += results.filter(([error, result]) => !error && result === 2).length;
      this.newerSchema += newer;
      for (const [, p] of group) p.settle();
    } catch {
      // Redis (or this shard) went away mid-batch: put the updates back, with what was queued since applied over them
      for (const [id, p] of group) {
        const newer = this.pending.get(id);
        if (newer) {
          apply(p, newer, newer.origin, newer.usedAt ?? now);
          // both promises settle together: the older one's callers and the newer one's
          const [settleOlder, settleNewer] = [p.settle, newer.settle];
          p.settle = () => (settleOlder(), settleNewer());
          p.done = newer.done;
        }
        this.pending.set(id, p);
      }
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
    for (const p of this.pending.values()) p.settle();
    this.pending.clear();
  }
}
