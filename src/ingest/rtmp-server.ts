// RTMP ingest. baton runs its own TCP listener and sessions around node-media-server's protocol parser
// rather than NodeMediaServer itself, because as shipped (4.4.3) it:
// - throws out of a socket handler on a malformed `connect` (no/invalid tcUrl) or `publish` (non-string
//   name), which kills the process: here every parse runs in a try/catch that closes only that socket;
// - reports a publisher's end 30 s late (donePublish grace) and leaves pullers attached: here the end of a
//   publish is the socket's close, seen at once;
// - has no socket timeout: here a publisher silent for rtmp.idleTimeout seconds is closed;
// - cannot refuse in prePublish ("publish started" is already sent): here a refused publish gets an error
//   status and its socket is closed before any packet is used;
// - calls process.exit(1) when its port is taken: here start() rejects with the port named;
// - logs at debug level to stdout: here its logger writes into baton's, at baton's level.
import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { AdmissionError, errorMessage, type RefusalReason } from "../errors.ts";
import { TypedEmitter } from "../events.ts";
import type { Logger } from "../log.ts";
import { avcDimensions, createRtmpProtocol, metadataOf, nmsLogger, type AVPacket, type ConnectRequest, type RtmpProtocol } from "./nms.ts";

export interface PublishRequest {
  app: unknown;
  name: unknown;
  query: ConnectRequest["query"];
  remote: string;
}

/** What the node decides about a publish. admit() throws AdmissionError to refuse, else returns the stream id. */
export interface PublishHandler {
  admit(request: PublishRequest): string;
  /** An admitted publisher; the handler owns it from here (claims the stream, transcodes, closes). */
  publisher(connection: PublisherConnection): void;
  refused(reason: RefusalReason, message: string, request: PublishRequest): void;
}

export interface SourceInfo {
  width: number | null;
  height: number | null;
  frameRate: number | null;
  hasAudio: boolean;
}

type PublisherEvents = {
  /** Every audio/video packet, in arrival order (sequence headers included). */
  packet: [AVPacket];
  /** The connection ended: the socket closed, went idle, or close() was called. Emitted once. */
  close: [reason: string];
};

/** One publishing RTMP connection, as the rest of baton sees it. */
export class PublisherConnection extends TypedEmitter<PublisherEvents> {
  readonly id = randomBytes(6).toString("hex");
  readonly startedAt = Date.now();
  audioHeader: AVPacket | null = null;
  videoHeader: AVPacket | null = null;
  readonly source: SourceInfo = { width: null, height: null, frameRate: null, hasAudio: false };
  bytesIn = 0;
  lastDataAt = Date.now();
  closed = false;

  constructor(
    readonly streamId: string,
    readonly remote: string,
    private readonly socket: Socket,
    private readonly rtmp: RtmpProtocol,
  ) {
    super();
  }

  /** @internal */
  accept(packet: AVPacket): void {
    if (this.closed) return;
    if (packet.codec_type === 18) {
      const meta = metadataOf(packet);
      const rate = meta ? Number(meta.framerate ?? meta.videoframerate) : NaN;
      if (Number.isFinite(rate) && rate > 0 && rate <= 240) this.source.frameRate = rate;
      return;
    }
    if (packet.codec_type === 8 && packet.flags === 0) {
      this.audioHeader = packet;
      this.source.hasAudio = true;
    }
    if (packet.codec_type === 9 && packet.flags === 2) {
      this.videoHeader = packet;
      const size = avcDimensions(packet);
      if (size) Object.assign(this.source, size);
    }
    this.emit("packet", packet);
  }

  /** Ends the connection, telling the client why (an RTMP error status) when it is still there. */
  close(reason: string): void {
    if (this.closed) return;
    try {
      this.rtmp.sendStatusMessage(this.rtmp.streamId, "error", "NetStream.Publish.BadName", reason);
    } catch {
      // the socket may already be gone
    }
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.ended(reason);
  }

  /** @internal */
  ended(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.emit("close", reason);
    this.removeAllListeners();
  }
}

export interface RtmpIngestOptions {
  port: number;
  bind: string;
  /** Seconds without data before a connection is dropped. */
  idleTimeout: number;
  log: Logger;
  handler: PublishHandler;
}

export class RtmpIngest {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  readonly publishers = new Map<string, PublisherConnection>();

  constructor(private readonly options: RtmpIngestOptions) {
    routeNmsLogger(options.log.child("rtmp"));
  }

  get port(): number {
    const address = this.server?.address();
    return typeof address === "object" && address ? address.port : this.options.port;
  }

  async start(): Promise<void> {
    const server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", (error: NodeJS.ErrnoException) => {
        reject(
          new Error(
            error.code === "EADDRINUSE"
              ? `RTMP port ${this.options.bind}:${this.options.port} is already in use (rtmp.port / BATON_RTMP_PORT)`
              : `RTMP listener on ${this.options.bind}:${this.options.port} failed: ${error.message}`,
          ),
        );
      });
      server.listen(this.options.port, this.options.bind, () => resolve());
    });
    server.on("error", (error) => this.options.log.error("RTMP listener error", { error: error.message }));
    this.server = server;
  }

  /** Stops listening and closes every connection. Safe to call twice. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const publisher of this.publishers.values()) publisher.close("server shutting down");
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    const log = this.options.log;
    const remote = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? 0}`;
    const rtmp = createRtmpProtocol();
    let request: PublishRequest | null = null;
    let publisher: PublisherConnection | null = null;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.setTimeout(this.options.idleTimeout * 1000);

    const drop = (why: string): void => {
      log.warn("RTMP connection closed", { remote, why });
      socket.destroy();
    };
    rtmp.onOutputCallback = (buffer) => {
      if (!socket.destroyed) socket.write(buffer);
    };
    rtmp.onConnectCallback = (req) => {
      request = { app: req.app, name: req.name, query: req.query, remote };
    };
    rtmp.onPlayCallback = () => {
      const reason = "baton serves HLS over HTTP, not RTMP playback";
      this.options.handler.refused("play_not_supported", reason, request ?? { app: null, name: null, query: {}, remote });
      rtmp.sendStatusMessage(rtmp.streamId, "error", "NetStream.Play.Failed", reason);
      socket.end();
    };
    rtmp.onPushCallback = () => {
      const req = request ?? { app: null, name: null, query: {}, remote };
      if (publisher) return drop("second publish on one connection");
      let streamId: string;
      try {
        streamId = this.options.handler.admit(req);
      } catch (error) {
        const reason: RefusalReason = error instanceof AdmissionError ? error.reason : "state_unavailable";
        this.options.handler.refused(reason, errorMessage(error), req);
        rtmp.sendStatusMessage(rtmp.streamId, "error", "NetStream.Publish.BadName", errorMessage(error));
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
        return;
      }
      publisher = new PublisherConnection(streamId, remote, socket, rtmp);
      publisher.reportListenerErrors((event, error) => log.error("publisher listener failed", { event, error: errorMessage(error) }));
      this.publishers.set(publisher.id, publisher);
      this.options.handler.publisher(publisher);
    };
    rtmp.onPacketCallback = (packet) => {
      // packets before an admitted publish (or after a refusal) are dropped unread
      publisher?.accept(packet);
    };

    socket.on("data", (data: Buffer) => {
      if (publisher) {
        publisher.bytesIn += data.length;
        publisher.lastDataAt = Date.now();
      }
      let error: string | null;
      try {
        error = rtmp.parserData(data);
      } catch (thrown) {
        error = `malformed RTMP message (${errorMessage(thrown)})`;
      }
      if (error !== null) drop(error);
    });
    socket.on("timeout", () => drop(`no data for ${this.options.idleTimeout} s`));
    socket.on("error", (error) => log.debug("RTMP socket error", { remote, error: error.message }));
    socket.on("close", () => {
      this.sockets.delete(socket);
      if (publisher) {
        this.publishers.delete(publisher.id);
        publisher.ended("publisher disconnected");
      }
    });
  }
}

/** node-media-server's logger prints to stdout at debug level; send its lines into baton's logger. */
function routeNmsLogger(log: Logger): void {
  nmsLogger.level = log.enabled("debug") ? "debug" : "info";
  nmsLogger.log = (message: string, level = "info") => {
    if (level === "error") log.warn(message);
    else if (level !== "trace") log.debug(message);
  };
}
