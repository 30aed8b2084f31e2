// HLS delivery: master and media playlists and segments, rendered from the shared timeline, on the node's
// HTTP server. It keeps what viewers ask for in memory: the timelines of watched streams (re-read once per
// change), the newest segments of the renditions they watch (fetched ahead), a media playlist's text per
// timeline snapshot, and the viewer counts.
import type { ServerResponse } from "node:http";
import { CLAIM_ID_PATTERN, RENDITION_PATTERN, STREAM_ID_PATTERN, isStreamId } from "../core/ids.ts";
import type { Metrics } from "../core/metrics.ts";
import type { ClientAddresses } from "../http/client-address.ts";
import { HttpError, type HttpServer, type Request } from "../http/server.ts";
import type { StreamStore } from "../state/store.ts";
import type { StreamSnapshot } from "../core/model.ts";
import { renderMaster, renderMedia } from "./playlist.ts";
import { SegmentCache } from "./segment-cache.ts";
import type { ViewerSessions } from "./sessions.ts";
import { TimelineCache } from "./timeline-cache.ts";
import { ViewerTracker } from "./viewers.ts";

export interface HlsOptions {
  store: Pick<StreamStore, "read" | "readSegment">;
  segmentCacheBytes: number;
  metrics: Metrics;
  sessions: ViewerSessions;
  addresses: ClientAddresses;
}

const PLAYLIST = "application/vnd.apple.mpegurl";
/** How often the viewer counts forget viewers gone quiet (its own timer: it must not wait on Redis). */
const VIEWER_PRUNE_MS = 5000;

/** The segment cache's key: one segment of one rendition, as written by one claim. */
const segmentKey = (streamId: string, rendition: string, seq: number, claim: string): string => `${streamId}/${rendition}/${seq}.${claim}`;

export class HlsDelivery {
  readonly timelines: TimelineCache;
  readonly segments: SegmentCache;
  readonly viewers: ViewerTracker;
  private pruneTimer: NodeJS.Timeout | null = null;
  private viewerPruneTimer: NodeJS.Timeout | null = null;
  /** Session-less media playlists rendered per timeline snapshot (a new snapshot, a new render). */
  private readonly rendered = new WeakMap<StreamSnapshot, Map<string, string>>();
  /** Renditions viewers asked this node for lately, per stream: what is worth fetching ahead. */
  private readonly watched = new Map<string, Map<string, number>>();

  constructor(http: Pick<HttpServer, "addRoute">, private readonly o: HlsOptions) {
    this.viewers = new ViewerTracker(o.addresses);
    // each change of a watched stream is read once; its newest segments are fetched into memory at once, so
    // viewers get them from memory, and a short Redis outage finds them there
    this.timelines = new TimelineCache(async (id) => {
      const snapshot = await o.store.read(id);
      if (snapshot) this.prefetch(snapshot);
      return snapshot;
    });
    // a segment in memory is re-read after two minutes: far longer than any viewer needs it
    this.segments = new SegmentCache(o.segmentCacheBytes, 120000);
    const [STREAM, RENDITION] = [STREAM_ID_PATTERN, RENDITION_PATTERN];
    http.addRoute(["GET", "HEAD"], "master", new RegExp(`^/live/(${STREAM})/index\\.m3u8$`), (r) => this.master(r));
    http.addRoute(["GET", "HEAD"], "media", new RegExp(`^/live/(${STREAM})/(${RENDITION})/index\\.m3u8$`), (r) => this.media(r));
    http.addRoute(["GET", "HEAD"], "segment", new RegExp(`^/live/(${STREAM})/(${RENDITION})/(\\d{1,15})\\.(${CLAIM_ID_PATTERN})\\.ts$`), (r) => this.segment(r));
  }

  /** Starts the timers that keep its memory bounded. */
  start(): void {
    this.pruneTimer ??= setInterval(() => this.timelines.prune(), 60000);
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

  private async snapshot(streamId: string): Promise<NonNullable<Awaited<ReturnType<TimelineCache["get"]>>["snapshot"]>> {
    if (!isStreamId(streamId)) throw new HttpError(400, "BAD_STREAM_ID", "invalid stream id");
    const { snapshot } = await this.timelines.get(streamId);
    if (!snapshot) throw new HttpError(404, "UNKNOWN_STREAM", `stream ${streamId} is not live`);
    return snapshot;
  }

  /**
   * A master playlist request without a session starts one (a playback token first, when required; at the
   * client address's rate): every URI it lists carries the token. A session that is over (expired, or never
   * used in time) is one no more, and the request starts another.
   */
  private async master({ params, res, method, req, query }: Request): Promise<void> {
    const streamId = params[0]!;
    let session = this.o.sessions.check(query.get("session"), streamId);
    if (session && !(await this.o.sessions.loading(session))) session = null;
    if (!session) this.o.sessions.authorize(streamId, query.get("token"));
    const stream = await this.snapshot(streamId);
    if (!stream.ladder) throw new HttpError(503, "STARTING", "the stream is starting", { "Retry-After": "1" });
    if (session) this.o.sessions.touch(session, null);
    const token = session?.token ?? this.o.sessions.start(req, stream.id).token;
    this.viewers.seen(stream.id, req, token);
    // a paused session's resume point rides in its media playlist URIs (read afresh here, on the player's load)
    const resume = session ? await this.o.sessions.resumeAt(session.sessionId) : null;
    const uriQuery = `?session=${token}${resume === null ? "" : `&resume=${resume}`}`;
    this.sendPlaylist(res, method, renderMaster(stream.ladder, uriQuery), { ended: stream.state === "ended", personal: true });
  }

  /** A paused session's media playlist points EXT-X-START at its position while it is in the window. */
  private async media({ params, res, method, req, query }: Request): Promise<void> {
    const session = this.o.sessions.check(query.get("session"), params[0]);
    const stream = await this.snapshot(params[0]!);
    const rendition = params[1]!;
    if (!stream.ladder) throw new HttpError(503, "STARTING", "the stream is starting", { "Retry-After": "1" });
    if (!stream.ladder.some((r) => r.name === rendition)) throw new HttpError(404, "UNKNOWN_RENDITION", `no rendition ${rendition}`);
    this.viewers.seen(stream.id, req, session?.token ?? null);
    const watched = this.watched.get(stream.id) ?? new Map<string, number>();
    this.watched.set(stream.id, watched.set(rendition, Date.now()));
    let text: string;
    if (session) {
      this.o.sessions.touch(session, rendition);
      const resume = /^\d{13}$/.test(query.get("resume") ?? "") ? Number(query.get("resume")) : null;
      const startOffset = await this.o.sessions.startOffset(session.sessionId, stream, rendition, resume);
      text = renderMedia(stream, rendition, `?session=${session.token}`, startOffset === undefined ? {} : { startOffset });
    } else {
      // without a session every answer for this timeline is the same text: render it once
      const rendered = this.rendered.get(stream) ?? new Map<string, string>();
      this.rendered.set(stream, rendered);
      text = rendered.get(rendition) ?? renderMedia(stream, rendition);
      rendered.set(rendition, text);
    }
    this.sendPlaylist(res, method, text, { ended: stream.state === "ended", personal: session !== null });
  }

  /** A playlist whose URIs carry a viewer's session is `private`: a shared cache must not hand it to others. */
  private sendPlaylist(res: ServerResponse, method: string, text: string, o: { ended: boolean; personal: boolean }): void {
    res.writeHead(200, {
      "Content-Type": PLAYLIST,
      "Content-Length": Buffer.byteLength(text),
      // live playlists change every segment; an ended one never again
      "Cache-Control": `${o.personal ? "private" : "public"}, max-age=${o.ended ? 3600 : 1}`,
    });
    res.end(method === "HEAD" ? undefined : text);
  }

  private async segment({ params, req, res, method, query }: Request): Promise<void> {
    const [streamId, rendition, seqText, claim] = params as [string, string, string, string];
    const seq = Number(seqText);
    if (!isStreamId(streamId) || !Number.isSafeInteger(seq)) throw new HttpError(400, "BAD_PATH", "invalid segment path");
    const session = this.o.sessions.check(query.get("session"), streamId);
    // the timeline (in memory for a watched stream) names the broadcast whose media holds the segment
    const stream = await this.snapshot(streamId);
    if (session) {
      // players that never report (Safari's native player, VLC) still leave a resume point
      const entry = stream.entries.find((e) => e.seq === seq && e.claim === claim);
      if (entry && stream.ladder?.some((r) => r.name === rendition)) this.o.sessions.inferred(session, stream, entry.pdt, rendition);
    }
    const bytes = await this.segments.get(
      // the key names the claim: a URI of a timeline that lost its history finds nothing (404), never new bytes
      segmentKey(streamId, rendition, seq, claim),
      () => this.o.store.readSegment(streamId, stream.broadcast, rendition, seq, claim),
      () => this.o.metrics.segmentCacheMisses.inc(),
    );
    if (!bytes) throw new HttpError(404, "UNKNOWN_SEGMENT", `segment ${rendition}/${seq}.${claim} of ${streamId} is not available`);
    const headers: Record<string, string | number> = {
      "Content-Type": "video/mp2t",
      "Cache-Control": "public, max-age=31536000, immutable",
      "Accept-Ranges": "bytes",
    };
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
    if (range && (range[1] || range[2])) {
      const start = range[1] ? Number(range[1]) : Math.max(0, bytes.length - Number(range[2]));
      const end = range[1] && range[2] ? Math.min(Number(range[2]), bytes.length - 1) : bytes.length - 1;
      if (start > end || start >= bytes.length) {
        throw new HttpError(416, "RANGE", "range not satisfiable", { "Content-Range": `bytes */${bytes.length}` });
      }
      res.writeHead(206, { ...headers, "Content-Length": end - start + 1, "Content-Range": `bytes ${start}-${end}/${bytes.length}` });
      res.end(method === "HEAD" ? undefined : bytes.subarray(start, end + 1));
      return;
    }
    res.writeHead(200, { ...headers, "Content-Length": bytes.length });
    res.end(method === "HEAD" ? undefined : bytes);
  }
}
