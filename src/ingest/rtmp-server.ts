// RTMP ingest. baton runs its own TCP listener and sessions around node-media-server's protocol parser
// rather than NodeMediaServer itself, because as shipped (4.4.3) it:
// - throws out of a socket handler on a malformed `connect` (no/invalid tcUrl) or `publish` (non-string
//   name), which kills the process: here every parse runs in a try/catch that closes only that socket;
// - holds whatever a client declares (16 MiB per message, per chunk stream, for the connection's life),
//   stalls on SET_CHUNK_SIZE 0 and decodes any AMF: here rtmp-limits.ts bounds it, listeners.ts caps
//   connections and the time to an admitted publish, and a connection that breaks a limit is refused;
// - reports a publisher's end 30 s late (donePublish grace) and leaves pullers attached: here the end of a
//   publish is the socket's close, seen at once;
// - has no socket timeout: here a publisher silent for rtmp.idleTimeout seconds is closed;
// - cannot refuse in prePublish ("publish started" is already sent): here a refused publish gets an error
//   status and its socket is closed before any packet is used;
// - calls process.exit(1) when its port is taken: here start() rejects with the port named;
// - logs at debug level to stdout: here its logger writes into baton's, at baton's level.
import type { Admitted } from "./admission.ts";
import type { PublishCredential } from "./token.ts";
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import type { Config } from "../config/defaults.ts";
import { rtmpsContext } from "../config/tls.ts";
import { AdmissionError, errorMessage, type RefusalReason } from "../core/errors.ts";
import { TypedEmitter } from "../core/events.ts";
import type { Logger } from "../core/log.ts";
import type { InputRole } from "../core/model.ts";
import { ConnectionCounts, RefusalLog, type RtmpCloseReason } from "./connection-limits.ts";
import { IngestListeners, trustedProxies, type AcceptedConnection } from "./listeners.ts";
import { aacConfig, avcCodecs, avcDimensions, createRtmpProtocol, isAudioHeader, isMetadata, isVideoHeader, metadataOf, nmsLogger, type AVPacket, type ConnectRequest, type RtmpProtocol } from "./nms.ts";
import { MAX_OUTPUT_BACKLOG, ParserGuard, RtmpLimitError } from "./rtmp-limits.ts";

export interface PublishRequest {
  app: unknown;
  name: unknown;
  query: ConnectRequest["query"];
  remote: string;
}

/** What the node decides about a publish. admit() throws AdmissionError to refuse, else says what it admitted. */
export interface PublishHandler {
  admit(request: PublishRequest): Admitted;
  /** An admitted publisher; the handler owns it from here (claims the stream, transcodes, closes). */
  publisher(connection: PublisherConnection): void;
  refused(reason: RefusalReason, message: string, request: PublishRequest): void;
}

export interface SourceInfo {
  width: number | null;
  height: number | null;
  frameRate: number | null;
  hasAudio: boolean;
  /** RFC 6381 codecs string of the source's video when it is H.264 (avc1.PPCCLL), else null. */
  videoCodecs?: string | null;
  /** Video bitrate the publisher declares in onMetaData (videodatarate, kbit/s), or null. */
  videoKbps?: number | null;
  /** The source's audio when it is AAC (its AudioSpecificConfig), else null. */
  aac?: { objectType: number; sampleRate: number; channels: number } | null;
  /** Audio bitrate the publisher declares in onMetaData (audiodatarate, kbit/s), or null. */
  audioKbps?: number | null;
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
  readonly source: SourceInfo = { width: null, height: null, frameRate: null, hasAudio: false, videoCodecs: null, videoKbps: null, aac: null, audioKbps: null };
  bytesIn = 0;
  lastDataAt = Date.now();
  closed = false;

  constructor(
    readonly streamId: string,
    readonly remote: string,
    private readonly socket: Socket,
    private readonly rtmp: RtmpProtocol,
    /** What the publish token said; null when tokens are not required. */
    readonly credential: PublishCredential | null = null,
    /** Which of a redundant broadcast's pushes this is (`?role=backup`); a lone publisher is the primary. */
    readonly role: InputRole = "primary",
  ) {
    super();
  }

  /** @internal */
  accept(packet: AVPacket): void {
    if (this.closed) return;
    if (isMetadata(packet)) {
      const meta = metadataOf(packet);
      const rate = meta ? Number(meta.framerate ?? meta.videoframerate) : NaN;
      if (Number.isFinite(rate) && rate > 0 && rate <= 240) this.source.frameRate = rate;
      const kbps = meta ? Number(meta.videodatarate) : NaN;
      if (Number.isFinite(kbps) && kbps > 0 && kbps <= 1e6) this.source.videoKbps = kbps;
      const audioKbps = meta ? Number(meta.audiodatarate) : NaN;
      if (Number.isFinite(audioKbps) && audioKbps > 0 && audioKbps <= 1e4) this.source.audioKbps = audioKbps;
      return;
    }
    if (isAudioHeader(packet)) {
      this.audioHeader = packet;
      this.source.hasAudio = true;
      this.source.aac = aacConfig(packet);
    }
    if (isVideoHeader(packet)) {
      this.videoHeader = packet;
      const size = avcDimensions(packet);
      if (size) Object.assign(this.source, size);
      this.source.videoCodecs = avcCodecs(packet);
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
  bind: string;
  rtmp: Config["rtmp"];
  rtmps: Config["rtmps"];
  /** The balancer's addresses (http.trustedProxies): the peers whose PROXY header is believed. */
  trustedProxies: readonly string[];
  log: Logger;
  handler: PublishHandler;
  /** A connection refused or closed for breaking a limit (baton_rtmp_connections_refused_total). */
  limitBroken?: (reason: RtmpCloseReason) => void;
}

export class RtmpIngest {
  private readonly listeners: IngestListeners;
  private readonly refusals: RefusalLog;
  readonly counts: ConnectionCounts;
  readonly publishers = new Map<string, PublisherConnection>();

  /** Throws a ConfigError when RTMPS is on and its certificate or key cannot be used. */
  constructor(private readonly options: RtmpIngestOptions) {
    routeNmsLogger(options.log.child("rtmp"));
    const { rtmp, rtmps } = options;
    const trusted = trustedProxies(options.trustedProxies);
    const context = rtmpsContext(rtmps, () => "config");
    this.refusals = new RefusalLog(options.log);
    // without the PROXY protocol a balancer's connections all come from its address: only the total holds them
    this.counts = new ConnectionCounts(rtmp.maxConnections, rtmp.maxConnectionsPerAddress, rtmp.proxyProtocol ? () => false : trusted);
    this.listeners = new IngestListeners({
      bind: options.bind,
      port: rtmp.port,
      tls: context ? { port: rtmps.port, context } : null,
      proxyProtocol: rtmp.proxyProtocol,
      trusted,
      handshakeTimeout: rtmp.handshakeTimeout,
      counts: this.counts,
      refused: (reason, remote, detail) => {
        this.refusals.refused(reason, remote, detail);
        options.limitBroken?.(reason);
      },
      accepted: (connection) => this.session(connection),
      log: options.log,
    });
  }

  get port(): number {
    return this.listeners.port("rtmp");
  }

  /** The RTMPS port, or 0 when RTMPS is off. */
  get tlsPort(): number {
    return this.listeners.port("rtmps");
  }

  async start(): Promise<void> {
    await this.listeners.start();
  }

  /** Stops listening and closes every connection. Safe to call twice. */
  async close(): Promise<void> {
    for (const publisher of this.publishers.values()) publisher.close("server shutting down");
    await this.listeners.close();
    this.refusals.close();
  }

  private session(connection: AcceptedConnection): void {
    const { socket, remote } = connection;
    const log = this.options.log;
    const rtmp = createRtmpProtocol();
    const guard = new ParserGuard(rtmp, this.options.rtmp.maxMessageSize);
    let request: PublishRequest | null = null;
    let publisher: PublisherConnection | null = null;
    // set once the connection is on its way out: what it still sends is not parsed
    let done = false;
    const idleTimeout = this.options.rtmp.idleTimeout;
    socket.setTimeout(idleTimeout * 1000);

    const fail = (reason: RtmpCloseReason, detail: string): void => {
      done = true;
      guard.release();
      connection.refuse(reason, detail);
    };
    /** Ends the connection after a refusal the client is told about (an RTMP error status). */
    const finish = (): void => {
      done = true;
      guard.release();
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    };
    rtmp.onOutputCallback = (buffer) => {
      if (socket.destroyed) return;
      // a client that does not read its answers would make them pile up here
      if (socket.writableLength + buffer.length > MAX_OUTPUT_BACKLOG) {
        throw new RtmpLimitError("slow_reader", `${socket.writableLength} bytes of answers unread`);
      }
      socket.write(buffer);
    };
    rtmp.onConnectCallback = (req) => {
      request = { app: req.app, name: req.name, query: req.query, remote };
    };
    rtmp.onPlayCallback = () => {
      const reason = "baton serves HLS over HTTP, not RTMP playback";
      this.options.handler.refused("play_not_supported", reason, request ?? { app: null, name: null, query: {}, remote });
      rtmp.sendStatusMessage(rtmp.streamId, "error", "NetStream.Play.Failed", reason);
      finish();
    };
    rtmp.onPushCallback = () => {
      const req = request ?? { app: null, name: null, query: {}, remote };
      if (publisher) throw new RtmpLimitError("too_many_commands", "a second publish on one connection");
      let admitted: Admitted;
      try {
        admitted = this.options.handler.admit(req);
      } catch (error) {
        const reason: RefusalReason = error instanceof AdmissionError ? error.reason : "state_unavailable";
        this.options.handler.refused(reason, errorMessage(error), req);
        rtmp.sendStatusMessage(rtmp.streamId, "error", "NetStream.Publish.BadName", errorMessage(error));
        finish();
        return;
      }
      connection.admitted();
      guard.admitted();
      publisher = new PublisherConnection(admitted.streamId, remote, socket, rtmp, admitted.credential, admitted.role);
      publisher.reportListenerErrors((event, error) => log.error("publisher listener failed", { event, error: errorMessage(error) }));
      this.publishers.set(publisher.id, publisher);
      this.options.handler.publisher(publisher);
    };
    rtmp.onPacketCallback = (packet) => {
      // packets before an admitted publish (or after a refusal) are dropped unread
      publisher?.accept(packet);
    };

    const parse = (data: Buffer): void => {
      if (done || data.length === 0) return;
      if (publisher) {
        publisher.bytesIn += data.length;
        publisher.lastDataAt = Date.now();
      }
      let error: string | null;
      try {
        error = rtmp.parserData(data);
      } catch (thrown) {
        if (thrown instanceof RtmpLimitError) return fail(thrown.reason, thrown.message);
        error = `malformed RTMP message (${errorMessage(thrown)})`;
      }
      if (error !== null) fail("malformed", error);
    };
    socket.on("data", parse);
    socket.on("timeout", () => {
      log.warn("RTMP connection closed", { remote, why: `no data for ${idleTimeout} s` });
      done = true;
      socket.destroy();
    });
    socket.on("error", (error) => log.debug("RTMP socket error", { remote, error: error.message }));
    socket.on("close", () => {
      done = true;
      guard.release();
      if (publisher) {
        this.publishers.delete(publisher.id);
        publisher.ended("publisher disconnected");
      }
    });
    parse(connection.initial);
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
