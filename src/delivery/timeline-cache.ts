// A node's cache of stream timelines. Redis publishes each change on a channel; the node reads the changed
// stream once and every viewer request is answered from memory. While the subscription is down, entries
// are trusted only briefly. While Redis is down, the last known timeline keeps being served, so viewers do
// not see an error during a short Redis restart.
import type { StreamSnapshot } from "../core/model.ts";

interface Entry {
  snapshot: StreamSnapshot | null;
  at: number;
  usedAt: number;
  version: number;
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

  constructor(private readonly read: (streamId: string) => Promise<StreamSnapshot | null>) {}

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
    try {
      const snapshot = await this.load(streamId);
      const fresh = this.entries.get(streamId);
      if (fresh) fresh.usedAt = now;
      return { snapshot, stale: false };
    } catch (error) {
      if (entry) return { snapshot: entry.snapshot, stale: true };
      throw error;
    }
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
        this.entries.set(streamId, {
          snapshot: keep ? old : snapshot,
          at: Date.now(),
          usedAt: this.entries.get(streamId)?.usedAt ?? Date.now(),
          version,
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
