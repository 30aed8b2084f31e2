// Timeline pages: how a long DVR window stays small in Redis. Redis keeps a short tail of entries; the owner
// moves the oldest page of it (pageSize entries) into the segment store as one immutable JSON object, and
// Redis keeps a small reference to it instead (archive-3.lua). Readers put the pages and the tail back
// together; pages never change, so each node caches them (bounded by bytes) and a timeline change costs one
// small Redis read plus any page it has not seen.
import type { TimelineEntry } from "../core/model.ts";
import { storageKeys } from "../storage/keys.ts";

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

/** The page object's text and its ref for these entries (the tail's JSON lines, oldest first; not empty). */
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
