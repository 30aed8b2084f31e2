// The lean HTTP/1.1 front of the node's HTTP port. Every connection is accepted here (a plain `net` server);
// the simple GET and HEAD requests of the hot routes (the viewers' HLS playlists and segments) are parsed by a
// strict, bounded parser and answered here from the answer their route makes (answer.ts): one precomputed
// head per kind of answer and the body in one write, which costs about half of what Node's http machinery
// costs per request. Anything else (an API, an upgrade, a body, a Range, a header this parser does not take,
// a request it cannot read) goes to Node's own http server unchanged, at a request boundary, with the bytes
// already read (`socket.unshift` + `emit("connection")`); from then on Node owns the connection, so Node's
// strict parser and its error answers (400, 431, 408) decide everything that is unusual.
import { STATUS_CODES } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import type { Answer, Client, Soon } from "./answer.ts";

/** What the front needs of the node's HTTP server. */
export interface FrontHost {
  /** A connection arrived: counted and capped (false: refused, already destroyed). */
  accept(socket: Socket): boolean;
  /** The connection brought its first request (the first-request deadline is over). */
  firstRequest(socket: Socket): void;
  /** The answer of a hot request (counted, timed, errors mapped); null when no hot route takes the target. */
  hot(method: "GET" | "HEAD", target: string, client: Client): Soon<Answer> | null;
  /** Node's http server takes the connection from here on. */
  handOver(socket: Socket): void;
  /** A drain: every request goes to Node's server, which answers `Connection: close`. */
  draining(): boolean;
}

/** A request head larger than this is Node's to refuse (431), as its own limit (16 KiB) is. */
const MAX_HEAD = 16384;
/** Input read ahead of the answers (pipelined requests): past this the socket is not read until they are. */
const MAX_BUFFERED = 65536;
/**
 * Reads a head may come in before it is Node's: each piece costs a copy of what came before (the head is kept
 * whole), so a head dripped a byte at a time would cost its size squared; Node's parser reads pieces as they come.
 */
const MAX_HEAD_PIECES = 32;
/** Answer bytes queued on a socket that does not read: past this no further request is answered until it drains. */
const MAX_QUEUED = 262144;
/** Bodies up to this size are copied behind the head into one write; larger ones go out as a second buffer. */
const COPY_MAX = 16384;
/** A connection with no traffic either way for this long is closed (Node's keep-alive timeout, 30 s). */
const KEEP_ALIVE_MS = 30000;
const HEAD_END = Buffer.from("\r\n\r\n");
/** What Node answers a request whose head took too long. */
const REQUEST_TIMEOUT = Buffer.from("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n");

/** A request this front answers: what the hot routes read of it. */
export interface HotHead {
  method: "GET" | "HEAD";
  target: string;
  headers: Client["headers"];
}

const REQUEST_LINE = /^(GET|HEAD) (\/[!-~]*) HTTP\/1\.1$/;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Anything but visible ASCII, space, tab and CRLF (a bare CR or LF too): Node's parser decides what it means. */
const UNUSUAL = /[^\t\x20-\x7e\r\n]|\r(?!\n)|(?<!\r)\n/;

/** A header line's value: after its colon, without the whitespace around it. */
const valueOf = (head: string, colon: number, end: number): string => head.slice(colon + 1, end).trim();

/**
 * Reads a request head (without its final CRLF CRLF) when it is a plain one this front answers: GET or
 * HEAD, HTTP/1.1, one Host, no body (no Content-Length, no Transfer-Encoding), no Range, Upgrade or Expect,
 * no Connection other than keep-alive, no obs-fold, no bare CR or LF, no control byte. null: Node's server
 * reads it instead.
 */
export function parseHead(head: string): HotHead | null {
  if (UNUSUAL.test(head)) return null;
  let eol = head.indexOf("\r\n");
  const line = REQUEST_LINE.exec(eol === -1 ? head : head.slice(0, eol));
  if (!line) return null;
  const headers: Client["headers"] = {};
  let host = false;
  // line by line without splitting: a value is taken only from the headers the routes read
  while (eol !== -1) {
    const start = eol + 2;
    eol = head.indexOf("\r\n", start);
    const colon = head.indexOf(":", start);
    // no name, no colon on the line, or an empty line (a head ends at the first one)
    if (colon <= start || (eol !== -1 && colon > eol)) return null;
    const name = head.slice(start, colon);
    if (!TOKEN.test(name)) return null;
    const end = eol === -1 ? head.length : eol;
    switch (name.toLowerCase()) {
      case "host":
        if (host) return null;
        host = true;
        break;
      // joined as Node joins repeated ones
      case "accept-encoding":
        headers["accept-encoding"] = headers["accept-encoding"] === undefined ? valueOf(head, colon, end) : `${headers["accept-encoding"]}, ${valueOf(head, colon, end)}`;
        break;
      case "x-forwarded-for":
        headers["x-forwarded-for"] = headers["x-forwarded-for"] === undefined ? valueOf(head, colon, end) : `${headers["x-forwarded-for"]}, ${valueOf(head, colon, end)}`;
        break;
      // Node keeps the first
      case "user-agent":
        headers["user-agent"] ??= valueOf(head, colon, end);
        break;
      case "connection":
        if (valueOf(head, colon, end).toLowerCase() !== "keep-alive") return null;
        break;
      // a body, a range, an upgrade; a player's CMCD in headers (delivery/cmcd.ts reads them on Node's
      // request; hls.js sends the query form): Node's server answers
      case "content-length":
      case "transfer-encoding":
      case "range":
      case "upgrade":
      case "expect":
      case "cmcd-request":
      case "cmcd-object":
      case "cmcd-status":
      case "cmcd-session":
        return null;
    }
  }
  return host ? { method: line[1] as "GET" | "HEAD", target: line[2]!, headers } : null;
}

/** An answer's bytes for the current second (its Date): the head, and head and body as one buffer once asked. */
interface Made {
  second: number;
  status: number;
  head: Buffer;
  body: Buffer | null;
  whole: Buffer | null;
}

/** Per headers object (one per kind of answer: a playlist body's, a segment's): its bytes, made once a second. */
const made = new WeakMap<Answer["headers"], Made>();

/**
 * An answer's status line and headers, then what Node adds (the date, and the keep-alive headers Node sends),
 * serialized once a second per headers object.
 */
function madeOf(answer: Answer): Made {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  let bytes = made.get(answer.headers);
  if (bytes && bytes.second === second && bytes.status === answer.status) return bytes;
  let text = `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? "unknown"}\r\n`;
  for (const [name, value] of Object.entries(answer.headers)) text += `${name}: ${value}\r\n`;
  text += `Date: ${new Date(now).toUTCString()}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=${KEEP_ALIVE_MS / 1000}\r\n\r\n`;
  bytes = { second, status: answer.status, head: Buffer.from(text, "latin1"), body: null, whole: null };
  made.set(answer.headers, bytes);
  return bytes;
}

/** Whether the bytes hold an LF without a CR before it. */
function bareLf(bytes: Buffer): boolean {
  for (let at = bytes.indexOf(10); at !== -1; at = bytes.indexOf(10, at + 1)) if (at === 0 || bytes[at - 1] !== 13) return true;
  return false;
}

/** One connection while this front owns it. */
class Connection {
  private pending: Buffer | null = null;
  /** An answer is being made or its bytes wait for the socket to drain: the next request waits. */
  private busy = false;
  private paused = false;
  /** Pieces read since the last head was taken (see MAX_HEAD_PIECES). */
  private pieces = 0;
  private ended = false;
  private started = false;
  private headTimer: NodeJS.Timeout | null = null;
  private readonly onData = (chunk: Buffer): void => this.data(chunk);
  private readonly onEnd = (): void => {
    this.ended = true;
    if (!this.busy) this.pump();
  };
  private readonly onTimeout = (): void => {
    this.socket.destroy();
  };

  constructor(readonly socket: Socket, private readonly host: FrontHost, private readonly front: LeanFront, private readonly headMs: number) {
    front.connections.add(this);
    socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.setTimeout(KEEP_ALIVE_MS);
    socket.on("timeout", this.onTimeout);
    socket.once("close", () => {
      this.clearHeadTimer();
      front.connections.delete(this);
    });
  }

  /** Nothing asked and nothing being answered: a drain may close it. */
  get idle(): boolean {
    return !this.busy && this.pending === null;
  }

  private data(chunk: Buffer): void {
    if (this.pending !== null) this.pieces += 1;
    this.pending = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    if (this.pending.length > MAX_BUFFERED && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    if (!this.busy) this.pump();
  }

  /** Answers the requests read, in order, one at a time. */
  private pump(): void {
    while (!this.busy) {
      const buffer = this.pending;
      if (this.paused && (buffer === null || buffer.length <= MAX_BUFFERED)) {
        this.paused = false;
        this.socket.resume();
      }
      if (buffer === null) {
        if (this.ended) this.socket.end();
        return;
      }
      const end = buffer.indexOf(HEAD_END);
      // a head that is not complete yet; one with a bare LF (LF-only line ends) never is here: Node's to read
      if (end === -1 && this.pieces > MAX_HEAD_PIECES) {
        this.handOver();
        return;
      }
      if (end === -1 && buffer.length <= MAX_HEAD && !bareLf(buffer)) {
        // a head begun and not complete: it has its time (the first one: the server's first-request deadline)
        if (this.ended) this.socket.destroy();
        else if (this.started) this.headTimer ??= setTimeout(() => this.socket.end(REQUEST_TIMEOUT), this.headMs);
        return;
      }
      const head = end === -1 || end > MAX_HEAD || this.host.draining() ? null : parseHead(buffer.toString("latin1", 0, end));
      const answer = head === null ? null : this.host.hot(head.method, head.target, { headers: head.headers, socket: this.socket });
      if (head === null || answer === null) {
        this.handOver();
        return;
      }
      this.clearHeadTimer();
      if (!this.started) {
        this.started = true;
        this.host.firstRequest(this.socket);
      }
      this.pending = end + 4 < buffer.length ? buffer.subarray(end + 4) : null;
      this.pieces = 0;
      if (answer instanceof Promise) {
        // read on once it is written: answers leave in the order their requests came
        this.busy = true;
        answer.then(
          (made) => {
            this.busy = false;
            if (this.write(head.method, made)) this.pump();
          },
          () => this.socket.destroy(),
        );
        return;
      }
      if (!this.write(head.method, answer)) return;
    }
  }

  /** Writes an answer; false when the socket is gone or holds enough unsent bytes (reading on waits for it to drain). */
  private write(method: "GET" | "HEAD", answer: Answer): boolean {
    const socket = this.socket;
    if (socket.destroyed) return false;
    const bytes = madeOf(answer);
    const body = method === "HEAD" ? null : answer.body;
    if (body === null || body.length === 0) socket.write(bytes.head);
    else if (body.length <= COPY_MAX) {
      // a playlist: its head and body in one buffer, made once a second
      if (bytes.body !== body) [bytes.body, bytes.whole] = [body, Buffer.concat([bytes.head, body])];
      socket.write(bytes.whole!);
    } else {
      socket.cork();
      socket.write(bytes.head);
      socket.write(body);
      socket.uncork();
    }
    if (socket.writableLength <= MAX_QUEUED) return true;
    this.busy = true;
    socket.once("drain", () => {
      this.busy = false;
      this.pump();
    });
    return false;
  }

  private clearHeadTimer(): void {
    if (this.headTimer === null) return;
    clearTimeout(this.headTimer);
    this.headTimer = null;
  }

  /** Node's server takes the connection, with the bytes read and not answered. */
  private handOver(): void {
    const socket = this.socket;
    this.clearHeadTimer();
    this.front.connections.delete(this);
    this.front.handedOver += 1;
    socket.off("data", this.onData);
    socket.off("end", this.onEnd);
    socket.off("timeout", this.onTimeout);
    socket.setTimeout(0);
    // the client closed its side: a request that is not ours cannot be handed on (the stream has ended)
    if (this.ended) {
      socket.destroy();
      return;
    }
    if (this.pending !== null) socket.unshift(this.pending);
    this.pending = null;
    this.host.handOver(socket);
    // Node's parser reads on once the socket flows; the bytes put back come first (they flush before any read)
    if (this.paused) socket.resume();
  }
}

/** The listener of the node's HTTP port. */
export class LeanFront {
  readonly server: Server;
  /** The connections this front owns (not handed over). */
  readonly connections = new Set<Connection>();
  /** Connections handed to Node's server so far. */
  handedOver = 0;

  /** `headMs`: a request head begun after the first must be complete within it (as Node's headersTimeout): else 408. */
  constructor(host: FrontHost, o: { maxConnections: number; headMs: number }) {
    // half-open as Node's http server is: a client's FIN ends the connection once its answers are sent
    this.server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      if (host.accept(socket)) new Connection(socket, host, this, o.headMs);
    });
    this.server.maxConnections = o.maxConnections;
  }

  /** Closes the connections this front owns that have nothing to answer (a drain). */
  closeIdle(): void {
    for (const connection of this.connections) if (connection.idle) connection.socket.destroy();
  }
}
