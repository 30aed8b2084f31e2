// Ended broadcasts as VOD, on every node: GET /api/streams/{id}/broadcasts lists a stream's broadcasts (the
// live one and the ended ones still kept), and each ended one plays at its own URLs under
// /vod/{id}/{broadcast}/ (master, media playlists with EXT-X-ENDLIST, segments). A broadcast's URIs name its
// id, so a stream id used again never serves other bytes at an old URI. An ended broadcast never changes, so
// a node keeps the few it served last in memory.
import type { ServerResponse } from "node:http";
import { BROADCAST_ID_PATTERN, CLAIM_ID_PATTERN, RENDITION_PATTERN, STREAM_ID_PATTERN } from "../core/ids.ts";
import type { StreamSnapshot } from "../core/model.ts";
import { sendJson } from "../http/errors.ts";
import { HttpError, type HttpServer } from "../http/server.ts";
import type { Recording } from "../state/broadcasts.ts";
import type { StreamStore } from "../state/store.ts";
import { renderMaster, renderMedia } from "./playlist.ts";
import type { ViewerSessions } from "./sessions.ts";
import type { TimelineCache } from "./timeline-cache.ts";

export interface VodOptions {
  store: Pick<StreamStore, "broadcasts" | "readSegment">;
  timelines: Pick<TimelineCache, "get">;
  sessions: Pick<ViewerSessions, "authorize">;
  /** How long an ended broadcast is kept (recording.retention, else hls.retention), ms: caches keep it no longer. */
  retentionMs: number;
}

/**
 * Bytes a node spends on the recordings it served last (their entries, about ENTRY_BYTES each, and their
 * rendered media playlists), and how long it trusts one (it may expire meanwhile). A long recording is large
 * (a day of 2-s segments: 43,200 entries), so the bound is in bytes, not recordings.
 */
const MAX_HELD_BYTES = 128 * 1024 * 1024;
const ENTRY_BYTES = 250;
const RECORDING_MS = 60000;

interface Held {
  /** `{streamId}/{broadcast}`, its key in the map. */
  key: string;
  recording: Recording;
  at: number;
  /** Media playlist text per rendition, rendered once. */
  rendered: Map<string, string>;
  bytes: number;
}

/** One broadcast as the API lists it. */
export interface BroadcastView {
  id: string;
  started: number;
  /** Unix ms of its end; null while live. */
  ended: number | null;
  /** Seconds of media kept. */
  duration: number;
  renditions: string[];
  /** The master playlist's path. */
  playlist: string;
}

const PLAYLIST = "application/vnd.apple.mpegurl";

export class VodDelivery {
  private readonly held = new Map<string, Held>();
  private readonly loading = new Map<string, Promise<Held>>();
  private heldBytes = 0;

  constructor(http: Pick<HttpServer, "addRoute">, private readonly o: VodOptions) {
    const [STREAM, BROADCAST, RENDITION] = [STREAM_ID_PATTERN, BROADCAST_ID_PATTERN, RENDITION_PATTERN];
    http.addRoute(["GET", "HEAD"], "api_broadcasts", new RegExp(`^/api/streams/(${STREAM})/broadcasts$`), async ({ params, res, query }) => {
      this.o.sessions.authorize(params[0]!, query.get("token"));
      sendJson(res, 200, { broadcasts: await this.list(params[0]!) });
    });
    // a playback token, when one is required, opens the master and rides in every URI it leads to (a recording
    // has no session to carry it), so the media playlists and segments check it as well
    http.addRoute(["GET", "HEAD"], "vod_master", new RegExp(`^/vod/(${STREAM})/(${BROADCAST})/index\\.m3u8$`), async ({ params, res, method, query }) => {
      const token = this.authorize(params[0]!, query);
      const held = await this.hold(params[0]!, params[1]!);
      send(res, method, renderMaster(held.recording.ladder, token), this.cacheControl(held, token));
    });
    http.addRoute(["GET", "HEAD"], "vod_media", new RegExp(`^/vod/(${STREAM})/(${BROADCAST})/(${RENDITION})/index\\.m3u8$`), async ({ params, res, method, query }) => {
      const [streamId, broadcast, rendition] = params as [string, string, string];
      const token = this.authorize(streamId, query);
      const held = await this.hold(streamId, broadcast);
      if (!held.recording.ladder.some((r) => r.name === rendition)) throw new HttpError(404, "UNKNOWN_RENDITION", `no rendition ${rendition}`);
      let text = token ? undefined : held.rendered.get(rendition);
      if (text === undefined) {
        text = renderMedia(asSnapshot(streamId, held.recording), rendition, token);
        // the token-free text is the same for everyone: kept; a token's is rendered for it
        if (!token) {
          held.rendered.set(rendition, text);
          this.grow(held, text.length);
        }
      }
      send(res, method, text, this.cacheControl(held, token));
    });
    http.addRoute(["GET", "HEAD"], "vod_segment", new RegExp(`^/vod/(${STREAM})/(${BROADCAST})/(${RENDITION})/(\\d{1,15})\\.(${CLAIM_ID_PATTERN})\\.ts$`), async ({ params, res, method, query }) => {
      const [streamId, broadcast, rendition, seq, claim] = params as [string, string, string, string, string];
      const token = this.authorize(streamId, query);
      const held = await this.hold(streamId, broadcast);
      const bytes = await this.o.store.readSegment(streamId, broadcast, rendition, Number(seq), claim);
      if (!bytes) throw new HttpError(404, "UNKNOWN_SEGMENT", `segment ${rendition}/${seq}.${claim} of broadcast ${broadcast} is not kept`);
      res.writeHead(200, { "Content-Type": "video/mp2t", "Content-Length": bytes.length, "Cache-Control": `${this.cacheControl(held, token)}, immutable` });
      res.end(method === "HEAD" ? undefined : bytes);
    });
  }

  /** Checks the playback token when one is required; the query suffix that carries it on ("" without one). */
  private authorize(streamId: string, query: URLSearchParams): string {
    const token = query.get("token");
    this.o.sessions.authorize(streamId, token);
    return token && /^[A-Za-z0-9._-]{1,200}$/.test(token) ? `?token=${token}` : "";
  }

  /**
   * A recording never changes until it expires: any cache may keep it until then, and no longer (a CDN must
   * not serve it past its retention); a URI that carries a token is one viewer's, `private`.
   */
  private cacheControl(held: Held, token: string): string {
    const left = Math.max(0, Math.floor((held.recording.record.ended + this.o.retentionMs - Date.now()) / 1000));
    return `${token ? "private" : "public"}, max-age=${Math.min(left, 31536000)}`;
  }

  /** The stream's broadcasts, oldest first: the ended ones still kept, then the live one. */
  private async list(streamId: string): Promise<BroadcastView[]> {
    const ended: BroadcastView[] = (await this.o.store.broadcasts.list(streamId)).map((b) => ({ ...b, playlist: `/vod/${streamId}/${b.id}/index.m3u8` }));
    const { snapshot } = await this.o.timelines.get(streamId);
    if (snapshot && snapshot.state !== "ended" && !ended.some((b) => b.id === snapshot.broadcast)) {
      const first = snapshot.ladder?.[0]?.name ?? "";
      ended.push({
        id: snapshot.broadcast, started: snapshot.createdAt, ended: null,
        duration: Math.round(snapshot.entries.reduce((sum, e) => sum + (e.dur[first] ?? 0), 0) * 1000) / 1000,
        renditions: snapshot.ladder?.map((r) => r.name) ?? [], playlist: `/live/${streamId}/index.m3u8`,
      });
    }
    if (ended.length === 0 && !snapshot) throw new HttpError(404, "UNKNOWN_STREAM", `stream ${streamId} has no broadcast`);
    return ended;
  }

  /** The recording, from memory while fresh (most recently used last in the map), else read again (once). */
  private async hold(streamId: string, broadcast: string): Promise<Held> {
    const key = `${streamId}/${broadcast}`;
    const old = this.held.get(key);
    if (old && Date.now() - old.at < RECORDING_MS) {
      this.held.delete(key);
      this.held.set(key, old);
      return old;
    }
    let loading = this.loading.get(key);
    if (!loading) {
      // many viewers opening one recording at once read it once
      loading = this.load(streamId, broadcast, key).finally(() => this.loading.delete(key));
      this.loading.set(key, loading);
    }
    return loading;
  }

  private async load(streamId: string, broadcast: string, key: string): Promise<Held> {
    const recording = await this.o.store.broadcasts.recording(streamId, broadcast);
    if (!recording) throw new HttpError(404, "UNKNOWN_BROADCAST", `broadcast ${broadcast} of ${streamId} is not kept`);
    const stale = this.held.get(key);
    if (stale) {
      this.held.delete(key);
      this.heldBytes -= stale.bytes;
    }
    const held: Held = { key, recording, at: Date.now(), rendered: new Map(), bytes: 0 };
    this.held.set(key, held);
    this.grow(held, recording.entries.length * ENTRY_BYTES);
    return held;
  }

  /**
   * Counts more bytes for a held recording, and drops the least recently used past the bound (never the one in
   * use). A recording no longer held (dropped or replaced meanwhile) counts nothing.
   */
  private grow(held: Held, bytes: number): void {
    if (this.held.get(held.key) !== held) return;
    held.bytes += bytes;
    this.heldBytes += bytes;
    for (const [k, oldest] of this.held) {
      if (this.heldBytes <= MAX_HELD_BYTES || oldest === held) break;
      this.held.delete(k);
      this.heldBytes -= oldest.bytes;
    }
  }
}

/** An ended broadcast in the shape the playlist renderer takes (state "ended": EXT-X-ENDLIST). */
function asSnapshot(streamId: string, r: Recording): StreamSnapshot {
  const last = r.entries[r.entries.length - 1];
  return {
    id: streamId, epoch: 0, claim: "", broadcast: r.record.id, owner: "", state: "ended", targetDuration: r.targetDuration, ladder: r.ladder,
    nextSeq: last ? last.seq + 1 : 0, createdAt: r.record.started, claimedAt: r.record.started, releasedAt: r.record.ended, entries: r.entries,
  };
}

function send(res: ServerResponse, method: string, text: string, cacheControl: string): void {
  res.writeHead(200, { "Content-Type": PLAYLIST, "Content-Length": Buffer.byteLength(text), "Cache-Control": cacheControl });
  res.end(method === "HEAD" ? undefined : text);
}
