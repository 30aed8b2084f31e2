// Moves an MPEG-TS segment in time: every PES packet's PTS and DTS and every PCR shifted by one offset (90 kHz
// ticks, modulo 2^33 as the fields wrap). A slate is encoded once, and each slate segment of a gap is that
// encoding moved to where the gap's media time has reached, so a run of slate segments plays as one
// continuous stream. Continuity counters go on from one copy to the next, so demuxers that check them see no
// packet lost.
//
// The layout (ISO/IEC 13818-1): 188-byte packets, sync byte 0x47; a 4-byte header (PID, payload_unit_start,
// adaptation_field_control, continuity_counter); an adaptation field whose flags byte says whether a 6-byte PCR
// follows (33-bit base, 6 reserved bits, 9-bit extension); a payload which, at a unit start of an audio or video
// PID, begins a PES header (00 00 01, stream id, length, flags, PTS and DTS in 5 bytes each, marker bits set).
import { BatonError } from "../core/errors.ts";

export const TS_PACKET = 188;
const SYNC = 0x47;
const WRAP = 2 ** 33;

/** A retimer for one segment template: remembers each PID's continuity counter across the copies it makes. */
export class TsRetimer {
  private readonly counters = new Map<number, number>();

  /** A copy of `segment` with every timestamp moved by `offset` ticks (90 kHz), continuity counters continued. */
  shift(segment: Buffer, offset: number): Buffer {
    if (segment.length % TS_PACKET !== 0) throw new BatonError("BAD_TS", `an MPEG-TS segment is whole packets; this one is ${segment.length} bytes`);
    const out = Buffer.from(segment);
    for (let at = 0; at < out.length; at += TS_PACKET) this.packet(out, at, offset);
    return out;
  }

  private packet(b: Buffer, at: number, offset: number): void {
    if (b[at] !== SYNC) throw new BatonError("BAD_TS", `no sync byte at ${at}`);
    const pid = ((b[at + 1]! & 0x1f) << 8) | b[at + 2]!;
    const unitStart = (b[at + 1]! & 0x40) !== 0;
    const control = (b[at + 3]! >> 4) & 0x3;
    const hasPayload = (control & 0x1) !== 0;
    if (pid !== 0x1fff && hasPayload) {
      // the counter goes up with each packet that carries a payload
      const next = ((this.counters.get(pid) ?? -1) + 1) & 0xf;
      this.counters.set(pid, next);
      b[at + 3] = (b[at + 3]! & 0xf0) | next;
    }
    let payload = at + 4;
    if (control & 0x2) {
      const length = b[at + 4]!;
      if (length > 0 && b[at + 5]! & 0x10 && length >= 7) writePcr(b, at + 6, (readPcr(b, at + 6) + offset) % WRAP);
      payload = at + 5 + length;
    }
    if (!unitStart || !hasPayload || payload + 14 > at + TS_PACKET) return;
    if (b[payload] !== 0 || b[payload + 1] !== 0 || b[payload + 2] !== 1) return;
    const streamId = b[payload + 3]!;
    // audio (0xc0-0xdf) and video (0xe0-0xef) PES carry the optional header with timestamps
    if (streamId < 0xc0 || streamId > 0xef) return;
    const flags = b[payload + 7]! >> 6;
    if (flags & 0x2) writeTimestamp(b, payload + 9, (readTimestamp(b, payload + 9) + offset) % WRAP);
    if (flags === 0x3) writeTimestamp(b, payload + 14, (readTimestamp(b, payload + 14) + offset) % WRAP);
  }
}

/** A PES timestamp: 33 bits in five bytes around marker bits. */
export function readTimestamp(b: Buffer, at: number): number {
  return (((b[at]! >> 1) & 0x07) * 2 ** 30) + (b[at + 1]! << 22) + ((b[at + 2]! >> 1) << 15) + (b[at + 3]! << 7) + (b[at + 4]! >> 1);
}

function writeTimestamp(b: Buffer, at: number, value: number): void {
  const high = Math.floor(value / 2 ** 30) & 0x07;
  const low = value % 2 ** 30;
  // keep the 4-bit prefix ('0010' PTS only, '0011'/'0001' with DTS) and the marker bits
  b[at] = (b[at]! & 0xf0) | (high << 1) | 0x01;
  b[at + 1] = (low >> 22) & 0xff;
  b[at + 2] = (((low >> 15) & 0x7f) << 1) | 0x01;
  b[at + 3] = (low >> 7) & 0xff;
  b[at + 4] = ((low & 0x7f) << 1) | 0x01;
}

/** A PCR's 33-bit base (90 kHz); its 9-bit extension is left as it is. */
export function readPcr(b: Buffer, at: number): number {
  return b[at]! * 2 ** 25 + (b[at + 1]! << 17) + (b[at + 2]! << 9) + (b[at + 3]! << 1) + (b[at + 4]! >> 7);
}

function writePcr(b: Buffer, at: number, base: number): void {
  // 33 bits do not fit JavaScript's 32-bit shifts: divide instead
  b[at] = Math.floor(base / 2 ** 25) & 0xff;
  b[at + 1] = Math.floor(base / 2 ** 17) & 0xff;
  b[at + 2] = Math.floor(base / 2 ** 9) & 0xff;
  b[at + 3] = Math.floor(base / 2) & 0xff;
  b[at + 4] = ((base % 2) << 7) | (b[at + 4]! & 0x7f);
}
