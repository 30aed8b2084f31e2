// The synchronous part of publish admission: the app, the stream id, the token, a local duplicate. The
// cluster-wide duplicate check is the ownership claim in Redis (state/scripts/claim-3.lua).
import { AdmissionError } from "../errors.ts";
import type { PublishRequest } from "./rtmp-server.ts";
import { isStreamId } from "./stream-id.ts";
import { checkPublishToken } from "./token.ts";

export interface AdmissionPolicy {
  requireToken: boolean;
  secret: string;
  /** True when this node already has a live publisher for the stream. */
  isLive(streamId: string): boolean;
  /** True while the node takes no new publishers (draining). */
  refusing(): boolean;
}

export const APP = "live";

export function admitPublish(request: PublishRequest, policy: AdmissionPolicy): string {
  if (request.app !== APP) throw new AdmissionError("bad_app", `publish to rtmp://HOST/${APP}/<stream>, not app ${JSON.stringify(request.app)}`);
  if (!isStreamId(request.name)) {
    throw new AdmissionError("bad_stream_id", "stream id must be 1 to 64 of A-Z, a-z, 0-9, '_', '-'");
  }
  const streamId = request.name;
  if (policy.requireToken) {
    const token = request.query.token;
    checkPublishToken(policy.secret, streamId, Array.isArray(token) ? token[0] : token);
  }
  if (policy.refusing()) throw new AdmissionError("draining", "this node is draining; reconnect to another");
  if (policy.isLive(streamId)) throw new AdmissionError("already_live", `stream ${streamId} already has a publisher`);
  return streamId;
}
