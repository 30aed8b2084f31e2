// The operator's commands: status, drain, undrain, revoke (rolling updates: tools/rollout/run.ts). They talk to the cluster's HTTP API
// (by default through the balancer, `http://<node.publicHost>:<http.port>`; `--url` for another), with the
// admin token from the config, BATON_ADMIN_TOKEN or the local cluster's var/admin-token.
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

export async function call<T>(c: AdminClient, path: string, init: RequestInit = {}, base = c.url): Promise<T> {
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
export const streamsOf = async (c: AdminClient): Promise<StreamInfo[]> => (await call<{ streams: StreamInfo[] }>(c, "/api/streams")).streams;

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

/**
 * Which input feeds a stream, and where its hot standby runs (stream/standby.ts), from the nodes' records:
 * `primary`, `backup (standby: primary on node-2)`, `... on node-2, warming up` while that standby has no fresh
 * media to take over with; `-` while no node reports one (an older release).
 */
function inputs(nodes: NodeRecord[], streamId: string): string {
  const of = nodes.flatMap((n) => {
    const input = n.load.inputs?.[streamId];
    return input ? [{ node: n.id, ...input }] : [];
  });
  const active = of.find((i) => i.state === "active");
  const standbys = of.filter((i) => i.state === "standby").map((i) => `${i.role} on ${i.node}${i.ready === false ? ", warming up" : ""}`);
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
    // a stream without input: its viewers see the slate, kept by OWNER, until the publisher returns
    streamRows.push([s.id, s.slate ? `${s.state} (slate)` : s.state, s.owner, String(s.epoch), inputs(nodes, s.id), s.renditions.map((r) => r.name).join(","), String(s.viewers), String(s.nextSeq), shown]);
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
