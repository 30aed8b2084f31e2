// The admin API (bearer token, compared in constant time):
//   POST /admin/drain [{"exit": true}]   POST /admin/undrain   GET /admin/status
//   POST /admin/nodes/{id}/drain   POST /admin/nodes/{id}/undrain   GET /admin/nodes/{id}/status
//   POST /admin/streams/{id}/revoke   POST /admin/streams/{id}/move (its encoder reconnects: a rolling update)
// A command for another node goes to it through Redis (the admin channel); the answer says what state the
// cluster then sees that node in. runAdminCommand() is the receiving end, on every node.
import { checkBearer } from "../http/bearer.ts";
import { NODE_ID_PATTERN, STREAM_ID_PATTERN } from "../core/ids.ts";
import { isStreamId } from "../core/ids.ts";
import type { Logger } from "../core/log.ts";
import type { NodeState } from "../core/model.ts";
import { errorMessage } from "../core/errors.ts";
import { HttpError, sendJson } from "../http/errors.ts";
import type { Request, Routes } from "../http/server.ts";
import { readJson } from "../http/body.ts";
import type { Feed } from "../state/feed.ts";
import type { NodeRecords } from "../state/nodes.ts";

export interface AdminCommand {
  /** The node it is for; "*" for every node (a revocation ends the stream's publish wherever it is). */
  node: string;
  action: "drain" | "undrain" | "revoke" | "move";
  exit?: boolean;
  /** The stream a revocation or a move is for. */
  stream?: string;
  /** The node that relayed the command (for the log). */
  via: string;
}

export interface AdminTarget {
  drain(reason: string, options: { exit: boolean }): Promise<unknown>;
  undrain(): Promise<void>;
  /** Refuses the stream's publish tokens issued until now and ends its live publish; resolves with the time (unix s). */
  revoke(streamId: string): Promise<number>;
  status(): Record<string, unknown>;
  readonly state: NodeState;
}

export interface AdminOptions {
  nodeId: string;
  token: string;
  local: AdminTarget;
  nodes: Pick<NodeRecords, "list">;
  feed: Pick<Feed, "publishAdmin">;
}

/** What a node does for the commands that reach it through the feed. */
export interface CommandTarget {
  readonly id: string;
  drain(reason: string, options: { exit: boolean }): Promise<unknown>;
  undrain(): Promise<void>;
  /** Ends the stream's publish on this node, if it has it. */
  endPublish(streamId: string, reason: string): void;
}

/** Runs an admin command from the feed if it is for this node (or every node); anything malformed is logged. */
export function runAdminCommand(message: unknown, target: CommandTarget, log: Logger): void {
  const command = message as Partial<AdminCommand> | null;
  if (typeof command !== "object" || command === null || typeof command.node !== "string") {
    log.warn("unreadable admin command", { message: JSON.stringify(message)?.slice(0, 200) });
    return;
  }
  if (command.node !== target.id && command.node !== "*") return;
  const failed = (error: unknown): void => log.error("admin command failed", { action: String(command.action), error: errorMessage(error) });
  const via = typeof command.via === "string" ? command.via.slice(0, 64) : "?";
  if (command.action === "drain") target.drain(`admin request through ${via}`, { exit: command.exit === true }).catch(failed);
  else if (command.action === "undrain") target.undrain().catch(failed);
  // the encoder's reconnect then meets the revocation; a new token resumes the same timeline
  else if (command.action === "revoke" && isStreamId(command.stream)) target.endPublish(command.stream, "publish revoked");
  // a rolling update moves a stream onto its canary: the encoder reconnects, and steering sends it there
  else if (command.action === "move" && isStreamId(command.stream)) target.endPublish(command.stream, "moved by a rolling update: reconnect to another node");
  else log.warn("unknown admin command", { action: String(command.action).slice(0, 40) });
}

export { checkBearer };

async function exitFlag(request: Request): Promise<boolean> {
  if (request.req.headers["content-length"] === "0" || !request.req.headers["content-type"]?.includes("json")) return false;
  const body = (await readJson(request.req)) as { exit?: unknown } | null;
  return body?.exit === true;
}

export function addAdminApi(http: Routes, o: AdminOptions): void {
  const guard = (handler: (request: Request) => Promise<void> | void) => async (request: Request) => {
    checkBearer(request.req.headers.authorization, o.token);
    await handler(request);
  };

  const remote = async (id: string, action: "drain" | "undrain", exit: boolean): Promise<{ state: NodeState | null }> => {
    const nodes = await o.nodes.list();
    if (!nodes.some((n) => n.id === id)) throw new HttpError(404, "UNKNOWN_NODE", `no live node ${id}`);
    const command: AdminCommand = { node: id, action, exit, via: o.nodeId };
    await o.feed.publishAdmin(command);
    const want = action === "drain" ? ["draining", "drained"] : ["ready"];
    const deadline = Date.now() + 3000;
    for (;;) {
      const record = (await o.nodes.list()).find((n) => n.id === id);
      if (record && want.includes(record.state)) return { state: record.state };
      if (Date.now() > deadline) return { state: record?.state ?? null };
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  http.addRoute(["POST"], "admin_drain", /^\/admin\/drain$/, guard(async (request) => {
    o.local.drain("admin request", { exit: await exitFlag(request) }).catch(() => undefined);
    sendJson(request.res, 202, { node: o.nodeId, state: o.local.state });
  }));
  http.addRoute(["POST"], "admin_undrain", /^\/admin\/undrain$/, guard(async ({ res }) => {
    await o.local.undrain();
    sendJson(res, 200, { node: o.nodeId, state: o.local.state });
  }));
  http.addRoute(["GET"], "admin_status", /^\/admin\/status$/, guard(({ res }) => sendJson(res, 200, o.local.status())));
  http.addRoute(["POST"], "admin_revoke", new RegExp(`^/admin/streams/(${STREAM_ID_PATTERN})/revoke$`), guard(async ({ params, res }) => {
    const stream = params[0]!;
    const revokedAt = await o.local.revoke(stream);
    sendJson(res, 200, { stream, revokedAt: new Date(revokedAt * 1000).toISOString(), refused: "every publish token of the stream issued until then" });
  }));

  http.addRoute(["POST"], "admin_move", new RegExp(`^/admin/streams/(${STREAM_ID_PATTERN})/move$`), guard(async ({ params, res }) => {
    const stream = params[0]!;
    const command: AdminCommand = { node: "*", action: "move", stream, via: o.nodeId };
    await o.feed.publishAdmin(command);
    sendJson(res, 202, { stream, moved: "its publisher was told to reconnect; the balancer picks the node" });
  }));
  http.addRoute(["POST"], "admin_node_drain", new RegExp(`^/admin/nodes/(${NODE_ID_PATTERN})/(drain|undrain)$`), guard(async (request) => {
    const [id, action] = request.params as [string, "drain" | "undrain"];
    const exit = action === "drain" && (await exitFlag(request));
    if (id === o.nodeId) {
      if (action === "drain") o.local.drain("admin request", { exit }).catch(() => undefined);
      else await o.local.undrain();
      sendJson(request.res, action === "drain" ? 202 : 200, { node: id, state: o.local.state });
      return;
    }
    const { state } = await remote(id, action, exit);
    sendJson(request.res, state === null ? 504 : action === "drain" ? 202 : 200, { node: id, state });
  }));
  http.addRoute(["GET"], "admin_node_status", new RegExp(`^/admin/nodes/(${NODE_ID_PATTERN})/status$`), guard(async ({ params, res }) => {
    const id = params[0]!;
    if (id === o.nodeId) return sendJson(res, 200, o.local.status());
    const record = (await o.nodes.list()).find((n) => n.id === id);
    if (!record) throw new HttpError(404, "UNKNOWN_NODE", `no live node ${id}`);
    sendJson(res, 200, record);
  }));
}
