// A node's cache of stream timelines. Redis publishes each change on a channel; the node reads the changed
// stream once and every viewer request is answered from memory. While the subscription is down, entries
// are trusted only briefly. While Redis is down, the last known timeline keeps being served, so viewers do
// not see an error during a short Redis restart; and the entries an owner offers directly (cluster/peers.ts)
// are listed next to it, so the live edge keeps moving while nobody can reach Redis.
import type { ClaimRef, StreamSnapshot, TimelineEntry } from "../core/model.ts";
import type { OfferedEntry } from "../state/store.ts";
import { RecordSchemaError } from "../state/schema.ts";

interface Entry {
  snapshot: StreamSnapshot | null;
  at: number;
  usedAt: number;
  version: number;
  /** The first sequence number listed from an owner's offer rather than read from Redis, or null. */
  shownFrom: number | null;
}

export interface TimelineCacheOptions {
  /** Whether this node reaches Redis now (state/health.ts); while not, reads are not waited for. */
  reachable?: () => boolean;
  /** Cuts a timeline to what its playlists list (the DVR window, or the playlist window). */
  trim?: (entries: TimelineEntry[]) => TimelineEntry[];
  /** Redis's timeline differs from entries listed from an offer: two writers for one sequence number. */
  conflict?: (streamId: string) => void;
}

export interface TimelineRead {
  snapshot: StreamSnapshot | null;
  /** Served from memory because Redis could not be read. */
  stale: boolean;
}

/** How long an entry is trusted with, and without, a working change subscription. */
const MAX_AGE_SUBSCRIBED_MS = 5000;
const MAX_AGE_UNSUBSCRIBED_MS = 500;
/** Streams read in this window are re-read eagerly on change; others are just dropped. */
const WATCHED_MS = 30000;
/**
 * Streams held at most. Requests name stream ids, so ids that do not exist (misses) must not pile up: a miss
 * is kept only briefly (a burst of requests for it costs one read), and when the cache is full misses go
 * first, then the oldest entries.
 */
const MAX_ENTRIES = 10000;
const MISS_MS = 1000;

export class TimelineCache {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<StreamSnapshot | null>>();
  private readonly versions = new Map<string, number>();
  subscribed = false;

  constructor(
    private readonly read: (streamId: string) => Promise<StreamSnapshot | null>,
    private readonly o: TimelineCacheOptions = {},
  ) {}

  /** The timeline when memory holds a fresh one (null: a fresh miss), without waiting; undefined: get() reads it. */
  peek(streamId: string): StreamSnapshot | null | undefined {
    const entry = this.entries.get(streamId);
    if (!entry) return undefined;
    const now = Date.now();
    const maxAge = entry.snapshot === null ? MISS_MS : this.subscribed ? MAX_AGE_SUBSCRIBED_MS : MAX_AGE_UNSUBSCRIBED_MS;
    if (entry.version !== this.version(streamId) || now - entry.at >= maxAge) return undefined;
    entry.usedAt = now;
    return entry.snapshot;
  }

  async get(streamId: string): Promise<TimelineRead> {
    const held = this.peek(streamId);
    if (held !== undefined) return { snapshot: held, stale: false };
    const entry = this.entries.get(streamId);
    const now = Date.now();
    if (entry && this.o.reachable && !this.o.reachable()) {
      // Redis is away from this node: what it has now is the answer, a read goes on behind it
      entry.usedAt = now;
      void this.load(streamId).catch(() => undefined);
      return { snapshot: entry.snapshot, stale: true };
    }
    try {
      const snapshot = await this.load(streamId);
      const fresh = this.entries.get(streamId);
      if (fresh) fresh.usedAt = now;
      return { snapshot, stale: false };
    } catch (error) {
      // what it held stands in for a read that failed (Redis away), not for one that met an entry of a newer
      // schema: that stream is answered 503 here, so the balancer asks a node of the newer release
      if (entry && !(error instanceof RecordSchemaError)) return { snapshot: entry.snapshot, stale: true };
      throw error;
    }
  }

  /**
   * Entries an owner offered directly (cluster/peers.ts) while this node cannot read Redis: listed after the
   * timeline held, when they continue it (the same claim and epoch, the next sequence numbers, not ended).
   * Returns how many were added. Redis's timeline replaces them once it is read (the same entries, since
   * the owner appends exactly what it offered).
   */
  show(streamId: string, claim: Pick<ClaimRef, "id" | "epoch">, offered: OfferedEntry[]): number {
    const entry = this.entries.get(streamId);
    const snapshot = entry?.snapshot;
    if (!entry || !snapshot || snapshot.claim !== claim.id || snapshot.epoch !== claim.epoch || snapshot.state === "ended") return 0;
    let next = snapshot.nextSeq;
    let cc = snapshot.entries.at(-1)?.cc ?? 0;
    const added: TimelineEntry[] = [];
    for (const e of offered) {
      if (e.seq < next) continue;
      if (e.seq !== next) break;
      if (e.disc) cc += 1;
      added.push({ ...e, cc });
      next += 1;
    }
    if (added.length === 0) return 0;
    const entries = [...snapshot.entries, ...added];
    entry.snapshot = { ...snapshot, state: "live", nextSeq: next, entries: this.o.trim ? this.o.trim(entries) : entries };
    entry.shownFrom ??= added[0]!.seq;
    return added.length;
  }

  /** A change was announced for the stream. */
  changed(streamId: string): void {
    this.versions.set(streamId, this.version(streamId) + 1);
    const entry = this.entries.get(streamId);
    if (entry && Date.now() - entry.usedAt < WATCHED_MS) void this.load(streamId).catch(() => undefined);
  }

  /** The subscription (re)connected: changes may have been missed. */
  invalidateAll(): void {
    for (const id of this.entries.keys()) this.versions.set(id, this.version(id) + 1);
  }

  private version(streamId: string): number {
    return this.versions.get(streamId) ?? 0;
  }

  private load(streamId: string): Promise<StreamSnapshot | null> {
    const pending = this.loading.get(streamId);
    if (pending) return pending;
    const version = this.version(streamId);
    const promise = this.read(streamId)
      .then((snapshot) => {
        const old = this.entries.get(streamId)?.snapshot;
        // never go back within one claim: a read that raced an older one must not replace a newer timeline
        // of the same writer. Another claim's timeline always replaces it, even at a lower or equal epoch:
        // that is a Redis that lost history (a lagging replica promoted), and every node must render what
        // Redis has; a stream recreated after its state expired has another createdAt and replaces it too
        const keep = old && snapshot && snapshot.createdAt === old.createdAt && snapshot.claim === old.claim && snapshot.nextSeq < old.nextSeq;
        const held = this.entries.get(streamId);
        const shownFrom = keep ? (held?.shownFrom ?? null) : null;
        if (!keep && old && held?.shownFrom != null && differs(old, snapshot, held.shownFrom)) this.o.conflict?.(streamId);
        this.entries.set(streamId, {
          snapshot: keep ? old : snapshot,
          at: Date.now(),
          usedAt: held?.usedAt ?? Date.now(),
          version,
          shownFrom,
        });
        if (this.entries.size > MAX_ENTRIES) this.evict();
        return keep ? old : snapshot;
      })
      .finally(() => {
        this.loading.delete(streamId);
        // a change announced during the read: read again
        if (this.version(streamId) !== version && this.entries.has(streamId)) void this.load(streamId).catch(() => undefined);
      });
    this.loading.set(streamId, promise);
    return promise;
  }

  /** Entries held (tests). */
  get size(): number {
    return this.entries.size;
  }

  /** The cache is full: drop misses, then the oldest entries, down to 90%. */
  private evict(): void {
    const target = Math.floor(MAX_ENTRIES * 0.9);
    for (const [id, entry] of this.entries) {
      if (this.entries.size <= target) return;
      if (entry.snapshot === null) this.forget(id);
    }
    for (const id of this.entries.keys()) {
      if (this.entries.size <= target) return;
      this.forget(id);
    }
  }

  private forget(id: string): void {
    this.entries.delete(id);
    this.versions.delete(id);
  }

  /** Drops streams nobody asked for in a while (bounded memory). */
  prune(): void {
    const now = Date.now();
    for (const [id, entry] of this.entries) {
      if (now - entry.usedAt > WATCHED_MS * 4 || (entry.snapshot === null && now - entry.at > MISS_MS)) this.forget(id);
    }
  }
}

/** Whether `now` names other segments than `was` did for sequence numbers from `from` on (both list them). */
function differs(was: StreamSnapshot, now: StreamSnapshot | null, from: number): boolean {
  if (!now) return false;
  const first = now.entries[0]?.seq ?? 0;
  return was.entries.some((e) => {
    if (e.seq < from) return false;
    const other = now.entries[e.seq - first];
    return other !== undefined && other.seq === e.seq && (other.claim !== e.claim || other.pdt !== e.pdt);
  });
}
