// Benchmark 8: how long a drain takes. A real redis-server and two baton nodes sharing one prefix (production
// ladder and 2-s segments); a publisher pushes the synthetic 720p stream to node 1, which owns the stream;
// 10 simulated viewers (tools/chaos/viewer.ts, lowest rendition) read it through node 2. The benchmark POSTs
// /admin/drain to node 1 (bearer admin token) and polls GET /admin/status every 20 ms until its `state` is
// "drained": the figure is the time from the request to that answer, median of 3 drains (quick: 1). Between
// drains node 1 is undrained and the stream brought back to it (publisher restarted to node 1, until
// /api/streams shows node 1 as the owner of the live stream). Baseline, same nodes, same run, before any
// stream: the same drain of node 1 with no publisher and no viewer.
// Also, as a publisher moved by a drain sees it: the drain ends the publisher's connection and a new
// publisher is spawned to node 2 at once (as an encoder reconnecting through a balancer, with no retry
// delay); the gap in program date-time around the discontinuity in node 2's playlist is the media lost.
import { SimulatedViewer, type ViewerReport } from "../tools/chaos/viewer.ts";
import { DEFAULTS } from "../src/config/defaults.ts";
import { errorMessage } from "../src/core/errors.ts";
import type { Managed } from "../tools/processes.ts";
import { planLadder } from "../src/transcode/ladder.ts";
import { compared, median, type Figure } from "./report.ts";
import { stop, waitFor } from "./procs.ts";
import { ADMIN_TOKEN, admin, mediaPlaylist, streamRow, waitForSeq } from "./live.ts";
import { benchPrefix, publish, startBenchNode, startBenchRedis, streamName, type BenchNode, type BenchRedis } from "./stack.ts";

const VIEWERS = 10;
const STATUS_POLL_MS = 20;
const SOURCE = { width: 1280, height: 720, frameRate: 30, hasAudio: true };

interface Drained {
  /** Seconds from the drain request to the first status answer saying "drained". */
  seconds: number;
  /** The node's own measure (lastDrain.durationMs), ms. */
  nodeMs: number;
  publishersMoved: number;
  forced: boolean;
}

async function drainOnce(node: BenchNode): Promise<Drained> {
  const started = performance.now();
  const answer = await admin(node, "POST", "/admin/drain");
  if (answer.status !== 202) throw new Error(`POST /admin/drain: HTTP ${answer.status} ${JSON.stringify(answer.body)}`);
  const status = await waitFor(`${node.id} drained`, async () => {
    const s = await admin(node, "GET", "/admin/status");
    return s.body.state === "drained" ? s.body : undefined;
  }, 60000, STATUS_POLL_MS);
  const seconds = (performance.now() - started) / 1000;
  const last = status.lastDrain as { durationMs?: number; publishersMoved?: number; forced?: boolean } | null;
  return { seconds, nodeMs: last?.durationMs ?? NaN, publishersMoved: last?.publishersMoved ?? 0, forced: last?.forced === true };
}

async function undrain(node: BenchNode): Promise<void> {
  const answer = await admin(node, "POST", "/admin/undrain");
  if (answer.status !== 200) throw new Error(`POST /admin/undrain: HTTP ${answer.status} ${JSON.stringify(answer.body)}`);
  await waitFor(`${node.id} ready`, async () => ((await admin(node, "GET", "/admin/status")).body.state === "ready" ? true : undefined), 10000, 50);
}

/** Waits for the segment after `before` that starts a discontinuity; the PDT gap (s) between it and the one before. */
async function movedGap(node: BenchNode, id: string, rendition: string, before: number): Promise<number> {
  return waitFor(`a discontinuity after segment ${before} on ${node.id}`, async () => {
    const playlist = await mediaPlaylist(node, id, rendition);
    if (!playlist) return undefined;
    const segments = playlist.segments;
    for (let i = 1; i < segments.length; i++) {
      const [prev, s] = [segments[i - 1]!, segments[i]!];
      if (s.seq > before && s.discontinuity && prev.pdt !== null && s.pdt !== null) return (s.pdt - (prev.pdt + prev.duration * 1000)) / 1000;
    }
    return undefined;
  }, 40000, 100);
}

function sum(reports: ViewerReport[], pick: (r: ViewerReport) => number): number {
  return reports.reduce((total, r) => total + pick(r), 0);
}

export async function drain(o: { quick: boolean; log: (line: string) => void }): Promise<Figure[]> {
  const reps = o.quick ? 1 : 3;
  const ladder = planLadder(DEFAULTS.transcode.ladder, SOURCE);
  const top = ladder[0]!.name;
  const lowest = ladder[ladder.length - 1]!.name;
  let redis: BenchRedis | null = null;
  const nodes: BenchNode[] = [];
  let publisher: Managed | null = null;
  let closing = false;
  const stopViewers = new AbortController();
  const running: Promise<ViewerReport>[] = [];
  try {
    redis = await startBenchRedis();
    const prefix = benchPrefix();
    const env = { BATON_ADMIN_TOKEN: ADMIN_TOKEN, BATON_HLS_RECONNECTWINDOW: "600" };
    for (const nodeId of ["bench-drain-1", "bench-drain-2"]) nodes.push(await startBenchNode({ redisUrl: redis.url, prefix, id: nodeId, env }));
    const [one, two] = nodes as [BenchNode, BenchNode];

    const idle: Drained[] = [];
    for (let rep = 0; rep < reps; rep++) {
      o.log(`idle drain ${rep + 1}/${reps} of ${one.id}`);
      idle.push(await drainOnce(one));
      await undrain(one);
    }

    const id = streamName("drain");
    /** Publishes to node 1 and waits until it owns the live stream and has published two segments. */
    const toNodeOne = async (): Promise<void> => {
      const from = await one.lastSeq(id, top);
      publisher = publish(one.rtmp(id));
      await waitFor(`${one.id} to own ${id}`, async () => {
        const row = await streamRow(one, id);
        return row && row.owner === one.id && row.state === "live" ? true : undefined;
      }, 30000, 100);
      await waitForSeq(one, id, top, Math.max(from + 2, 3), publisher, 40000);
    };
    o.log(`publishing ${id} to ${one.id}; ${VIEWERS} viewers through ${two.id}`);
    await toNodeOne();
    const viewers = Array.from({ length: VIEWERS }, (_, i) => new SimulatedViewer({ baseUrl: two.http(""), streamId: id, id: i, lowest: true, signal: stopViewers.signal }));
    for (const v of viewers) running.push(v.run());
    await waitFor("every viewer playing", () => (viewers.every((v) => v.report.segments >= 2) ? true : undefined), 30000, 100);

    const loaded: Drained[] = [];
    const gaps: number[] = [];
    for (let rep = 0; rep < reps; rep++) {
      const before = await two.lastSeq(id, lowest);
      const current = publisher as Managed | null;
      if (!current) throw new Error("no publisher");
      // the drain ends the publisher's connection: it comes back at once, to node 2
      void current.exited.then(() => {
        if (!closing && publisher === current) publisher = publish(two.rtmp(id));
      });
      o.log(`drain ${rep + 1}/${reps} of ${one.id} with a publisher and ${VIEWERS} viewers`);
      const d = await drainOnce(one);
      loaded.push(d);
      if (d.publishersMoved !== 1) throw new Error(`the drain moved ${d.publishersMoved} publishers, expected 1`);
      gaps.push(await movedGap(two, id, lowest, before));
      o.log(`drained in ${d.seconds.toFixed(3)} s; the stream went on on ${two.id} after a ${gaps[gaps.length - 1]!.toFixed(2)}-s gap`);
      await undrain(one);
      if (rep < reps - 1) {
        // bring the stream back to node 1 for the next drain
        await stop(publisher, "SIGKILL", 1000);
        await waitFor(`${id} to wait for its publisher`, async () => ((await streamRow(one, id))?.state === "reconnecting" ? true : undefined), 30000, 50);
        await toNodeOne();
      }
    }
    stopViewers.abort();
    const reports = await Promise.all(running);
    const errors = sum(reports, (r) => Object.values(r.errors).reduce((a, b) => a + b, 0));
    const stalls = sum(reports, (r) => r.stalls);
    const nodeMs = loaded.map((d) => d.nodeMs.toFixed(0)).join(", ");
    const forced = loaded.some((d) => d.forced) ? "; a drain passed its deadline (forced)" : "";
    return [
      compared(`drain of the owner node, ${VIEWERS} viewers elsewhere`, "s", median(loaded.map((d) => d.seconds)), "same drain, idle node",
        median(idle.map((d) => d.seconds)), {
          samples: loaded.map((d) => d.seconds), baselineSamples: idle.map((d) => d.seconds),
          note: `request to status "drained", polled every ${STATUS_POLL_MS} ms; ${reps} run(s), median; node's own durationMs: ${nodeMs} ` +
            `(idle ${idle.map((d) => d.nodeMs.toFixed(0)).join(", ")})${forced}`,
        }),
      {
        name: "publisher moved: last segment before to first after", unit: "s", value: median(gaps), samples: gaps,
        note: `PDT gap at the discontinuity in ${two.id}'s ${lowest} playlist; publisher respawned to ${two.id} at once; ` +
          `viewers on ${two.id}: ${errors} errors, ${stalls} stalls`,
      },
    ];
  } catch (error) {
    throw new Error(`${errorMessage(error)}${nodes.map((n) => n.problems()).join("")}`, { cause: error });
  } finally {
    closing = true;
    stopViewers.abort();
    await Promise.allSettled(running);
    await stop(publisher, "SIGKILL", 1000);
    await Promise.all(nodes.map((n) => stop(n.proc, "SIGTERM", 10000)));
    for (const n of nodes) n.agent.destroy();
    if (redis) await stop(redis.proc, "SIGTERM", 5000);
  }
}
