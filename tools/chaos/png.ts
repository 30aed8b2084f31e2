// A tiny RGBA raster and PNG encoder for the chaos harness's charts. It exists so that a run can leave a
// picture behind without pulling a canvas or image library (and its native build) into the server's
// dependencies: node:zlib provides deflate, everything else (CRC, chunks, a bitmap font) is here.
import { deflateSync } from "node:zlib";

/** Red, green, blue, alpha; 0-255 each. */
export type Rgba = readonly [number, number, number, number];

export const WHITE: Rgba = [255, 255, 255, 255];

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (ISO 3309, as PNG chunks use it). */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = (CRC_TABLE[(c ^ (bytes[i] ?? 0)) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "ascii");
  out.set(data, 8);
  // the CRC covers the type and the data, not the length
  out.writeUInt32BE(crc32(out, 4, 8 + data.length), 8 + data.length);
  return out;
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Encodes width*height RGBA pixels (row-major, 4 bytes each) as an 8-bit RGBA, non-interlaced PNG. */
export function encodePng(width: number, height: number, rgba: Uint8Array): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 6, 0, 0, 0], 8); // bit depth 8, color type 6 (RGBA), deflate, adaptive filtering, no interlace
  const stride = width * 4;
  const raw = Buffer.alloc(height * (stride + 1));
  // filter type 0 (None) on every row: charts are mostly flat color, which deflate handles well unfiltered
  for (let y = 0; y < height; y++) raw.set(rgba.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  return Buffer.concat([SIGNATURE, chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}

// 5x7 glyphs, one hex byte per row, the glyph's leftmost column in bit 4 (the classic HD44780 shapes).
const GLYPHS: Record<string, string> = {
  "0": "0e11131519110e", "1": "040c040404040e", "2": "0e11010204081f", "3": "1f02040201110e",
  "4": "02060a121f0202", "5": "1f101e0101110e", "6": "0608101e11110e", "7": "1f010204080808",
  "8": "0e11110e11110e", "9": "0e11110f01020c",
  A: "0e1111111f1111", B: "1e11111e11111e", C: "0e11101010110e", D: "1c12111111121c", E: "1f10101e10101f",
  F: "1f10101e101010", G: "0e11101711110f", H: "1111111f111111", I: "0e04040404040e", J: "0702020202120c",
  K: "11121418141211", L: "1010101010101f", M: "111b1515111111", N: "11111915131111", O: "0e11111111110e",
  P: "1e11111e101010", Q: "0e11111115120d", R: "1e11111e141211", S: "0f10100e01011e", T: "1f040404040404",
  U: "1111111111110e", V: "11111111110a04", W: "1111111515150a", X: "11110a040a1111", Y: "1111110a040404",
  Z: "1f01020408101f", " ": "00000000000000", ".": "00000000000c0c", ":": "000c0c000c0c00",
  "-": "0000001f000000", _: "0000000000001f", "/": "00010204081000", "%": "18190204081303",
  "(": "02040808080402", ")": "08040202020408", "+": "0004041f040400", "=": "00001f001f0000",
  ",": "000000000c0408", "#": "0a0a1f0a1f0a0a",
};

// Anything outside the font draws as a hollow box, so a missing glyph is visible rather than silently dropped.
const UNKNOWN = "1f11111111111f";

const FONT = new Map<string, number[]>(
  [...Object.entries(GLYPHS), ["\0", UNKNOWN] as const].map(([ch, hex]) => [
    ch,
    Array.from({ length: 7 }, (_, i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)),
  ]),
);

/** Horizontal advance of one glyph (5 columns and a column of spacing) at scale 1. */
export const GLYPH_ADVANCE = 6;
export const GLYPH_HEIGHT = 7;

export class Raster {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;

  constructor(width: number, height: number, background: Rgba = WHITE) {
    this.width = Math.max(1, Math.floor(width));
    this.height = Math.max(1, Math.floor(height));
    this.data = new Uint8Array(this.width * this.height * 4);
    for (let i = 0; i < this.data.length; i += 4) this.data.set(background, i);
  }

  /** Sets one pixel, blending over what is there when the color is translucent; off-raster is ignored. */
  pixel(x: number, y: number, [r, g, b, a]: Rgba): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height || a <= 0) return;
    const i = (y * this.width + x) * 4;
    const d = this.data;
    if (a >= 255) {
      d[i] = r;
      d[i + 1] = g;
      d[i + 2] = b;
      d[i + 3] = 255;
      return;
    }
    const f = a / 255;
    d[i] = Math.round(r * f + (d[i] ?? 0) * (1 - f));
    d[i + 1] = Math.round(g * f + (d[i + 1] ?? 0) * (1 - f));
    d[i + 2] = Math.round(b * f + (d[i + 2] ?? 0) * (1 - f));
    d[i + 3] = Math.round(a + (d[i + 3] ?? 0) * (1 - f));
  }

  get(x: number, y: number): Rgba {
    const i = (Math.round(y) * this.width + Math.round(x)) * 4;
    const d = this.data;
    return [d[i] ?? 0, d[i + 1] ?? 0, d[i + 2] ?? 0, d[i + 3] ?? 0];
  }

  /** A filled rectangle, clipped to the raster. */
  rect(x: number, y: number, w: number, h: number, color: Rgba): void {
    const x0 = Math.max(0, Math.round(x));
    const y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.width, Math.round(x + w));
    const y1 = Math.min(this.height, Math.round(y + h));
    for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) this.pixel(xx, yy, color);
  }

  /** Bresenham's line; with a thickness, each point becomes a square centered on the line. */
  line(x0: number, y0: number, x1: number, y1: number, color: Rgba, thickness = 1): void {
    x0 = Math.round(x0);
    y0 = Math.round(y0);
    x1 = Math.round(x1);
    y1 = Math.round(y1);
    const t = Math.max(1, Math.round(thickness));
    const o = Math.floor((t - 1) / 2);
    // axis-aligned lines are most of a chart (gridlines, step lines, event markers): one rect, no stepping
    if (x0 === x1 || y0 === y1) {
      this.rect(Math.min(x0, x1) - o, Math.min(y0, y1) - o, Math.abs(x1 - x0) + t, Math.abs(y1 - y0) + t, color);
      return;
    }
    const dx = Math.abs(x1 - x0);
    const dy = -Math.abs(y1 - y0);
    const sx = x0 < x1 ? 1 : -1;
    const sy = y0 < y1 ? 1 : -1;
    let err = dx + dy;
    for (;;) {
      if (t === 1) this.pixel(x0, y0, color);
      else this.rect(x0 - o, y0 - o, t, t, color);
      if (x0 === x1 && y0 === y1) break;
      const e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }

  /** Writes text with the 5x7 font (lowercase drawn as uppercase); returns the width it took. */
  text(x: number, y: number, s: string, color: Rgba, scale = 1): number {
    const k = Math.max(1, Math.round(scale));
    let cx = Math.round(x);
    for (const ch of s.toUpperCase()) {
      const rows = FONT.get(ch) ?? FONT.get("\0") ?? [];
      rows.forEach((bits, row) => {
        for (let col = 0; col < 5; col++) {
          if (bits & (0x10 >> col)) this.rect(cx + col * k, Math.round(y) + row * k, k, k, color);
        }
      });
      cx += GLYPH_ADVANCE * k;
    }
    return cx - Math.round(x);
  }

  static textWidth(s: string, scale = 1): number {
    return [...s].length * GLYPH_ADVANCE * Math.max(1, Math.round(scale));
  }

  toPng(): Buffer {
    return encodePng(this.width, this.height, this.data);
  }
}
