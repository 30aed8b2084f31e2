// A node's hold on one stream for one publish: it claims the stream at a new epoch, keeps the publish lease
// while data arrives, runs the transcoder, publishes each finished segment group in order (queueing them,
// bounded, while Redis is away), and releases the stream when the publisher leaves. A write refused for a
// stale epoch means another node owns the stream now: this one stops at once.
import type { Config } from "../config/defaults.ts";
import { recordRefusal } from "../ingest/admission.ts";
import { AdmissionError, AlreadyLiveError, FencedError, HandoffPendingError, errorMessage } from "../core/errors.ts";
import { TypedEmitter } from "../core/events.ts";
import { isKeyframe, isSequenceHeader, type AVPacket } from "../ingest/nms.ts";
import type { PublisherConnection } from "../ingest/rtmp-server.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import { entryOf, type StreamStore } from "../state/store.ts";
import { newNonce, type PeerLink } from "../cluster/peers.ts";
import type { Claim, LadderEntry, SegmentGroup, StreamInput } from "../core/model.ts";
import type { SlateGroup } from "./slate-keeper.ts";
import { Standby, mayStandBy, type HeldGroup, type StandbyGroups, type Takeover } from "./standby.ts";
import { PresetGovernor } from "../transcode/degrade.ts";
import { TranscodeJob, type SegmentGroupOut } from "../transcode/job.ts";
import { ladderEntries, planLadder, replanLadder } from "../transcode/ladder.ts";
import { passthroughPlan } from "../transcode/passthrough.ts";

/** The part of the store an owner writes through (a test can hand it a fake). */
export type TimelineWriter = Pick<StreamStore, "claim" | "renew" | "setLadder" | "writeMedia" | "appendEntry" | "release" | "markHandoff" | "inputView">;
/** What a publish token is checked against before the claim: revocations and the live broadcast's grant. */
export type PublishGrants = Pick<StreamStore, "publishGrant" | "setGrant">;

/** Publish lease: how long a stream stays held after its node stops renewing it (crash, freeze, silence). */
export const LEASE_TTL_MS = 4000;
export const RENEW_EVERY_MS = 1000;
/** How long a closing owner publishes what it queued (waiting for Redis), after ffmpeg's last segment. */
const FLUSH_MS = 10000;
/**
 * How long a publisher arriving during another node's handoff waits for the release: as long as that owner
 * may take (ffmpeg's last segment, up to job.close's 5-s grace, then FLUSH_MS), so the encoder's first
 * reconnect is taken rather than refused. Its packets are kept meanwhile (the last GOP at most).
 */
const HANDOFF_WAIT_MS = 5000 + FLUSH_MS + 1000;
/** Segment groups kept while Redis is away (at 2-s segments, two minutes). */
const MAX_QUEUE = 60;
/** An append that has not landed in this long is offered to the other nodes meanwhile (cluster/peers.ts). */
const OFFER_AFTER_MS = 150;

/** A segment group waiting for its append, numbered when it was queued. */
interface Queued {
  group: SegmentGroup;
  finishedAt: number;
  /** Its media write to the segment store (started when it was queued; retried by the pump). */
  media: Promise<void>;
  written: boolean;
}

type OwnerEvents = {
  /** The owner let go of the stream: the publisher left, the stream moved, or transcoding failed. */
  closed: [reason: string];
};

export interface OwnerOptions {
  connection: PublisherConnection;
  store: TimelineWriter;
  grants: PublishGrants;
  nodeId: string;
  config: Config;
  log: Logger;
  metrics: Metrics;
  /** Whether a node is alive (its heartbeat is fresh): a dead holder's lease is waited out, not refused. */
  nodeAlive(nodeId: string): Promise<boolean>;
  /**
   * Whether the process of a node that made a claim at `claimedAt` is gone (cluster/liveness.ts: dead, or
   * restarted since): a standby takes a lapsed lease at once only from a gone owner.
   */
  ownerGone(nodeId: string, claimedAt: number): Promise<boolean>;
  /** Input loss (hls.inputLoss "slate"): takes the stream's claim over for the slate when the publisher leaves. */
  slate?: SlateHandover;
  /**
   * Whether another node runs a hot standby of the stream that could take over (its registry record says so,
   * read when asked: it is asked once, when this owner's input leaves).
   */
  standbyElsewhere?(streamId: string): Promise<boolean> | boolean;
  /** The date-time offset (`input.offsetMs`) the stream's owner on node `nodeId` reports (undefined: no record). */
  activeOffset?(streamId: string, nodeId: string): number | undefined;
  /** The direct line to the other nodes for entries whose append does not land (cluster/peers.ts). */
  peers?: Pick<PeerLink, "offer">;
}

/** Where an owner whose publisher left hands its claim (stream/slate-keepers.ts); false: it releases instead. */
export interface SlateHandover {
  keep(streamId: string, claim: Claim): Promise<boolean>;
  /** Slate groups at the timeline's cadence, for a publisher that took over a stream without input, until stopped. */
  bridge(streamId: string, claim: Claim, queue: (group: SlateGroup) => void): SlateFill;
  /** Encodes the ladder's slate ahead of need, so the slate follows the last segment at once. */
  prepare(ladder: LadderEntry[]): void;
}

/** The slate an owner lists until its transcoder's first segment (stream/slate-keepers.ts). */
export interface SlateFill {
  stop(): void;
  /** Where its slate's media ends, or null before its first group. */
  readonly endsAt: number | null;
}

/** What the owner queues for Redis: the transcoder's segment groups, and slate groups until its first. */
type QueuedGroup = HeldGroup;

export class StreamOwner extends TypedEmitter<OwnerEvents> {
  readonly streamId: string;
  claim: Claim | null = null;
  /** The transcoder's last measured speed (media seconds per second; below 1 it falls behind), or null. */
  speed: number | null = null;
  private job: TranscodeJob | null = null;

  /** The running ffmpeg's pid, or null (capacity reads its CPU time). */
  get transcoderPid(): number | null {
    return this.job?.pid ?? null;
  }
  /** Packets kept before the transcoder can start, each with when it arrived (a run's date-times start there). */
  private readonly early: { packet: AVPacket; at: number }[] = [];
  private queue: Queued[] = [];
  /** The slate until the first segment, when this publish took over a stream without input. */
  private fill: SlateFill | null = null;
  /**
   * Added to every segment's date-time of this publish (ms): where the timeline stood (the last owner's media,
   * or the slate) less the first segment's own date-time, when that is later, so date-times never go back.
   */
  private pdtShift: number | null = null;
  /** Where the queued timeline ends: the last queued group's media end (ms) and when it was queued. */
  private end: { endsAt: number; listedAt: number } = { endsAt: 0, listedAt: 0 };
  /** Whether the last queued group was slate (null: none yet in this claim): a discontinuity where it changes. */
  private lastSlate: boolean | null = null;
  /** The sequence number of the queue's head (the next to append). */
  private nextSeq = 0;
  /** Appended by other nodes for this owner, up to this sequence number (offers relayed); -1: none. */
  private committedThrough = -1;
  /** The highest sequence number offered to other nodes; -1: none. */
  private offeredThrough = -1;
  /** An append did not land promptly or failed: Redis is away from this node, new groups are offered too. */
  private redisTrouble = false;
  private offering: Promise<void> | null = null;
  private offerAgain = false;
  private renewWanted = false;
  private pumping = false;
  private dropped = false;
  private renewTimer: NodeJS.Timeout | null = null;
  /** The lease renewal in flight, awaited before the release so it cannot land after it. */
  private renewing: Promise<void> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private closing: Promise<void> | null = null;
  /**
   * The stream was handed to a hot standby elsewhere: what the transcoder finishes from now on (the segment its
   * input's end cuts short) is not listed, since the standby's segments, cut on the same boundaries, continue
   * the timeline from the last one listed.
   */
  private tailToStandby = false;
  private lost = false;
  private readonly log: Logger;
  /** While this owner is a hot standby (the other input of a redundant broadcast is active): its state. */
  private standby: Standby | null = null;
  /** After a takeover: where the standby's media continues the timeline (the cut, and its date-time shift). */
  private continuation: StandbyGroups | null = null;

  constructor(private readonly o: OwnerOptions) {
    super();
    this.streamId = o.connection.streamId;
    this.log = o.log;
    o.connection.on("packet", (packet) => this.packet(packet));
    // the publisher left (or its transcoder failed): its input is lost, and the stream shows the slate
    o.connection.on("close", (reason) => void this.close(reason, FLUSH_MS, true));
  }

  /** Whether this owner's publisher is still connected. */
  get publisherConnected(): boolean {
    return !this.o.connection.closed;
  }

  /** This owner is a hot standby and the active input's node is dead (SlateKeepers saw it): take over now. */
  activeDied(holder: string): void {
    void this.standby?.activeDied(holder);
  }

  /**
   * Which input this owner's publisher is, whether it feeds the timeline (active) or stands by, and for a
   * standby whether it could take over now (its media is fresh: not while its transcoder warms up).
   */
  get input(): StreamInput {
    const { role } = this.o.connection;
    return this.standby ? { role, state: "standby", offsetMs: this.offsetMs, ready: this.standby.ready() } : { role, state: "active", offsetMs: this.offsetMs };
  }

  /**
   * Ms the date-times this owner lists are later than its media's own (the wall clock at each group's first
   * frame): the pdtShift of its publish, or after a takeover its cut's shift. A standby that takes over reads
   * it (through the registry) to find where in its own media the listed media ended.
   */
  private get offsetMs(): number {
    return this.continuation ? (this.continuation.shiftMs ?? 0) : (this.pdtShift ?? 0);
  }

  /** Claims the stream; refuses the publisher (closing its connection) when another holds it. */
  async start(): Promise<boolean> {
    const { connection, store } = this.o;
    try {
      await this.checkCredential();
      this.claim = await this.claimWaitingForHandoff();
    } catch (error) {
      if (error instanceof AlreadyLiveError && (await this.standBy())) return true;
      const reason = error instanceof AdmissionError ? error.reason : error instanceof HandoffPendingError ? "already_live" : "state_unavailable";
      recordRefusal({ metrics: this.o.metrics, log: this.log }, reason, errorMessage(error), { remote: connection.remote, stream: this.streamId });
      this.closing = Promise.resolve();
      connection.close(reason === "state_unavailable" ? "stream state unavailable; try again" : errorMessage(error));
      return false;
    }
    const credential = connection.credential;
    if (credential && !credential.expired) {
      // this token may carry the broadcast's reconnects once it expires (a long show outlives its token)
      await this.o.grants.setGrant(this.streamId, credential.digest).catch((error: unknown) => {
        this.log.warn("could not record the broadcast's token", { stream: this.streamId, error: errorMessage(error) });
      });
    }
    if (this.closing) {
      // the publisher left while the claim was in flight
      await store.release(this.streamId, this.claim).catch(() => undefined);
      return false;
    }
    this.log.info("publish accepted", { stream: this.streamId, epoch: this.claim.epoch, nextSeq: this.claim.nextSeq, role: connection.role, remote: connection.remote });
    this.activate(this.claim);
    for (const e of this.early.splice(0)) this.packet(e.packet, e.at);
    return true;
  }

  /** From a claim on: the timeline's next sequence number is this owner's, and its lease is renewed. */
  private activate(claim: Claim, bridgeSlate = true): void {
    this.claim = claim;
    this.nextSeq = claim.nextSeq;
    this.lastSlate = null;
    this.renewTimer = setInterval(() => {
      this.renewing ??= this.renew().finally(() => (this.renewing = null));
    }, RENEW_EVERY_MS);
    this.end = { endsAt: claim.endsAt ?? 0, listedAt: claim.listedAt ?? 0 };
    // the stream had no input (the slate showed): it shows until this publish's first segment is ready (a
    // standby taking over has its held segments instead)
    if (bridgeSlate && claim.inputLost && claim.nextSeq > 0) this.slateUntilMedia(claim);
  }

  /**
   * The stream is live from a publisher of the other role: this one becomes its hot standby (standby.ts),
   * transcoding once it knows the stream's ladder and watching the active input to take over from it.
   * False when it may not (the same role twice is a duplicate, refused as before).
   */
  private async standBy(): Promise<boolean> {
    const { connection, store, config } = this.o;
    const view = await store.inputView(this.streamId).catch(() => null);
    if (!view || connection.closed || !mayStandBy(connection.role, view)) return false;
    this.standby = new Standby(view, {
      streamId: this.streamId,
      takeoverAfterMs: config.standby.takeoverAfter * 1000,
      freshMs: (2 * config.hls.segmentDuration + 1) * 1000,
      view: () => store.inputView(this.streamId),
      activeOffset: (nodeId) => this.o.activeOffset?.(this.streamId, nodeId),
      ownerGone: (id, claimedAt) => this.o.ownerGone(id, claimedAt),
      ladderKnown: () => {
        for (const e of this.early.splice(0)) this.packet(e.packet, e.at);
      },
      takeOver: (takeover) => this.takeOver(takeover),
      onCut: (shiftMs, mismatchMs) => this.cut(shiftMs, mismatchMs),
      log: this.log,
    });
    this.log.info("standing by", { stream: this.streamId, role: connection.role, active: view.role, holder: view.holder ?? undefined, remote: connection.remote });
    if (view.ladder) for (const e of this.early.splice(0)) this.packet(e.packet, e.at);
    return true;
  }

  /**
   * Where a standby's media joined the timeline: how much it repeats (< 0) or skips (> 0) at the switch
   * (`mismatchMs`), and how far its date-times moved to run on from the listed end (`shiftMs`).
   */
  private cut(shiftMs: number, mismatchMs: number | null): void {
    this.log.info("standby media continues the timeline", { stream: this.streamId, ...(mismatchMs === null ? { after: "slate" } : { mismatchMs }), shiftMs });
    if (mismatchMs !== null) this.o.metrics.standbyShift.observe(mismatchMs / 1000);
  }

  /** Claims the stream at a higher epoch and lists the held groups that continue its timeline. */
  private async takeOver(takeover: Takeover): Promise<void> {
    const { connection, store, nodeId, config, metrics } = this.o;
    // held before the claim's await: the publisher may close meanwhile (shutdown clears this.standby)
    const standby = this.standby;
    if (!standby || this.closing) return;
    let claim: Claim;
    try {
      claim = await store.claim(this.streamId, nodeId, connection.id, LEASE_TTL_MS, config.hls.segmentDuration, { role: connection.role, preempt: takeover.preempt ?? "" });
    } catch (error) {
      // the other input came back first, or another standby took over: stay the standby
      if (error instanceof AlreadyLiveError || error instanceof HandoffPendingError) return;
      throw error;
    }
    standby.stop();
    this.standby = null;
    if (this.closing) {
      await store.release(this.streamId, claim).catch(() => undefined);
      return;
    }
    metrics.standbyTakeovers.inc({ reason: takeover.reason });
    // after a slate segment the listed end is the slate's, no media of the active input's (a stream put on
    // the slate that listed none yet still ends on that input's media, at its offset)
    const activeOffsetMs = claim.endsOnSlate === true ? null : standby.activeOffsetMs;
    const held = standby.groups.takeOver(claim.endsAt ?? 0, activeOffsetMs);
    this.log.warn("standby took over", { stream: this.streamId, role: connection.role, reason: takeover.reason, epoch: claim.epoch, nextSeq: claim.nextSeq, lastEnd: claim.endsAt, activeOffsetMs: activeOffsetMs ?? undefined, held: held.length });
    this.activate(claim, held.length === 0);
    // the held groups are cut and moved already; the transcoder's next ones go through the same cut
    for (const group of held) this.enqueue(group);
    this.continuation = standby.groups;
    // a standby that never knew the ladder kept its last GOP: it starts transcoding now
    for (const e of this.early.splice(0)) this.packet(e.packet, e.at);
  }

  /**
   * Refuses a token issued up to the stream's last revocation, and an expired token unless it is the one the
   * stream's live broadcast started with (its encoder reconnecting after a drain, hours into a show).
   */
  private async checkCredential(): Promise<void> {
    const credential = this.o.connection.credential;
    if (!credential) return;
    const { revokedAt, grant, state } = await this.o.grants.publishGrant(this.streamId);
    if (revokedAt !== null && credential.issuedAt <= revokedAt) {
      throw new AdmissionError("revoked", "publish token revoked: make a new one (npm run baton -- token <stream>)");
    }
    const live = state === "live" || state === "reconnecting";
    if (credential.expired && !(live && grant === credential.digest)) throw new AdmissionError("expired_token", "publish token expired");
  }

  /**
   * Claims. While the previous owner hands the stream over (a drain, or its publisher just left), or while
   * the lease of a node that died runs out, it waits rather than refusing the encoder (packets are kept
   * meanwhile); a lease held by a live node with a live publisher is refused at once.
   */
  private async claimWaitingForHandoff(): Promise<Claim> {
    const { connection, store, nodeId, config } = this.o;
    const deadline = Date.now() + Math.max(HANDOFF_WAIT_MS, LEASE_TTL_MS + 1000);
    for (;;) {
      try {
        return await store.claim(this.streamId, nodeId, connection.id, LEASE_TTL_MS, config.hls.segmentDuration);
      } catch (error) {
        const wait =
          error instanceof HandoffPendingError ||
          (error instanceof AlreadyLiveError && error.node !== nodeId && !(await this.o.nodeAlive(error.node).catch(() => true)));
        if (!wait || Date.now() > deadline || connection.closed) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /**
   * A drain: tell other nodes the stream is coming (so its returning publisher waits rather than being
   * refused), end the publisher's connection so its encoder reconnects elsewhere, publish the last segment,
   * release the stream.
   */
  async handoff(): Promise<void> {
    await this.close("node draining: reconnect to another node");
  }

  /** Past a drain's deadline: stop at once without waiting for the last segment. */
  async abort(): Promise<void> {
    await this.job?.abort();
    await this.close("node stopping", 0);
  }

  private packet(packet: AVPacket, at = Date.now()): void {
    if (this.closing) return;
    if (!this.claim && !this.standby?.ladder) {
      // before the claim answers (or a standby knows the ladder): keep the sequence headers and the last GOP at most
      if (isKeyframe(packet)) this.early.splice(0, this.early.length, ...this.early.filter((e) => isSequenceHeader(e.packet)));
      this.early.push({ packet, at });
      return;
    }
    if (!this.job) {
      if (!isKeyframe(packet)) return;
      this.job = this.createJob();
      // the job needs the sequence headers before the keyframe that starts it
      const { audioHeader, videoHeader } = this.o.connection;
      if (audioHeader) this.job.push(audioHeader);
      if (videoHeader) this.job.push(videoHeader);
    }
    this.job.push(packet, at);
  }

  private createJob(): TranscodeJob {
    const { config, connection, metrics } = this.o;
    const claim = this.claim;
    const source = connection.source;
    // a standby transcodes to the ladder the active input set: its segments must be the same renditions
    const ladder = claim?.ladder ?? this.standby?.ladder ?? null;
    const planned = ladder ? replanLadder(ladder, config.transcode.ladder, source) : planLadder(config.transcode.ladder, source);
    const passthrough = passthroughPlan(config.transcode.passthrough, planned, source, ladder !== null);
    const renditions = passthrough.renditions;
    if (passthrough.copy) this.log.info("passthrough: the top rendition copies the source's video", { stream: this.streamId, rendition: renditions[0]?.name, codecs: renditions[0]?.codecs });
    else if (config.transcode.passthrough !== "never") this.log.info("passthrough off: full encode", { stream: this.streamId, why: passthrough.why });
    if (claim && !ladder) {
      this.o.store.setLadder(this.streamId, claim, ladderEntries(renditions)).catch((error: unknown) => {
        this.log.warn("could not record the ladder", { stream: this.streamId, error: errorMessage(error) });
      });
    }
    this.o.slate?.prepare(ladder ?? ladderEntries(renditions));
    const job = new TranscodeJob({
      streamId: this.streamId,
      publishId: connection.id,
      ffmpegPath: config.transcode.ffmpegPath,
      preset: config.transcode.preset,
      segmentDuration: config.hls.segmentDuration,
      spoolDir: config.transcode.spoolDir,
      maxRestarts: config.transcode.maxRestarts,
      niceness: config.transcode.niceness,
      renditions,
      hasAudio: source.hasAudio,
      log: this.log,
    });
    job.reportListenerErrors((event, error) => this.log.error("job listener failed", { event, error: errorMessage(error) }));
    job.on("group", (group) => this.enqueue(this.media(group)));
    const governor = new PresetGovernor(config.transcode.preset);
    job.on("progress", ({ speed, fps }) => {
      this.speed = speed;
      metrics.transcoderSpeed.set({ stream: this.streamId }, speed);
      metrics.transcoderFps.set({ stream: this.streamId }, fps);
      if (speed < 0.9) this.log.warn("transcoder slower than real time", { stream: this.streamId, speed: speed.toFixed(2), preset: governor.current });
      // behind real time: a faster preset for new segments rather than every rendition falling behind
      const step = governor.observe(speed);
      if (!step) return;
      job.switchPreset(step.to);
      metrics.presetChanges.inc({ direction: step.direction });
      const message = step.direction === "degrade" ? "transcoder behind real time: faster preset" : "transcoder has room again: slower preset restored";
      this.log.warn(message, { stream: this.streamId, from: step.from, to: step.to, speed: step.speed.toFixed(2) });
    });
    job.on("restart", () => {
      metrics.transcoderRestarts.inc();
      // no media until the next run's first segment: the slate fills the gap (a standby has no claim: nothing)
      const claim = this.claim;
      if (!claim) return;
      this.slateUntilMedia({ ...claim, ladder: claim.ladder ?? ladderEntries(renditions), nextSeq: this.nextSeq + this.queue.length, ...this.end });
    });
    job.on("dropped", (bytes) => metrics.transcoderInputDropped.inc(bytes));
    job.on("failed", (reason) => {
      this.log.error("transcoding failed; dropping the publisher", { stream: this.streamId, reason });
      metrics.streamFailures.inc({ reason: "transcode_failed" });
      connection.close("transcoding failed");
    });
    this.log.info("transcoding", { stream: this.streamId, renditions: renditions.map((r) => `${r.name}:${r.width}x${r.height}${r.copy ? ":copy" : ""}${r.copyAudio ? "+audio" : ""}`).join(",") });
    return job;
  }

  /**
   * Slate groups into the queue at the timeline's cadence until the transcoder's next segment group: after a
   * claim of a stream without input, and while the transcoder restarts (its next run's first segment is a
   * backoff, an ffmpeg start and a segment duration away).
   */
  private slateUntilMedia(from: Claim): void {
    if (!this.o.slate || this.lost || this.closing) return;
    this.fill?.stop();
    this.fill = this.o.slate.bridge(this.streamId, from, (group) => this.enqueue({
      pdt: group.pdt, disc: false, slate: true, finishedAt: Date.now(),
      segments: group.renditions.map((r) => ({ rendition: r.name, duration: r.duration, bytes: r.bytes })),
    }));
  }

  /**
   * A segment group of the transcoder: the slate (if any) stops, and date-times go on from the timeline's
   * end: at the first group, and at each restart's (a discontinuity), the shift grows if need be so they never
   * go back; within a run it stays, so they keep the transcoder's spacing.
   */
  private media(group: SegmentGroupOut): QueuedGroup {
    this.fill?.stop();
    this.fill = null;
    // after a standby's takeover its groups are moved onto the timeline by the cut (continuation): only once
    if (this.continuation) return group;
    if (this.pdtShift === null || group.disc) this.pdtShift = Math.max(this.pdtShift ?? 0, this.end.endsAt - group.pdt);
    return { ...group, pdt: group.pdt + this.pdtShift };
  }

  private enqueue(group: QueuedGroup): void {
    if (this.lost) return;
    if (this.tailToStandby) {
      this.log.info("segment left to the standby", { stream: this.streamId, durationMs: Math.round(Math.max(0, ...group.segments.map((s) => s.duration)) * 1000) });
      return;
    }
    if (this.standby) {
      this.standby.groups.hold(group);
      return;
    }
    if (this.continuation) {
      const continued = this.continuation.next(group);
      if (!continued) return;
      group = continued;
    }
    if (!this.claim) return;
    if (this.queue.length >= MAX_QUEUE) {
      // the queued groups keep their numbers (other nodes may list them from an offer already): the new one
      // is the one given up, and the next one kept starts a discontinuity
      this.dropped = true;
      this.o.metrics.segmentsDropped.inc();
      return;
    }
    const claim = this.claim;
    const seq = this.nextSeq + this.queue.length;
    const slate = group.slate === true;
    // numbered now, with the discontinuity append-2.lua records (slate starts or ends here), so an offer of it
    // says exactly what Redis will hold
    const out: SegmentGroup = {
      seq, pdt: group.pdt, disc: group.disc || this.dropped || (this.lastSlate !== null && this.lastSlate !== slate), slate,
      renditions: group.segments.map((s) => ({ name: s.rendition, duration: s.duration, bytes: s.bytes })),
    };
    this.lastSlate = slate;
    // the media goes to the segment store at once, Redis or not: an offer names only segments it can read
    const queued: Queued = { group: out, finishedAt: group.finishedAt, written: false, media: Promise.resolve() };
    queued.media = this.o.store.writeMedia(this.streamId, claim, out).then(() => {
      queued.written = true;
      if (this.redisTrouble) this.offerQueued(false);
    });
    queued.media.catch(() => undefined);
    this.queue.push(queued);
    this.end = { endsAt: group.pdt + Math.max(0, ...group.segments.map((s) => s.duration)) * 1000, listedAt: Date.now() };
    this.dropped = false;
    this.o.metrics.segmentQueue.inc();
    void this.pump();
  }

  /** Publishes queued groups in order; on a Redis error retries the head after a short wait. */
  private async pump(): Promise<void> {
    if (this.pumping || this.lost) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.lost) {
        const head = this.queue[0]!;
        const claim = this.claim!;
        const seq = head.group.seq;
        try {
          // another node may have appended it for this owner (an offer relayed while Redis was away from here)
          if (seq > this.committedThrough) {
            await head.media.catch(() => (head.media = this.o.store.writeMedia(this.streamId, claim, head.group).then(() => void (head.written = true))));
            await this.appendHead(claim, head);
          }
        } catch (error) {
          if (error instanceof FencedError && !this.relayedPast(error, seq)) {
            this.lostStream(error.message);
            return;
          }
          if (!(error instanceof FencedError)) {
            this.log.warn("segment not published yet; retrying", { stream: this.streamId, seq, queued: this.queue.length, error: errorMessage(error) });
            await new Promise<void>((resolve) => {
              this.retryTimer = setTimeout(resolve, 250);
            });
            this.retryTimer = null;
          }
          continue;
        }
        this.queue.shift();
        this.o.metrics.segmentQueue.dec();
        this.nextSeq = seq + 1;
        if (head.group.slate) {
          this.o.metrics.slateSegments.inc();
          continue;
        }
        this.o.metrics.segmentsPublished.inc();
        this.o.metrics.segmentPublishLatency.observe((Date.now() - head.finishedAt) / 1000);
        // ffmpeg's own bitrate is N/A with the segment muxer: measure what was published
        const seconds = head.group.renditions[0]?.duration ?? 0;
        const bits = head.group.renditions.reduce((sum, r) => sum + r.bytes.length * 8, 0);
        if (seconds > 0.5) this.o.metrics.transcoderKbps.set({ stream: this.streamId }, Math.round(bits / seconds / 1000));
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Appends the head; one that does not land promptly is offered to the other nodes meanwhile. */
  private async appendHead(claim: Claim, head: Queued): Promise<void> {
    const timer = setTimeout(() => {
      this.redisTrouble = true;
      this.offerQueued(false);
    }, OFFER_AFTER_MS);
    try {
      await this.o.store.appendEntry(this.streamId, claim, entryOf(claim, head.group));
      this.redisTrouble = false;
    } catch (error) {
      if (!(error instanceof FencedError)) {
        this.redisTrouble = true;
        this.offerQueued(false);
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A SEQ_MISMATCH past `seq`, for entries this owner offered: other nodes appended them for it (only this
   * claim writes them, so they are this owner's own); the queue moves on to what Redis expects.
   */
  private relayedPast(error: FencedError, seq: number): boolean {
    if (error.code !== "SEQ_MISMATCH" || error.expectedSeq === null || error.expectedSeq <= seq || error.expectedSeq - 1 > this.offeredThrough) return false;
    this.committedThrough = Math.max(this.committedThrough, error.expectedSeq - 1);
    return true;
  }

  /**
   * Offers the queued entries whose media is in the store (and, with `renew`, the lease) to the other nodes:
   * one that reaches Redis appends them for this owner, one that does not lists them from memory
   * (cluster/peers.ts). One offer at a time; a later call while one is out sends again after it.
   */
  private offerQueued(renew: boolean): void {
    const peers = this.o.peers;
    const claim = this.claim;
    if (!peers || !claim || this.lost) return;
    this.renewWanted ||= renew;
    if (this.offering) {
      this.offerAgain = true;
      return;
    }
    const ready: SegmentGroup[] = [];
    for (const q of this.queue) {
      if (!q.written) break;
      if (q.group.seq > this.committedThrough) ready.push(q.group);
    }
    const withRenew = this.renewWanted;
    if (ready.length === 0 && !withRenew) return;
    this.renewWanted = false;
    const entries = ready.map((group) => entryOf(claim, group));
    if (entries.length > 0) this.offeredThrough = Math.max(this.offeredThrough, entries.at(-1)!.seq);
    this.offering = peers
      .offer({
        v: 1, nonce: newNonce(), from: this.o.nodeId, at: Date.now(), stream: this.streamId,
        claim: { id: claim.id, epoch: claim.epoch, broadcast: claim.broadcast, targetDuration: claim.targetDuration, holder: claim.holder },
        entries, renew: withRenew ? { leaseMs: LEASE_TTL_MS, handingOver: this.closing !== null } : null,
      })
      .then((replies) => {
        for (const reply of replies) {
          if (reply.fenced) return this.lostStream(`refused by Redis through another node: ${reply.fenced}`);
          if (reply.committed > 0 && entries.length > 0) this.committedThrough = Math.max(this.committedThrough, entries[0]!.seq + reply.committed - 1);
        }
      })
      .catch((error: unknown) => this.log.warn("offer failed", { stream: this.streamId, error: errorMessage(error) }))
      .finally(() => {
        this.offering = null;
        if (this.offerAgain) {
          this.offerAgain = false;
          this.offerQueued(false);
        }
      });
  }

  private async renew(): Promise<void> {
    const claim = this.claim;
    if (!claim || this.lost) return;
    // Hold the lease only while the publisher actually sends: a silent one lets another node take over.
    // Once closing, hold it (marked for handoff) until the release, however long the flush takes: with a
    // 4-s lease and a flush of up to job.close's grace plus flushMs, another node would otherwise claim the
    // stream mid-flush and fence the last segments off. If this node dies, the lease still ends in 4 s.
    const handingOver = this.closing !== null;
    if (!handingOver && Date.now() - this.o.connection.lastDataAt > LEASE_TTL_MS) return;
    try {
      if (!(await this.o.store.renew(this.streamId, claim, LEASE_TTL_MS, handingOver))) this.lostStream("publish lease taken over");
    } catch {
      // Redis away from this node: another node that reaches it renews the lease for this owner (an owner
      // cut off from Redis alone keeps its stream); otherwise the lease may lapse, and the epoch check on the
      // next append decides
      this.offerQueued(true);
    }
  }

  /** Another node owns the stream now: stop writing, kill the transcoder, drop the publisher. */
  private lostStream(why: string): void {
    if (this.lost) return;
    this.lost = true;
    this.fill?.stop();
    this.log.warn("stream lost to another owner; stopping", { stream: this.streamId, why });
    this.o.metrics.segmentQueue.dec(this.queue.length);
    this.queue = [];
    void this.job?.abort();
    this.o.connection.close("stream taken over by another publisher");
  }

  /**
   * The publisher left (or is being let go): finish the last segment, publish what is queued (waiting up to
   * `flushMs` for Redis), then release the stream so a returning publisher can take it anywhere.
   */
  close(reason: string, flushMs = FLUSH_MS, inputLost = false): Promise<void> {
    // assigned before shutdown runs: closing the connection inside it calls close() again
    this.closing ??= Promise.resolve()
      .then(() => this.shutdown(reason, flushMs, inputLost))
      .catch((error: unknown) => {
        // a close must end the stream whatever failed on the way: the node forgets it and stays up
        this.log.error("stream close failed", { stream: this.streamId, error: errorMessage(error) });
        this.emit("closed", reason);
        this.removeAllListeners();
      });
    return this.closing;
  }

  /**
   * `inputLost`: the publisher left on its own (not a drain, a revocation, a shutdown), so with a slate
   * handover the stream keeps its timeline going on the slate instead of being released.
   */
  private async shutdown(reason: string, flushMs: number, inputLost: boolean): Promise<void> {
    this.standby?.stop();
    this.standby = null;
    // a returning publisher (here or on another node) waits for the release below instead of being refused;
    // the renewals go on (see renew()) until then
    if (this.claim && !this.lost) {
      const marked = await this.o.store.markHandoff(this.streamId, this.claim).catch(() => false);
      this.tailToStandby = marked && (await this.o.standbyElsewhere?.(this.streamId)) === true;
    }
    this.o.connection.close(reason);
    this.fill?.stop();
    await this.job?.close();
    // the publisher left while Redis is away: its queued segments (offered to the other nodes, which list them)
    // wait for Redis as long as the stream would show the slate, so that the timeline resumes with them and
    // never with other entries under their numbers
    const outageMs = inputLost ? this.o.config.hls.inputLossWindow * 1000 : 0;
    const deadline = Date.now() + Math.max(flushMs, outageMs);
    while ((this.queue.length > 0 || this.pumping) && !this.lost && Date.now() < deadline) {
      void this.pump();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.queue.length > 0) {
      this.log.error("segments lost: Redis unreachable while the stream closed", { stream: this.streamId, groups: this.queue.length });
      this.o.metrics.segmentQueue.dec(this.queue.length);
      this.o.metrics.segmentsDropped.inc(this.queue.length);
      this.queue = [];
    }
    const stillOurs = !this.lost;
    this.lost = true;
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = null;
    await this.renewing;
    // an offer out (its relayed appends and renewal) lands before the release or the slate's keeping
    await this.offering;
    const claim = this.claim;
    const slate = inputLost && stillOurs && claim !== null && this.o.slate !== undefined && (await this.o.slate.keep(this.streamId, claim));
    if (claim && !slate) {
      await this.o.store.release(this.streamId, claim).catch((error: unknown) => {
        this.log.warn("release failed; the lease will expire", { stream: this.streamId, error: errorMessage(error) });
      });
    }
    for (const gauge of [this.o.metrics.transcoderSpeed, this.o.metrics.transcoderFps, this.o.metrics.transcoderKbps]) gauge.remove({ stream: this.streamId });
    this.log.info("publish ended", { stream: this.streamId, reason });
    this.emit("closed", reason);
    this.removeAllListeners();
  }
}
