// Figures of a benchmark run: small statistics, the terminal table, and the JSON written with --out.
import { writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";

/** One measured figure. Where a baseline was measured in the same run, `ratio` is value / baseline. */
export interface Figure {
  name: string;
  unit: string;
  value: number;
  baselineName?: string;
  baseline?: number;
  ratio?: number;
  /** A target or reference the figure is read against (printed, never enforced). */
  note?: string;
  samples?: number[];
  baselineSamples?: number[];
}

export interface BenchResult {
  bench: string;
  /** Wall-clock seconds the benchmark took, setup included. */
  seconds: number;
  figures: Figure[];
  /** Set when the benchmark failed; figures gathered before the failure are kept. */
  error?: string;
}

export interface RunReport {
  date: string;
  quick: boolean;
  machine: { cpus: number; cpuModel: string; node: string; ffmpeg: string; loadStart: number[]; loadEnd: number[];
    /** CPU seconds other processes used during the run, and their share of the machine's capacity. */
    otherCpu?: { seconds: number; share: number } };
  results: BenchResult[];
}

export function median(values: number[]): number {
  return percentile(values, 50);
}

/** Nearest-rank percentile; NaN for no values. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** A figure with its same-run baseline and the ratio between them. */
export function compared(name: string, unit: string, value: number, baselineName: string, baseline: number, extra: Partial<Figure> = {}): Figure {
  return { name, unit, value, baselineName, baseline, ratio: baseline > 0 ? value / baseline : NaN, ...extra };
}

function fmt(value: number | undefined, unit = ""): string {
  if (value === undefined) return "";
  if (!Number.isFinite(value)) return "n/a";
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : Math.abs(value) >= 1 ? 2 : 3;
  return `${value.toFixed(digits)}${unit ? ` ${unit}` : ""}`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]): string => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join("\n");
}

/** The terminal table: one line per figure, raw values of both sides and the ratio. */
export function formatTable(report: RunReport): string {
  const rows: string[][] = [["benchmark", "figure", "baton", "baseline (same run)", "ratio", "note"]];
  for (const result of report.results) {
    for (const f of result.figures) {
      rows.push([
        result.bench,
        f.name,
        fmt(f.value, f.unit),
        f.baseline === undefined ? "" : `${fmt(f.baseline, f.unit)} (${f.baselineName ?? "baseline"})`,
        f.ratio === undefined ? "" : `${fmt(f.ratio)}x`,
        f.note ?? "",
      ]);
    }
    if (result.error) rows.push([result.bench, "FAILED", "", "", "", result.error.slice(0, 160)]);
  }
  const head = `baton benchmarks ${report.date}${report.quick ? " (--quick)" : ""}: ${report.machine.cpus} cores ${report.machine.cpuModel}, ` +
    `node ${report.machine.node}, ${report.machine.ffmpeg}`;
  const times = report.results.map((r) => `${r.bench} ${r.seconds.toFixed(0)} s`).join(", ");
  const m = report.machine;
  const busy = m.loadStart[0]! > m.cpus ? " (other work ran just before: figures may be disturbed)" : "";
  const other = m.otherCpu
    ? `\nother processes used ${m.otherCpu.seconds.toFixed(0)} CPU-s during the run, ${(m.otherCpu.share * 100).toFixed(0)}% of the machine` +
      (m.otherCpu.share > 0.25 ? ": the figures are disturbed, run again on a quieter machine" : "")
    : "";
  const load = `load average (1, 5, 15 min) at start ${m.loadStart.join(", ")}, at end ${m.loadEnd.join(", ")}${busy}${other}`;
  return `${head}\n\n${table(rows)}\n\ntime taken: ${times}\n${load}\n`;
}

export function machineInfo(ffmpegVersion: string): RunReport["machine"] {
  const list = cpus();
  const load = loadavg().map((l) => Math.round(l * 100) / 100);
  return { cpus: list.length, cpuModel: list[0]?.model.trim() ?? "unknown", node: process.versions.node, ffmpeg: ffmpegVersion, loadStart: load, loadEnd: load };
}

export function writeJson(file: string, report: RunReport): void {
  // NaN becomes null; samples and figures keep four decimals
  const replacer = (_key: string, value: unknown): unknown =>
    typeof value === "number" ? (Number.isFinite(value) ? Math.round(value * 1e4) / 1e4 : null) : value;
  writeFileSync(file, JSON.stringify(report, replacer, 2) + "\n");
}
