// Every Redis key and channel baton uses is built here and nowhere else. A stream's keys carry its id as a
// hash tag ({streamId}) so they share one Redis Cluster slot and one Lua script can touch them all.
import { isNodeId, isSessionId, isStreamId } from "../core/ids.ts";

export class Keys {
  constructor(readonly prefix: string) {}

  private stream(streamId: string, suffix: string): string {
    // Keys are only ever built from validated ids: a bad one here is a bug, not bad input.
    if (!isStreamId(streamId)) throw new Error(`invalid stream id in a key: ${JSON.stringify(streamId)}`);
    return `${this.prefix}{${streamId}}:${suffix}`;
  }

  /** Hash: epoch, claim, owner, role (the active input's: primary or backup), state, nextSeq, cc, targetDuration, ladder, timestamps. */
  meta(streamId: string): string {
    return this.stream(streamId, "meta");
  }

  /**
   * List of JSON timeline entries, oldest first: the playlist window (hls.dvrWindow 0), or with a DVR window
   * the tail not yet archived into pages (under two pages).
   */
  timeline(streamId: string): string {
    return this.stream(streamId, "timeline");
  }

  /**
   * Hash, no TTL: the stream's ended broadcasts still kept, broadcast id -> JSON record (state/broadcasts.ts);
   * a field leaves with its broadcast's media at expiry.
   */
  broadcasts(streamId: string): string {
    return this.stream(streamId, "broadcasts");
  }

  /** List of JSON page refs (state/timeline-pages.ts), oldest first: the DVR window's older entries. */
  pages(streamId: string): string {
    return this.stream(streamId, "pages");
  }

  /**
   * String: unix seconds of the stream's last revocation (`baton revoke`); publish tokens issued up to then are
   * refused. It has no TTL: it outlives every token it refuses, whatever their lifetime.
   */
  revoked(streamId: string): string {
    return this.stream(streamId, "revoked");
  }

  /** String with the TTL of a publish lease: `nodeId/publishId/epoch` of the node receiving the stream. */
  lease(streamId: string): string {
    return this.stream(streamId, "lease");
  }

  /**
   * Sorted set: the broadcasts whose media the sweep deletes from the segment store, `{streamId}/{broadcastId}`,
   * scored by when (ms): an ended broadcast's end plus its retention.
   */
  expiring(): string {
    return `${this.prefix}expiring`;
  }

  /** Set of the ids of streams that have state (live, reconnecting or ended within retention). */
  streams(): string {
    return `${this.prefix}streams`;
  }

  /** String with a short TTL: one node's registry record (JSON), refreshed by its heartbeat. */
  node(nodeId: string): string {
    if (!isNodeId(nodeId)) throw new Error(`invalid node id in a key: ${JSON.stringify(nodeId)}`);
    return `${this.prefix}node:${nodeId}`;
  }

  /** String with a short TTL: the id of the node that sweeps the streams now (lead-1.lua). */
  sweeper(): string {
    return `${this.prefix}sweeper`;
  }

  /** Set of node ids that registered; members whose record expired are removed by readers. */
  nodes(): string {
    return `${this.prefix}nodes`;
  }

  /** Hash: one viewer session (stream, rendition, node, position, paused, timestamps), with a TTL. */
  session(sessionId: string): string {
    if (!isSessionId(sessionId)) throw new Error(`invalid session id in a key: ${JSON.stringify(sessionId)}`);
    return `${this.prefix}session:${sessionId}`;
  }

  /** Pub/sub channel: admin commands for a node ({"node", "action", "exit"}), sent through any node. */
  adminChannel(): string {
    return `${this.prefix}admin`;
  }

  /** Pub/sub channel: a stream id is published on each change of its timeline or state. */
  timelineChannel(): string {
    return `${this.prefix}timeline`;
  }

  // rollouts (state/rollouts.ts): what the cluster runs, and the history of its updates; one hash tag, so the
  // history and its counts change in one MULTI in a Redis Cluster too

  /** String with a TTL the running update refreshes: the update in progress (JSON), so nodes steer publishers. */
  rolloutActive(): string {
    return `${this.prefix}{rollout}:active`;
  }

  /** String: the last release every node ran with no failed gate (JSON), what a rollback goes back to. */
  rolloutLastGood(): string {
    return `${this.prefix}{rollout}:last-good`;
  }

  /** List, newest first, trimmed: past updates and rollbacks (JSON: when, from, to, outcome, why). */
  rolloutHistory(): string {
    return `${this.prefix}{rollout}:history`;
  }

  /** Hash: outcome -> how many updates ended so (done, rolled_back, failed); never trimmed. */
  rolloutCounts(): string {
    return `${this.prefix}{rollout}:counts`;
  }

  /** String, no TTL: the schema version of the cluster's data (state/schema.ts), set by the first node. */
  schema(): string {
    return `${this.prefix}schema`;
  }
}
