// Read-only cluster API for operators and their tools: GET /api/nodes, GET /api/streams (admin token, unless
// admin.openOps).
import type { NodeRecords } from "../state/nodes.ts";
import type { StreamStore } from "../state/store.ts";
import { sendJson } from "../http/errors.ts";
import type { HttpServer } from "../http/server.ts";

export interface StreamInfo {
  id: string;
  state: string;
  owner: string;
  epoch: number;
  renditions: { name: string; width: number; height: number; bandwidth: number }[];
  startedAt: number;
  publishStartedAt: number;
  nextSeq: number;
  viewers: number;
  /** Viewers see the slate: the stream has no input (hls.inputLoss). */
  slate: boolean;
}

export async function listStreamInfo(store: Pick<StreamStore, "listStreams" | "read">, records: Pick<NodeRecords, "list">): Promise<StreamInfo[]> {
  const nodes = await records.list();
  const out: StreamInfo[] = [];
  for (const id of await store.listStreams()) {
    const s = await store.read(id);
    if (!s || s.state === "ended") continue;
    out.push({
      id,
      state: s.state,
      owner: s.owner,
      epoch: s.epoch,
      renditions: (s.ladder ?? []).map(({ name, width, height, bandwidth }) => ({ name, width, height, bandwidth })),
      startedAt: s.createdAt,
      publishStartedAt: s.claimedAt,
      nextSeq: s.nextSeq,
      viewers: nodes.reduce((sum, n) => sum + (n.load.viewers[id] ?? 0), 0),
      slate: s.slate === true,
    });
  }
  return out;
}

export function addClusterApi(http: Pick<HttpServer, "addRoute" | "guardOps">, store: Pick<StreamStore, "listStreams" | "read">, records: Pick<NodeRecords, "list">): void {
  // for operators and their tools: they name every node's address and every stream, private ones included
  http.addRoute(["GET", "HEAD"], "api_nodes", /^\/api\/nodes$/, async ({ req, res }) => {
    http.guardOps(req);
    sendJson(res, 200, { nodes: await records.list() });
  });
  http.addRoute(["GET", "HEAD"], "api_streams", /^\/api\/streams$/, async ({ req, res }) => {
    http.guardOps(req);
    sendJson(res, 200, { streams: await listStreamInfo(store, records) });
  });
}
