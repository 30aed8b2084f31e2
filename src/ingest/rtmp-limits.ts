// Bounds on node-media-server's RTMP parser, hooked into one connection's parser instance. As shipped (4.4.3)
// it allocates a message's whole declared length (24 bits: 16 MiB) on its first chunk and keeps that buffer per
// chunk stream for the connection's life, accepts about 830 chunk stream ids, takes any SET_CHUNK_SIZE (0 stalls
// it) and decodes any AMF command: one unauthenticated connection could make a node hold gigabytes or block its
// event loop for seconds. Here a message is sized by what its type and the connection's state allow before a
// byte of it is stored, each message gets its own buffer that leaves with it, and a connection that breaks a
// limit is refused with an RtmpLimitError (the caller closes it).
import { BatonError } from "../core/errors.ts";
import { checkAmf0 } from "./amf-check.ts";
import type { RtmpCloseReason } from "./connection-limits.ts";
import { rtmpSteps, type NmsChunkStream, type NmsRtmp } from "./nms.ts";

/** Largest message before a publish is admitted: connect, createStream and publish are a few hundred bytes. */
export const MAX_MESSAGE_BEFORE_PUBLISH = 64 * 1024;
/** Largest command or metadata message at any time (what is AMF-decoded): OBS's onMetaData is under 1 KiB. */
export const MAX_AMF_MESSAGE = 64 * 1024;
/** Largest protocol-control or user-control message: the longest (SET_PEER_BANDWIDTH) has 5 bytes. */
const MAX_CONTROL_MESSAGE = 64;
/** Chunk streams one connection may use: ffmpeg uses 4 (2, 3, 4, 6), OBS 5 or 6. */
export const MAX_CHUNK_STREAMS = 16;
/** SET_CHUNK_SIZE range: 128 is the protocol's start; no chunk is larger than a message (24-bit length). */
export const MIN_CHUNK_SIZE = 128;
export const MAX_CHUNK_SIZE = 0xffffff;
/** Bytes of answers a client may leave unread (the handshake's are 3 KiB, a command's a few hundred). */
export const MAX_OUTPUT_BACKLOG = 64 * 1024;
/** Commands before a publish: ffmpeg sends 5 (connect, releaseStream, FCPublish, createStream, publish). */
export const MAX_COMMANDS_BEFORE_PUBLISH = 32;

const TYPE_SET_CHUNK_SIZE = 1;
const TYPE_USER_CONTROL = 4;
const TYPE_SET_PEER_BANDWIDTH = 6;
const TYPE_AUDIO = 8;
const TYPE_VIDEO = 9;
const TYPE_AMF3_DATA = 15;
const TYPE_AMF3_COMMAND = 17;
const TYPE_AMF0_DATA = 18;
const TYPE_AMF0_COMMAND = 20;

const EMPTY = Buffer.alloc(0);

/** A connection broke a limit; `reason` is its stable code (log line, metric label). */
export class RtmpLimitError extends BatonError {
  constructor(
    readonly reason: RtmpCloseReason,
    message: string,
  ) {
    super(`RTMP_${reason.toUpperCase()}`, message);
  }
}

export class ParserGuard {
  private published = false;
  private commands = 0;

  /** `maxMessageSize`: the largest audio/video message of an admitted publisher (rtmp.maxMessageSize). */
  constructor(
    private readonly rtmp: NmsRtmp,
    private readonly maxMessageSize: number,
  ) {
    rtmp.parserData = (buffer) => {
      // C0 is the version; node-media-server never looks at it
      if (rtmp.handshakeState === 0 && buffer.length > 0 && buffer[0] !== 3) throw new RtmpLimitError("bad_handshake", `RTMP version ${buffer[0]} (only 3 is spoken)`);
      return rtmpSteps.parserData.call(rtmp, buffer);
    };
    rtmp.packetParse = () => this.chunkHeader();
    rtmp.packetAlloc = () => this.allocate();
    rtmp.packetHandler = () => this.complete();
  }

  /** The publish was admitted: audio and video messages may now be up to maxMessageSize. */
  admitted(): void {
    this.published = true;
  }

  /** Drops every buffer the parser holds: nothing a closed connection sent stays in memory. */
  release(): void {
    for (const stream of this.rtmp.inPackets.values()) drop(stream);
    this.rtmp.inPackets.clear();
    drop(this.rtmp.parserPacket);
  }

  private chunkHeader(): void {
    const known = this.rtmp.inPackets.size;
    rtmpSteps.packetParse.call(this.rtmp);
    const stream = this.rtmp.parserPacket;
    if (this.rtmp.inPackets.size > known && this.rtmp.inPackets.size > MAX_CHUNK_STREAMS) {
      throw new RtmpLimitError("too_many_chunk_streams", `more than ${MAX_CHUNK_STREAMS} chunk streams`);
    }
    // a message's later chunks are type 3; a new header midway would change the length its buffer was sized for
    if (stream.bytes > 0 && stream.header.fmt !== 3) {
      throw new RtmpLimitError("bad_chunk", `a type ${stream.header.fmt} chunk header in the middle of a message on chunk stream ${stream.header.cid}`);
    }
    // types 0 and 1 declare a length: refused here, before the first payload byte arrives
    if (stream.header.fmt <= 1) this.checkLength(stream);
  }

  private checkLength(stream: NmsChunkStream): void {
    const { length, type } = stream.header;
    const limit = this.limitFor(type);
    if (length > limit) {
      const when = this.published ? "" : " before a publish";
      throw new RtmpLimitError("message_too_large", `a message of type ${type} declaring ${length} bytes (at most ${limit}${when})`);
    }
  }

  private limitFor(type: number): number {
    if (type >= TYPE_SET_CHUNK_SIZE && type <= TYPE_SET_PEER_BANDWIDTH) return MAX_CONTROL_MESSAGE;
    if (type === TYPE_AUDIO || type === TYPE_VIDEO) return this.published ? this.maxMessageSize : MAX_MESSAGE_BEFORE_PUBLISH;
    return MAX_AMF_MESSAGE;
  }

  /** Before a message's first payload byte: its declared length must fit, then it gets a buffer of its own. */
  private allocate(): void {
    const stream = this.rtmp.parserPacket;
    const length = stream.header.length;
    this.checkLength(stream);
    if (stream.capacity >= length) return;
    // messages in progress on the other chunk streams: an encoder interleaves one large video frame with small ones
    let held = 0;
    for (const other of this.rtmp.inPackets.values()) if (other !== stream) held += other.capacity;
    const budget = 2 * (this.published ? this.maxMessageSize : MAX_MESSAGE_BEFORE_PUBLISH);
    if (held + length > budget) throw new RtmpLimitError("too_much_buffered", `${held + length} bytes of unfinished messages (at most ${budget})`);
    // every byte is written before the message is used (it is handed on only once complete)
    stream.payload = Buffer.allocUnsafe(length);
    stream.capacity = length;
  }

  /** A whole message: checked, handed to node-media-server, and its buffer released from the chunk stream. */
  private complete(): void {
    const stream = this.rtmp.parserPacket;
    try {
      const { type, length } = stream.header;
      const payload = stream.payload.subarray(0, length);
      if (type === TYPE_SET_CHUNK_SIZE) checkChunkSize(payload);
      // node-media-server ignores user control events and would pass AMF3 data on as a media packet; nothing needs either
      if (type === TYPE_USER_CONTROL || type === TYPE_AMF3_DATA) return;
      if (type === TYPE_AMF0_COMMAND || type === TYPE_AMF3_COMMAND) {
        if (!this.published && ++this.commands > MAX_COMMANDS_BEFORE_PUBLISH) {
          throw new RtmpLimitError("too_many_commands", `more than ${MAX_COMMANDS_BEFORE_PUBLISH} commands before a publish`);
        }
      }
      if (type === TYPE_AMF0_COMMAND || type === TYPE_AMF3_COMMAND || type === TYPE_AMF0_DATA) {
        // an AMF3 command is one format byte, then AMF0
        const problem = checkAmf0(type === TYPE_AMF3_COMMAND ? payload.subarray(1) : payload);
        if (problem !== null) throw new RtmpLimitError("bad_amf", `message of type ${type}: ${problem}`);
      }
      rtmpSteps.packetHandler.call(this.rtmp);
    } finally {
      // a media packet keeps this buffer as its data; the chunk stream's next message gets a new one
      drop(stream);
    }
  }
}

function checkChunkSize(payload: Buffer): void {
  if (payload.length < 4) throw new RtmpLimitError("bad_chunk_size", `SET_CHUNK_SIZE of ${payload.length} bytes`);
  const size = payload.readUInt32BE(0);
  if (size < MIN_CHUNK_SIZE || size > MAX_CHUNK_SIZE) {
    throw new RtmpLimitError("bad_chunk_size", `SET_CHUNK_SIZE ${size} (expected ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE})`);
  }
}

function drop(stream: NmsChunkStream): void {
  stream.payload = EMPTY;
  stream.capacity = 0;
}
