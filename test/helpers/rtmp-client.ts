// A minimal raw RTMP client for tests: the plain handshake, then AMF0 command messages that may be
// malformed on purpose (a connect without tcUrl, a publish whose stream name is a number or an object).
// It encodes its own AMF0 so a test never depends on the server's encoder agreeing with itself.
import { randomBytes } from "node:crypto";
import { createConnection, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";

// ---- AMF0 ----------------------------------------------------------------------------------------------

/** A JavaScript value as AMF0 encodes it: number, boolean, string, null, or an anonymous object. */
export type AmfValue = number | boolean | string | null | { [key: string]: AmfValue };

const AMF0_NUMBER = 0x00;
const AMF0_BOOLEAN = 0x01;
const AMF0_STRING = 0x02;
const AMF0_OBJECT = 0x03;
const AMF0_NULL = 0x05;
const AMF0_LONG_STRING = 0x0c;
const AMF0_OBJECT_END = Buffer.from([0x00, 0x00, 0x09]);

export function amfNumber(value: number): Buffer {
  const out = Buffer.alloc(9);
  out[0] = AMF0_NUMBER;
  out.writeDoubleBE(value, 1);
  return out;
}

export function amfBoolean(value: boolean): Buffer {
  return Buffer.from([AMF0_BOOLEAN, value ? 1 : 0]);
}

export function amfNull(): Buffer {
  return Buffer.from([AMF0_NULL]);
}

export function amfString(value: string): Buffer {
  const text = Buffer.from(value, "utf8");
  if (text.length > 0xffff) {
    const head = Buffer.alloc(5);
    head[0] = AMF0_LONG_STRING;
    head.writeUInt32BE(text.length, 1);
    return Buffer.concat([head, text]);
  }
  const head = Buffer.alloc(3);
  head[0] = AMF0_STRING;
  head.writeUInt16BE(text.length, 1);
  return Buffer.concat([head, text]);
}

/** An object's property name: a string without the type marker. */
function amfKey(key: string): Buffer {
  const text = Buffer.from(key, "utf8");
  const head = Buffer.alloc(2);
  head.writeUInt16BE(text.length, 0);
  return Buffer.concat([head, text]);
}

export function amfObject(properties: { [key: string]: AmfValue }): Buffer {
  const parts: Buffer[] = [Buffer.from([AMF0_OBJECT])];
  for (const [key, value] of Object.entries(properties)) parts.push(amfKey(key), amf(value));
  parts.push(AMF0_OBJECT_END);
  return Buffer.concat(parts);
}

/** Encodes any AmfValue. */
export function amf(value: AmfValue): Buffer {
  if (value === null) return amfNull();
  switch (typeof value) {
    case "number":
      return amfNumber(value);
    case "boolean":
      return amfBoolean(value);
    case "string":
      return amfString(value);
    default:
      return amfObject(value);
  }
}

// ---- chunking ------------------------------------------------------------------------------------------

export const CHUNK_SIZE = 128;
/** The chunk stream for commands. */
const CSID_COMMAND = 3;
/** Message type of an AMF0 command. */
const TYPE_AMF0_COMMAND = 20;

/**
 * One RTMP message as chunks: a type-0 header (11-byte message header) on the first chunk, a type-3
 * basic header before every further 128-byte piece of the payload. Chunk stream ids 2 to 63 only.
 */
export function chunkMessage(csid: number, type: number, messageStreamId: number, payload: Buffer, timestamp = 0): Buffer {
  if (csid < 2 || csid > 63) throw new Error(`chunk stream id ${csid} needs a longer basic header`);
  if (payload.length > 0xffffff) throw new Error("payload too long for one message");
  const header = Buffer.alloc(12);
  header[0] = (0 << 6) | csid;
  header.writeUIntBE(Math.min(timestamp, 0xfffffe), 1, 3);
  header.writeUIntBE(payload.length, 4, 3);
  header[7] = type;
  header.writeUInt32LE(messageStreamId, 8);
  const parts: Buffer[] = [header, payload.subarray(0, CHUNK_SIZE)];
  for (let offset = CHUNK_SIZE; offset < payload.length; offset += CHUNK_SIZE) {
    parts.push(Buffer.from([(3 << 6) | csid]), payload.subarray(offset, offset + CHUNK_SIZE));
  }
  return Buffer.concat(parts);
}

/** An AMF0 command message: the name, the transaction id, then the arguments. */
export function commandMessage(name: string, transactionId: number, args: AmfValue[], messageStreamId = 0): Buffer {
  const payload = Buffer.concat([amfString(name), amfNumber(transactionId), ...args.map((a) => amf(a))]);
  return chunkMessage(CSID_COMMAND, TYPE_AMF0_COMMAND, messageStreamId, payload);
}

// ---- the client ----------------------------------------------------------------------------------------

const HANDSHAKE_SIZE = 1536;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** How a test client reaches the server. */
export interface OpenOptions {
  host?: string;
  timeoutMs?: number;
  /** Source address (any of 127.0.0.0/8 on Linux), so one machine can be many clients. */
  localAddress?: string;
  /** RTMPS: TLS first (the server's certificate is not verified: tests use a self-signed one). */
  tls?: boolean;
  /** Bytes sent before anything else (a PROXY protocol header). */
  prefix?: Buffer;
}

/** A TCP (or TLS) connection to the server, connected; rejects when it cannot be. */
export function openSocket(port: number, o: OpenOptions = {}): Promise<Socket> {
  const host = o.host ?? "127.0.0.1";
  return new Promise((resolve, reject) => {
    const raw = createConnection({ host, port, ...(o.localAddress ? { localAddress: o.localAddress } : {}) });
    raw.once("error", reject);
    raw.once("connect", () => {
      if (o.prefix) raw.write(o.prefix);
      if (!o.tls) {
        raw.off("error", reject);
        resolve(raw);
        return;
      }
      const secure = tlsConnect({ socket: raw, rejectUnauthorized: false, servername: "localhost" });
      secure.once("error", reject);
      secure.once("secureConnect", () => {
        secure.off("error", reject);
        resolve(secure);
      });
    });
  });
}

export class RtmpTestClient {
  /** Every byte the server sent after its S0+S1+S2. */
  private data = Buffer.alloc(0);
  private transactionId = 1;
  private readonly dataWaiters: (() => void)[] = [];
  /** Resolves with the time (Date.now()) the socket closed. */
  readonly closed: Promise<number>;
  closedAt: number | null = null;
  /** The last socket error (ECONNRESET when the server destroys the connection), if any. */
  error: Error | null = null;

  private constructor(private readonly socket: Socket) {
    socket.on("error", (error) => (this.error = error));
    this.closed = new Promise((resolve) => {
      socket.once("close", () => {
        this.closedAt = Date.now();
        for (const wake of this.dataWaiters.splice(0)) wake();
        resolve(this.closedAt);
      });
    });
  }

  /** Opens a TCP connection and completes the plain (version 3) handshake. */
  static async open(port: number, host = "127.0.0.1", timeoutMs = 5000, options: OpenOptions = {}): Promise<RtmpTestClient> {
    const socket = await withTimeout(openSocket(port, { ...options, host }), timeoutMs, "the connection");
    socket.setNoDelay(true);
    const client = new RtmpTestClient(socket);
    const handshake = new Promise<void>((resolve, reject) => {
      let buffered = Buffer.alloc(0);
      const need = 1 + 2 * HANDSHAKE_SIZE;
      const onData = (chunk: Buffer): void => {
        buffered = Buffer.concat([buffered, chunk]);
        if (buffered.length < need) return;
        socket.off("data", onData);
        socket.off("close", onClose);
        if (buffered[0] !== 3) {
          reject(new Error(`server answered RTMP version ${buffered[0]}, not 3`));
          return;
        }
        const s1 = buffered.subarray(1, 1 + HANDSHAKE_SIZE);
        // C2 echoes S1
        socket.write(Buffer.from(s1));
        client.attach(buffered.subarray(need));
        resolve();
      };
      const onClose = (): void => reject(new Error(`server closed the connection during the handshake (${client.error?.message ?? "no error"})`));
      socket.on("data", onData);
      socket.once("close", onClose);
      const c1 = Buffer.alloc(HANDSHAKE_SIZE);
      c1.writeUInt32BE(0, 0); // time
      c1.writeUInt32BE(0, 4); // zero
      randomBytes(HANDSHAKE_SIZE - 8).copy(c1, 8);
      socket.write(Buffer.concat([Buffer.from([3]), c1]));
    });
    try {
      await withTimeout(handshake, timeoutMs, "the RTMP handshake");
    } catch (error) {
      socket.destroy();
      throw error;
    }
    return client;
  }

  private attach(rest: Buffer): void {
    if (rest.length > 0) this.append(rest);
    this.socket.on("data", (chunk: Buffer) => this.append(chunk));
  }

  private append(chunk: Buffer): void {
    this.data = Buffer.concat([this.data, chunk]);
    for (const wake of this.dataWaiters.splice(0)) wake();
  }

  get isClosed(): boolean {
    return this.closedAt !== null;
  }

  /** The raw bytes the server sent after the handshake. */
  received(): Buffer {
    return this.data;
  }

  /** The received bytes as latin1 text, for finding status codes in them. */
  text(): string {
    return this.data.toString("latin1");
  }

  /** Whether the server sent this string (e.g. "NetStream.Publish.BadName") anywhere in its messages. */
  saw(text: string): boolean {
    return this.text().includes(text);
  }

  /** Resolves when the server has sent `text`; rejects on timeout or when the socket closes without it. */
  async waitForText(text: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.saw(text)) {
      if (this.isClosed) throw new Error(`socket closed before the server sent ${JSON.stringify(text)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`server did not send ${JSON.stringify(text)} in ${timeoutMs} ms`);
      await withTimeout(new Promise<void>((resolve) => this.dataWaiters.push(resolve)), left, JSON.stringify(text)).catch(() => undefined);
    }
  }

  /** Resolves with the time the socket closed; rejects if it is still open after `timeoutMs`. */
  waitForClose(timeoutMs: number): Promise<number> {
    return withTimeout(this.closed, timeoutMs, "the server to close the RTMP connection");
  }

  /** Sends raw bytes (already chunked). */
  write(bytes: Buffer): void {
    if (this.isClosed || this.socket.destroyed) throw new Error("the RTMP connection is closed");
    this.socket.write(bytes);
  }

  /**
   * Sends raw bytes and resolves once the socket took them (backpressure: large attacks are streamed, not
   * queued in this process); resolves early, with false, when the server closed the connection.
   */
  async send(bytes: Buffer): Promise<boolean> {
    if (this.isClosed || this.socket.destroyed) return false;
    if (this.socket.write(bytes)) return true;
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        this.socket.off("drain", onDrain);
        this.socket.off("close", onClose);
        resolve(ok);
      };
      const onDrain = (): void => done(true);
      const onClose = (): void => done(false);
      this.socket.once("drain", onDrain);
      this.socket.once("close", onClose);
    });
  }

  /** Sends an AMF0 command on chunk stream 3; returns the transaction id it used. */
  command(name: string, args: AmfValue[], messageStreamId = 0): number {
    const id = this.transactionId++;
    this.write(commandMessage(name, id, args, messageStreamId));
    return id;
  }

  /** `connect` with any command object (a test may leave out tcUrl or make it garbage). */
  connect(commandObject: AmfValue): number {
    return this.command("connect", [commandObject]);
  }

  /** `createStream`; the server's first stream id is 1. */
  createStream(): number {
    return this.command("createStream", [null]);
  }

  /** `publish` on message stream `messageStreamId`; the name may be any AMF value, "?token=..." included. */
  publish(streamName: AmfValue, messageStreamId = 1, type: AmfValue = "live"): number {
    return this.command("publish", [null, streamName, type], messageStreamId);
  }

  /** `play` on message stream `messageStreamId`. */
  play(streamName: AmfValue, messageStreamId = 1): number {
    return this.command("play", [null, streamName, -2000], messageStreamId);
  }

  /** Closes the connection from this side. */
  destroy(): void {
    this.socket.destroy();
  }
}

/** The connect command object a normal publisher sends to rtmp://host:port/<app>. */
export function connectObject(host: string, port: number, app = "live"): { [key: string]: AmfValue } {
  return {
    app,
    type: "nonprivate",
    flashVer: "FMLE/3.0 (compatible; baton-test)",
    tcUrl: `rtmp://${host}:${port}/${app}`,
  };
}
