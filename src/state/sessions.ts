// Viewer sessions in Redis: one hash per session with a TTL that outlives a pause. Writes from playlist and
// segment requests and from position reports are gathered for `flushInterval` ms and sent as one pipeline,
// so thousands of viewers reporting every few seconds cost a few round trips a second. A write is retried
// with the next batch while Redis is away (bounded), and never recreates an expired session.
import type { Redis } from "ioredis";
import type { Keys } from "./keys.ts";
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

interface Pending {
  rendition?: string;
  node?: string;
  report?: PositionReport;
  inferred?: { position: number; pdt: number };
  waiters: (() => void)[];
}

/** A reported position wins over inferred ones for this long. */
const REPORT_GRACE_MS = 60000;
/** Sessions with writes waiting; beyond this, new writes are dropped (counted) until Redis keeps up. */
const MAX_PENDING = 200000;

export class SessionStore {
  private pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | null = null;
  private flushing = false;
  dropped = 0;
  written = 0;

  constructor(
    private readonly redis: Redis,
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

  async create(id: string, streamId: string, node: string): Promise<Session> {
    const now = Date.now();
    const session: Session = {
      id, streamId, node, rendition: null, createdAt: now, lastSeen: now, position: null, pdt: null, paused: false, source: null, updatedAt: null,
    };
    await this.redis
      .multi()
      .hset(this.keys.session(id), { streamId, node, createdAt: now, lastSeen: now, paused: "0" })
      .pexpire(this.keys.session(id), this.o.ttlSec * 1000)
      .exec();
    return session;
  }

  async get(id: string): Promise<Session | null> {
    const h = await this.redis.hgetall(this.keys.session(id));
    if (!h.streamId) return null;
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

  /** Queues an update; resolves once it is in Redis (or dropped). */
  update(id: string, change: { rendition?: string; node?: string; report?: PositionReport; inferred?: { position: number; pdt: number } }): Promise<void> {
    let entry = this.pending.get(id);
    if (!entry) {
      if (this.pending.size >= MAX_PENDING) {
        this.dropped += 1;
        return Promise.resolve();
      }
      entry = { waiters: [] };
      this.pending.set(id, entry);
    }
    if (change.rendition) entry.rendition = change.rendition;
    if (change.node) entry.node = change.node;
    if (change.report) {
      entry.report = change.report;
      entry.inferred = undefined;
    }
    if (change.inferred && !entry.report) entry.inferred = change.inferred;
    return new Promise((resolve) => entry.waiters.push(resolve));
  }

  /** Sends every queued update in one pipeline. */
  async flush(): Promise<void> {
    if (this.flushing || this.pending.size === 0 || this.redis.status !== "ready") return;
    this.flushing = true;
    const batch = this.pending;
    this.pending = new Map();
    const now = Date.now();
    const pipeline = this.redis.pipeline();
    for (const [id, p] of batch) {
      const args = [
        this.keys.session(id), this.o.ttlSec * 1000, now, p.rendition ?? "", p.node ?? "",
        p.report ? "1" : "0", p.report?.position ?? "", p.report?.pdt ?? "", p.report?.paused ? "1" : "0",
        p.inferred ? "1" : "0", p.inferred?.position ?? "", p.inferred?.pdt ?? "", REPORT_GRACE_MS,
      ];
      queueScript(pipeline, "session", args);
    }
    try {
      const results = await pipeline.exec();
      if (!results) throw new Error("pipeline aborted");
      this.written += batch.size;
      for (const p of batch.values()) for (const resolve of p.waiters) resolve();
    } catch {
      // Redis went away mid-batch: put the updates back (newer ones already queued win)
      for (const [id, p] of batch) {
        const newer = this.pending.get(id);
        if (newer) newer.waiters.push(...p.waiters);
        else this.pending.set(id, p);
      }
    } finally {
      this.flushing = false;
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
    for (const p of this.pending.values()) for (const resolve of p.waiters) resolve();
    this.pending.clear();
  }
}
