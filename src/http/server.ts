// The node's HTTP server: HLS playlists and segments rendered from the shared timeline, health, readiness,
// metrics. Other domains add routes through addRoute(). Paths are matched against strict patterns; nothing
// here reads a file named by a request.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { errorMessage } from "../core/errors.ts";
import { isStreamId } from "../core/ids.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import { CLAIM_ID } from "../state/claim-id.ts";
import type { StreamSnapshot, StreamStore } from "../state/store.ts";
import { checkBearer } from "./bearer.ts";
import { HttpError, sendJson } from "./errors.ts";
import { renderMaster, renderMedia } from "../delivery/playlist.ts";
import type { ViewerSessions } from "../delivery/sessions.ts";
import { SegmentCache } from "../delivery/segment-cache.ts";
import { TimelineCache } from "../delivery/timeline-cache.ts";
import { ViewerTracker } from "../delivery/viewers.ts";
import { reject as rejectUpgrade } from "../delivery/ws.ts";
import type { ClientAddresses } from "./client-address.ts";

export interface Readiness {
  ready(): { ok: true } | { ok: false; reason: string };
}

export interface Request {
  method: string;
  path: string;
  params: string[];
  query: URLSearchParams;
  req: IncomingMessage;
  res: ServerResponse;
}

type Handler = (request: Request) => Promise<void> | void;
type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** The segment cache's key: one segment of one rendition, as written by one claim. */
const segmentKey = (streamId: string, rendition: string, seq: number, claim: string): string => `${streamId}/${rendition}/${seq}.${claim}`;

interface Route {
  methods: string[];
  pattern: RegExp;
  name: string;
  handler: Handler;
}

export interface DeliveryOptions {
  port: number;
  bind: string;
  /** Sockets open at once; more are refused at accept (http.maxConnections). */
  maxConnections: number;
  /** Sockets open at once from one address that is not a trusted proxy (http.maxConnectionsPerAddress). */
  maxConnectionsPerAddress: number;
  addresses: ClientAddresses;
  store: Pick<StreamStore, "read" | "readSegment">;
  segmentCacheBytes: number;
  log: Logger;
  metrics: Metrics;
  readiness: Readiness;
  sessions: ViewerSessions;
  /** The admin token the operators' endpoints (/metrics here) need, or null when they are open (admin.openOps). */
  opsToken: string | null;
}

export { HttpError, sendJson };

const PLAYLIST = "application/vnd.apple.mpegurl";
/**
 * A connection must bring a whole first request within this time. Node's headersTimeout starts only once a
 * request's first byte arrived, so without it a socket that sends nothing stays open for ever.
 */
const FIRST_REQUEST_MS = 10000;
/** A socket with no traffic either way for this long is closed (keep-alive sockets close first, at 30 s). */
const SOCKET_IDLE_MS = 60000;
/** How often the viewer counts forget viewers gone quiet (its own timer: it must not wait on Redis). */
const VIEWER_PRUNE_MS = 5000;
const RENDITION = "[a-z0-9_-]{1,32}";
const STREAM = "[A-Za-z0-9_-]{1,64}";

export class DeliveryServer {
  readonly timelines: TimelineCache;
  readonly segments: SegmentCache;
  readonly viewers: ViewerTracker;
  private readonly routes: Route[] = [];
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private pruneTimer: NodeJS.Timeout | null = null;
  private viewerPruneTimer: NodeJS.Timeout | null = null;
  /** Open sockets per direct peer (not counting the trusted balancer), for the per-address cap. */
  private readonly perAddress = new Map<string, number>();
  /** While set, every response carries `Connection: close` (a drain). */
  private draining = false;
  /** Requests being answered, health checks left out (the balancer keeps sending those). */
  inFlight = 0;
  /** /readyz answered "ready" this many times in a row. */
  readyChecks = 0;
  private upgradeHandler: UpgradeHandler | null = null;
  /** Session-less media playlists rendered per timeline snapshot (a new snapshot, a new render). */
  private readonly rendered = new WeakMap<StreamSnapshot, Map<string, string>>();
  /** Renditions viewers asked this node for lately, per stream: what is worth fetching ahead. */
  private readonly watched = new Map<string, Map<string, number>>();

  constructor(private readonly o: DeliveryOptions) {
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
    this.addRoute(["GET", "HEAD"], "healthz", /^\/healthz$/, ({ res }) => sendJson(res, 200, { status: "ok" }));
    this.addRoute(["GET", "HEAD"], "readyz", /^\/readyz$/, ({ res }) => {
      const state = o.readiness.ready();
      // how many checks in a row saw the node ready: a rolling update waits for the balancer to have seen it
      this.readyChecks = state.ok ? this.readyChecks + 1 : 0;
      sendJson(res, state.ok ? 200 : 503, state.ok ? { status: "ready" } : { status: "not ready", reason: state.reason });
    });
    this.addRoute(["GET"], "metrics", /^\/metrics$/, async ({ req, res }) => {
      this.guardOps(req);
      o.metrics.segmentCacheBytes.set(this.segments.bytes);
      const text = await o.metrics.registry.metrics();
      res.writeHead(200, { "Content-Type": o.metrics.registry.contentType, "Cache-Control": "no-store" });
      res.end(text);
    });
    this.addRoute(["GET", "HEAD"], "master", new RegExp(`^/live/(${STREAM})/index\\.m3u8$`), (r) => this.master(r));
    this.addRoute(["GET", "HEAD"], "media", new RegExp(`^/live/(${STREAM})/(${RENDITION})/index\\.m3u8$`), (r) => this.media(r));
    this.addRoute(["GET", "HEAD"], "segment", new RegExp(`^/live/(${STREAM})/(${RENDITION})/(\\d{1,15})\\.(${CLAIM_ID})\\.ts$`), (r) => this.segment(r));
  }

  /** The operators' read-only endpoints need the admin token unless admin.openOps is set. */
  guardOps(req: IncomingMessage): void {
    if (this.o.opsToken !== null) checkBearer(req.headers.authorization, this.o.opsToken);
  }

  /** Where WebSocket upgrades go (the viewer channel). */
  onUpgrade(handler: UpgradeHandler): void {
    this.upgradeHandler = handler;
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
        .get(segmentKey(stream.id, rendition, seq, claim), () => this.o.store.readSegment(stream.id, rendition, seq, claim), () => this.o.metrics.segmentCacheMisses.inc())
        .catch(() => undefined);
    }
  }

  addRoute(methods: string[], name: string, pattern: RegExp, handler: Handler): void {
    this.routes.push({ methods, pattern, name, handler });
  }

  get port(): number {
    const address = this.server?.address();
    return typeof address === "object" && address ? address.port : this.o.port;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch(() => res.destroy());
    });
    // HLS players poll the playlist every few seconds on one connection: keep it open between polls
    server.keepAliveTimeout = 30000;
    server.headersTimeout = 10000;
    server.requestTimeout = 30000;
    server.timeout = SOCKET_IDLE_MS;
    server.maxConnections = this.o.maxConnections;
    // a malformed request line or header: Node answers 400 (431, 408) itself and closes that socket only
    server.on("request", (req: IncomingMessage) => this.firstRequest(req.socket));
    server.on("upgrade", (req, socket, head) => {
      // an upgraded socket is no longer the HTTP server's: it needs its own error listener from the start
      socket.on("error", () => undefined);
      try {
        if (this.upgradeHandler) this.upgradeHandler(req, socket, head);
        else rejectUpgrade(socket, 404, "Not Found");
      } catch (error) {
        this.o.log.warn("upgrade failed", { error: errorMessage(error) });
        rejectUpgrade(socket, 500, "Internal Server Error");
      }
    });
    server.on("connection", (socket: Socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", (error: NodeJS.ErrnoException) =>
        reject(
          new Error(
            error.code === "EADDRINUSE"
              ? `HTTP port ${this.o.bind}:${this.o.port} is already in use (http.port / BATON_HTTP_PORT)`
              : `HTTP listener on ${this.o.bind}:${this.o.port} failed: ${error.message}`,
          ),
        ),
      );
      server.listen(this.o.port, this.o.bind, () => resolve());
    });
    this.server = server;
    this.pruneTimer = setInterval(() => this.timelines.prune(), 60000);
    this.viewerPruneTimer = setInterval(() => this.viewers.prune(), VIEWER_PRUNE_MS);
  }

  private readonly awaitingRequest = new WeakMap<Socket, NodeJS.Timeout>();

  /** A new socket: counted, capped per direct peer, and closed unless a request arrives in time. */
  private accept(socket: Socket): void {
    socket.on("error", () => undefined);
    const peer = this.o.addresses.peer(socket);
    if (peer !== null) {
      const open = (this.perAddress.get(peer) ?? 0) + 1;
      if (open > this.o.maxConnectionsPerAddress) {
        this.o.metrics.httpConnectionsRefused.inc({ reason: "per_address" });
        socket.destroy();
        return;
      }
      this.perAddress.set(peer, open);
    }
    this.sockets.add(socket);
    const timer = setTimeout(() => {
      this.o.metrics.httpConnectionsRefused.inc({ reason: "no_request" });
      socket.destroy();
    }, FIRST_REQUEST_MS);
    timer.unref();
    this.awaitingRequest.set(socket, timer);
    socket.on("close", () => {
      clearTimeout(timer);
      this.sockets.delete(socket);
      if (peer === null) return;
      const left = (this.perAddress.get(peer) ?? 1) - 1;
      if (left > 0) this.perAddress.set(peer, left);
      else this.perAddress.delete(peer);
    });
  }

  private firstRequest(socket: Socket): void {
    const timer = this.awaitingRequest.get(socket);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.awaitingRequest.delete(socket);
  }

  async close(): Promise<void> {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    if (this.viewerPruneTimer) clearInterval(this.viewerPruneTimer);
    this.pruneTimer = null;
    this.viewerPruneTimer = null;
    const server = this.server;
    this.server = null;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  /** A drain starts: answer every request with `Connection: close` and close idle keep-alive sockets. */
  drain(): void {
    this.draining = true;
    this.server?.closeIdleConnections();
  }

  undrain(): void {
    this.draining = false;
  }

  /** Open sockets (viewers' keep-alive connections, the balancer's pooled ones). */
  get openSockets(): number {
    return this.sockets.size;
  }

  /** Ends the drain's HTTP side: closes what is idle now; sockets with a request in flight finish first. */
  closeIdle(): void {
    this.server?.closeIdleConnections();
  }

  /** Past the drain's deadline: drops every socket left. */
  dropAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let route: Route | undefined;
    // the balancer's checks, scrapes and an operator's status polls must not hold a drain open
    const counted = !/^\/(readyz|healthz|metrics|admin\/)/.test(req.url ?? "");
    if (counted) {
      this.inFlight += 1;
      res.once("close", () => (this.inFlight -= 1));
    }
    if (this.draining) res.setHeader("Connection", "close");
    res.setHeader("Access-Control-Allow-Origin", "*");
    res.setHeader("Access-Control-Expose-Headers", "Content-Length, Content-Range");
    try {
      const url = requestUrl(req.url);
      const method = req.method ?? "GET";
      let params: string[] = [];
      route = this.routes.find((r) => {
        const match = r.pattern.exec(url.pathname);
        if (match) params = match.slice(1);
        return match !== null;
      });
      if (method === "OPTIONS") {
        res.writeHead(204, {
          "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, OPTIONS",
          "Access-Control-Allow-Headers": "Authorization, Content-Type, Range",
          "Access-Control-Max-Age": "600",
        });
        res.end();
        return;
      }
      if (!route) throw new HttpError(404, "NOT_FOUND", `no such path: ${url.pathname.slice(0, 200)}`);
      if (!route.methods.includes(method)) {
        throw new HttpError(405, "METHOD_NOT_ALLOWED", `${method} is not allowed here`, { Allow: route.methods.join(", ") });
      }
      await route.handler({ method, path: url.pathname, params, query: url.searchParams, req, res });
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
      } else if (error instanceof HttpError) {
        sendJson(res, error.status, { error: error.code, message: error.message }, error.headers);
      } else {
        this.o.log.warn("request failed", { path: req.url?.slice(0, 200), error: errorMessage(error) });
        sendJson(res, 503, { error: "UNAVAILABLE", message: "state unavailable, retry shortly" }, { "Retry-After": "1" });
      }
    } finally {
      this.o.metrics.httpRequests.inc({ route: route?.name ?? "unmatched", status: String(res.statusCode) });
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
    if (session) {
      // players that never report (Safari's native player, VLC) still leave a resume point
      const stream = (await this.timelines.get(streamId).catch(() => null))?.snapshot;
      const entry = stream?.entries.find((e) => e.seq === seq && e.claim === claim);
      if (stream && entry && stream.ladder?.some((r) => r.name === rendition)) this.o.sessions.inferred(session, stream, entry.pdt, rendition);
    }
    const bytes = await this.segments.get(
      // the key names the claim: a URI of a timeline that lost its history finds nothing (404), never new bytes
      segmentKey(streamId, rendition, seq, claim),
      () => this.o.store.readSegment(streamId, rendition, seq, claim),
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

/** The request target as a URL; a target that is none (`//%`, `http://a:99999/`) is the client's error: 400. */
function requestUrl(target: string | undefined): URL {
  try {
    return new URL(target ?? "/", "http://baton");
  } catch {
    throw new HttpError(400, "BAD_TARGET", "the request target is not a valid path");
  }
}
