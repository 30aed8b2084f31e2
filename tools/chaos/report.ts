// What a chaos run reports: JSON for machines, a summary table for people, and the invariants that decide the
// exit status: no viewer-visible error during a drain, no sequence regression, no lost session or reset
// position, no disagreement between nodes.
import { STALL_DETAILS, type BrowserReport } from "./browsers.ts";
import type { ConsistencyChecker } from "./consistency.ts";
import type { ChaosTimeline } from "./timeline-chart.ts";
import type { ViewerReport } from "./viewer.ts";

export interface ChaosReport {
  scenario: string;
  quick: boolean;
  /** Each stream had a backup encoder (`--backup`): its hot standby took over when the active input was lost. */
  backup: boolean;
  startedAt: string;
  durationSeconds: number;
  streams: number;
  viewers: { simulated: number; browser: number };
  /** The browsers' WebSocket channel: handoff messages received, and connections made (1 + reconnects). */
  browserChannel: { handoffs: number; connects: number };
  /** Viewer-visible errors: simulated by HTTP status ("0": no answer), browser by hls.js detail. */
  errors: { simulated: Record<string, number>; browser: Record<string, number>; total: number };
  stalls: { simulated: { count: number; seconds: number }; browser: { count: number; seconds: number } };
  sessionsLost: number;
  positionsReset: number;
  sequenceRegressions: number;
  uriChanges: number;
  endlistsWhileLive: number;
  publisherGapsMs: number[];
  /**
   * At each hot standby's takeover, how far its media was from continuing the timeline (ms; > 0: media
   * skipped, < 0: repeated), from the nodes' logs (the local cluster only). Segment boundaries locked to the
   * wall clock keep it to about a frame.
   */
  standbyShiftsMs: number[];
  /** Per stream, how often its live input moved to another node (MoveCounter; the slate is no move). */
  moves: number[];
  /**
   * Input loss (hls.inputLoss): slate segments listed and their media seconds; for each input lost (a node
   * killed, a publisher dropped), ms from it to the first slate segment listed and to the first live segment
   * listed after that slate (null: none followed before the next event), as the checker saw them (it polls
   * every 250 ms).
   */
  slate: { segments: number; seconds: number; losses: { event: string; toSlateMs: number | null; toLiveMs: number | null }[] };
  consistencyViolations: number;
  consistencyExamples: string[];
  /** Segments some node listed that the final timeline does not, or holes in it (ConsistencyChecker.lost). */
  segmentsLost: number;
  segmentsLostExamples: string[];
  drains: { node: string; ms: number }[];
  haproxy: { retries: number; redispatches: number } | null;
  invariants: { ok: boolean; broken: string[] };
  timeline: ChaosTimeline;
}

export interface ReportInput {
  scenario: string;
  quick: boolean;
  backup: boolean;
  timeline: ChaosTimeline;
  simulated: ViewerReport[];
  browsers: BrowserReport[];
  sessions: (number | null | "lost")[];
  checker: ConsistencyChecker;
  lost: { count: number; examples: string[] };
  drains: { node: string; ms: number }[];
  haproxy: { retries: number; redispatches: number } | null;
  streams: number;
  standbyShiftsMs?: number[];
  moves?: number[];
}

const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

export function buildReport(i: ReportInput): ChaosReport {
  const simulatedErrors: Record<string, number> = {};
  for (const r of i.simulated) for (const [status, n] of Object.entries(r.errors)) simulatedErrors[status] = (simulatedErrors[status] ?? 0) + n;
  const browserErrors: Record<string, number> = {};
  for (const b of i.browsers) {
    for (const e of b.errors) if (!STALL_DETAILS.has(e.details)) browserErrors[e.details] = (browserErrors[e.details] ?? 0) + 1;
  }
  let sessionsLost = 0;
  let positionsReset = 0;
  i.sessions.forEach((held, n) => {
    const reported = i.simulated[n]?.lastReported ?? null;
    if (held === "lost") sessionsLost += 1;
    else if (reported !== null && (held === null || held < reported - 0.001)) positionsReset += 1;
  });
  const total = sum(Object.values(simulatedErrors)) + sum(Object.values(browserErrors));
  const report: ChaosReport = {
    scenario: i.scenario,
    quick: i.quick,
    backup: i.backup,
    startedAt: new Date(i.timeline.startedAt).toISOString(),
    durationSeconds: Math.round((i.timeline.endedAt - i.timeline.startedAt) / 100) / 10,
    streams: i.streams,
    viewers: { simulated: i.simulated.length, browser: i.browsers.length },
    browserChannel: { handoffs: sum(i.browsers.map((b) => b.handoffs)), connects: sum(i.browsers.map((b) => b.wsConnects)) },
    errors: { simulated: simulatedErrors, browser: browserErrors, total },
    stalls: {
      simulated: { count: sum(i.simulated.map((r) => r.stalls)), seconds: sum(i.simulated.map((r) => r.stalledMs)) / 1000 },
      browser: { count: sum(i.browsers.map((b) => b.stalls)), seconds: sum(i.browsers.map((b) => b.stalledMs)) / 1000 },
    },
    sessionsLost,
    positionsReset,
    sequenceRegressions: sum(i.simulated.map((r) => r.sequenceRegressions)),
    uriChanges: sum(i.simulated.map((r) => r.uriChanges)),
    endlistsWhileLive: sum(i.simulated.map((r) => r.endlists)),
    publisherGapsMs: i.checker.gaps(),
    standbyShiftsMs: i.standbyShiftsMs ?? [],
    moves: i.moves ?? [],
    slate: slateFigures(i.timeline, i.checker),
    consistencyViolations: i.checker.violations.length,
    consistencyExamples: i.checker.violations.slice(0, 10),
    segmentsLost: i.lost.count,
    segmentsLostExamples: i.lost.examples,
    drains: i.drains,
    haproxy: i.haproxy,
    invariants: { ok: true, broken: [] },
    timeline: i.timeline,
  };
  const broken = report.invariants.broken;
  const duringDrains = errorsDuringDrains(i.timeline);
  if (duringDrains > 0) broken.push(`${duringDrains} viewer-visible errors during a drain`);
  if (report.sequenceRegressions > 0) broken.push(`${report.sequenceRegressions} media sequence regressions`);
  if (report.uriChanges > 0) broken.push(`${report.uriChanges} sequence numbers whose URI, duration or date-time changed`);
  if (report.endlistsWhileLive > 0) broken.push(`EXT-X-ENDLIST seen ${report.endlistsWhileLive} times while live`);
  if (sessionsLost > 0) broken.push(`${sessionsLost} sessions lost`);
  if (report.segmentsLost > 0) broken.push(`${report.segmentsLost} segments lost (${report.segmentsLostExamples.join("; ")})`);
  if (positionsReset > 0) broken.push(`${positionsReset} positions reset`);
  if (report.consistencyViolations > 0) broken.push(`${report.consistencyViolations} consistency violations between nodes`);
  report.invariants.ok = broken.length === 0;
  return report;
}

/** What the slate covered, and how soon it came and went after each input loss (see ChaosReport.slate). */
export function slateFigures(t: ChaosTimeline, checker: Pick<ConsistencyChecker, "entries">): ChaosReport["slate"] {
  const all = [...checker.entries.values()].flatMap((entries) => [...entries].sort(([a], [b]) => a - b));
  const slate = all.filter(([, e]) => e.slate);
  const losses = t.events.filter((e) => e.kind === "kill" || e.kind === "publisher-drop");
  return {
    segments: slate.length,
    seconds: Math.round(slate.reduce((sum, [, e]) => sum + e.duration, 0) * 10) / 10,
    losses: losses.map((loss, n) => {
      const until = losses[n + 1]?.at ?? t.endedAt;
      const first = slate.find(([, e]) => e.seenAt >= loss.at && e.seenAt < until);
      const live = first && all.find(([seq, e]) => seq > first[0] && !e.slate);
      return { event: loss.label, toSlateMs: first ? first[1].seenAt - loss.at : null, toLiveMs: live ? live[1].seenAt - loss.at : null };
    }),
  };
}

/** Errors seen between a node's drain and its return (a crash or a Redis restart may cause errors; a drain may not). */
export function errorsDuringDrains(t: ChaosTimeline): number {
  const windows: [number, number][] = [];
  for (const e of t.events) {
    if (e.kind !== "drain") continue;
    const node = e.label.split(" ").pop();
    const back = t.events.find((x) => x.at >= e.at && x.kind === "restart" && x.label.endsWith(` ${node}`));
    // a few seconds after the return still count: late effects of the move
    windows.push([e.at, (back?.at ?? t.endedAt) + 5000]);
  }
  return t.errors.filter((err) => windows.some(([from, to]) => err.at >= from && err.at <= to)).length;
}

export function summary(r: ChaosReport): string {
  const rows: [string, string][] = [
    ["scenario", `${r.scenario}${r.quick ? " (quick)" : ""}, ${r.durationSeconds} s, ${r.streams} stream(s)${r.backup ? " with a backup encoder each" : ""}`],
    ["viewers", `${r.viewers.simulated} simulated, ${r.viewers.browser} browser`],
    ["viewer-visible errors", r.errors.total === 0 ? "0" : `${r.errors.total}  ${JSON.stringify({ ...r.errors.simulated, ...r.errors.browser })}`],
    ["stalls (simulated)", `${r.stalls.simulated.count}, ${r.stalls.simulated.seconds.toFixed(1)} s`],
    ["stalls (browser)", `${r.stalls.browser.count}, ${r.stalls.browser.seconds.toFixed(1)} s`],
    ["sessions lost / positions reset", `${r.sessionsLost} / ${r.positionsReset}`],
    ["sequence regressions / URI changes", `${r.sequenceRegressions} / ${r.uriChanges}`],
    ["EXT-X-ENDLIST while live", String(r.endlistsWhileLive)],
    ["consistency violations", String(r.consistencyViolations)],
    ["segments lost", String(r.segmentsLost)],
    ["publisher gaps", r.publisherGapsMs.length ? r.publisherGapsMs.map((g) => `${g} ms`).join(", ") : "none"],
    ["moves per stream", r.moves.length ? r.moves.join(", ") : "none"],
    ["standby media shifts", r.standbyShiftsMs.length ? r.standbyShiftsMs.map((g) => `${g} ms`).join(", ") : "none"],
    ["slate", `${r.slate.segments} segments, ${r.slate.seconds} s` + r.slate.losses
      .map((l) => `; ${l.event}: slate ${l.toSlateMs === null ? "-" : `${l.toSlateMs} ms`}, live ${l.toLiveMs === null ? "-" : `${l.toLiveMs} ms`}`).join("")],
    ["drains", r.drains.length ? r.drains.map((d) => `${d.node} ${d.ms} ms`).join(", ") : "none"],
    ["HAProxy retries / redispatches", r.haproxy ? `${r.haproxy.retries} / ${r.haproxy.redispatches}` : "n/a"],
    ["invariants", r.invariants.ok ? "all hold" : `BROKEN: ${r.invariants.broken.join("; ")}`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join("\n");
}
