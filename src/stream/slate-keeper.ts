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

/** Where the timeline stands when the slate starts: the next sequence number and the next segment's date-time. */
export interface TimelineEnd {
  nextSeq: number;
  /** Date-time (ms since the epoch) where the last listed segment's media ends. */
  endsAt: number;
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
  private readonly gap: SlateGap;
  private timer: NodeJS.Timeout | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private renewing: Promise<void> | null = null;
  private appending: Promise<void> | null = null;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly o: SlateKeeperOptions) {
    super();
    this.streamId = o.streamId;
    this.gap = o.slate.gap();
    this.now = o.now ?? Date.now;
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

  /** The k-th slate segment's date-time: where the timeline stood, plus k segment durations. */
  private pdtOf(index: number): number {
    return this.o.end.endsAt + index * this.o.slate.segmentDuration * 1000;
  }

  /** Waits until the next slate segment's media would have been recorded (its end), as a live segment is listed. */
  private schedule(delayMs?: number): void {
    if (this.stopped) return;
    const due = this.pdtOf(this.appended + 1);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.appending = this.appendNext().finally(() => (this.appending = null));
    }, delayMs ?? Math.max(0, due - this.now()));
  }

  private async appendNext(): Promise<void> {
    const index = this.appended;
    const duration = this.o.slate.segmentDuration;
    try {
      await this.o.store.append(this.streamId, this.o.claim, {
        seq: this.o.end.nextSeq + index,
        pdt: this.pdtOf(index),
        disc: false,
        slate: true,
        renditions: this.o.ladder.map((r) => ({ name: r.name, duration, bytes: this.gap.segment(r.name, index) })),
      });
    } catch (error) {
      if (error instanceof FencedError) {
        // not awaited: finish() waits for this very append to return
        void this.finish(error.code === "STREAM_ENDED" ? "stream ended: no publisher within the input-loss window" : "stream taken over", false);
        return;
      }
      this.o.log.warn("slate segment not appended yet; retrying", { stream: this.streamId, seq: this.o.end.nextSeq + index, error: errorMessage(error) });
      this.schedule(RETRY_MS);
      return;
    }
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
