// Redundant ingest: a broadcaster pushes the same stream twice (the backup URL carries `?role=backup`). The
// first to claim is the active input; the other, arriving while a live publisher of the other role holds the
// lease, is a hot standby: its transcoder runs on its own node with the stream's ladder, and it keeps its last
// segment groups in memory, unlisted. It takes over, at a higher epoch through the claim script, when the
// active input is gone: its lease released or expired (a dead node), marked for a handoff (its publisher left,
// its node drains), or held with no segment appended for `standby.takeoverAfter` seconds (a silent publisher,
// a hung transcoder, a frozen node), provided the standby's own media is fresh. Its first listed group is the
// one that continues the timeline where the last listed segment ended, after a discontinuity (two nodes'
// transcoders never share timestamps), its date-time moved onto that end so the timeline's runs on. A healthy
// active input is never preempted, so a returning input stays the standby.
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { InputRole, LadderEntry, NodeRecord } from "../core/model.ts";
import type { InputView } from "../state/store.ts";
import type { SegmentGroupOut } from "../transcode/job.ts";

/** A standby's decision to take over: why, and the lease holder it preempts (null: the lease is free). */
export interface Takeover {
  reason: "released" | "handoff" | "stalled" | "slate" | "dead";
  preempt: string | null;
}

/** Segment groups a standby keeps (at 2-s segments, 20 s: a takeover after a lease expiry and a stall). */
export const STANDBY_GROUPS = 10;

/** How often a standby reads the active input's state (one small MULTI). */
export const WATCH_EVERY_MS = 500;

/**
 * Watches the active input from a standby: the timeline's progress as seen at each look (this node's clock,
 * never Redis's or another node's), and whether the lease is free.
 */
export class ActiveWatch {
  private seq = -1;
  private since: number;

  constructor(private readonly takeoverAfterMs: number, now: number) {
    this.since = now;
  }

  /** A look failed (Redis away): time without appends counts only across looks that saw the timeline. */
  unseen(now: number): void {
    this.since = now;
  }

  /**
   * What to do after one look; `mediaFresh`: the standby's own transcoder delivered a group lately;
   * `ownerDead`: the process that last claimed the stream is gone (its node dead or restarted since:
   * cluster/liveness.ts; asked only when the lease is gone without a release).
   */
  look(view: InputView, now: number, mediaFresh: boolean, ownerDead = false): Takeover | null {
    if (view.nextSeq !== this.seq) {
      this.seq = view.nextSeq;
      this.since = now;
    }
    // no lease: the active input let it go, or its node died and the lease ran out
    if (view.holder === null && view.released) return { reason: "released", preempt: null };
    if (view.holder === null && ownerDead) return { reason: "dead", preempt: null };
    // only a standby that has media to replace the active input with takes a held lease: one marked for a
    // handoff (the active input is leaving: its publisher closed, its node drains) at once, rather than after
    // the owner's flush of its last, partial segment, whose media the standby has; a stalled one after
    // takeoverAfter. A lease that lapsed while its owner lives (Redis was away longer than its TTL: the owner
    // renews it when Redis returns) is left to it, unless the stream stalls as a held one would
    if (!mediaFresh) return null;
    if (view.holder === null) return now - this.since >= this.takeoverAfterMs ? { reason: "stalled", preempt: null } : null;
    // the active input is gone and a node keeps the stream on the slate (input loss): a publish claim takes
    // a "#slate" lease at once (claim-4.lua), so the standby's media replaces the slate
    if (view.holder.endsWith("#slate")) return { reason: "slate", preempt: null };
    if (view.holder.endsWith("#handoff")) return { reason: "handoff", preempt: view.holder.slice(0, -"#handoff".length) };
    if (now - this.since >= this.takeoverAfterMs) return { reason: "stalled", preempt: view.holder };
    return null;
  }
}

/** A segment group as the owner queues it: the transcoder's (a standby holds only those), or the slate's. */
export type HeldGroup = Pick<SegmentGroupOut, "pdt" | "disc" | "finishedAt"> & {
  segments: Pick<SegmentGroupOut["segments"][number], "rendition" | "duration" | "bytes">[];
  slate?: boolean;
};

/** The end of a group's media, ms since the epoch (its longest rendition). */
function groupEnd(group: HeldGroup): number {
  return group.pdt + Math.max(0, ...group.segments.map((s) => s.duration)) * 1000;
}

/**
 * The standby's recent groups, and after a takeover the cut where its media continues the timeline: the
 * first group whose middle is past the last listed segment's end, in media time (each group's own date-time,
 * the wall clock when its first frame arrived: the listed end less the date-time offset the active input's
 * owner had added, its `offsetMs`). Both pipelines cut on the same wall-clock boundaries (job.ts
 * wallClockCuts), so that group starts where the listed media ended, give or take a frame: `mismatchMs`
 * (< 0: media repeated, > 0: skipped). Its date-time, and every later group's, is moved onto the listed end
 * (`shiftMs`), so the timeline's program date-time runs on without a jump.
 */
export class StandbyGroups {
  private readonly groups: HeldGroup[] = [];
  /** Set at a takeover: groups whose media the timeline already has are dropped until one continues it. */
  private continueAt: number | null = null;
  /** Wall-clock ms of the last group the transcoder delivered. */
  lastAt = 0;
  /** Ms added to the date-time of each group from the cut on (null until the cut). */
  shiftMs: number | null = null;
  /** The listed end's date-time, where the cut's group goes (null before the takeover, or with nothing listed). */
  private listedEnd: number | null = null;

  /** Whether the listed end is a live input's media (not the slate's): only then is there a mismatch to tell. */
  private afterMedia = true;

  /**
   * `onCut`: told the shift and the media mismatch once, when the cut is found (at the takeover, or later);
   * the mismatch is null after the slate, whose end is no media of the standby's.
   */
  constructor(private readonly keep = STANDBY_GROUPS, private readonly onCut: (shiftMs: number, mismatchMs: number | null) => void = () => undefined) {}

  /** A group from the standby's transcoder, kept (the oldest dropped beyond `keep`). */
  hold(group: HeldGroup, now = Date.now()): void {
    this.lastAt = now;
    this.groups.push(group);
    if (this.groups.length > this.keep) this.groups.shift();
  }

  /**
   * At the takeover: the held groups that continue a timeline whose last listed segment ended at `lastEnd`
   * (its date-time), `activeOffsetMs` later than that media's own time; null: it ended on the slate.
   */
  takeOver(lastEnd: number, activeOffsetMs: number | null = 0): HeldGroup[] {
    this.afterMedia = activeOffsetMs !== null;
    this.listedEnd = lastEnd > 0 ? lastEnd : null;
    this.continueAt = lastEnd > 0 ? lastEnd - (activeOffsetMs ?? 0) : null;
    if (this.continueAt === null) this.shiftMs = 0;
    return this.groups.splice(0).flatMap((g) => this.next(g) ?? []);
  }

  /** After the takeover: the group as it goes to the timeline, or null while it repeats what is listed. */
  next(group: HeldGroup): HeldGroup | null {
    if (this.shiftMs === null) {
      const at = this.continueAt!;
      if ((group.pdt + groupEnd(group)) / 2 < at) return null;
      this.shiftMs = Math.round(this.listedEnd! - group.pdt);
      this.onCut(this.shiftMs, this.afterMedia ? Math.round(group.pdt - at) : null);
    }
    return this.shiftMs === 0 ? group : { ...group, pdt: group.pdt + this.shiftMs };
  }
}

/** A standby's role against the active one's: only the other input of a redundant broadcast stands by. */
export function mayStandBy(role: InputRole, view: InputView): boolean {
  return view.holder !== null && view.role !== role && view.state !== "ended";
}

/**
 * Whether a node other than `selfId`, live by its record (a heartbeat within `ttlMs`), runs a hot standby of
 * the stream that could take over: its media fresh, or its release does not say (it counted as ready before
 * `ready` was reported).
 */
export function readyStandbyElsewhere(records: readonly NodeRecord[], selfId: string, streamId: string, now: number, ttlMs: number): boolean {
  return records.some((r) => {
    const input = r.load.inputs?.[streamId];
    return r.id !== selfId && now - r.heartbeatAt < ttlMs && input?.state === "standby" && input.ready !== false;
  });
}

export interface StandbyOptions {
  streamId: string;
  /** `standby.takeoverAfter` in ms. */
  takeoverAfterMs: number;
  /** How recent the standby's last group must be for it to replace a stalled input (ms). */
  freshMs: number;
  /** Reads the active input's state (StreamStore.inputView). */
  view(): Promise<InputView>;
  /** The date-time offset the owner on `nodeId` reports in its registry record; undefined: no record read. */
  activeOffset?(nodeId: string): number | undefined;
  /** Whether the node's process that made a claim at `claimedAt` is gone (dead, or restarted since). */
  ownerGone(nodeId: string, claimedAt: number): Promise<boolean>;
  /** The stream's ladder became known: the standby's transcoder may start. */
  ladderKnown(): void;
  /** Claims the stream and lists the held groups; a claim another holder won leaves the standby as it was. */
  takeOver(takeover: Takeover): Promise<void>;
  /** Told the cut's shift once the standby's media joins the timeline. */
  onCut(shiftMs: number, mismatchMs: number | null): void;
  log: Logger;
}

/** One stream's hot standby on this node: its held groups, the stream's ladder, and the watch on the active input. */
export class Standby {
  readonly groups: StandbyGroups;
  ladder: LadderEntry[] | null;
  /** The node that claimed the stream last (the active input's, or a slate keeper's), as the last look saw it. */
  activeNode: string;
  /**
   * That node's date-time offset as its registry record said at the last look that could read it: kept, since
   * a frozen or dead node's record expires before its lease does.
   */
  activeOffsetMs = 0;
  private readonly watch: ActiveWatch;
  private readonly timer: NodeJS.Timeout;
  private looking = false;
  private stopped = false;

  constructor(first: InputView, private readonly o: StandbyOptions) {
    this.ladder = first.ladder;
    this.activeNode = first.owner;
    this.groups = new StandbyGroups(STANDBY_GROUPS, o.onCut);
    this.watch = new ActiveWatch(o.takeoverAfterMs, Date.now());
    this.timer = setInterval(() => void this.look(), WATCH_EVERY_MS);
  }

  /**
   * The active input's node is known dead (its port refused, its record expired: cluster/liveness.ts), its
   * lease `holder` still standing: take over now, rather than after takeoverAfter, if this standby has media.
   */
  async activeDied(holder: string): Promise<void> {
    if (this.looking || this.stopped || !this.ready()) return;
    this.looking = true;
    try {
      await this.o.takeOver({ reason: "dead", preempt: holder.endsWith("#handoff") ? holder.slice(0, -"#handoff".length) : holder });
    } catch (error) {
      this.o.log.debug("standby could not take over from a dead node", { stream: this.o.streamId, error: errorMessage(error) });
    } finally {
      this.looking = false;
    }
  }

  /**
   * Whether this standby could take over now: its transcoder delivered a group lately (false while it warms
   * up, after it joined or its transcoder restarted). `baton status` and /admin/status show it.
   */
  ready(now = Date.now()): boolean {
    return now - this.groups.lastAt < this.o.freshMs;
  }

  /** Stops watching (a takeover, or the publisher left). Safe twice. */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private async look(): Promise<void> {
    if (this.looking || this.stopped) return;
    this.looking = true;
    try {
      const view = await this.o.view();
      if (view.owner) this.activeNode = view.owner;
      // kept while the claimant reports none: a slate keeper elsewhere (the listed end is still the last
      // input's media until the slate lists a segment), or a new input's record not read yet
      this.activeOffsetMs = this.o.activeOffset?.(this.activeNode) ?? this.activeOffsetMs;
      if (!this.ladder && view.ladder) {
        this.ladder = view.ladder;
        this.o.ladderKnown();
      }
      const ownerDead = view.holder === null && !view.released && (view.owner === "" || (await this.o.ownerGone(view.owner, view.claimedAt)));
      const takeover = this.watch.look(view, Date.now(), this.ready(), ownerDead);
      // without a ladder (the active input left before setting one) only a released lease is taken: the
      // standby then plans the ladder as a first owner does
      if (takeover && !this.stopped) await this.o.takeOver(takeover);
    } catch (error) {
      // Redis away: look again; the claim decides. The active input's appends were not seen meanwhile, which is
      // no stall of its own: the stall clock starts again
      this.watch.unseen(Date.now());
      this.o.log.debug("standby could not read the active input", { stream: this.o.streamId, error: errorMessage(error) });
    } finally {
      this.looking = false;
    }
  }
}

