// The chaos timeline chart, read back with a PNG decoder written here (independent of tools/chaos/png.ts):
// the file must be a valid PNG, and the pixels must say what the chart claims to draw, where it claims.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { inflateSync } from "node:zlib";
import { Raster, type Rgba } from "../../tools/chaos/png.ts";
import { chartGeometry, renderTimeline, EVENT_COLORS, NODE_COLORS, STALL_COLORS, ERROR_COLOR, type ChaosTimeline } from "../../tools/chaos/timeline-chart.ts";

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const WHITE: Rgba = [255, 255, 255, 255];

// bit by bit rather than with a table, so a wrong table in the encoder cannot agree with itself
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

interface Decoded {
  width: number;
  height: number;
  chunks: string[];
  at(x: number, y: number): Rgba;
}

function decode(png: Buffer): Decoded {
  assert.deepEqual([...png.subarray(0, 8)], SIGNATURE, "PNG signature");
  const chunks: string[] = [];
  const idat: Buffer[] = [];
  let width = 0;
  let height = 0;
  for (let off = 8; off < png.length; ) {
    const len = png.readUInt32BE(off);
    const type = png.toString("ascii", off + 4, off + 8);
    const data = png.subarray(off + 8, off + 8 + len);
    assert.equal(png.readUInt32BE(off + 8 + len), crc32(png.subarray(off + 4, off + 8 + len)), `CRC of ${type}`);
    chunks.push(type);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert.deepEqual([...data.subarray(8)], [8, 6, 0, 0, 0], "8-bit RGBA, no interlace");
    } else if (type === "IDAT") idat.push(data);
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  assert.equal(raw.length, height * (1 + 4 * width), "inflated IDAT size");
  for (let y = 0; y < height; y++) assert.equal(raw[y * (1 + 4 * width)], 0, `filter byte of row ${y}`);
  return {
    width, height, chunks,
    at(x, y) {
      const i = y * (1 + 4 * width) + 1 + x * 4;
      return [raw[i] ?? -1, raw[i + 1] ?? -1, raw[i + 2] ?? -1, raw[i + 3] ?? -1];
    },
  };
}

function same(a: Rgba, b: Rgba): boolean {
  return a.every((v, i) => v === b[i]);
}

/** Whether the color occurs within a small box around (x, y). */
function near(img: Decoded, x: number, y: number, color: Rgba, radius = 5): boolean {
  for (let dy = -radius; dy <= radius; dy++) for (let dx = -radius; dx <= radius; dx++) if (same(img.at(x + dx, y + dy), color)) return true;
  return false;
}

const T0 = Date.UTC(2024, 4, 1, 12, 0, 0);
const s = (sec: number) => T0 + sec * 1000;

/** A rolling update with a drain, a kill and a Redis outage, as a chaos run would record it. */
function realisticRun(): ChaosTimeline {
  const playlist = ["node-1", "node-2", "node-3"].map((node, i) => {
    const samples: { at: number; lastSeq: number }[] = [];
    // each node is polled every second (offset per node) and lists one new segment every 2 s
    for (let at = 0.3 * i; at <= 75; at += 1) if (node !== "node-3" || at < 40) samples.push({ at: s(at), lastSeq: 100 + Math.floor(at / 2) });
    return { node, samples };
  });
  return {
    scenario: "rolling-update",
    startedAt: T0,
    endedAt: s(75),
    events: [
      { at: s(0), kind: "phase", label: "warmup" },
      { at: s(8), kind: "phase", label: "rolling update" },
      { at: s(10), kind: "drain", label: "drain node-1" },
      { at: s(12), kind: "drained", label: "node-1 drained" },
      { at: s(20), kind: "undrain", label: "undrain node-1" },
      { at: s(40), kind: "kill", label: "kill node-3" },
      { at: s(50), kind: "redis-stop", label: "redis stop" },
      { at: s(55), kind: "redis-start", label: "redis start" },
      { at: s(64), kind: "publisher-drop", label: "publisher drop" },
      { at: s(66), kind: "publisher-connect", label: "publisher back" },
    ],
    stalls: [
      { at: s(40.5), durationMs: 1800, source: "simulated" },
      { at: s(51), durationMs: 900, source: "simulated" },
      { at: s(64.5), durationMs: 2600, source: "simulated" },
      { at: s(41), durationMs: 1200, source: "browser" },
    ],
    errors: [
      { at: s(40.2), status: 502, source: "simulated" },
      { at: s(40.6), status: 502, source: "simulated" },
      { at: s(52), status: 503, source: "simulated" },
      { at: s(41), status: 0, source: "browser" },
    ],
    playlist,
  };
}

describe("timeline chart", () => {
  it("encodes a raster as a valid PNG", () => {
    const r = new Raster(7, 3, [10, 20, 30, 255]);
    r.pixel(6, 2, [200, 100, 50, 255]);
    const img = decode(r.toPng());
    assert.deepEqual(img.chunks, ["IHDR", "IDAT", "IEND"]);
    assert.deepEqual([img.width, img.height], [7, 3]);
    assert.deepEqual(img.at(0, 0), [10, 20, 30, 255]);
    assert.deepEqual(img.at(6, 2), [200, 100, 50, 255]);
  });

  it("draws lines, rectangles and text where asked", () => {
    const r = new Raster(40, 20);
    const red: Rgba = [255, 0, 0, 255];
    r.line(0, 0, 39, 19, red);
    r.rect(30, 2, 4, 3, red);
    assert.equal(r.text(2, 10, "a1", red), 12);
    assert.deepEqual(r.get(39, 19), red);
    assert.deepEqual(r.get(20, 10), red);
    assert.deepEqual(r.get(33, 4), red);
    assert.deepEqual(r.get(34, 4), WHITE);
    assert.deepEqual(r.get(4, 10), red, "top of the A");
    assert.deepEqual(r.get(2, 10), WHITE, "A's top-left corner is round");
  });

  it("renders the asked size with node lines, events, stalls and errors where the geometry puts them", () => {
    const t = realisticRun();
    const png = renderTimeline(t, { width: 1200, height: 500 });
    const img = decode(png);
    assert.deepEqual([img.width, img.height], [1200, 500]);
    const g = chartGeometry(t, { width: 1200, height: 500 });
    assert.ok(Math.abs(g.x(s(37.5)) - (g.plot.left + g.plot.right) / 2) <= 1, "time axis is linear over the run");

    // node-1 lists seq 110 from 20 s to 22 s: its line runs there, give or take the per-node offset
    assert.ok(near(img, g.x(s(21)), g.y(110), NODE_COLORS[0] ?? WHITE), "node-1's line");
    // node-3 was killed at 40 s: nothing of its color on the right half of the plot
    const y3 = g.y(130);
    assert.ok(!near(img, g.x(s(60)), y3, NODE_COLORS[2] ?? WHITE, 8), "node-3 stops at its kill");

    // the kill's red line at 40 s, in the plot's upper part (above the playlist lines)
    const yMid = Math.round((g.plot.top + g.y(120)) / 2);
    assert.deepEqual(img.at(g.x(s(40)), yMid), EVENT_COLORS.kill);
    assert.deepEqual(img.at(g.x(s(10)), yMid), EVENT_COLORS.drain);
    assert.notDeepEqual(img.at(g.x(s(40)) + 3, yMid), EVENT_COLORS.kill, "a thin line, not a band");

    const [sim, browser, errors] = g.stripRows;
    assert.deepEqual(img.at(g.x(s(65.5)), sim), STALL_COLORS.simulated);
    assert.deepEqual(img.at(g.x(s(41.5)), browser), STALL_COLORS.browser);
    assert.deepEqual(img.at(g.x(s(52)), errors), ERROR_COLOR);

    // background: the image's corner, and inside the plot above the lines between two gridlines
    assert.deepEqual(img.at(img.width - 1, img.height - 1), WHITE);
    const gx = Math.round((g.x(s(g.xTicks[0] ?? 0)) + g.x(s(g.xTicks[1] ?? 1))) / 2);
    assert.deepEqual(img.at(gx, g.plot.top + 5), WHITE);

    if (process.env.TIMELINE_SAMPLE) writeFileSync(process.env.TIMELINE_SAMPLE, renderTimeline(t));
  });

  it("clamps events outside the run to the plot's edges", () => {
    const t = realisticRun();
    t.events = [{ at: s(-30), kind: "kill", label: "early" }, { at: s(500), kind: "restart", label: "late" }];
    const g = chartGeometry(t);
    const img = decode(renderTimeline(t));
    const y = g.plot.top + 20;
    assert.deepEqual(img.at(g.plot.left, y), EVENT_COLORS.kill);
    assert.deepEqual(img.at(g.plot.right, y), EVENT_COLORS.restart);
  });

  it("renders empty, zero-length and degenerate runs", () => {
    const empty: ChaosTimeline = { scenario: "", startedAt: T0, endedAt: T0, events: [], stalls: [], errors: [], playlist: [] };
    const cases: [ChaosTimeline, { width?: number; height?: number }][] = [
      [empty, {}],
      [empty, { width: 40, height: 30 }],
      [{ ...empty, endedAt: T0 - 5000, playlist: [{ node: "a", samples: [] }, { node: "b", samples: [{ at: T0, lastSeq: 7 }] }] }, {}],
      [{ ...empty, stalls: [{ at: T0 - 10, durationMs: 10_000, source: "browser" }], errors: [{ at: T0 + 99_999, status: 500, source: "simulated" }] }, { width: 300, height: 200 }],
    ];
    for (const [t, size] of cases) {
      const img = decode(renderTimeline(t, size));
      assert.deepEqual([img.width, img.height], [size.width ?? 1400, size.height ?? 600]);
    }
  });

  it("draws thousands of samples quickly", () => {
    const samples = Array.from({ length: 20_000 }, (_, i) => ({ at: T0 + i * 100, lastSeq: Math.floor(i / 20) }));
    const t: ChaosTimeline = { scenario: "soak", startedAt: T0, endedAt: T0 + 2_000_000, events: [], stalls: [], errors: [], playlist: ["a", "b", "c", "d"].map((node) => ({ node, samples })) };
    const started = Date.now();
    decode(renderTimeline(t));
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  });
});
