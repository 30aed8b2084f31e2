// The node's HTTP transport: the listener and its limits (connection caps, the first-request deadline, idle
// sockets), the router, CORS, error mapping, the drain's socket control, WebSocket upgrades, and the node's own
// endpoints (health, readiness, metrics). Features add their routes with addRoute(), and the viewers' hot
// routes with addHotRoute() (HLS: delivery/hls.ts), whose answers are data (answer.ts) that either front end
// sends: the lean front (front.ts), which accepts every connection and answers plain GET/HEAD requests of
// hot routes itself, or Node's http server, which it hands every other connection to.
// Paths are matched against strict patterns; nothing here reads a file named by a request.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { errorMessage } from "../core/errors.ts";
import { clientKey } from "../core/address.ts";
import { listen } from "../core/listen.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import { UNAVAILABLE, errorAnswer, type Answer, type Client, type HotHandler, type HotRequest, type Soon } from "./answer.ts";
import { checkBearer } from "./bearer.ts";
import type { ClientAddresses } from "./client-address.ts";
import { HttpError, sendJson } from "./errors.ts";
import { LeanFront } from "./front.ts";
import { rejectUpgrade } from "./upgrade.ts";

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
/** What a feature needs of the server to offer its routes. */
export type Routes = Pick<HttpServer, "addRoute">;
type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

interface Route {
  methods: string[];
  pattern: RegExp;
  name: string;
  handler: Handler;
  ownHeaders: boolean;
  /** A hot route's handler: its answer is data, which the lean front can send too. */
  hot: HotHandler | null;
  /** The lean front's answers by status since the last scrape (plain numbers: a counter's inc costs more than the rest). */
  answered: Map<number, number>;
}

export interface RouteOptions {
  /**
   * The handler writes CORS_HEADERS in its own writeHead (precomputed header objects, the HLS routes): with
   * no header set before it, Node writes the head straight from that object rather than header by header.
   */
  ownHeaders?: boolean;
}

/** What every answer carries: any page may fetch playlists, segments and the APIs (tokens, not cookies, guard them). */
export const CORS_HEADERS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Expose-Headers": "Content-Length, Content-Range",
} as const;

export interface HttpServerOptions {
  port: number;
  bind: string;
  /** Sockets open at once; more are refused at accept (http.maxConnections). */
  maxConnections: number;
  /** Sockets open at once from one address that is not a trusted proxy (http.maxConnectionsPerAddress). */
  maxConnectionsPerAddress: number;
  addresses: ClientAddresses;
  log: Logger;
  metrics: Metrics;
  readiness: Readiness;
  /** The admin token the operators' endpoints (/metrics here) need, or null when they are open (admin.openOps). */
  opsToken: string | null;
  /** Called before /metrics is rendered (gauges read from other parts). */
  beforeScrape?: () => void;
  /**
   * Milliseconds a new connection has to bring its first request, and a later request head begun on the lean
   * front to be complete (FIRST_REQUEST_MS; tests shorten it).
   */
  firstRequestMs?: number;
}

export { HttpError, sendJson };

/**
 * A connection must bring a whole first request within this time. Node's headersTimeout starts only once a
 * request's first byte arrived, so without it a socket that sends nothing stays open for ever.
 */
const FIRST_REQUEST_MS = 10000;
/** A socket with no traffic either way for this long is closed (keep-alive sockets close first, at 30 s). */
const SOCKET_IDLE_MS = 60000;

/** The viewers' HLS routes, whose answer times are a histogram (the other routes are operators' or rare). */
const TIMED_ROUTES = new Set(["master", "media", "segment"]);

export class HttpServer {
  private readonly routes: Route[] = [];
  private readonly hotRoutes: Route[] = [];
  private server: Server | null = null;
  private leanFront: LeanFront | null = null;
  private readonly sockets = new Set<Socket>();
  /** Open sockets per direct peer (not counting the trusted balancer), for the per-address cap. */
  private readonly perAddress = new Map<string, number>();
  /** While set, every response carries `Connection: close` (a drain; the lean front hands every request to Node). */
  draining = false;
  /** Requests being answered, health checks left out (the balancer keeps sending those). */
  inFlight = 0;
  /** /readyz answered "ready" this many times in a row. */
  readyChecks = 0;
  /** /readyz answered "not ready" this many times in a row: a drain waits for the balancer to have seen it. */
  notReadyChecks = 0;
  private upgradeHandler: UpgradeHandler | null = null;

  constructor(private readonly o: HttpServerOptions) {
    this.addRoute(["GET", "HEAD"], "healthz", /^\/healthz$/, ({ res }) => sendJson(res, 200, { status: "ok" }));
    this.addRoute(["GET", "HEAD"], "readyz", /^\/readyz$/, ({ res }) => {
      const state = o.readiness.ready();
      // how many checks in a row saw the node ready: a rolling update waits for the balancer to have seen it
      this.readyChecks = state.ok ? this.readyChecks + 1 : 0;
      this.notReadyChecks = state.ok ? 0 : this.notReadyChecks + 1;
      sendJson(res, state.ok ? 200 : 503, state.ok ? { status: "ready" } : { status: "not ready", reason: state.reason });
    });
    this.addRoute(["GET"], "metrics", /^\/metrics$/, async ({ req, res }) => {
      this.guardOps(req);
      o.beforeScrape?.();
      this.countAnswered();
      const text = await o.metrics.registry.metrics();
      res.writeHead(200, { "Content-Type": o.metrics.registry.contentType, "Cache-Control": "no-store" });
      res.end(text);
    });
  }

  /** The operators' read-only endpoints need the admin token unless admin.openOps is set. */
  guardOps(req: IncomingMessage): void {
    if (this.o.opsToken !== null) checkBearer(req.headers.authorization, this.o.opsToken);
  }

  /** Where WebSocket upgrades go (the viewer channel). */
  onUpgrade(handler: UpgradeHandler): void {
    this.upgradeHandler = handler;
  }

  addRoute(methods: string[], name: string, pattern: RegExp, handler: Handler, options: RouteOptions = {}): void {
    this.routes.push({ methods, pattern, name, handler, ownHeaders: options.ownHeaders === true, hot: null, answered: new Map() });
  }

  /**
   * A viewers' route (GET and HEAD) whose handler makes its answer as data, with its CORS headers in its own
   * head: answered by the lean front for a plain request, by Node's server for any other (a Range, a drain).
   */
  addHotRoute(name: string, pattern: RegExp, hot: HotHandler): void {
    const route: Route = {
      methods: ["GET", "HEAD"], pattern, name, ownHeaders: true, hot, answered: new Map(),
      handler: async ({ method, path, params, query, req, res }) => {
        const answer = await this.answerOf(route, { method: method as "GET" | "HEAD", path, params, query, client: req }, req.url);
        res.writeHead(answer.status, answer.headers);
        res.end(method === "HEAD" || answer.body === null ? undefined : answer.body);
      },
    };
    this.routes.push(route);
    this.hotRoutes.push(route);
  }

  /** A hot route's answer (at once when the handler has it at once): a handler's error mapped as handle() maps every route's. */
  private answerOf(route: Route, request: HotRequest, target: string | undefined): Soon<Answer> {
    try {
      const answer = route.hot!(request);
      return answer instanceof Promise ? answer.catch((error: unknown) => this.errorAnswerOf(error, route.name, target)) : answer;
    } catch (error) {
      return this.errorAnswerOf(error, route.name, target);
    }
  }

  /** What a handler's error answers: its own HttpError, or a 503 (logged) for a failure that is not the client's. */
  private errorAnswerOf(error: unknown, route: string, target: string | undefined): Answer {
    if (error instanceof HttpError) return errorAnswer(error, CORS_HEADERS);
    this.o.log.warn("request failed", { route, path: loggedPath(target), error: errorMessage(error) });
    return errorAnswer(UNAVAILABLE, CORS_HEADERS);
  }

  /**
   * The lean front's request: the answer of the hot route its target names (counted and timed as handle()
   * counts Node's requests; never a rejected promise), or null when it names none (Node's server answers it).
   */
  private hot(method: "GET" | "HEAD", target: string, client: Client): Soon<Answer> | null {
    const mark = target.indexOf("?");
    const path = mark === -1 ? target : target.slice(0, mark);
    if (target.includes("#")) return null;
    for (const route of this.hotRoutes) {
      const match = route.pattern.exec(path);
      if (!match) continue;
      const arrived = performance.now();
      const query = mark === -1 ? NO_QUERY : new URLSearchParams(target.slice(mark + 1));
      const answer = this.answerOf(route, { method, path, params: match.slice(1), query, client }, target);
      if (!(answer instanceof Promise)) return this.answered(route, answer, arrived);
      this.inFlight += 1;
      return answer.then((a) => {
        this.inFlight -= 1;
        return this.answered(route, a, arrived);
      });
    }
    return null;
  }

  private answered(route: Route, answer: Answer, arrived: number): Answer {
    route.answered.set(answer.status, (route.answered.get(answer.status) ?? 0) + 1);
    this.timer(route.name).observe((performance.now() - arrived) / 1000);
    return answer;
  }

  /** Adds the lean front's answers to the request counters (before a scrape reads them). */
  private countAnswered(): void {
    for (const route of this.hotRoutes) {
      for (const [status, count] of route.answered) this.counted(route.name, status).inc(count);
      route.answered.clear();
    }
  }

  get port(): number {
    const address = this.leanFront?.server.address();
    return typeof address === "object" && address ? address.port : this.o.port;
  }

  async start(): Promise<void> {
    // Node's http server never listens: it takes the connections the lean front hands it
    const server = createServer((req, res) => {
      this.handle(req, res).catch(() => res.destroy());
    });
    // HLS players poll the playlist every few seconds on one connection: keep it open between polls
    server.keepAliveTimeout = 30000;
    server.headersTimeout = 10000;
    server.requestTimeout = 30000;
    server.timeout = SOCKET_IDLE_MS;
    // a malformed request line or header: Node answers 400 (431, 408) itself and closes that socket only
    server.on("request", (req: IncomingMessage) => this.firstRequest(req.socket));
    server.on("upgrade", (req, socket, head) => {
      // an upgrade is a first request too: the socket is no longer waiting for one
      this.firstRequest(req.socket);
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
    const front = new LeanFront({
      accept: (socket) => this.accept(socket),
      firstRequest: (socket) => this.firstRequest(socket),
      hot: (method, target, client) => this.hot(method, target, client),
      handOver: (socket) => server.emit("connection", socket),
      draining: () => this.draining,
    }, { maxConnections: this.o.maxConnections, headMs: this.o.firstRequestMs ?? FIRST_REQUEST_MS });
    await listen(front.server, { port: this.o.port, bind: this.o.bind, what: "HTTP", key: "http.port / BATON_HTTP_PORT" });
    // what starts Node's own checks of its connections (headersTimeout, requestTimeout) when it listens
    server.emit("listening");
    this.server = server;
    this.leanFront = front;
  }

  private readonly awaitingRequest = new WeakMap<Socket, NodeJS.Timeout>();

  /** A new socket: counted, capped per direct peer, and closed unless a request arrives in time (false: refused). */
  private accept(socket: Socket): boolean {
    socket.on("error", () => undefined);
    const direct = this.o.addresses.peer(socket);
    // an IPv6 client is its /64: walking through its own addresses buys it no more sockets
    const peer = direct === null ? null : clientKey(direct);
    if (peer !== null) {
      const open = (this.perAddress.get(peer) ?? 0) + 1;
      if (open > this.o.maxConnectionsPerAddress) {
        this.o.metrics.httpConnectionsRefused.inc({ reason: "per_address" });
        socket.destroy();
        return false;
      }
      this.perAddress.set(peer, open);
    }
    this.sockets.add(socket);
    const timer = setTimeout(() => {
      this.o.metrics.httpConnectionsRefused.inc({ reason: "no_request" });
      socket.destroy();
    }, this.o.firstRequestMs ?? FIRST_REQUEST_MS);
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
    return true;
  }

  private firstRequest(socket: Socket): void {
    const timer = this.awaitingRequest.get(socket);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.awaitingRequest.delete(socket);
  }

  async close(): Promise<void> {
    const [server, front] = [this.server, this.leanFront];
    this.server = null;
    this.leanFront = null;
    if (!server || !front) return;
    const closed = new Promise<void>((resolve) => front.server.close(() => resolve()));
    // Node's server stops its connection checks (it never listened: its close callback would only say so)
    server.close();
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  /** A drain starts: answer every request with `Connection: close` and close idle keep-alive sockets. */
  drain(): void {
    this.draining = true;
    this.closeIdle();
  }

  undrain(): void {
    this.draining = false;
  }

  /** Connections the lean front answers on now, and those it handed to Node's server so far (tests). */
  get front(): { owned: number; handedOver: number } {
    return { owned: this.leanFront?.connections.size ?? 0, handedOver: this.leanFront?.handedOver ?? 0 };
  }

  /** Open sockets (viewers' keep-alive connections, the balancer's pooled ones). */
  get openSockets(): number {
    return this.sockets.size;
  }

  /** Ends the drain's HTTP side: closes what is idle now; sockets with a request in flight finish first. */
  closeIdle(): void {
    this.leanFront?.closeIdle();
    this.server?.closeIdleConnections();
  }

  /** Past the drain's deadline: drops every socket left. */
  dropAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  /** The request counter of a route and status (both bounded: route names, the statuses baton sends). */
  private counted(route: string, status: number): { inc(by?: number): void } {
    const key = `${route} ${status}`;
    let counter = this.counters.get(key);
    if (!counter) this.counters.set(key, (counter = this.o.metrics.httpRequests.labels({ route, status: String(status) })));
    return counter;
  }

  private readonly counters = new Map<string, { inc(by?: number): void }>();

  /** The answer-time histogram of an HLS route (its child kept, as the counters'). */
  private timer(route: string): { observe(seconds: number): void } {
    let timer = this.timers.get(route);
    if (!timer) this.timers.set(route, (timer = this.o.metrics.httpDuration.tally({ route })));
    return timer;
  }

  private readonly timers = new Map<string, { observe(seconds: number): void }>();

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let route: Route | undefined;
    const arrived = process.hrtime.bigint();
    // the balancer's checks, scrapes and an operator's status polls must not hold a drain open
    const counted = !/^\/(readyz|healthz|metrics|admin\/)/.test(req.url ?? "");
    if (counted) {
      this.inFlight += 1;
      res.once("close", () => (this.inFlight -= 1));
    }
    if (this.draining) res.setHeader("Connection", "close");
    try {
      const url = requestTarget(req.url);
      const method = req.method ?? "GET";
      let params: string[] = [];
      route = this.routes.find((r) => {
        const match = r.pattern.exec(url.pathname);
        if (match) params = match.slice(1);
        return match !== null;
      });
      if (!route?.ownHeaders || method === "OPTIONS") setCors(res);
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
        if (route?.ownHeaders) setCors(res);
        sendJson(res, error.status, { error: error.code, message: error.message }, error.headers);
      } else {
        if (route?.ownHeaders) setCors(res);
        this.o.log.warn("request failed", { route: route?.name ?? "unmatched", path: loggedPath(req.url), error: errorMessage(error) });
        sendJson(res, 503, { error: "UNAVAILABLE", message: "state unavailable, retry shortly" }, { "Retry-After": "1" });
      }
    } finally {
      this.counted(route?.name ?? "unmatched", res.statusCode).inc();
      if (route && TIMED_ROUTES.has(route.name)) this.timer(route.name).observe(Number(process.hrtime.bigint() - arrived) / 1e9);
    }
  }

}

function setCors(res: ServerResponse): void {
  for (const [name, value] of Object.entries(CORS_HEADERS)) res.setHeader(name, value);
}

/**
 * A request target as a log line may show it: the path without its query (where `?session=` and `?token=`
 * ride) and with a session token in the path (`/s/<token>/`) blanked, so no log line carries a token.
 */
export function loggedPath(target: string | undefined): string {
  const path = (target ?? "").split("?", 1)[0]!.slice(0, 200);
  return path.replace(/\/s\/[^/]*/g, "/s/-");
}

/** A plain origin-form path (no dot segments, nothing escaped): what players send, taken as it is. */
const PLAIN_PATH = /^(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9._~-]+)+$/;
const NO_QUERY = new URLSearchParams();

/**
 * The request target's path and query. A plain path is split without a URL parse (every playlist and segment
 * request is one); anything else goes through the URL parser, as a browser would read it.
 */
export function requestTarget(target: string | undefined): { pathname: string; searchParams: URLSearchParams } {
  if (target !== undefined) {
    const mark = target.indexOf("?");
    const pathname = mark === -1 ? target : target.slice(0, mark);
    if (PLAIN_PATH.test(pathname) && !target.includes("#")) {
      return { pathname, searchParams: mark === -1 ? NO_QUERY : new URLSearchParams(target.slice(mark + 1)) };
    }
  }
  return requestUrl(target);
}

/** The request target as a URL; a target that is none (`//%`, `http://a:99999/`) is the client's error: 400. */
function requestUrl(target: string | undefined): URL {
  try {
    return new URL(target ?? "/", "http://baton");
  } catch {
    throw new HttpError(400, "BAD_TARGET", "the request target is not a valid path");
  }
}
