// The operator's commands: status, drain, undrain, rolling-update. They talk to the cluster's HTTP API
// (by default through the balancer, `http://<node.publicHost>:<http.port>`; `--url` for another), with the
// admin token from the config, BATON_ADMIN_TOKEN or the local cluster's var/admin-token.
import { execFile } from "node:child_process";
import { describeRelease } from "../src/core/release.ts";
import type { NodeRecord } from "../src/core/model.ts";
import type { StreamInfo } from "../src/cluster/api.ts";
import { errorMessage } from "../src/core/errors.ts";

export interface AdminClient {
  url: string;
  token: string;
  /** Where progress lines go. */
  say: (line: string) => void;
}

async function call<T>(c: AdminClient, path: string, init: RequestInit = {}, base = c.url): Promise<T> {
  let response: Response;
  try {
    response = await fetch(base + path, {
      ...init,
      headers: { Authorization: `Bearer ${c.token}`, "Content-Type": "application/json", ...(init.headers as Record<string, string> | undefined) },
      signal: AbortSignal.timeout(10000),
    });
  } catch (error) {
    throw new Error(`cannot reach ${base} (${errorMessage(error)}): is the cluster running? (--url to name another address)`, { cause: error });
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? text;
    } catch {
      // not JSON
    }
    throw new Error(`${init.method ?? "GET"} ${path}: ${response.status} ${message}`);
  }
  return JSON.parse(text) as T;
}

export const nodesOf = async (c: AdminClient): Promise<NodeRecord[]> => (await call<{ nodes: NodeRecord[] }>(c, "/api/nodes")).nodes;
const streamsOf = async (c: AdminClient): Promise<StreamInfo[]> => (await call<{ streams: StreamInfo[] }>(c, "/api/streams")).streams;

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

/**
 * Which input feeds a stream, and where its hot standby runs (stream/standby.ts), from the nodes' records:
 * `primary`, `backup (standby: primary on node-2)`; `-` while no node reports one (an older release).
 */
function inputs(nodes: NodeRecord[], streamId: string): string {
  const of = nodes.flatMap((n) => {
    const input = n.load.inputs?.[streamId];
    return input ? [{ node: n.id, ...input }] : [];
  });
  const active = of.find((i) => i.state === "active");
  const standbys = of.filter((i) => i.state === "standby").map((i) => `${i.role} on ${i.node}`);
  if (!active && standbys.length === 0) return "-";
  return `${active?.role ?? "none"}${standbys.length ? ` (standby: ${standbys.join(", ")})` : ""}`;
}

export async function status(c: AdminClient): Promise<string> {
  const [nodes, streams] = [await nodesOf(c), await streamsOf(c)];
  const now = Date.now();
  const nodeRows = [["NODE", "STATE", "PUBLISHERS", "ROOM", "VIEWERS", "CPU", "RELEASE", "UP", "HEARTBEAT", "HTTP"]];
  for (const n of nodes) {
    const viewers = Object.values(n.load.viewers).reduce((a, b) => a + b, 0);
    nodeRows.push([
      n.id, n.state, String(n.load.publishers), n.load.slots === undefined ? "-" : String(n.load.slots), String(viewers), `${Math.round(n.load.cpu * 100)}%`,
      n.release ? describeRelease(n.release) : n.version,
      `${Math.round((now - n.startedAt) / 1000)}s`, `${((now - n.heartbeatAt) / 1000).toFixed(1)}s ago`, n.httpUrl,
    ]);
  }
  const streamRows = [["STREAM", "STATE", "OWNER", "EPOCH", "INPUT", "RENDITIONS", "VIEWERS", "NEXT SEQ", "TRANSCODER"]];
  const slow: string[] = [];
  for (const s of streams) {
    const speed = nodes.find((n) => n.id === s.owner)?.load.transcoders?.[s.id];
    // below real time the stream's latency grows until input is dropped: say so where the operator looks
    if (speed !== undefined && speed < 0.95) slow.push(s.id);
    const shown = speed === undefined ? "-" : `${speed.toFixed(2)}x${speed < 0.95 ? " SLOW" : ""}`;
    streamRows.push([s.id, s.state, s.owner, String(s.epoch), inputs(nodes, s.id), s.renditions.map((r) => r.name).join(","), String(s.viewers), String(s.nextSeq), shown]);
  }
  const warning = slow.length
    ? `\n\ntranscoders below real time: ${slow.join(", ")}. The ladder costs more than this machine has: a lighter ` +
      "transcode.ladder or a faster transcode.preset (ultrafast), or fewer streams per node"
    : "";
  // ROOM is what each node may still take by its measured capacity: none anywhere, and publishers are refused
  const ready = nodes.filter((n) => n.state === "ready");
  const full = ready.length > 0 && ready.every((n) => n.load.slots === 0)
    ? "\n\ncluster full: no ready node has room for another stream (publishers are refused with cluster_full). " +
      "Add nodes, raise transcode.capacity or transcode.cpuTarget, or a lighter transcode.ladder"
    : "";
  return `${table(nodeRows)}\n\n${streams.length ? table(streamRows) : "no live streams"}${warning}${full}`;
}

export async function drain(c: AdminClient, node: string, exit = false): Promise<string> {
  const r = await call<{ state: string }>(c, `/admin/nodes/${encodeURIComponent(node)}/drain`, { method: "POST", body: JSON.stringify({ exit }) });
  return `${node}: ${r.state}`;
}

/** Refuses every publish token of the stream issued until now, and ends its live publish. */
export async function revoke(c: AdminClient, stream: string): Promise<string> {
  const r = await call<{ revokedAt: string }>(c, `/admin/streams/${encodeURIComponent(stream)}/revoke`, { method: "POST", body: "{}" });
  return `${stream}: publish tokens issued until ${r.revokedAt} are refused; its live publish (if any) was ended. Make a new token with: npm run baton -- token ${stream}`;
}

export async function undrain(c: AdminClient, node: string): Promise<string> {
  const r = await call<{ state: string }>(c, `/admin/nodes/${encodeURIComponent(node)}/undrain`, { method: "POST", body: "{}" });
  return `${node}: ${r.state}`;
}

/** Requests and 5xx answers per node, from each node's /metrics (counters restart with the process). */
async function errorCounts(c: AdminClient, nodes: NodeRecord[]): Promise<Map<string, { startedAt: number; requests: number; errors: number }>> {
  const out = new Map<string, { startedAt: number; requests: number; errors: number }>();
  for (const n of nodes) {
    const text = await fetch(`${n.httpUrl}/metrics`, { headers: { Authorization: `Bearer ${c.token}` }, signal: AbortSignal.timeout(5000) })
      .then((r) => r.text())
      .catch(() => "");
    const counts = { startedAt: n.startedAt, requests: 0, errors: 0 };
    for (const line of text.split("\n")) {
      const m = /^baton_http_requests_total\{([^}]*)\} (\d+(?:\.\d+)?)/.exec(line);
      if (!m || /route="(readyz|healthz|metrics)"/.test(m[1]!)) continue;
      counts.requests += Number(m[2]);
      if (/status="5\d\d"/.test(m[1]!)) counts.errors += Number(m[2]);
    }
    out.set(n.id, counts);
  }
  return out;
}

/** What the cluster answered between two readings; a restarted node's counters count from zero. */
function delta(
  before: Map<string, { startedAt: number; requests: number; errors: number }>,
  after: Map<string, { startedAt: number; requests: number; errors: number }>,
): { requests: number; errors: number } {
  let requests = 0;
  let errors = 0;
  for (const [id, now] of after) {
    const then = before.get(id);
    const same = then && then.startedAt === now.startedAt;
    requests += now.requests - (same ? then.requests : 0);
    errors += now.errors - (same ? then.errors : 0);
  }
  return { requests, errors };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface RollingOptions {
  /** argv run to restart a drained node (`{node}` replaced); empty: the node exits and its supervisor restarts it. */
  restartCommand: string[];
  /** Seconds to wait for a node to drain and come back before giving up. */
  timeout: number;
  /** Stop when this share of requests failed (5xx) during one node's update. */
  maxErrorRate: number;
  /** Readiness checks in a row a returning node must have answered before the next node drains. */
  readyChecks: number;
  /** Told of each step (the chaos harness marks them on its timeline). */
  onStep?: (step: "drain" | "drained" | "back", node: string) => void;
}

/**
 * Drains each node in turn, restarts it, waits until it is ready and healthy, and moves on. Stops (and
 * undrains the node) when one does not come back or the cluster's error rate rises, saying why.
 */
export async function rollingUpdate(c: AdminClient, o: RollingOptions): Promise<void> {
  const nodes = await nodesOf(c);
  if (nodes.length < 2) throw new Error(`a rolling update needs at least two nodes; the cluster has ${nodes.length}`);
  c.say(`rolling update of ${nodes.length} nodes: ${nodes.map((n) => n.id).join(", ")}`);
  for (const [i, node] of nodes.entries()) {
    const step = `[${i + 1}/${nodes.length}] ${node.id}`;
    const before = await errorCounts(c, await nodesOf(c));
    const started = Date.now();
    const deadline = started + o.timeout * 1000;
    const fail = async (why: string): Promise<never> => {
      await undrain(c, node.id).catch(() => undefined);
      throw new Error(`${step}: ${why}; stopped the rolling update (the node was asked to undrain)`);
    };
    c.say(`${step}: draining`);
    o.onStep?.("drain", node.id);
    await drain(c, node.id, o.restartCommand.length === 0);
    // drained: it says so, or (asked to exit once drained) it is gone or already back
    for (;;) {
      const record = (await nodesOf(c).catch(() => [])).find((n) => n.id === node.id);
      if (!record || record.state === "drained" || record.startedAt > node.startedAt) break;
      if (Date.now() > deadline) await fail("did not drain in time");
      await sleep(100);
    }
    o.onStep?.("drained", node.id);
    if (o.restartCommand.length > 0) {
      c.say(`${step}: drained; restarting (${o.restartCommand.join(" ")})`);
      const [command, ...args] = o.restartCommand.map((part) => part.replaceAll("{node}", node.id));
      await new Promise<void>((resolve, reject) => execFile(command!, args, (error) => (error ? reject(error) : resolve()))).catch((error: unknown) =>
        fail(`restart command failed: ${errorMessage(error)}`),
      );
    } else {
      c.say(`${step}: drained; restarting`);
    }
    for (;;) {
      const record = (await nodesOf(c).catch(() => [])).find((n) => n.id === node.id);
      // ready, and the balancer has checked it ready a few times (HAProxy's rise is 2), so it sends it traffic
      if (record && record.startedAt > node.startedAt && record.state === "ready" && record.load.readyChecks >= o.readyChecks) {
        const ready = await fetch(`${record.httpUrl}/readyz`, { signal: AbortSignal.timeout(5000) }).then((r) => r.ok).catch(() => false);
        if (ready) break;
      }
      if (Date.now() > deadline) await fail(`did not come back ready within ${o.timeout} s`);
      await sleep(250);
    }
    o.onStep?.("back", node.id);
    const { requests, errors } = delta(before, await errorCounts(c, await nodesOf(c)));
    c.say(`${step}: back and ready in ${((Date.now() - started) / 1000).toFixed(1)} s (${errors} errors in ${requests} requests)`);
    if (errors > 5 && errors / Math.max(1, requests) > o.maxErrorRate) {
      throw new Error(`${step}: error rate rose to ${((100 * errors) / requests).toFixed(1)}%; stopped the rolling update`);
    }
  }
  c.say("rolling update done");
}
