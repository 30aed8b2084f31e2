// One stream's slate while it has no input: the node holding the stream's slate claim appends, in real time,
// one slate segment group per segment duration (every rendition of the stream's ladder, marked as slate), with
// the sequence numbers and date-times going on where the timeline stood. It renews the claim's lease (marked
// "#slate") each second; a publish claim on any node takes that lease at a higher epoch, and from then the
// fence refuses this keeper's appends: it stops at the first refusal or lost renewal, whichever comes first.
// The stream ends when its reconnect window passes (the sweep), which the keeper sees as a refusal too.
import { FencedError, errorMessage } from "../core/errors.ts";
import { TypedEmitter } from "../core/events.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Claim, LadderEntry } from "../core/model.ts";
import type { StreamStore } from "../state/store.ts";
import type { Slate, SlateGap } from "../transcode/slate.ts";

/** What a keeper writes through (a test can hand it a fake). */
export type SlateWriter = Pick<StreamStore, "append" | "renew" | "release">;

/** Where the timeline stands when the slate starts (a claim's or slate-2's answer). */
export interface TimelineEnd {
  nextSeq: number;
  /** Date-time (ms since the epoch) where the last listed segment's media ends. */
  endsAt: number;
  /** When the last segment was listed (ms): the slate keeps the listing's cadence from there. */
  listedAt: number;
}

/** One slate segment group, ready to append. */
export interface SlateGroup {
  seq: number;
  pdt: number;
  renditions: { name: string; duration: number; bytes: Buffer }[];
}

/**
 * The slate segments of one gap, in order, and when each is due. Date-times go on from where the timeline's
 * media ends, one segment duration each; listing keeps the timeline's cadence: the first one segment duration
 * after the last listed segment (at once when that moment passed: an owner that died listed nothing since),
 * then one each segment duration after the one before. So a player behind live gets a segment when it
 * would have got the next live one, and the slate never runs ahead of real time by more than it found.
 */
export class SlateCadence {
  /** Slate segments made so far. */
  count = 0;
  private readonly gap: SlateGap;
  private dueAt: number;

  constructor(private readonly slate: Slate, private readonly ladder: LadderEntry[], private readonly end: TimelineEnd, now: number) {
    this.gap = slate.gap();
    this.dueAt = Math.max(now, end.listedAt + slate.segmentDuration * 1000);
  }

  /** Ms from `now` until the next segment is due (0: now). */
  wait(now: number): number {
    return Math.max(0, this.dueAt - now);
  }

  /** Where the slate's media ends: the date-time the timeline's next segment starts at. */
  get endsAt(): number {
    return this.end.endsAt + this.count * this.slate.segmentDuration * 1000;
  }

  /** The next slate group (its sequence number, date-time and every rendition's bytes), not yet taken. */
  peek(): SlateGroup {
    const duration = this.slate.segmentDuration;
    return {
      seq: this.end.nextSeq + this.count,
      pdt: this.endsAt,
      renditions: this.ladder.map((r) => ({ name: r.name, duration, bytes: this.gap.segment(r.name, this.count) })),
    };
  }

  /** The group peek() made was listed (or queued) at `now`: the next is due a segment duration later. */
  taken(now: number): void {
    this.count += 1;
    this.dueAt = now + this.slate.segmentDuration * 1000;
  }
}

export interface SlateKeeperOptions {
  streamId: string;
  claim: Claim;
  store: SlateWriter;
  slate: Slate;
  ladder: LadderEntry[];
  end: TimelineEnd;
  leaseTtlMs: number;
  renewEveryMs: number;
  log: Logger;
  metrics: Metrics;
  /** The wall clock (tests move it). */
  now?: () => number;
}

type KeeperEvents = {
  /** The keeper stopped appending: the stream was taken over, ended, or the node let it go. */
  stopped: [reason: string];
};

/** How soon a failed append (Redis away) is tried again; the segments it missed follow at once. */
const RETRY_MS = 250;

export class SlateKeeper extends TypedEmitter<KeeperEvents> {
  readonly streamId: string;
  /** Slate segment groups appended. */
  appended = 0;
  private readonly cadence: SlateCadence;
  private timer: NodeJS.Timeout | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private renewing: Promise<void> | null = null;
  private appending: Promise<void> | null = null;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly o: SlateKeeperOptions) {
    super();
    this.streamId = o.streamId;
    this.now = o.now ?? Date.now;
    this.cadence = new SlateCadence(o.slate, o.ladder, o.end, this.now());
  }

  get claim(): Claim {
    return this.o.claim;
  }

  get running(): boolean {
    return !this.stopped;
  }

  start(): void {
    this.o.log.info("input lost: showing the slate", { stream: this.streamId, epoch: this.o.claim.epoch, nextSeq: this.o.end.nextSeq });
    this.renewTimer = setInterval(() => {
      this.renewing ??= this.renew().finally(() => (this.renewing = null));
    }, this.o.renewEveryMs);
    this.schedule();
  }

  private schedule(delayMs?: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.appending = this.appendNext().finally(() => (this.appending = null));
    }, delayMs ?? this.cadence.wait(this.now()));
  }

  private async appendNext(): Promise<void> {
    const group = this.cadence.peek();
    try {
      await this.o.store.append(this.streamId, this.o.claim, { ...group, disc: false, slate: true });
    } catch (error) {
      if (error instanceof FencedError) {
        // not awaited: finish() waits for this very append to return
        void this.finish(error.code === "STREAM_ENDED" ? "stream ended: no publisher within the input-loss window" : "stream taken over", false);
        return;
      }
      this.o.log.warn("slate segment not appended yet; retrying", { stream: this.streamId, seq: group.seq, error: errorMessage(error) });
      this.schedule(RETRY_MS);
      return;
    }
    this.cadence.taken(this.now());
    this.appended += 1;
    this.o.metrics.slateSegments.inc();
    this.schedule();
  }

  private async renew(): Promise<void> {
    if (this.stopped) return;
    try {
      // not awaited: finish() waits for this very renewal to return
      if (!(await this.o.store.renew(this.streamId, this.o.claim, this.o.leaseTtlMs))) void this.finish("slate lease taken over", false);
    } catch {
      // Redis away: the lease may lapse; the fence decides on the next append
    }
  }

  /** Stops appending; `release` lets the stream go (a drain, a shutdown) so another node may keep its slate. */
  async close(reason: string, release = true): Promise<void> {
    await this.finish(reason, release);
  }

  private async finish(reason: string, release: boolean): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.timer = this.renewTimer = null;
    // an append or renewal in flight lands (or is refused) before the release, never after it
    await Promise.all([this.appending, this.renewing]);
    if (release) await this.o.store.release(this.streamId, this.o.claim).catch(() => false);
    this.o.log.info("slate stopped", { stream: this.streamId, reason, segments: this.appended });
    this.emit("stopped", reason);
    this.removeAllListeners();
  }
}
