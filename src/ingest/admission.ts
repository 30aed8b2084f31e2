// The synchronous part of publish admission: the app, the stream id, the token's signature, a local duplicate.
// What needs the cluster's state is decided by the stream's owner before it claims: a revocation, and whether
// an expired token is the one its live broadcast started with (src/stream/owner.ts); the cluster-wide
// duplicate check is the ownership claim in Redis (state/scripts/claim-4.lua).
import { AdmissionError, type RefusalReason } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { PublishRequest } from "./rtmp-server.ts";
import { isStreamId } from "../core/ids.ts";
import type { InputRole } from "../core/model.ts";
import { readPublishToken, type PublishCredential } from "./token.ts";

/** An admitted publish: its stream, what its token says (null when tokens are not required), its input role. */
export interface Admitted {
  streamId: string;
  credential: PublishCredential | null;
  role: InputRole;
}

export interface AdmissionPolicy {
  requireToken: boolean;
  secret: string;
  /** True when this node already has a live publisher for the stream. */
  isLive(streamId: string): boolean;
  /** The role of this node's live publisher of the stream (a backup's other input), when it has one. */
  liveRole?(streamId: string): InputRole | null;
  /** True while the node takes no new publishers (draining). */
  refusing(): boolean;
  /** Null while the node has room for another stream; otherwise why not, and whether another node has room. */
  full(): { why: string; elsewhere: boolean } | null;
  /** Why this node may not use the cluster's state at all (state/schema.ts), or null. */
  unusable?(): string | null;
  /** Why new publishers go to other nodes now (a rolling update, cluster/steering.ts), or null. */
  steered?(): string | null;
}

export const APP = "live";

export function admitPublish(request: PublishRequest, policy: AdmissionPolicy): Admitted {
  if (request.app !== APP) throw new AdmissionError("bad_app", `publish to rtmp://HOST/${APP}/<stream>, not app ${JSON.stringify(request.app)}`);
  if (!isStreamId(request.name)) {
    throw new AdmissionError("bad_stream_id", "stream id must be 1 to 64 of A-Z, a-z, 0-9, '_', '-'");
  }
  const streamId = request.name;
  let credential: PublishCredential | null = null;
  if (policy.requireToken) {
    const token = request.query.token;
    credential = readPublishToken(policy.secret, streamId, Array.isArray(token) ? token[0] : token);
  }
  const role = inputRole(request.query.role);
  if (policy.refusing()) throw new AdmissionError("draining", "this node is draining; reconnect to another");
  if (policy.isLive(streamId)) {
    // the two inputs of a redundant broadcast belong on two nodes (one node's death must not take both): the
    // encoder's retry goes through the balancer again, which sends it to a node without the other input
    const here = policy.liveRole?.(streamId) ?? null;
    if (here !== null && here !== role) {
      throw new AdmissionError("other_input_here", `stream ${streamId}'s ${here} input is on this node; the ${role} must reach another node: reconnect`);
    }
    throw new AdmissionError("already_live", `stream ${streamId} already has a publisher`);
  }
  const unusable = policy.unusable?.() ?? null;
  if (unusable !== null) throw new AdmissionError("state_unavailable", `${unusable}; reconnect to another node`);
  const steered = policy.steered?.() ?? null;
  if (steered !== null) throw new AdmissionError("updating", `${steered}; reconnect to be sent to one`);
  const full = policy.full();
  if (full?.elsewhere) throw new AdmissionError("at_capacity", `this node is full (${full.why}); reconnect to be sent to another`);
  if (full) throw new AdmissionError("cluster_full", `every node is full (here: ${full.why}); retry later`);
  return { streamId, credential, role };
}

/** `?role=backup` marks a broadcaster's backup push; no role (or `primary`) is the primary. */
function inputRole(value: string | string[] | undefined): InputRole {
  const role = Array.isArray(value) ? value[0] : value;
  if (role === undefined || role === "" || role === "primary") return "primary";
  if (role === "backup") return "backup";
  throw new AdmissionError("bad_role", "role must be primary or backup (?role=backup on the backup URL)");
}

/** A refused publish, wherever it was refused (here, or at the claim): one log line and one count by reason. */
export function recordRefusal(
  o: { metrics: Pick<Metrics, "refusals">; log: Logger },
  reason: RefusalReason,
  detail: string,
  where: { remote: string; stream?: unknown },
): void {
  o.metrics.refusals.inc({ reason });
  const stream = typeof where.stream === "string" ? where.stream.slice(0, 80) : undefined;
  o.log.warn("publish refused", { reason, detail, remote: where.remote, stream });
}
