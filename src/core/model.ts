// What every domain speaks of: a stream's ladder, timeline, state and ownership, a segment group, a node's
// record. The state domain stores them, delivery renders them, the stream's owner writes them, tools read them.

export interface LadderEntry {
  name: string;
  width: number;
  height: number;
  /** Peak bits per second (video maxrate plus audio), for BANDWIDTH. */
  bandwidth: number;
  /** Average bits per second, for AVERAGE-BANDWIDTH. */
  averageBandwidth: number;
  /** RFC 6381 codecs string, for CODECS. */
  codecs: string;
  frameRate: number;
}

export interface TimelineEntry {
  /** The schema the entry was written in (state/schema.ts); absent in entries written before entries carried it (1). */
  v?: number;
  seq: number;
  /** The claim that wrote the entry: with `seq` it names the segment (`{seq}.{claim}.ts`) and its keys. */
  claim: string;
  /** Program date-time of the segment's first frame, ms since the epoch. */
  pdt: number;
  /** The segment starts a discontinuity (new owner, returning publisher, restarted ffmpeg). */
  disc: boolean;
  /** Discontinuity sequence number of this segment. */
  cc: number;
  /** Duration in seconds per rendition. */
  dur: Record<string, number>;
  /** A slate segment (the stream had no input): present only on those. */
  slate?: true;
}

export type StreamState = "live" | "reconnecting" | "ended";

export interface StreamSnapshot {
  id: string;
  epoch: number;
  /** The current claim's id ("" before any). */
  claim: string;
  /** The broadcast's id: the claim that started the timeline (its media's prefix in the segment store). */
  broadcast: string;
  owner: string;
  state: StreamState;
  targetDuration: number;
  ladder: LadderEntry[] | null;
  nextSeq: number;
  createdAt: number;
  claimedAt: number;
  releasedAt: number | null;
  /** The last listed segment is a slate segment: viewers see the slate (the stream has no input). */
  slate?: boolean;
  entries: TimelineEntry[];
}

/** Which of a broadcaster's two pushes a publisher is: `?role=backup` on its URL makes it the backup. */
export type InputRole = "primary" | "backup";

export interface Claim {
  /** Drawn by the claiming node, never by Redis (see claim-id.ts); every entry the claim appends records it. */
  id: string;
  epoch: number;
  nextSeq: number;
  targetDuration: number;
  ladder: LadderEntry[] | null;
  /** The lease value: nodeId/publishId/epoch. */
  holder: string;
  /** The broadcast the stream's timeline is in: the id of the claim that started it (its media's prefix). */
  broadcast: string;
  /** A claim that keeps the slate (input loss): its lease is marked for it and a publish claim takes it. */
  slate?: boolean;
  /** Where the timeline's media ends (ms since the epoch) at the claim; 0 without a segment. */
  endsAt?: number;
  /** When the timeline's last segment was appended (ms, Redis's clock); 0 without one. */
  listedAt?: number;
  /** The stream had no input when claimed (reconnect window, a slate's or a dead node's lease). */
  inputLost?: boolean;
  /** The timeline's last entry at the claim is a slate segment (endsAt is the slate's end, not media's). */
  endsOnSlate?: boolean;
}

/** What names a claim's writes and where its media goes: enough to write for it (an append relayed by another node). */
export type ClaimRef = Pick<Claim, "id" | "epoch" | "broadcast" | "targetDuration">;

export interface SegmentGroup {
  seq: number;
  pdt: number;
  disc: boolean;
  /** Slate segments (input loss): the entry is marked, and discontinuities go where slate starts and ends. */
  slate?: boolean;
  /** Per rendition, in ladder order. */
  renditions: { name: string; duration: number; bytes: Buffer }[];
}

export type NodeState = "ready" | "draining" | "drained";

/** A stream's publisher on one node, as its registry record and /admin/status carry it (stream/standby.ts). */
export interface StreamInput {
  role: InputRole;
  /** Feeds the timeline (active), or transcodes unlisted to take over (a hot standby). */
  state: "active" | "standby";
  /** Ms its listed date-times are later than its media's own (the wall clock at each group's first frame). */
  offsetMs?: number;
  /** A standby's: whether it could take over now (its transcoder delivered media lately; false while it warms up). */
  ready?: boolean;
}

export interface NodeRecord {
  id: string;
  state: NodeState;
  httpUrl: string;
  rtmpUrl: string;
  version: string;
  /** What the node runs: version, commit, config digest (core/release.ts). */
  release?: { version: string; commit: string; config: string };
  /** The schema of the cluster's data this node reads and writes (state/schema.ts). */
  schema?: number;
  startedAt: number;
  heartbeatAt: number;
  load: {
    publishers: number;
    /** Viewers seen in the last 30 s, per stream id. */
    viewers: Record<string, number>;
    /** Process CPU use over the last heartbeat, as a fraction of one core. */
    cpu: number;
    /** Readiness checks (the balancer's, a probe's) answered "ready" in a row. */
    readyChecks: number;
    /** Transcoder speed of each stream this node owns (media seconds per second), once measured. */
    transcoders?: Record<string, number>;
    /** Streams the node may still take now, by its measured capacity (cluster/capacity.ts). */
    slots?: number;
    /** A rolling update sends new publishers away from this node to the updated ones (cluster/steering.ts). */
    steered?: boolean;
    /** Each stream's publisher here: its input role and whether it is active or a hot standby (stream/standby.ts). */
    inputs?: Record<string, StreamInput>;
  };
}
