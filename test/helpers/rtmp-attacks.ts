// Hostile RTMP for tests: chunks on any chunk stream id and chunk size, messages declaring lengths they never
// send, protocol-control messages with bad values, AMF0 that declares more than it holds, and a seeded random
// generator of all of it. Everything is encoded here, independently of the server's parser.
import { amfNull, amfNumber, amfString, amfObject, type AmfValue } from "./rtmp-client.ts";

export const TYPE_SET_CHUNK_SIZE = 1;
export const TYPE_VIDEO = 9;
export const TYPE_AMF0_COMMAND = 20;
export const MAX_MESSAGE = 0xffffff;

/** A chunk basic header: one byte for ids 2-63, two for 64-319, three for 320-65599 (RTMP 5.3.1.1). */
export function basicHeader(fmt: number, csid: number): Buffer {
  if (csid < 2 || csid > 65599) throw new Error(`chunk stream id ${csid} is out of range`);
  if (csid < 64) return Buffer.from([(fmt << 6) | csid]);
  if (csid < 320) return Buffer.from([fmt << 6, csid - 64]);
  return Buffer.from([(fmt << 6) | 1, (csid - 64) & 0xff, (csid - 64) >> 8]);
}

/** A type-0 chunk header: basic header, timestamp, declared message length, type, message stream id. */
export function type0Header(csid: number, type: number, length: number, messageStreamId = 0, timestamp = 0): Buffer {
  const header = Buffer.alloc(11);
  header.writeUIntBE(Math.min(timestamp, 0xfffffe), 0, 3);
  header.writeUIntBE(length, 3, 3);
  header[6] = type;
  header.writeUInt32LE(messageStreamId, 7);
  return Buffer.concat([basicHeader(0, csid), header]);
}

/** One whole message as chunks of `chunkSize` on chunk stream `csid` (any id). */
export function message(csid: number, type: number, payload: Buffer, o: { messageStreamId?: number; chunkSize?: number; timestamp?: number } = {}): Buffer {
  const chunkSize = o.chunkSize ?? 128;
  const parts: Buffer[] = [type0Header(csid, type, payload.length, o.messageStreamId ?? 0, o.timestamp ?? 0), payload.subarray(0, chunkSize)];
  for (let offset = chunkSize; offset < payload.length; offset += chunkSize) {
    parts.push(basicHeader(3, csid), payload.subarray(offset, offset + chunkSize));
  }
  return Buffer.concat(parts);
}

/** SET_CHUNK_SIZE with any 32-bit value (the server must refuse 0 and absurd sizes). */
export function setChunkSize(size: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(size >>> 0, 0);
  return message(2, TYPE_SET_CHUNK_SIZE, payload);
}

/** An AMF0 strict array that declares `declared` elements and holds the bytes `elements`. */
export function amfStrictArray(declared: number, elements: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = 0x0a;
  head.writeUInt32BE(declared >>> 0, 1);
  return Buffer.concat([head, elements]);
}

/**
 * The payload of a `connect` whose command object is a strict array declaring 2^32-1 elements and filled with
 * AMF0 nulls up to `size` bytes: a naive decoder loops once per element, millions of times.
 */
export function strictArrayConnect(size: number): Buffer {
  const head = Buffer.concat([amfString("connect"), amfNumber(1)]);
  const fill = Math.max(0, size - head.length - 5);
  return Buffer.concat([head, amfStrictArray(0xffffffff, Buffer.alloc(fill, 0x05))]);
}

/** The payload of an AMF0 command (name, transaction id, arguments). */
export function commandPayload(name: string, transactionId: number, args: AmfValue[]): Buffer {
  return Buffer.concat([amfString(name), amfNumber(transactionId), ...args.map((a) => (a === null ? amfNull() : typeof a === "object" ? amfObject(a) : amfArg(a)))]);
}

function amfArg(value: number | boolean | string): Buffer {
  if (typeof value === "number") return amfNumber(value);
  if (typeof value === "string") return amfString(value);
  return Buffer.from([0x01, value ? 1 : 0]);
}

/** A PROXY protocol v2 header (PROXY command, TCP over IPv4) naming `source:port` as the client. */
export function proxyV2Header(source: string, port: number, destination = "127.0.0.1"): Buffer {
  const block = Buffer.alloc(12);
  Buffer.from(source.split(".").map(Number)).copy(block, 0);
  Buffer.from(destination.split(".").map(Number)).copy(block, 4);
  block.writeUInt16BE(port, 8);
  block.writeUInt16BE(1935, 10);
  return Buffer.concat([Buffer.from("0d0a0d0a000d0a515549540a2111000c", "hex"), block]);
}

// ---- seeded random hostile input ------------------------------------------------------------------------

/** mulberry32: small, fast, and the same sequence for the same seed, so a failing case can be replayed. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rng = () => number;
const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)] as T;
const int = (rng: Rng, max: number): number => Math.floor(rng() * (max + 1));
const bytes = (rng: Rng, n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(rng, 255)));

/** A random AMF0 value: any type marker, lengths and counts that may lie, nesting up to `depth`. */
export function randomAmf(rng: Rng, depth = 3): Buffer {
  const u32 = (): number => pick(rng, [0, 1, 2, 255, 65535, 0x7fffffff, 0xffffffff, int(rng, 1000)]);
  switch (int(rng, 9)) {
    case 0:
      return amfNumber(rng() * 1e9);
    case 1:
      return amfString("x".repeat(int(rng, 40)));
    case 2: {
      // a string whose length prefix lies
      const out = Buffer.alloc(3 + int(rng, 8));
      out[0] = 0x02;
      out.writeUInt16BE(int(rng, 65535), 1);
      return out;
    }
    case 3:
      return depth > 0 ? Buffer.concat([Buffer.from([0x03]), ...Array.from({ length: int(rng, 4) }, () => Buffer.concat([Buffer.from([0, 1, 0x61]), randomAmf(rng, depth - 1)])), Buffer.from([0, 0, 9])]) : amfNull();
    case 4: {
      const elements = depth > 0 ? Buffer.concat(Array.from({ length: int(rng, 4) }, () => randomAmf(rng, depth - 1))) : Buffer.alloc(0);
      return amfStrictArray(u32(), elements);
    }
    case 5: {
      // ECMA array: a count, then an object body that may never end
      const head = Buffer.alloc(5);
      head[0] = 0x08;
      head.writeUInt32BE(u32(), 1);
      return Buffer.concat([head, bytes(rng, int(rng, 12))]);
    }
    case 6: {
      const head = Buffer.alloc(5);
      head[0] = 0x0c;
      head.writeUInt32BE(u32(), 1);
      return head;
    }
    case 7:
      return Buffer.from([pick(rng, [0x04, 0x07, 0x09, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0xff]), ...bytes(rng, int(rng, 6))]);
    default:
      return pick(rng, [amfNull(), Buffer.from([0x06]), Buffer.from([0x01, 1])]);
  }
}

/** A random command: a known name (or not), then random AMF values. */
function randomCommand(rng: Rng): Buffer {
  const name = pick(rng, ["connect", "createStream", "publish", "play", "deleteStream", "FCPublish", "releaseStream", "_checkbw", "x".repeat(int(rng, 300))]);
  return Buffer.concat([amfString(name), amfNumber(int(rng, 10)), ...Array.from({ length: int(rng, 4) }, () => randomAmf(rng))]);
}

/** A random chunk: any format, chunk stream id, declared length and type, then up to `maxBody` bytes. */
function randomChunk(rng: Rng, maxBody: number): Buffer {
  const fmt = int(rng, 3);
  const csid = pick(rng, [2, 3, 4, 5, 6, 8, 2 + int(rng, 61), 64 + int(rng, 255), 320 + int(rng, 65279)]);
  const header = Buffer.alloc([11, 7, 3, 0][fmt] ?? 0);
  if (fmt <= 2) header.writeUIntBE(pick(rng, [0, 1, 0xffffff, int(rng, 0xffffff)]), 0, 3);
  if (fmt <= 1) {
    header.writeUIntBE(pick(rng, [0, 1, 4, 128, 65536, MAX_MESSAGE, int(rng, MAX_MESSAGE)]), 3, 3);
    header[6] = pick(rng, [1, 2, 3, 4, 5, 6, 8, 9, 15, 16, 17, 18, 19, 20, 22, int(rng, 255)]);
  }
  if (fmt === 0) header.writeUInt32LE(pick(rng, [0, 1, int(rng, 0xffffffff)]), 7);
  const extended = fmt <= 2 && rng() < 0.1 ? bytes(rng, 4) : Buffer.alloc(0);
  return Buffer.concat([basicHeader(fmt, csid), header, extended, bytes(rng, int(rng, maxBody))]);
}

/**
 * What one random hostile client sends: a handshake (usually valid, sometimes garbage or cut short), then a mix
 * of random chunks, well-formed messages carrying random commands and AMF, and SET_CHUNK_SIZE with any value.
 * At most about `maxBytes` bytes.
 */
export function randomSession(rng: Rng, maxBytes = 64 * 1024): Buffer {
  const parts: Buffer[] = [];
  const handshake = int(rng, 9);
  if (handshake === 0) return bytes(rng, int(rng, 4000));
  parts.push(Buffer.from([handshake === 1 ? int(rng, 255) : 3]), bytes(rng, handshake === 2 ? int(rng, 1535) : 1536));
  if (handshake === 2) return Buffer.concat(parts);
  parts.push(bytes(rng, 1536)); // C2: the server does not check it
  let size = 0;
  while (size < maxBytes) {
    let part: Buffer;
    switch (int(rng, 5)) {
      case 0:
        part = setChunkSize(pick(rng, [0, 1, 127, 128, 4096, 65536, MAX_MESSAGE, 0x7fffffff, 0xffffffff, int(rng, 0xffffffff)]));
        break;
      case 1:
      case 2:
        part = message(pick(rng, [3, 5, 8, 2 + int(rng, 61)]), pick(rng, [TYPE_AMF0_COMMAND, 17, 18]), randomCommand(rng), { messageStreamId: int(rng, 2) });
        break;
      default:
        part = randomChunk(rng, 512);
    }
    parts.push(part);
    size += part.length;
    if (rng() < 0.05) break;
  }
  return Buffer.concat(parts);
}
