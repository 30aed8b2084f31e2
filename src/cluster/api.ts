// Read-only cluster API for operators and their tools: GET /api/nodes, GET /api/streams (admin token, unless
// admin.openOps).
import type { Redis } from "ioredis";
import { listNodes } from "./registry.ts";
import type { Keys } from "../state/keys.ts";
import type { StreamStore } from "../state/store.ts";
import { sendJson, type DeliveryServer } from "../http/server.ts";

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
}

export async function listStreamInfo(store: Pick<StreamStore, "listStreams" | "read">, redis: Redis, keys: Keys): Promise<StreamInfo[]> {
  const nodes = await listNodes(redis, keys);
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
    });
  }
  return out;
}

export function addClusterApi(http: DeliveryServer, store: StreamStore): void {
  // for operators and their tools: they name every node's address and every stream, private ones included
  http.addRoute(["GET", "HEAD"], "api_nodes", /^\/api\/nodes$/, async ({ req, res }) => {
    http.guardOps(req);
    sendJson(res, 200, { nodes: await listNodes(store.redis, store.keys) });
  });
  http.addRoute(["GET", "HEAD"], "api_streams", /^\/api\/streams$/, async ({ req, res }) => {
    http.guardOps(req);
    sendJson(res, 200, { streams: await listStreamInfo(store, store.redis, store.keys) });
  });
}
