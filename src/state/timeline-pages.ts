// Timeline pages: how a long DVR window stays small in Redis. Redis keeps a short tail of entries; the owner
// moves the oldest page of it (pageSize entries) into the segment store as one immutable JSON object, and
// Redis keeps a small reference to it instead (archive-3.lua). Readers put the pages and the tail back
// together; pages never change, so each node caches them (bounded by bytes) and a timeline change costs one
// small Redis read plus any page it has not seen.
import type { ClaimRef, TimelineEntry } from "../core/model.ts";
import { storageKeys } from "../storage/keys.ts";
import type { SegmentStore } from "../storage/store.ts";
import type { RedisClient } from "./client.ts";
import type { Keys } from "./keys.ts";
import { checkRecord, readableSchema } from "./schema.ts";
import { runScript } from "./scripts.ts";

/** Entries in a page when the store is not told otherwise: with 2 s segments, two minutes of media. */
export const DEFAULT_PAGE_SIZE = 60;
/** Bytes of page text a node keeps parsed in memory (least recently used go first). */
export const PAGE_CACHE_BYTES = 32 * 1024 * 1024;

/** What Redis keeps of an archived page (one entry of the page refs list). */
export interface PageRef {
  /** Sequence numbers of the page's first and last entries. */
  first: number;
  last: number;
  /** Program date-time of the first entry, and of the end of the last (ms since the epoch). */
  pdt: number;
  end: number;
  /** The page's object in the segment store (storageKeys.page). */
  key: string;
}

/** A timeline entry from its JSON line, once its schema is one this release reads (state/schema.ts). */
export function readEntry(line: string): TimelineEntry {
  const entry = JSON.parse(line) as TimelineEntry;
  checkRecord("a timeline entry", entry.v);
  return entry;
}

/**
 * The page object's text and its ref for these entries (the tail's JSON lines, oldest first; not empty). The
 * lines are copied as they are, whatever their schema (a page is written by the owner or the sweep, which a
 * node unable to read the cluster's schema never is; readers check each entry).
 */
export function makePage(streamId: string, broadcast: string, lines: string[]): { text: string; ref: PageRef; entries: TimelineEntry[] } {
  const entries = lines.map((line) => JSON.parse(line) as TimelineEntry);
  const first = entries[0]!;
  const last = entries[entries.length - 1]!;
  const longest = Math.max(0, ...Object.values(last.dur));
  return {
    text: `[${lines.join(",")}]`,
    entries,
    ref: { first: first.seq, last: last.seq, pdt: first.pdt, end: Math.round(last.pdt + longest * 1000), key: storageKeys.page(streamId, broadcast, first.seq, first.claim) },
  };
}

/**
 * The entries inside the DVR window: those that start within `windowMs` of the newest one's start, and at
 * least the newest `minEntries` (the live playlist window) whatever their times.
 */
export function inWindow(entries: TimelineEntry[], windowMs: number, minEntries: number): TimelineEntry[] {
  const newest = entries[entries.length - 1];
  if (!newest) return entries;
  const cutoff = newest.pdt - windowMs;
  let start = 0;
  while (start < entries.length - minEntries && entries[start]!.pdt < cutoff) start++;
  return start === 0 ? entries : entries.slice(start);
}

/** Parsed pages by key, least recently used dropped first past `maxBytes` of page text. */
export class PageCache {
  private readonly pages = new Map<string, { entries: TimelineEntry[]; bytes: number }>();
  private readonly loading = new Map<string, Promise<TimelineEntry[] | null>>();
  private bytes = 0;

  constructor(private readonly load: (key: string) => Promise<Buffer | null>, private readonly maxBytes = PAGE_CACHE_BYTES) {}

  /** The page's entries, or null when the store has no such page (it expired). */
  async get(key: string): Promise<TimelineEntry[] | null> {
    const held = this.pages.get(key);
    if (held) {
      // a Map keeps insertion order: moving the page to the end makes the first the least recently used
      this.pages.delete(key);
      this.pages.set(key, held);
      return held.entries;
    }
    const pending = this.loading.get(key);
    if (pending) return pending;
    const promise = this.load(key)
      .then((bytes) => {
        if (!bytes) return null;
        const entries = JSON.parse(bytes.toString("utf8")) as TimelineEntry[];
        for (const entry of entries) checkRecord("a timeline entry", entry.v);
        this.add(key, entries, bytes.length);
        return entries;
      })
      .finally(() => this.loading.delete(key));
    this.loading.set(key, promise);
    return promise;
  }

  /** A page this node wrote itself: no need to read it back. */
  add(key: string, entries: TimelineEntry[], bytes: number): void {
    this.forget(key);
    this.pages.set(key, { entries, bytes });
    this.bytes += bytes;
    for (const [oldest, page] of this.pages) {
      if (this.bytes <= this.maxBytes) break;
      this.pages.delete(oldest);
      this.bytes -= page.bytes;
    }
  }

  forget(key: string): void {
    const page = this.pages.get(key);
    if (!page) return;
    this.pages.delete(key);
    this.bytes -= page.bytes;
  }

  /** Bytes of page text held (tests). */
  get size(): number {
    return this.bytes;
  }
}

/**
 * How long a segment that left the playlist stays readable: its duration plus the playlist's (RFC 8216bis
 * 6.2.2), doubled for slow players.
 */
export function trimmedSegmentMs(window: number, targetDuration: number): number {
  return 2 * (window * targetDuration * 1000 + targetDuration * 1000) + 5000;
}

export interface TimelinePagesOptions {
  redis: RedisClient;
  keys: Keys;
  media: SegmentStore;
  /** hls.playlistWindow: entries listed at least. */
  window: number;
  /** hls.dvrWindow in ms; 0: no pages (append-2.lua trims the tail to `window`) unless `keep`. */
  dvrWindowMs: number;
  /** recording.enabled: pages are used and none is deleted when it leaves the window (its broadcast's expiry does). */
  keep?: boolean;
  pageSize?: number;
  /** How long media that left the window stays in the store; default trimmedSegmentMs (tests shorten it). */
  trimmedGraceMs?: number;
}

/**
 * The writer's and reader's side of the pages: archiving after appends, joining pages and tail on reads, and
 * deleting the media that left the window (or the playlist, without a DVR window) after its grace.
 */
export class TimelinePages {
  readonly cache: PageCache;
  /** Deletions waiting for their grace (dropped on close: the broadcast's expiry catches them). */
  private readonly pendingDeletes = new Set<NodeJS.Timeout>();
  readonly pageSize: number;

  constructor(private readonly o: TimelinePagesOptions) {
    this.cache = new PageCache((key) => o.media.get(key));
    this.pageSize = o.pageSize ?? DEFAULT_PAGE_SIZE;
  }

  /** Pages are used: a DVR window or a recording is kept. */
  get on(): boolean {
    return this.o.dvrWindowMs > 0 || this.o.keep === true;
  }

  /** After an append: `left`, the entries append-2.lua trimmed, and the tail's length after it. */
  async appended(streamId: string, claim: ClaimRef, tailLength: number, left: string[]): Promise<void> {
    // an entry of a newer schema names its media in a layout this release may not know: its broadcast's expiry deletes it
    const trimmed = left.map((line) => JSON.parse(line) as TimelineEntry).filter((entry) => readableSchema(entry.v));
    if (trimmed.length > 0) this.deleteEntries(streamId, claim, trimmed);
    // a failed archive leaves the page in the tail: the next append (this owner's or a later one's) tries again
    if (this.on && tailLength >= 2 * this.pageSize) await this.archive(streamId, claim).catch(() => undefined);
  }

  /** The timeline from its page refs and tail (JSON lines, as Redis holds them), cut to the DVR window. */
  async entries(refs: string[], tail: string[]): Promise<TimelineEntry[]> {
    // a page the store no longer has (expired with its broadcast) lists nothing rather than failing the stream
    const pages = await Promise.all(refs.map(async (line) => (await this.cache.get((JSON.parse(line) as PageRef).key)) ?? []));
    const entries = [...pages.flat(), ...tail.map(readEntry)];
    return this.on ? inWindow(entries, this.o.dvrWindowMs, this.o.window) : entries;
  }

  /** Cuts a timeline held in memory as a read from Redis would (the DVR window, or the playlist window). */
  trim(entries: TimelineEntry[]): TimelineEntry[] {
    return this.on ? inWindow(entries, this.o.dvrWindowMs, this.o.window) : entries.slice(-this.o.window);
  }

  close(): void {
    for (const timer of this.pendingDeletes) clearTimeout(timer);
    this.pendingDeletes.clear();
  }

  /**
   * Moves the tail's oldest page into the segment store (the object first, then the fenced trim: a ref always
   * names a readable page), and schedules the deletion of the pages that left the DVR window.
   */
  private async archive(streamId: string, claim: ClaimRef): Promise<void> {
    const { redis, keys } = this.o;
    const lines = await redis.lrange(keys.timeline(streamId), 0, this.pageSize - 1);
    if (lines.length < this.pageSize) return;
    const page = makePage(streamId, claim.broadcast, lines);
    await this.o.media.put(page.ref.key, Buffer.from(page.text));
    this.cache.add(page.ref.key, page.entries, page.text.length);
    const [, ...dropped] = (await runScript(redis, "archive", [
      keys.meta(streamId), keys.timeline(streamId), keys.pages(streamId),
      claim.epoch, claim.id, this.pageSize, page.ref.first, page.entries[0]!.claim, JSON.stringify(page.ref), this.o.dvrWindowMs,
    ])) as [string, ...string[]];
    if (this.o.keep) return;
    for (const line of dropped) {
      const ref = JSON.parse(line) as PageRef;
      this.afterGrace(claim, async () => {
        const entries = (await this.cache.get(ref.key)) ?? [];
        await this.o.media.delete([...this.segmentKeys(streamId, claim, entries), ref.key]);
        this.cache.forget(ref.key);
      });
    }
  }

  /**
   * Segments that left the playlist are deleted from the segment store once no player can still want them.
   * Their keys name the claim that wrote them, known only from their entries. A node that stops before then
   * leaves them to the broadcast's expiry (deleteExpired), which deletes all its media.
   */
  private deleteEntries(streamId: string, claim: ClaimRef, entries: TimelineEntry[]): void {
    const keys = this.segmentKeys(streamId, claim, entries);
    this.afterGrace(claim, () => this.o.media.delete(keys));
  }

  private segmentKeys(streamId: string, claim: ClaimRef, entries: TimelineEntry[]): string[] {
    return entries.flatMap((e) => Object.keys(e.dur).map((r) => storageKeys.segment(streamId, claim.broadcast, r, e.seq, e.claim)));
  }

  private afterGrace(claim: ClaimRef, remove: () => Promise<void>): void {
    const timer = setTimeout(() => {
      this.pendingDeletes.delete(timer);
      remove().catch(() => undefined);
    }, this.o.trimmedGraceMs ?? trimmedSegmentMs(this.o.window, claim.targetDuration));
    timer.unref();
    this.pendingDeletes.add(timer);
  }
}
