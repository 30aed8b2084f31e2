// Draws a chaos run's timeline as a PNG, so that an operator can see at a glance whether a rolling update,
// a kill or a Redis outage hurt anyone: events as vertical lines across playlist growth per node, and the
// viewers' stalls and errors underneath on the same time axis.
import { Raster, GLYPH_ADVANCE, type Rgba } from "./png.ts";

export type TimelineEventKind = "drain" | "drained" | "undrain" | "kill" | "restart" | "redis-stop" | "redis-start" | "publisher-drop" | "publisher-connect" | "phase";

export interface ChaosTimeline {
  scenario: string;
  startedAt: number; // ms since the epoch
  endedAt: number;
  events: { at: number; kind: TimelineEventKind; label: string }[];
  stalls: { at: number; durationMs: number; source: "simulated" | "browser" }[];
  errors: { at: number; status: number; source: "simulated" | "browser" }[];
  /** The highest sequence number each node listed, sampled over time (playlist growth per node). */
  playlist: { node: string; samples: { at: number; lastSeq: number }[] }[];
}

export const EVENT_COLORS: Record<TimelineEventKind, Rgba> = {
  drain: [40, 110, 230, 255], drained: [20, 45, 140, 255], undrain: [110, 180, 245, 255],
  kill: [220, 30, 30, 255], restart: [30, 160, 60, 255],
  "redis-stop": [125, 40, 170, 255], "redis-start": [185, 120, 220, 255],
  "publisher-drop": [235, 115, 0, 255], "publisher-connect": [250, 175, 70, 255],
  phase: [140, 140, 140, 255],
};

// Node colors stay clear of the event hues above, so a line is never mistaken for a marker.
export const NODE_COLORS: Rgba[] = [
  [0, 150, 136, 255], [214, 39, 160, 255], [140, 86, 60, 255], [120, 130, 0, 255],
  [70, 70, 70, 255], [0, 170, 210, 255], [255, 120, 170, 255], [100, 60, 160, 255],
];

export const STALL_COLORS: Record<"simulated" | "browser", Rgba> = { simulated: [245, 170, 20, 255], browser: [180, 120, 10, 255] };
export const ERROR_COLOR: Rgba = [220, 30, 30, 255];
const INK: Rgba = [30, 30, 30, 255];
const MUTED: Rgba = [110, 110, 110, 255];
const GRID: Rgba = [232, 232, 232, 255];
const ROW_SHADE: Rgba = [246, 246, 246, 255];

const LABEL_ROWS = 4;
const LABEL_ROW_HEIGHT = 10;
const STRIP_ROW_HEIGHT = 16;

export interface ChartGeometry {
  width: number;
  height: number;
  plot: { left: number; top: number; right: number; bottom: number };
  /** Vertical centers of the viewer strip's rows: simulated stalls, browser stalls, errors. */
  stripRows: [number, number, number];
  xTicks: number[]; // seconds from the start
  yTicks: number[]; // sequence numbers
  x(at: number): number;
  y(seq: number): number;
}

function niceStep(range: number, target: number): number {
  const raw = range / Math.max(1, target);
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

function seqRange(t: ChaosTimeline): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const n of t.playlist) for (const s of n.samples) if (Number.isFinite(s.lastSeq)) [lo, hi] = [Math.min(lo, s.lastSeq), Math.max(hi, s.lastSeq)];
  return lo <= hi ? [lo, hi] : [0, 10];
}

/** Where things go; exported so tests can look for a line where the chart says it drew it. */
export function chartGeometry(t: ChaosTimeline, options: { width?: number; height?: number } = {}): ChartGeometry {
  const width = Math.max(1, Math.floor(options.width ?? 1400));
  const height = Math.max(1, Math.floor(options.height ?? 600));
  const left = 96;
  const right = Math.max(left + 10, width - Math.min(200, Math.floor(width * 0.2)));
  const top = 34 + LABEL_ROWS * LABEL_ROW_HEIGHT + 4;
  const stripTop = height - 24 - 3 * STRIP_ROW_HEIGHT;
  const bottom = Math.max(top + 10, stripTop - 34);
  // a zero or negative span would divide by zero: give such a run one second of axis
  const span = Math.max(1000, t.endedAt - t.startedAt);
  const xStep = niceStep(span / 1000, (right - left) / 90);
  const xTicks: number[] = [];
  for (let k = 0; k * xStep <= span / 1000 + 1e-9; k++) xTicks.push(k * xStep);
  const [lo, hi] = seqRange(t);
  const yStep = Math.max(1, Math.round(niceStep(Math.max(1, hi - lo), (bottom - top) / 50)));
  // a little headroom so the lowest and highest lines do not sit on the axis or the plot's top edge; not
  // rounded out to whole ticks, which on a long run would leave a band as tall as a tick step empty
  const pad = Math.max(0.5, (hi - lo) * 0.04);
  const yMin = Math.max(lo >= 0 ? 0 : -Infinity, lo - pad);
  const yMax = Math.max(yMin + 1, hi + pad);
  const yTicks: number[] = [];
  for (let v = Math.ceil(yMin / yStep) * yStep; v <= yMax; v += yStep) yTicks.push(v);
  const clamp = (v: number, a: number, b: number) => Math.min(b, Math.max(a, v));
  return {
    width, height, xTicks, yTicks,
    plot: { left, top, right, bottom },
    stripRows: [0, 1, 2].map((i) => stripTop + i * STRIP_ROW_HEIGHT + STRIP_ROW_HEIGHT / 2) as [number, number, number],
    x: (at) => Math.round(clamp(left + ((at - t.startedAt) / span) * (right - left), left, right)),
    y: (seq) => Math.round(clamp(bottom - ((seq - yMin) / (yMax - yMin)) * (bottom - top), top, bottom)),
  };
}

function fit(s: string, maxPx: number): string {
  const max = Math.max(0, Math.floor(maxPx / GLYPH_ADVANCE));
  return s.length <= max ? s : s.slice(0, Math.max(0, max - 1)) + "_";
}

function drawAxes(r: Raster, g: ChartGeometry, t: ChaosTimeline): void {
  const { left, top, right, bottom } = g.plot;
  const decimals = Math.max(0, -Math.floor(Math.log10((g.xTicks[1] ?? 1) - (g.xTicks[0] ?? 0))));
  for (const s of g.xTicks) {
    const x = g.x(t.startedAt + s * 1000);
    r.line(x, top, x, bottom, GRID);
    r.line(x, bottom, x, bottom + 4, INK);
    const label = s.toFixed(decimals);
    r.text(x - Raster.textWidth(label) / 2, bottom + 8, label, INK);
  }
  for (const v of g.yTicks) {
    const y = g.y(v);
    r.line(left, y, right, y, GRID);
    r.line(left - 4, y, left, y, INK);
    r.text(left - 7 - Raster.textWidth(String(v)), y - 3, String(v), INK);
  }
  r.line(left, top, left, bottom, INK);
  r.line(left, bottom, right, bottom, INK);
  r.text(left - 7 - Raster.textWidth("LAST SEQ"), top - 14, "LAST SEQ", MUTED);
  r.text((left + right - Raster.textWidth("SECONDS SINCE START")) / 2, bottom + 20, "SECONDS SINCE START", MUTED);
}

/** Draws the event markers; returns how many labels had no room (their lines are still drawn). */
function drawEvents(r: Raster, g: ChartGeometry, t: ChaosTimeline): number {
  const { top, bottom } = g.plot;
  const stripTop = g.stripRows[0] - STRIP_ROW_HEIGHT / 2;
  const stripBottom = g.stripRows[2] + STRIP_ROW_HEIGHT / 2;
  const rowEnd: number[] = new Array<number>(LABEL_ROWS).fill(-Infinity);
  const events = t.events.filter((e) => Number.isFinite(e.at)).sort((a, b) => a.at - b.at);
  const labels: { x: number; y: number; text: string; c: Rgba }[] = [];
  for (const e of events) {
    const x = g.x(e.at);
    const c = EVENT_COLORS[e.kind] ?? MUTED;
    r.line(x, top, x, bottom, c);
    r.line(x, stripTop, x, stripBottom, [c[0], c[1], c[2], 90]);
    // labels go in the first row (nearest the plot) where they clear the previous label, so bursts of events
    // (drain, drained a second later) stay readable; with every row taken the label is left out, since
    // overprinted text helps nobody and the line's color still tells the kind
    const label = fit((e.label || e.kind).trim(), 180);
    const w = Raster.textWidth(label);
    const lx = x + 3 + w <= g.width - 2 ? x + 3 : Math.max(2, x - 3 - w);
    const row = rowEnd.findIndex((end) => end + 6 <= lx);
    if (row < 0) continue;
    rowEnd[row] = lx + w;
    const ly = top - 4 - (row + 1) * LABEL_ROW_HEIGHT;
    for (let y = ly + 4; y < top; y += 2) r.pixel(x, y, c);
    labels.push({ x: lx, y: ly, text: label, c });
  }
  // labels last, on white, so that a higher label's connector never runs through a lower label's text
  for (const l of labels) {
    r.rect(l.x - 2, l.y - 2, Raster.textWidth(l.text) + 3, 11, [255, 255, 255, 255]);
    r.text(l.x, l.y, l.text, l.c);
  }
  return events.length - labels.length;
}

// The sampling gap beyond which a node is taken to have stopped listing (killed, partitioned) rather than to
// have listed the same sequence throughout: several typical intervals.
function breakGap(samples: { at: number }[]): number {
  const gaps = samples.slice(1).map((s, i) => s.at - (samples[i]?.at ?? s.at)).sort((a, b) => a - b);
  const median = gaps[Math.floor(gaps.length / 2)];
  return median === undefined ? Infinity : Math.max(4 * median, 1);
}

function drawNodes(r: Raster, g: ChartGeometry, t: ChaosTimeline): void {
  const n = t.playlist.length;
  // nodes that serve one cluster timeline list the same sequence numbers; offsetting each node's line by a
  // few pixels keeps every node visible instead of the last one drawn hiding the others
  const spread = n > 1 ? Math.min(3, 12 / (n - 1)) : 0;
  const span = Math.max(1000, t.endedAt - t.startedAt);
  t.playlist.forEach((node, i) => {
    const c = NODE_COLORS[i % NODE_COLORS.length] ?? INK;
    const off = Math.round((i - (n - 1) / 2) * spread);
    const samples = node.samples.filter((s) => Number.isFinite(s.at) && Number.isFinite(s.lastSeq)).sort((a, b) => a.at - b.at);
    const gap = breakGap(samples);
    let prev: { x: number; y: number; at: number } | null = null;
    let joined = false;
    for (const s of samples) {
      const x = g.x(s.at);
      const y = g.y(s.lastSeq) + off;
      if (prev && s.at - prev.at <= gap) {
        // thousands of samples land on a few hundred pixels: only draw when the point moved
        if (x !== prev.x || y !== prev.y) {
          r.line(prev.x, prev.y, x, prev.y, c, 2);
          r.line(x, prev.y, x, y, c, 2);
        }
        joined = true;
      } else {
        if (prev) r.rect(prev.x - 3, prev.y - 3, 7, 7, c);
        joined = false;
      }
      prev = { x, y, at: s.at };
    }
    // a square marks where a node's line stops (before a gap, early, or a lone sample): the node went away
    if (prev && (!joined || prev.at < t.startedAt + span * 0.97)) r.rect(prev.x - 3, prev.y - 3, 7, 7, c);
  });
  const msg = "NO PLAYLIST SAMPLES";
  if (!t.playlist.some((p) => p.samples.length > 0)) r.text((g.plot.left + g.plot.right - Raster.textWidth(msg)) / 2, (g.plot.top + g.plot.bottom) / 2, msg, MUTED);
}

function cross(r: Raster, x: number, y: number, c: Rgba): void {
  r.line(x - 3, y - 3, x + 3, y + 3, c);
  r.line(x - 3, y + 3, x + 3, y - 3, c);
}

function drawStrip(r: Raster, g: ChartGeometry, t: ChaosTimeline): void {
  const { left, right } = g.plot;
  const names = ["STALL SIM", "STALL BROWSER", `ERRORS ${t.errors.length}`];
  g.stripRows.forEach((cy, i) => {
    r.rect(left, cy - STRIP_ROW_HEIGHT / 2 + 1, right - left, STRIP_ROW_HEIGHT - 2, ROW_SHADE);
    const name = names[i] ?? "";
    r.text(left - 7 - Raster.textWidth(name), cy - 3, name, i === 2 && t.errors.length > 0 ? ERROR_COLOR : INK);
  });
  for (const s of t.stalls) {
    if (!Number.isFinite(s.at)) continue;
    const x0 = g.x(s.at);
    const x1 = g.x(s.at + Math.max(0, s.durationMs || 0));
    const cy = g.stripRows[s.source === "browser" ? 1 : 0];
    r.rect(x0, cy - 4, Math.max(2, x1 - x0), 9, STALL_COLORS[s.source] ?? MUTED);
  }
  const cy = g.stripRows[2];
  for (const e of t.errors) {
    if (!Number.isFinite(e.at)) continue;
    // a cross for a simulated viewer's error, a tick for a real browser's: both red, told apart by shape
    if (e.source === "browser") r.line(g.x(e.at), cy - 5, g.x(e.at), cy + 5, ERROR_COLOR, 2);
    else cross(r, g.x(e.at), cy, ERROR_COLOR);
  }
}

function drawLegends(r: Raster, g: ChartGeometry, t: ChaosTimeline): void {
  const { top, right, bottom } = g.plot;
  const x0 = right + 16;
  const room = g.width - x0 - 26;
  const span = Math.max(1000, t.endedAt - t.startedAt);
  let y = top;
  r.text(x0, y, "PLAYLIST BY NODE", MUTED);
  y += 14;
  t.playlist.forEach((node, i) => {
    if (y > bottom - 8) return;
    const last = node.samples.reduce<{ at: number; lastSeq: number } | null>((a, s) => (!a || s.at >= a.at ? s : a), null);
    const until = last && last.at < t.startedAt + span * 0.97 ? ` AT ${((last.at - t.startedAt) / 1000).toFixed(0)}S` : "";
    r.line(x0, y + 3, x0 + 16, y + 3, NODE_COLORS[i % NODE_COLORS.length] ?? INK, 2);
    const tail = last ? ` LAST ${last.lastSeq}${until}` : " NO SAMPLES";
    r.text(x0 + 22, y, fit(node.node, room - Raster.textWidth(tail)) + tail, INK);
    y += 12;
  });
  y += 10;
  const kinds = Object.keys(EVENT_COLORS).filter((k) => t.events.some((e) => e.kind === k)) as TimelineEventKind[];
  if (kinds.length > 0 && y <= bottom - 8) r.text(x0, y, "EVENTS", MUTED);
  y += 14;
  for (const k of kinds) {
    if (y > bottom - 8) break;
    r.line(x0 + 8, y - 1, x0 + 8, y + 7, EVENT_COLORS[k], 2);
    r.text(x0 + 22, y, fit(k, room), INK);
    y += 12;
  }
  // the strip's key and totals, on the bottom line
  const ly = g.height - 14;
  let x = g.plot.left;
  const key = (draw: () => void, text: string) => {
    draw();
    x += 20 + r.text(x + 20, ly, text, INK) + 18;
  };
  key(() => r.rect(x, ly, 14, 7, STALL_COLORS.simulated), "STALL, SIMULATED VIEWER");
  key(() => r.rect(x, ly, 14, 7, STALL_COLORS.browser), "STALL, BROWSER");
  key(() => cross(r, x + 7, ly + 3, ERROR_COLOR), "ERROR, SIMULATED");
  key(() => r.line(x + 7, ly - 2, x + 7, ly + 8, ERROR_COLOR, 2), "ERROR, BROWSER");
  const byStatus = new Map<number, number>();
  for (const e of t.errors) byStatus.set(e.status, (byStatus.get(e.status) ?? 0) + 1);
  const statuses = [...byStatus].sort((a, b) => b[1] - a[1]).map(([s, n]) => `${s === 0 ? "NO ANSWER" : s}:${n}`);
  const stalledS = t.stalls.reduce((a, s) => a + Math.max(0, s.durationMs || 0), 0) / 1000;
  const totals = `${t.stalls.length} STALLS (${stalledS.toFixed(1)} S)   ${t.errors.length} ERRORS${statuses.length ? ` (${statuses.join(" ")})` : ""}`;
  r.text(x + 12, ly, fit(totals, g.width - x - 16), INK);
}

/** Renders the run's timeline as PNG bytes. */
export function renderTimeline(t: ChaosTimeline, options?: { width?: number; height?: number }): Buffer {
  const g = chartGeometry(t, options);
  const r = new Raster(g.width, g.height);
  drawAxes(r, g, t);
  drawStrip(r, g, t);
  const unlabeled = drawEvents(r, g, t);
  drawNodes(r, g, t);
  drawLegends(r, g, t);
  const w = r.text(10, 8, fit(t.scenario || "chaos run", g.width / 2 - 20), INK, 2);
  const started = Number.isFinite(t.startedAt) ? new Date(t.startedAt).toISOString().replace(/\.\d+Z$/, "Z") : "?";
  const duration = ((t.endedAt - t.startedAt) / 1000).toFixed(1);
  const hidden = unlabeled ? ` (${unlabeled} UNLABELED)` : "";
  const details = `DURATION ${duration} S   STARTED ${started}   ${t.playlist.length} NODES   ${t.events.length} EVENTS${hidden}`;
  r.text(10 + w + 14, 15, fit(details, g.width - w - 40), MUTED);
  return r.toPng();
}
