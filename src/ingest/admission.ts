// The synchronous part of publish admission: the app, the stream id, the token's signature, a local duplicate.
// What needs the cluster's state is decided by the stream's owner before it claims: a revocation, and whether
// an expired token is the one its live broadcast started with (src/stream/owner.ts); the cluster-wide
// duplicate check is the ownership claim in Redis (state/scripts/claim-4.lua).
import { AdmissionError, type RefusalReason } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { PublishRequest } from "./rtmp-server.ts";
import { isStreamId } from "../core/ids.ts";
import { readPublishToken, type PublishCredential } from "./token.ts";

/** An admitted publish: its stream, and what its token says (null when tokens are not required). */
export interface Admitted {
  streamId: string;
  credential: PublishCredential | null;
}

export interface AdmissionPolicy {
  requireToken: boolean;
  secret: string;
  /** True when this node already has a live publisher for the stream. */
  isLive(streamId: string): boolean;
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
  if (policy.refusing()) throw new AdmissionError("draining", "this node is draining; reconnect to another");
  if (policy.isLive(streamId)) throw new AdmissionError("already_live", `stream ${streamId} already has a publisher`);
  const unusable = policy.unusable?.() ?? null;
  if (unusable !== null) throw new AdmissionError("state_unavailable", `${unusable}; reconnect to another node`);
  const steered = policy.steered?.() ?? null;
  if (steered !== null) throw new AdmissionError("updating", `${steered}; reconnect to be sent to one`);
  const full = policy.full();
  if (full?.elsewhere) throw new AdmissionError("at_capacity", `this node is full (${full.why}); reconnect to be sent to another`);
  if (full) throw new AdmissionError("cluster_full", `every node is full (here: ${full.why}); retry later`);
  return { streamId, credential };
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
