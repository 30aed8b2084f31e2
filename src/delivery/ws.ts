// The viewer's WebSocket channel: GET /ws?session=<token>. The player reports its position
// ({"type": "position", "position": s, "paused": bool}) and what it experiences ({"type": "stall"},
// {"type": "startup", "ms": n}, {"type": "player_error", "kind": k}: delivery/cmcd.ts), rate-limited per
// connection before the message is even parsed; the server says hello, and before a drain sends {"type": "handoff"} and closes with 1012 so the
// player reconnects through the balancer to another node. Bad JSON, an unknown message or a position out of
// range closes with 1008, an oversized one with 1009. A session holds a few sockets per node at most; one
// more is refused at the upgrade with 429.
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { rejectUpgrade } from "../http/upgrade.ts";
import { WebSocketServer, type WebSocket } from "ws";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { TimelineCache } from "./timeline-cache.ts";
import { readReport, MAX_POSITION, type NamedSession, type ViewerSessions } from "./sessions.ts";
import { ViewerExperience, readPlayerReport } from "./cmcd.ts";

export const MAX_MESSAGE_BYTES = 4096;
/** Sockets one session may hold on one node: a player, the one it reconnects with, a second tab. */
export const MAX_SOCKETS_PER_SESSION = 4;
const PING_EVERY_MS = 30000;
/** The player page reports its position every 2 s while playing; a longer gap counts as this much watched. */
const MAX_WATCHED_GAP_MS = 4000;

interface Client {
  socket: WebSocket;
  session: NamedSession;
  tokens: number;
  refilledAt: number;
  alive: boolean;
  /** When the last position report said playing (watched time runs from it); null while paused. */
  playingSince: number | null;
}

export type ServerMessage =
  | { type: "hello"; sessionId: string; streamId: string }
  | { type: "handoff"; reason: string; reconnectInMs: number }
  | { type: "error"; code: string; message: string };

export class ViewerChannel {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  private readonly clients = new Set<Client>();
  /** Sockets per session id, counted from the upgrade until the socket closes. */
  private readonly perSession = new Map<string, number>();
  private readonly pinger: NodeJS.Timeout;
  private readonly experience: ViewerExperience;

  constructor(
    private readonly sessions: ViewerSessions,
    private readonly timelines: TimelineCache,
    private readonly maxReportsPerSecond: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.pinger = setInterval(() => this.ping(), PING_EVERY_MS);
    this.experience = new ViewerExperience(metrics);
  }

  get size(): number {
    return this.clients.size;
  }

  private draining = false;

  /** While draining, new connections are refused (503) so the balancer's retry lands on another node. */
  setDraining(on: boolean): void {
    this.draining = on;
  }

  /**
   * Handles an HTTP upgrade; answers 401/403 without upgrading when the token is missing or bad. Nothing the
   * client sent can throw out of here: a target that is no URL is a 400.
   */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://baton");
    } catch {
      return rejectUpgrade(socket, 400, "Bad Request");
    }
    if (url.pathname !== "/ws") return rejectUpgrade(socket, 404, "Not Found");
    if (this.draining) return rejectUpgrade(socket, 503, "Service Unavailable");
    let named: NamedSession | null;
    try {
      named = this.sessions.check(url.searchParams.get("session"));
    } catch {
      return rejectUpgrade(socket, 403, "Forbidden");
    }
    if (!named) return rejectUpgrade(socket, 401, "Unauthorized");
    const session = named;
    const { sessionId } = session;
    const count = this.perSession.get(sessionId) ?? 0;
    if (count >= MAX_SOCKETS_PER_SESSION) return rejectUpgrade(socket, 429, "Too Many Requests");
    // counted on the raw socket, so an upgrade that fails inside ws (no callback) still gives its place back
    this.perSession.set(sessionId, count + 1);
    socket.once("close", () => {
      const left = (this.perSession.get(sessionId) ?? 1) - 1;
      if (left > 0) this.perSession.set(sessionId, left);
      else this.perSession.delete(sessionId);
    });
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, session));
  }

  private accept(socket: WebSocket, session: NamedSession): void {
    const client: Client = { socket, session, tokens: this.maxReportsPerSecond * 2, refilledAt: Date.now(), alive: true, playingSince: null };
    this.clients.add(client);
    this.metrics.wsClients.set(this.clients.size);
    socket.on("pong", () => (client.alive = true));
    socket.on("message", (data, isBinary) => this.message(client, data as Buffer, isBinary));
    socket.on("close", () => {
      this.clients.delete(client);
      this.metrics.wsClients.set(this.clients.size);
    });
    socket.on("error", (error) => this.log.debug("websocket error", { error: error.message }));
    send(socket, { type: "hello", sessionId: session.sessionId, streamId: session.streamId });
  }

  private message(client: Client, data: Buffer, isBinary: boolean): void {
    // token bucket: a burst of twice the rate, refilled continuously; a message over it is not even parsed
    const now = Date.now();
    client.tokens = Math.min(this.maxReportsPerSecond * 2, client.tokens + ((now - client.refilledAt) / 1000) * this.maxReportsPerSecond);
    client.refilledAt = now;
    if (client.tokens < 1) {
      this.metrics.wsReportsDropped.inc();
      return;
    }
    client.tokens -= 1;
    let message: unknown;
    try {
      if (isBinary) throw new Error("binary");
      message = JSON.parse(data.toString("utf8"));
    } catch {
      client.socket.close(1008, "messages are JSON text");
      return;
    }
    const m = message as { type?: unknown; position?: unknown; paused?: unknown; ms?: unknown; kind?: unknown } | null;
    const experienced = m === null || typeof m !== "object" ? null : readPlayerReport(m);
    if (experienced) {
      this.experience.report(experienced);
      return;
    }
    if (m?.type !== "position") {
      client.socket.close(1008, "unknown message type");
      return;
    }
    const report = readReport(m.position, m.paused);
    if (!report) {
      client.socket.close(1008, `position must be seconds (0 to ${MAX_POSITION}) and paused a boolean`);
      return;
    }
    // watched time between two reports while playing, at most one report interval (a tab asleep is not watching)
    if (client.playingSince !== null && !report.paused) this.experience.watched(Math.min(now - client.playingSince, MAX_WATCHED_GAP_MS) / 1000);
    client.playingSince = report.paused ? null : now;
    // the report's promise is not chained: while Redis is away, nothing here waits on it per message
    void this.timelines
      .get(client.session.streamId)
      .catch(() => ({ snapshot: null }))
      .then(({ snapshot }) => {
        void this.sessions.report(client.session, snapshot, report.position, report.paused);
      });
  }

  private ping(): void {
    for (const client of this.clients) {
      if (!client.alive) {
        client.socket.terminate();
        continue;
      }
      client.alive = false;
      client.socket.ping();
    }
  }

  /** Tells every client to reconnect elsewhere, then closes with 1012 (service restart). */
  handoff(reason: string, reconnectInMs = 500): number {
    const count = this.clients.size;
    for (const client of this.clients) {
      send(client.socket, { type: "handoff", reason, reconnectInMs });
      client.socket.close(1012, "handoff");
    }
    return count;
  }

  close(): void {
    clearInterval(this.pinger);
    for (const client of this.clients) client.socket.terminate();
    this.clients.clear();
    this.wss.close();
  }
}

function send(socket: WebSocket, message: ServerMessage): void {
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
}

