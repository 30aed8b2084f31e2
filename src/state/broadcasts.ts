// Ended broadcasts, kept as VOD until their retention. When the sweep ends a stream it hands over the timeline
// as it ended; the sweeping node seals it: the tail becomes a last page, a manifest object (ladder, pages) goes
// into the segment store, then the broadcast into the expiry set and a small record into the stream's
// broadcasts hash (written before referenced, as pages and segments). With `recording` every page is kept, so the
// manifest lists the whole broadcast; without, the pages of the DVR window as it ended.
import type { LadderEntry, TimelineEntry } from "../core/model.ts";
import { storageKeys } from "../storage/keys.ts";
import type { SegmentStore } from "../storage/store.ts";
import type { RedisClient } from "./client.ts";
import type { Keys } from "./keys.ts";
import { makePage, type PageCache, type PageRef } from "./timeline-pages.ts";

/** What the broadcasts hash holds of an ended broadcast (small: its pages are listed in its manifest). */
export interface BroadcastRecord {
  id: string;
  /** Unix ms of its first claim, and of its end. */
  started: number;
  ended: number;
  /** Seconds of media kept (its first rendition's). */
  duration: number;
  renditions: string[];
}

/** The manifest object: what a VOD playlist needs besides the pages. */
interface Manifest extends BroadcastRecord {
  targetDuration: number;
  ladder: LadderEntry[];
  /** Page keys, oldest first. */
  pages: string[];
}

/** An ended broadcast as VOD delivery renders it. */
export interface Recording {
  record: BroadcastRecord;
  targetDuration: number;
  ladder: LadderEntry[];
  entries: TimelineEntry[];
}

/** The sweep's reply past {state, changed} for a broadcast it ended (sweep-4.lua). */
export type EndedReply = [string, string, number, string, string, string[], string[]];

export interface BroadcastsOptions {
  redis: RedisClient;
  keys: Keys;
  media: SegmentStore;
  pages: PageCache;
  /** Every page is kept (recording.enabled): the manifest lists them all, not only the window's. */
  recording: boolean;
  /** Entries in a timeline page (hls.dvrPageSize). */
  pageSize: number;
}

/** A page key's first sequence number (its name is `{firstSeq}.{claim}.json`). */
const firstSeqOf = (key: string): number => Number(key.slice(key.lastIndexOf("/") + 1).split(".")[0]);

/** The entries of these pages in order, each sequence number once (pages of two writers may overlap). */
function joined(pages: TimelineEntry[][]): TimelineEntry[] {
  const bySeq = new Map<number, TimelineEntry>();
  for (const page of pages) for (const entry of page) bySeq.set(entry.seq, entry);
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

export class Broadcasts {
  constructor(private readonly o: BroadcastsOptions) {}

  /** Seals a broadcast the sweep ended (already in the expiry set: see StreamStore.sweep). */
  async seal(streamId: string, ended: EndedReply): Promise<void> {
    const [id, createdAt, endedAt, targetDuration, ladderJson, refs, tail] = ended;
    const ladder = ladderJson ? (JSON.parse(ladderJson) as LadderEntry[]) : [];
    const keys = this.o.recording ? await this.listPages(streamId, id) : refs.map((line) => (JSON.parse(line) as PageRef).key);
    // the tail in pages of the page size, from its head, as the owner archives them: a stalled owner that
    // wakes and writes its next page writes the very bytes sealed here (its trim is refused once ended)
    for (let at = 0; at < tail.length; at += this.o.pageSize) {
      const page = makePage(streamId, id, tail.slice(at, at + this.o.pageSize));
      await this.o.media.put(page.ref.key, Buffer.from(page.text));
      this.o.pages.add(page.ref.key, page.entries, page.text.length);
      if (!keys.includes(page.ref.key)) keys.push(page.ref.key);
    }
    const entries = joined(await Promise.all(keys.map(async (key) => (await this.o.pages.get(key)) ?? [])));
    const first = ladder[0]?.name ?? "";
    const record: BroadcastRecord = {
      id, started: Number(createdAt), ended: Number(endedAt),
      duration: Math.round(entries.reduce((sum, e) => sum + (e.dur[first] ?? 0), 0) * 1000) / 1000,
      renditions: ladder.map((r) => r.name),
    };
    const manifest: Manifest = { ...record, targetDuration: Number(targetDuration), ladder, pages: keys };
    await this.o.media.put(storageKeys.manifest(streamId, id), Buffer.from(JSON.stringify(manifest)));
    // the caller put the broadcast in the expiry set before the seal began, so its media expires whatever
    // happens here; the record lists it as VOD
    await this.o.redis.hset(this.o.keys.broadcasts(streamId), id, JSON.stringify(record));
  }

  /** The stream's ended broadcasts still kept, oldest first. */
  async list(streamId: string): Promise<BroadcastRecord[]> {
    const all = await this.o.redis.hgetall(this.o.keys.broadcasts(streamId));
    return Object.values(all).map((json) => JSON.parse(json) as BroadcastRecord).sort((a, b) => a.started - b.started);
  }

  /** An ended broadcast's ladder and entries; null when it is not (or no longer) kept. */
  async recording(streamId: string, id: string): Promise<Recording | null> {
    const json = await this.o.redis.hget(this.o.keys.broadcasts(streamId), id);
    if (!json) return null;
    const bytes = await this.o.media.get(storageKeys.manifest(streamId, id));
    if (!bytes) return null;
    const manifest = JSON.parse(bytes.toString("utf8")) as Manifest;
    // a page gone from the store (expiring with its broadcast) lists nothing rather than failing the broadcast
    const entries = joined(await Promise.all(manifest.pages.map(async (key) => (await this.o.pages.get(key)) ?? [])));
    return { record: JSON.parse(json) as BroadcastRecord, targetDuration: manifest.targetDuration, ladder: manifest.ladder, entries };
  }

  /** The broadcast's media left the store: forget its record. */
  async expired(streamId: string, id: string): Promise<void> {
    await this.o.redis.hdel(this.o.keys.broadcasts(streamId), id);
  }

  private async listPages(streamId: string, id: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const object of this.o.media.list(storageKeys.pages(streamId, id))) if (object.key.endsWith(".json")) keys.push(object.key);
    return keys.sort((a, b) => firstSeqOf(a) - firstSeqOf(b));
  }
}
