// Typed access to the parts of node-media-server 4.4.3 (pinned exactly) that baton uses: its RTMP protocol
// parser, its FLV tag writer, its AMF decoder, its SPS parser and its logger. baton runs its own listener and
// sessions around them (see rtmp-server.ts for why), so nothing else of the package is started. The parser's
// internals that rtmp-limits.ts hooks to bound it are typed here too (RtmpInternals), under their 4.4.3 names.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/** An audio/video/script message as node-media-server parses it. */
export interface AVPacket {
  /** 8 audio, 9 video, 18 script data. */
  codec_type: number;
  codec_id: number;
  /** 0 audio sequence header, 1 audio frame, 2 video sequence header, 3 keyframe, 4 inter frame, 5 metadata. */
  flags: number;
  pts: number;
  dts: number;
  size: number;
  data: Buffer;
}

/** What a packet is, by node-media-server's codec_type and flags (the FLV tag type and its header kind). */
export const isMetadata = (p: AVPacket): boolean => p.codec_type === 18;
export const isAudioHeader = (p: AVPacket): boolean => p.codec_type === 8 && p.flags === 0;
export const isVideoHeader = (p: AVPacket): boolean => p.codec_type === 9 && p.flags === 2;
export const isKeyframe = (p: AVPacket): boolean => p.codec_type === 9 && p.flags === 3;
/** An audio or video sequence header (codec configuration, sent once before the media). */
export const isSequenceHeader = (p: AVPacket): boolean => isAudioHeader(p) || isVideoHeader(p);

export interface ConnectRequest {
  app: unknown;
  name: unknown;
  host: unknown;
  query: Record<string, string | string[] | undefined>;
}

/** node-media-server's RTMP protocol state machine: bytes in, callbacks out. */
export interface RtmpProtocol {
  onConnectCallback: (req: ConnectRequest) => void;
  onPlayCallback: () => void;
  onPushCallback: () => void;
  onPacketCallback: (packet: AVPacket) => void;
  onOutputCallback: (buffer: Buffer) => void;
  /** Returns an error message, or null. Throws on some malformed messages (guarded by the caller). */
  parserData(buffer: Buffer): string | null;
  sendStatusMessage(sid: number, level: string, code: string, description: string): void;
  streamId: number;
}

/** One chunk stream's message being assembled (node-media-server's RtmpPacket). */
export interface NmsChunkStream {
  header: { fmt: number; cid: number; timestamp: number; length: number; type: number; stream_id: number };
  clock: number;
  payload: Buffer;
  /** Bytes of `payload` usable for a message; node-media-server reallocates when a message needs more. */
  capacity: number;
  /** Bytes of the current message received so far. */
  bytes: number;
}

/**
 * The parser's internal state and steps: packetParse after a chunk header, packetAlloc before a message's
 * first payload byte, packetHandler once a message is complete. Instance properties override them.
 */
export interface RtmpInternals {
  /** 0 until the first byte (C0) arrived. */
  handshakeState: number;
  parserPacket: NmsChunkStream;
  inPackets: Map<number, NmsChunkStream>;
  packetParse(): void;
  packetAlloc(): void;
  packetHandler(): void;
}

export type NmsRtmp = RtmpProtocol & RtmpInternals;

export interface NmsLogger {
  level: string;
  log(message: string, level?: string): void;
}

const Rtmp = require("node-media-server/src/protocol/rtmp.js") as { new (): NmsRtmp; prototype: NmsRtmp };
const Flv = require("node-media-server/src/protocol/flv.js") as {
  createHeader(hasAudio: boolean, hasVideo: boolean): Buffer;
  createMessage(packet: AVPacket): Buffer;
};
const amf = require("node-media-server/src/protocol/amf.js") as {
  decodeAmf0Data(data: Buffer): { cmd?: string; dataObj?: Record<string, unknown> | null };
};
const sps = require("node-media-server/src/protocol/sps_info.js") as {
  parseH264Sps(nal: Buffer): { width: number; height: number } | null;
};
export const nmsLogger = require("node-media-server/src/core/logger.js") as NmsLogger;

export function createRtmpProtocol(): NmsRtmp {
  const rtmp = new Rtmp();
  // its constructor makes an FLV parser, with a 1 MiB buffer, that the RTMP parser never uses
  (rtmp as NmsRtmp & { flv: unknown }).flv = null;
  return rtmp;
}

/** The parser's own (unhooked) steps, for a hook to call. */
export const rtmpSteps: Pick<NmsRtmp, "parserData" | "packetParse" | "packetAlloc" | "packetHandler"> = Rtmp.prototype;
// the bounds depend on these steps: another version of the package without them must not start unbounded
for (const step of ["parserData", "packetParse", "packetAlloc", "packetHandler"] as const) {
  if (typeof rtmpSteps[step] !== "function") throw new Error(`node-media-server's RTMP parser has no ${step}: baton needs 4.4.3 (package.json pins it)`);
}

export const flvHeader = (hasAudio: boolean, hasVideo: boolean): Buffer => Flv.createHeader(hasAudio, hasVideo);
export const flvTag = (packet: AVPacket): Buffer => Flv.createMessage(packet);

/** The onMetaData object of a script packet, if it is one. */
export function metadataOf(packet: AVPacket): Record<string, unknown> | null {
  try {
    const decoded = amf.decodeAmf0Data(packet.data);
    return decoded.dataObj && (decoded.cmd === "@setDataFrame" || decoded.cmd === "onMetaData") ? decoded.dataObj : null;
  } catch {
    return null;
  }
}

/**
 * The RFC 6381 codecs string (`avc1.PPCCLL`: profile_idc, constraint flags, level_idc) of an AVC sequence
 * header packet, from its AVCDecoderConfigurationRecord; null for another codec or a malformed record.
 */
export function avcCodecs(packet: AVPacket): string | null {
  const d = packet.data;
  // [frame/codec][AVCPacketType 0][cts x3][configurationVersion 1][profile][compatibility][level]...
  if (d.length < 9 || (d[0]! & 0x0f) !== 7 || d[1] !== 0 || d[5] !== 1) return null;
  return `avc1.${d.subarray(6, 9).toString("hex")}`;
}

/** What an AAC sequence header packet's AudioSpecificConfig says; null for another codec or a short record. */
export function aacConfig(packet: AVPacket): { objectType: number; sampleRate: number; channels: number } | null {
  const d = packet.data;
  // FLV audio tag: [format/rate/size/type][AACPacketType 0], then the AudioSpecificConfig (ISO 14496-3 1.6.2.1)
  if (d.length < 4 || d[0]! >> 4 !== 10 || d[1] !== 0) return null;
  const objectType = d[2]! >> 3;
  const rateIndex = ((d[2]! & 0x07) << 1) | (d[3]! >> 7);
  const rates = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
  return { objectType, sampleRate: rates[rateIndex] ?? 0, channels: (d[3]! >> 3) & 0x0f };
}

/** Picture size from an AVC sequence header packet (its first SPS), or null. */
export function avcDimensions(packet: AVPacket): { width: number; height: number } | null {
  const d = packet.data;
  // FLV video tag: [frame/codec][AVCPacketType][cts x3], then the AVCDecoderConfigurationRecord
  if (d.length < 14 || (d[0]! & 0x0f) !== 7 || d[1] !== 0 || (d[10]! & 0x1f) < 1) return null;
  const length = d.readUInt16BE(11);
  if (13 + length > d.length) return null;
  return sps.parseH264Sps(d.subarray(13, 13 + length));
}
