// The RTMP and RTMPS listeners and what happens to a connection before RTMP is spoken: the connection caps,
// the deadline for reaching an admitted publish, the balancer's PROXY protocol header (which names the client
// the caps and log lines then use), and TLS. What passes is handed on as an AcceptedConnection.
import { createServer, isIP, type Server, type Socket } from "node:net";
import { listen } from "../core/listen.ts";
import { Duplex } from "node:stream";
import { TLSSocket, type SecureContext } from "node:tls";
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { ConnectionCounts, RtmpCloseReason, Slot } from "./connection-limits.ts";
import { PROXY_HEADER_MAX, parseProxyHeader } from "./proxy-protocol.ts";

/** A connection past the caps, the PROXY header and TLS, with its deadline running. */
export interface AcceptedConnection {
  /** Plain TCP, or the TLS socket of an RTMPS connection. */
  socket: Socket;
  /** The client's `address:port`: the PROXY header's source when there is one. */
  remote: string;
  /** Bytes that came in with the PROXY header, before RTMP's. */
  initial: Buffer;
  /** The publish was admitted: the deadline no longer applies. */
  admitted(): void;
  /** Closes the connection for breaking a limit: counted, logged, destroyed. Safe to call twice. */
  refuse(reason: RtmpCloseReason, detail: string): void;
}

export interface ListenerOptions {
  bind: string;
  port: number;
  /** The RTMPS port and its TLS context, or null. */
  tls: { port: number; context: SecureContext } | null;
  proxyProtocol: boolean;
  /** A trusted proxy's address (http.trustedProxies): the only peer whose PROXY header is believed. */
  trusted: (address: string) => boolean;
  /** Seconds from accept to an admitted publish. */
  handshakeTimeout: number;
  counts: ConnectionCounts;
  refused: (reason: RtmpCloseReason, remote: string, detail: string) => void;
  accepted: (connection: AcceptedConnection) => void;
  log: Logger;
}

/** `::ffff:1.2.3.4` (an IPv4 client on a dual-stack socket) is 1.2.3.4: one client, one count. */
export function plainAddress(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** The trust test of a list of proxy addresses, ["*"] trusting every peer (as http.trustedProxies reads). */
export function trustedProxies(list: readonly string[]): (address: string) => boolean {
  if (list.includes("*")) return () => true;
  const trusted = new Set(list.map(plainAddress));
  return (address) => trusted.has(plainAddress(address));
}

export class IngestListeners {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly ports = new Map<"rtmp" | "rtmps", number>();

  constructor(private readonly o: ListenerOptions) {}

  port(kind: "rtmp" | "rtmps"): number {
    return this.ports.get(kind) ?? (kind === "rtmp" ? this.o.port : (this.o.tls?.port ?? 0));
  }

  async start(): Promise<void> {
    await this.listen("rtmp", this.o.port, null);
    if (this.o.tls) await this.listen("rtmps", this.o.tls.port, this.o.tls.context);
  }

  /** Stops listening and destroys every connection. Safe to call twice. */
  async close(): Promise<void> {
    const servers = this.servers.splice(0);
    for (const socket of this.sockets) socket.destroy();
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }

  private async listen(kind: "rtmp" | "rtmps", port: number, context: SecureContext | null): Promise<void> {
    const name = kind.toUpperCase();
    const server = createServer((socket) => {
      try {
        this.accept(socket, context);
      } catch (error) {
        socket.destroy();
        this.o.refused("malformed", `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? 0}`, errorMessage(error));
      }
    });
    await listen(server, { port, bind: this.o.bind, what: name, key: `${kind}.port / BATON_${name}_PORT` });
    server.on("error", (error) => this.o.log.error(`${name} listener error`, { error: error.message }));
    const address = server.address();
    this.ports.set(kind, typeof address === "object" && address ? address.port : port);
    this.servers.push(server);
  }

  private accept(raw: Socket, context: SecureContext | null): void {
    const peer = plainAddress(raw.remoteAddress ?? "");
    let remote = `${peer}:${raw.remotePort ?? 0}`;
    // a reset or a write after the peer left must never reach the process as an unhandled 'error'
    raw.on("error", () => undefined);
    const slot = this.o.counts.take();
    if (!slot) {
      raw.destroy();
      this.o.refused("too_many_connections", remote, `${this.o.counts.open} connections open`);
      return;
    }
    this.sockets.add(raw);
    raw.setNoDelay(true);
    let socket: Socket = raw;
    let closed = false;
    const refuse = (reason: RtmpCloseReason, detail: string): void => {
      if (closed) return;
      closed = true;
      clearTimeout(deadline);
      this.o.refused(reason, remote, detail);
      socket.destroy();
      raw.destroy();
    };
    const deadline = setTimeout(
      () => refuse("handshake_timeout", `no admitted publish ${this.o.handshakeTimeout} s after connecting`),
      this.o.handshakeTimeout * 1000,
    );
    raw.once("close", () => {
      closed = true;
      clearTimeout(deadline);
      slot.release();
      this.sockets.delete(raw);
    });
    const proceed = (address: string, initial: Buffer): void => {
      if (!this.admit(slot, address, refuse)) return;
      const connection = (s: Socket, bytes: Buffer): AcceptedConnection => ({
        socket: s, remote, initial: bytes, admitted: () => clearTimeout(deadline), refuse,
      });
      if (!context) {
        this.o.accepted(connection(raw, initial));
        return;
      }
      socket = secure(raw, initial, context, this.o.proxyProtocol);
      let established = false;
      // after the handshake the session handles its socket's errors; this listener stays, doing nothing
      socket.on("error", (error) => established || refuse("tls_error", error.message));
      socket.once("secure", () => {
        established = true;
        this.o.accepted(connection(socket, Buffer.alloc(0)));
      });
    };
    if (!this.o.proxyProtocol) return proceed(peer, Buffer.alloc(0));
    if (!this.o.trusted(peer)) return refuse("untrusted_proxy", `${peer} is not in http.trustedProxies, and rtmp.proxyProtocol is on`);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const header = parseProxyHeader(head.subarray(0, PROXY_HEADER_MAX));
      if (header.state === "incomplete") return;
      raw.off("data", onData);
      if (header.state === "invalid") return refuse(header.missing ? "proxy_header_missing" : "bad_proxy_header", header.message);
      // the next stage listens before this event returns, so no byte is missed
      const address = header.source ? header.source.address : peer;
      if (header.source) remote = `${address}:${header.source.port}`;
      proceed(address, head.subarray(header.length));
    };
    raw.on("data", onData);
  }

  /** Counts the connection for its client's address, or refuses it when that address has its share. */
  private admit(slot: Slot, address: string, refuse: (reason: RtmpCloseReason, detail: string) => void): boolean {
    if (slot.bind(address)) return true;
    refuse("too_many_connections_per_address", `${address} has its share of connections (rtmp.maxConnectionsPerAddress)`);
    return false;
  }
}

/**
 * TLS over the raw socket. After a PROXY header the bytes already read (the start of the ClientHello, perhaps)
 * must reach TLS first, so the socket is relayed through a stream that begins with them.
 */
function secure(raw: Socket, initial: Buffer, context: SecureContext, relayed: boolean): TLSSocket {
  if (!relayed) return new TLSSocket(raw, { isServer: true, secureContext: context });
  const relay = new Duplex({
    read: () => void raw.resume(),
    write: (chunk: Buffer, _encoding, done) => void raw.write(chunk, (error) => done(error ?? null)),
    final: (done) => {
      raw.end();
      done();
    },
    destroy: (error, done) => {
      raw.destroy();
      done(error);
    },
  });
  raw.on("data", (chunk: Buffer) => {
    if (!relay.push(chunk)) raw.pause();
  });
  raw.on("end", () => relay.push(null));
  raw.on("close", () => relay.destroy());
  if (initial.length > 0) relay.push(initial);
  return new TLSSocket(relay, { isServer: true, secureContext: context });
}
