// HLS delivery: master and media playlists and segments, rendered from the shared timeline, on the node's
// HTTP server. It keeps what viewers ask for in memory: the timelines of watched streams (re-read once per
// change), the newest segments of the renditions they watch (fetched ahead), each rendition's media playlist
// rendered (and gzip-compressed) once per timeline snapshot, and the viewer counts.
//
// URLs: the master playlist /live/{id}/index.m3u8 starts a viewer's session and lists its renditions under
// s/{token}/ (relative), so the session rides in the path of the media playlists and, relative to them, of
// the segments: the media playlist's text is the same for every viewer, while every request still names its
// session (position inference for players that never report). Session-free URLs (/live/{id}/{rendition}/...)
// are public; anything with a session in its URL is private. In CDN mode (delivery.cdn) no URI carries a
// session at all.
import type { IncomingHttpHeaders } from "node:http";
import { CLAIM_ID_PATTERN, RENDITION_PATTERN, SESSION_ID_PATTERN, STREAM_ID_PATTERN, isStreamId } from "../core/ids.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Answer, HotRequest, Soon } from "../http/answer.ts";
import type { ClientAddresses } from "../http/client-address.ts";
import { CORS_HEADERS, HttpError, type HttpServer } from "../http/server.ts";
import type { StreamStore } from "../state/store.ts";
import type { StreamSnapshot } from "../core/model.ts";
import { renderMaster, renderMedia } from "./playlist.ts";
import { PlaylistBody, RenderedPlaylists } from "./rendered.ts";
import { SegmentCache } from "./segment-cache.ts";
import type { NamedSession, ViewerSessions } from "./sessions.ts";
import { TimelineCache, type TimelineCacheOptions } from "./timeline-cache.ts";
import { ViewerTracker } from "./viewers.ts";
import { ViewerExperience, readCmcd } from "./cmcd.ts";

export interface HlsOptions {
  store: Pick<StreamStore, "read" | "readSegment">;
  segmentCacheBytes: number;
  metrics: Metrics;
  sessions: ViewerSessions;
  addresses: ClientAddresses;
  /** delivery.cdn: no URI carries a session. */
  cdn?: boolean;
  /** Throws when a new viewer of the stream is over a cap (viewer-limits.ts); sessions check it on start. */
  admitViewer?: (streamId: string) => void;
  /** Redis health, the timeline's cut and conflicts, for timelines listed from owners' offers (cluster/peers.ts). */
  timelineOptions?: TimelineCacheOptions;
}

/** How often the viewer counts forget viewers gone quiet (its own timer: it must not wait on Redis). */
const VIEWER_PRUNE_MS = 5000;
/** A session token in a path: `<session id>.<stream id>.<signature>` (session-token.ts checks it). */
const TOKEN_PATTERN = `${SESSION_ID_PATTERN}\\.${STREAM_ID_PATTERN}\\.[A-Za-z0-9_-]{43}`;

/** The segment cache's key: one segment of one rendition, as written by one claim. */
const segmentKey = (streamId: string, rendition: string, seq: number, claim: string): string => `${streamId}/${rendition}/${seq}.${claim}`;

/** Segment headers, made once per segment's bytes (a Content-Length each) and kind of URL. */
const SEGMENT_CACHE_CONTROL = { public: "public, max-age=31536000, immutable", private: "private, max-age=31536000, immutable" };

/** A delta update asked for (RFC 8216bis 6.2.5.1; "v2" also skips date ranges, of which baton writes none). */
const wantsDelta = (query: URLSearchParams): boolean => {
  const skip = query.get("_HLS_skip");
  return skip === "YES" || skip === "v2";
};

export class HlsDelivery {
  readonly timelines: TimelineCache;
  readonly segments: SegmentCache;
  readonly viewers: ViewerTracker;
  private readonly experience: ViewerExperience;
  private pruneTimer: NodeJS.Timeout | null = null;
  private viewerPruneTimer: NodeJS.Timeout | null = null;
  private readonly rendered = new RenderedPlaylists();
  private readonly segmentHeaders = new WeakMap<Buffer, { public?: Record<string, string | number>; private?: Record<string, string | number> }>();
  /** Renditions viewers asked this node for lately, per stream: what is worth fetching ahead. */
  private readonly watched = new Map<string, Map<string, number>>();

  constructor(http: Pick<HttpServer, "addHotRoute">, private readonly o: HlsOptions) {
    this.viewers = new ViewerTracker(o.addresses);
    this.experience = new ViewerExperience(o.metrics);
    // each change of a watched stream is read once; its newest segments are fetched into memory at once, so
    // viewers get them from memory, and a short Redis outage finds them there
    this.timelines = new TimelineCache(async (id) => {
      const snapshot = await o.store.read(id);
      if (snapshot) this.prefetch(snapshot);
      return snapshot;
    }, o.timelineOptions);
    // a segment in memory is re-read after two minutes: far longer than any viewer needs it
    this.segments = new SegmentCache(o.segmentCacheBytes, 120000);
    const [STREAM, RENDITION, TOKEN] = [STREAM_ID_PATTERN, RENDITION_PATTERN, TOKEN_PATTERN];
    // hot routes: each answer is data with one precomputed head (CORS included), which either of the node's
    // HTTP front ends sends (http/answer.ts)
    const SEGMENT = `(\\d{1,15})\\.(${CLAIM_ID_PATTERN})\\.ts`;
    http.addHotRoute("master", new RegExp(`^/live/(${STREAM})/index\\.m3u8$`), (r) => this.master(r));
    http.addHotRoute("media", new RegExp(`^/live/(${STREAM})/(${RENDITION})/index\\.m3u8$`), (r) => this.media(r, null));
    http.addHotRoute("segment", new RegExp(`^/live/(${STREAM})/(${RENDITION})/${SEGMENT}$`), (r) => this.segment(r, null));
    // the same, with a session in the path: params shift by one, the token first
    const withSession = (r: HotRequest): [HotRequest, string] => [{ ...r, params: [r.params[0]!, ...r.params.slice(2)] }, r.params[1]!];
    http.addHotRoute("media", new RegExp(`^/live/(${STREAM})/s/(${TOKEN})/(${RENDITION})/index\\.m3u8$`), (r) => this.media(...withSession(r)));
    http.addHotRoute("segment", new RegExp(`^/live/(${STREAM})/s/(${TOKEN})/(${RENDITION})/${SEGMENT}$`), (r) => this.segment(...withSession(r)));
  }

  /** Starts the timers that keep its memory bounded. */
  start(): void {
    this.pruneTimer ??= setInterval(() => (this.timelines.prune(), this.rendered.prune()), 60000);
    this.viewerPruneTimer ??= setInterval(() => this.viewers.prune(), VIEWER_PRUNE_MS);
  }

  close(): void {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    if (this.viewerPruneTimer) clearInterval(this.viewerPruneTimer);
    this.pruneTimer = null;
    this.viewerPruneTimer = null;
  }

  private prefetch(stream: StreamSnapshot): void {
    const renditions = this.watched.get(stream.id);
    const newest = stream.entries[stream.entries.length - 1];
    if (!renditions || !newest) return;
    for (const [rendition, at] of renditions) {
      if (Date.now() - at > 30000) {
        renditions.delete(rendition);
        if (renditions.size === 0) this.watched.delete(stream.id);
        continue;
      }
      const { seq, claim } = newest;
      void this.segments
        .get(segmentKey(stream.id, rendition, seq, claim), () => this.o.store.readSegment(stream.id, stream.broadcast, rendition, seq, claim), () => this.o.metrics.segmentCacheMisses.inc())
        .catch(() => undefined);
    }
  }

  /** The stream's timeline: at once when memory holds a fresh one (every watched stream's), else once read. */
  private snapshot(streamId: string): Soon<StreamSnapshot> {
    if (!isStreamId(streamId)) throw new HttpError(400, "BAD_STREAM_ID", "invalid stream id");
    const held = this.timelines.peek(streamId);
    if (held !== undefined) return live(held, streamId);
    return this.timelines.get(streamId).then(({ snapshot }) => live(snapshot, streamId));
  }

  /**
   * A master playlist request without a session starts one (a playback token first, when required; at the
   * client address's rate) and lists its renditions under s/{token}/. A session that is over (expired, or
   * never used in time) is one no more, and the request starts another. In CDN mode no session is started
   * or written: the text is the same for everyone.
   */
  private async master({ params, client, query }: HotRequest): Promise<Answer> {
    const streamId = params[0]!;
    let session = this.o.sessions.check(query.get("session"), streamId);
    if (session && !(await this.o.sessions.loading(session))) session = null;
    if (!session) this.o.sessions.authorize(streamId, query.get("token"));
    const stream = await this.snapshot(streamId);
    if (!stream.ladder) throw new HttpError(503, "STARTING", "the stream is starting", { "Retry-After": "1" });
    if (session) this.o.sessions.touch(session, null);
    if (this.o.cdn) {
      // counted as its media playlist requests are, which name no session: by address and user agent; a
      // client not counted yet is a new viewer, and the viewer caps apply to it
      if (!this.viewers.counted(stream.id, client)) this.o.admitViewer?.(stream.id);
      this.viewers.seen(stream.id, client, null);
      return PlaylistBody.of(renderMaster(stream.ladder), stream.state === "ended").answer(client.headers["accept-encoding"], query.has("session"));
    }
    const token = session?.token ?? this.o.sessions.start(client, stream.id).token;
    this.viewers.seen(stream.id, client, token);
    // a paused session's resume point rides in its media playlist URIs (read afresh here, on the player's load)
    const resume = session ? await this.o.sessions.resumeAt(session.sessionId) : null;
    const text = renderMaster(stream.ladder, resume === null ? "" : `?resume=${resume}`, `s/${token}/`);
    return PlaylistBody.of(text, stream.state === "ended").answer(client.headers["accept-encoding"], true);
  }

  /** What the player's CMCD says (stalls, buffer, watched time); a request without CMCD says nothing. */
  private observe(request: HotRequest, route: "media" | "segment", sessionId: string): void {
    const q = request.query.get("CMCD");
    // the common case, a request without CMCD, costs one lookup (Node's requests carry CMCD-* headers too)
    const h = request.client.headers as IncomingHttpHeaders;
    if (q === null && h["cmcd-request"] === undefined && h["cmcd-object"] === undefined && h["cmcd-status"] === undefined && h["cmcd-session"] === undefined) return;
    const cmcd = readCmcd(q ?? undefined, h);
    if (cmcd) this.experience.request(cmcd, route, sessionId);
  }

  /**
   * A media playlist: the rendition's shared text (rendered once per timeline change), or a delta update of
   * it. A paused session's playlist points EXT-X-START at its position while it is in the window (rendered
   * for it; a delta update is a reload, where a player no longer uses EXT-X-START, so it gets the shared one).
   */
  private media(request: HotRequest, token: string | null): Soon<Answer> {
    const legacy = token === null ? request.query.get("session") : null;
    const session = this.o.sessions.check(token ?? legacy, request.params[0]);
    // CMCD counts only from a viewer's own session (a signed token for this stream): an anonymous request could
    // otherwise fail or pass a rollout's viewer-stall gate
    if (session) this.observe(request, "media", session.sessionId);
    const stream = this.snapshot(request.params[0]!);
    // no closure when the timeline is in memory: this runs for every playlist request
    return stream instanceof Promise ? stream.then((s) => this.mediaOf(request, s, session, legacy)) : this.mediaOf(request, stream, session, legacy);
  }

  private mediaOf({ params, client, query }: HotRequest, stream: StreamSnapshot, session: NamedSession | null, legacy: string | null): Soon<Answer> {
    const rendition = params[1]!;
    if (!stream.ladder) throw new HttpError(503, "STARTING", "the stream is starting", { "Retry-After": "1" });
    if (!stream.ladder.some((r) => r.name === rendition)) throw new HttpError(404, "UNKNOWN_RENDITION", `no rendition ${rendition}`);
    if (session && legacy !== null && !this.o.cdn) {
      // a URI of an earlier release (?session=): to the session's path, where its segments carry the session
      const resume = query.get("resume");
      const location = `/live/${stream.id}/s/${session.token}/${rendition}/index.m3u8${resume && /^\d{13}$/.test(resume) ? `?resume=${resume}` : ""}`;
      return { status: 302, headers: { ...CORS_HEADERS, Location: location, "Cache-Control": "private, no-store", "Content-Length": 0 }, body: null };
    }
    this.viewers.seen(stream.id, client, session?.token ?? null);
    const watched = this.watched.get(stream.id) ?? new Map<string, number>();
    this.watched.set(stream.id, watched.set(rendition, Date.now()));
    const delta = wantsDelta(query);
    const personal = session !== null;
    const encoding = client.headers["accept-encoding"];
    if (session) {
      this.o.sessions.touch(session, rendition);
      const known = delta ? undefined : this.startOffset(session, stream, rendition, query.get("resume"));
      if (known !== undefined) {
        return known.then((startOffset) =>
          startOffset === undefined
            ? this.rendered.media(stream, rendition, delta).answer(encoding, personal)
            : PlaylistBody.of(renderMedia(stream, rendition, "", { startOffset }), stream.state === "ended").answer(encoding, personal));
      }
    }
    return this.rendered.media(stream, rendition, delta).answer(encoding, personal);
  }

  /** A paused session's EXT-X-START offset: undefined at once when it is known to be playing, else read. */
  private startOffset(session: NamedSession, stream: StreamSnapshot, rendition: string, resumeText: string | null): Promise<number | undefined> | undefined {
    const resume = resumeText !== null && /^\d{13}$/.test(resumeText) ? Number(resumeText) : null;
    // a playing viewer's reloads (the common case) need no promise: its copy says it is not paused
    if (resume === null && this.o.sessions.knownResumeAt(session.sessionId) === null) return undefined;
    return this.o.sessions.startOffset(session.sessionId, stream, rendition, resume);
  }

  private segment(request: HotRequest, token: string | null): Soon<Answer> {
    const [streamId, , seqText] = request.params as [string, string, string, string];
    if (!isStreamId(streamId) || !Number.isSafeInteger(Number(seqText))) throw new HttpError(400, "BAD_PATH", "invalid segment path");
    const session = this.o.sessions.check(token ?? request.query.get("session"), streamId);
    if (session) this.observe(request, "segment", session.sessionId);
    // the timeline (in memory for a watched stream) names the broadcast whose media holds the segment
    const stream = this.snapshot(streamId);
    return stream instanceof Promise ? stream.then((s) => this.segmentOf(request, s, session)) : this.segmentOf(request, stream, session);
  }

  private segmentOf({ params, client }: HotRequest, stream: StreamSnapshot, session: NamedSession | null): Soon<Answer> {
    const [streamId, rendition, seqText, claim] = params as [string, string, string, string];
    const seq = Number(seqText);
    if (session) {
      // players that never report (Safari's native player, VLC) still leave a resume point
      const entry = entryOf(stream, seq, claim);
      if (entry && stream.ladder?.some((r) => r.name === rendition)) this.o.sessions.inferred(session, stream, entry.pdt, rendition);
    }
    const kind = session ? "private" : "public";
    // the key names the claim: a URI of a timeline that lost its history finds nothing (404), never new bytes
    const key = segmentKey(streamId, rendition, seq, claim);
    const held = this.segments.peek(key);
    if (held) return this.segmentAnswer(held, kind, client.headers.range);
    return this.segments.get(key, () => this.o.store.readSegment(streamId, stream.broadcast, rendition, seq, claim), () => this.o.metrics.segmentCacheMisses.inc()).then((bytes) => {
      if (!bytes) throw new HttpError(404, "UNKNOWN_SEGMENT", `segment ${rendition}/${seq}.${claim} of ${streamId} is not available`);
      return this.segmentAnswer(bytes, kind, client.headers.range);
    });
  }

  /** A segment's bytes, or the byte range asked for. */
  private segmentAnswer(bytes: Buffer, kind: "public" | "private", rangeHeader: string | undefined): Answer {
    const range = rangeHeader === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(rangeHeader);
    if (range && (range[1] || range[2])) {
      const start = range[1] ? Number(range[1]) : Math.max(0, bytes.length - Number(range[2]));
      const end = range[1] && range[2] ? Math.min(Number(range[2]), bytes.length - 1) : bytes.length - 1;
      if (start > end || start >= bytes.length) {
        throw new HttpError(416, "RANGE", "range not satisfiable", { "Content-Range": `bytes */${bytes.length}` });
      }
      const headers = { ...this.segmentHeadersOf(bytes, kind), "Content-Length": end - start + 1, "Content-Range": `bytes ${start}-${end}/${bytes.length}` };
      return { status: 206, headers, body: bytes.subarray(start, end + 1) };
    }
    return { status: 200, headers: this.segmentHeadersOf(bytes, kind), body: bytes };
  }

  private segmentHeadersOf(bytes: Buffer, kind: "public" | "private"): Record<string, string | number> {
    let made = this.segmentHeaders.get(bytes);
    if (!made) this.segmentHeaders.set(bytes, (made = {}));
    return (made[kind] ??= {
      ...CORS_HEADERS,
      "Content-Type": "video/mp2t",
      "Cache-Control": SEGMENT_CACHE_CONTROL[kind],
      "Accept-Ranges": "bytes",
      "Content-Length": bytes.length,
    });
  }
}

/** A stream that is live (or ended and kept): else 404. */
function live(snapshot: StreamSnapshot | null, streamId: string): StreamSnapshot {
  if (!snapshot) throw new HttpError(404, "UNKNOWN_STREAM", `stream ${streamId} is not live`);
  return snapshot;
}

/** The timeline entry of a segment: sequence numbers are consecutive, so its place is known; else a search. */
function entryOf(stream: StreamSnapshot, seq: number, claim: string): StreamSnapshot["entries"][number] | undefined {
  const entries = stream.entries;
  const guess = entries[seq - (entries[0]?.seq ?? 0)];
  if (guess && guess.seq === seq && guess.claim === claim) return guess;
  return entries.find((e) => e.seq === seq && e.claim === claim);
}
