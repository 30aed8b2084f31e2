// The resilience harness behind `npm run chaos`: it runs a scenario against the local cluster (started here)
// or a running deployment (--url), with real publishers and real players watching (simulated HLS viewers and
// hls.js in Chromium), a checker that polls every node directly, and reports what the viewers experienced.
import { loadConfig } from "../../src/config/load.ts";
import { errorMessage } from "../../src/core/errors.ts";
import { nodesOf, type AdminClient } from "../admin-cli.ts";
import { LocalCluster } from "../local-cluster.ts";
import { BrowserViewers, STALL_DETAILS, type BrowserReport } from "./browsers.ts";
import { ConsistencyChecker } from "./consistency.ts";
import { ReconnectingPublisher } from "./publisher.ts";
import { buildReport, type ChaosReport } from "./report.ts";
import { RUN, SCENARIOS, type ScenarioName } from "./scenarios.ts";
import { MoveCounter } from "./moves.ts";
import type { ChaosTimeline, TimelineEventKind } from "./timeline-chart.ts";
import { SimulatedViewer, type ViewerReport } from "./viewer.ts";

export interface ChaosOptions {
  /** The scenarios, run one after the other in one run ("all": every one). */
  scenario: ScenarioName[] | "all";
  quick: boolean;
  streams: number;
  viewers: number;
  browsers: number;
  /** A running deployment (its balancer's HTTP URL); absent: start the local cluster. */
  url?: string;
  adminToken?: string;
  /** Publish URLs for a running deployment, one per stream (from `baton token`). */
  publishUrls?: string[];
  nodes: number;
  /** A second encoder per stream pushing `&role=backup` (redundant ingest): its hot standby on another node. */
  backup?: boolean;
  /** The local cluster's Redis as a primary, a replica and three sentinels (on by itself for redis-failover). */
  sentinel?: boolean;
  progress: (line: string) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function lastSeq(baseUrl: string, streamId: string, rendition: string): Promise<number> {
  const r = await fetch(`${baseUrl}/live/${streamId}/${rendition}/index.m3u8`, { signal: AbortSignal.timeout(5000) }).catch(() => null);
  if (!r || r.status !== 200) return -1;
  const text = await r.text();
  const sequence = Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(text)?.[1] ?? 0);
  return sequence + (text.match(/#EXTINF/g) ?? []).length - 1;
}

async function firstRendition(baseUrl: string, streamId: string): Promise<string | null> {
  const r = await fetch(`${baseUrl}/live/${streamId}/index.m3u8`, { signal: AbortSignal.timeout(5000) }).catch(() => null);
  if (!r || r.status !== 200) return null;
  const names = [...(await r.text()).matchAll(/^(?:s\/[^/\s]+\/)?([a-z0-9_-]+)\/index\.m3u8/gm)].map((m) => m[1]!);
  return names[names.length - 1] ?? null;
}

/**
 * A backup encoder per stream (`&role=backup` on the same URL), each after its primary is active, and waits
 * until every stream has its hot standby on a node (the nodes' records say so).
 */
async function startBackups(admin: AdminClient, streams: string[], urlOf: (id: string) => string, publishers: ReconnectingPublisher[], progress: (line: string) => void): Promise<void> {
  progress("a backup encoder per stream; waiting for each standby");
  const deadline = Date.now() + 90000;
  const has = async (id: string, state: string): Promise<boolean> =>
    (await nodesOf(admin).catch(() => [])).some((n) => n.load.inputs?.[id]?.state === state);
  for (const id of streams) {
    while (!(await has(id, "active"))) {
      if (Date.now() > deadline) throw new Error(`stream ${id} had no active input within 90 s`);
      await sleep(250);
    }
    const backup = new ReconnectingPublisher({ url: `${urlOf(id)}&role=backup`, retryDelayMs: 500 });
    backup.start();
    publishers.push(backup);
  }
  for (const id of streams) {
    while (!(await has(id, "standby"))) {
      if (Date.now() > deadline) throw new Error(`stream ${id}'s backup did not stand by within 90 s`);
      await sleep(250);
    }
  }
}

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const config = loadConfig();
  // every viewer here comes from one address: the cluster started here lets them all start their sessions
  const nodeEnv = { BATON_SESSIONS_STARTSPERMINUTE: "1000000" };
  const names = o.scenario === "all" ? [...SCENARIOS] : o.scenario;
  const label = o.scenario === "all" ? "all" : o.scenario.join(",");
  const sentinel = o.sentinel === true || names.includes("redis-failover");
  const local = o.url ? null : new LocalCluster({ nodes: o.nodes, onNotice: (line) => o.progress(line), nodeEnv, sentinel });
  const publishers: ReconnectingPublisher[] = [];
  const browsers = new BrowserViewers();
  const stopViewers = new AbortController();
  let checker: ConsistencyChecker | null = null;
  let moves: MoveCounter | null = null;
  const timeline: ChaosTimeline = { scenario: label, startedAt: Date.now(), endedAt: 0, events: [], stalls: [], errors: [], playlist: [] };
  const mark = (kind: TimelineEventKind, label: string): void => void timeline.events.push({ at: Date.now(), kind, label });
  try {
    if (local) {
      o.progress(`starting the local cluster (${o.nodes} nodes, ${sentinel ? "Redis with a replica and three sentinels" : "Redis"}, HAProxy)`);
      await local.start();
    }
    const baseUrl = (o.url ?? local!.httpUrl).replace(/\/$/, "");
    const admin: AdminClient = { url: baseUrl, token: o.adminToken ?? local?.adminToken ?? "", say: (line) => o.progress(line) };
    // on the local cluster, stream ids of this run alone: a stream id used again continues its broadcast (the
    // cluster keeps a timeline through its reconnect window and its media for the DVR window), so a second run
    // would count the time between the runs as publisher gaps, moves and slate; a deployment's --publish-url
    // tokens are signed for chaos1, chaos2, ... (README)
    const suffix = local ? `-${timeline.startedAt.toString(36)}` : "";
    const streams = Array.from({ length: o.streams }, (_, i) => `chaos${i + 1}${suffix}`);
    if (!local && (o.publishUrls?.length ?? 0) < streams.length) throw new Error(`--url needs --publish-url for each of the ${streams.length} streams`);
    for (const [i, id] of streams.entries()) {
      const url = local ? local.publishUrl(id) : o.publishUrls![i]!;
      const publisher = new ReconnectingPublisher({ url, retryDelayMs: 500 });
      publisher.start();
      publishers.push(publisher);
    }
    if (o.backup) await startBackups(admin, streams, (id) => (local ? local.publishUrl(id) : o.publishUrls![streams.indexOf(id)]!), publishers, o.progress);
    o.progress(`publishing ${streams.length} stream${streams.length > 1 ? "s" : ""}; waiting for four segments each`);
    const renditions = new Map<string, string>();
    const deadline = Date.now() + 60000;
    for (const id of streams) {
      for (;;) {
        const rendition = await firstRendition(baseUrl, id);
        if (rendition && (await lastSeq(baseUrl, id, rendition)) >= 3) {
          renditions.set(id, rendition);
          break;
        }
        if (Date.now() > deadline) throw new Error(`stream ${id} did not start within a minute`);
        await sleep(250);
      }
    }
    const settle = async (count: number): Promise<void> => {
      for (const id of streams) {
        const target = (await lastSeq(baseUrl, id, renditions.get(id)!)) + count;
        const until = Date.now() + 60000;
        while ((await lastSeq(baseUrl, id, renditions.get(id)!)) < target && Date.now() < until) await sleep(250);
      }
    };
    checker = new ConsistencyChecker(
      async () => (await nodesOf(admin)).map((n) => ({ id: n.id, httpUrl: n.httpUrl })),
      streams.map((id) => ({ id, rendition: renditions.get(id)! })),
      // often enough to time the slate's arrival after an input loss
      250,
    );
    checker.start();
    moves = new MoveCounter(admin, streams);
    moves.start();

    o.progress(`${o.viewers} simulated viewers and ${o.browsers} browser${o.browsers === 1 ? "" : "s"} start watching`);
    const viewers = Array.from({ length: o.viewers }, (_, id) => new SimulatedViewer({
      baseUrl, streamId: streams[id % streams.length]!, id, reportEveryMs: 2000, signal: stopViewers.signal,
      onError: (status) => void timeline.errors.push({ at: Date.now(), status, source: "simulated" }),
      onStall: (at) => void timeline.stalls.push({ at, durationMs: 0, source: "simulated" }),
    }));
    const running = viewers.map((v) => v.run());
    await browsers.start(`${baseUrl}/watch/${streams[0]}`, o.browsers);
    const haproxyBefore = local ? await local.haproxyStats().catch(() => null) : null;
    await settle(2);

    const drains: { node: string; ms: number }[] = [];
    for (const name of names) {
      o.progress(`scenario ${name}`);
      mark("phase", name);
      await RUN[name]({
        admin, local, publishers, streams, quick: o.quick, restartCommand: config.admin.restartCommand, drainDeadline: config.drain.deadline,
        mark, progress: o.progress, settle, drains,
      });
    }
    await settle(2);
    stopViewers.abort();
    checker.stop();
    moves.stop();
    const lost = await checker.lost();
    const simulated: ViewerReport[] = await Promise.all(running);
    const browserReports: BrowserReport[] = await browsers.reports().catch((error: unknown) => {
      o.progress(`could not read the browsers' state: ${errorMessage(error)}`);
      return [];
    });
    for (const b of browserReports) {
      for (const s of b.stallLog) timeline.stalls.push({ at: s.at, durationMs: s.ms, source: "browser" });
      for (const e of b.errors) if (!STALL_DETAILS.has(e.details)) timeline.errors.push({ at: e.at, status: 0, source: "browser" });
    }
    const sessions = await Promise.all(viewers.map((v) => v.sessionPosition().catch(() => "lost" as const)));
    const haproxyAfter = local ? await local.haproxyStats().catch(() => null) : null;
    timeline.endedAt = Date.now();
    timeline.playlist = [...checker.growth.entries()].map(([node, samples]) => ({ node, samples }));
    return buildReport({
      scenario: label, quick: o.quick, backup: o.backup === true, timeline, simulated, browsers: browserReports, sessions, checker, lost, drains,
      haproxy: haproxyBefore && haproxyAfter
        ? { retries: haproxyAfter.retries - haproxyBefore.retries, redispatches: haproxyAfter.redispatches - haproxyBefore.redispatches }
        : null,
      streams: streams.length,
      moves: [...moves.moves.values()],
      standbyShiftsMs: local ? local.logLines(/standby media continues the timeline/, timeline.startedAt).map((l) => Number(/mismatchMs=(-?\d+)/.exec(l)?.[1])).filter(Number.isFinite) : [],
    });
  } finally {
    stopViewers.abort();
    checker?.stop();
    moves?.stop();
    await browsers.close();
    await Promise.all(publishers.map((p) => p.stop()));
    if (local) await local.stop();
  }
}
