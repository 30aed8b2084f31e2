// A claim's id: drawn at random by the node that claims a stream, never by Redis. Every timeline entry
// records the claim that wrote it and the segment's URI and key name it, so a timeline that lost its history
// (Redis restarted without its data, a replica promoted with replication lag, a stream id reused after its
// retention) restarts its sequence under new URIs: no URI baton wrote ever names other bytes later, which is
// what makes `Cache-Control: immutable` true. 48 random bits, like a publish id.
import { randomBytes } from "node:crypto";

/** A new claim id (core/ids.ts has its pattern). */
export function newClaimId(): string {
  return randomBytes(6).toString("hex");
}
