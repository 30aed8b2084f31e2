// The slates this node keeps: streams whose input is lost (hls.inputLoss "slate"), one SlateKeeper each. A
// stream comes here two ways. Its owner on this node saw the publisher leave: the owner hands its claim over
// (keep(), same epoch, no gap). Or its owner node died, or let it go without a publisher (a drain): each
// second every ready node looks for live streams whose lease is gone or held by a node known dead
// (cluster/liveness.ts) and claims their slate at a higher epoch (adopt()); the claim is atomic, so one node
// wins and the others see the lease held. A publisher's return on any node takes the stream from its keeper.
import type { Config } from "../config/defaults.ts";
import { BatonError, errorMessage } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Claim, LadderEntry } from "../core/model.ts";
import type { StreamStore } from "../state/store.ts";
import type { Slates } from "../transcode/slate.ts";
import { SlateCadence, SlateKeeper, type SlateGroup, type TimelineEnd } from "./slate-keeper.ts";

/** The publish lease's timing, shared with the owner (owner.ts) so a slate lease lapses as fast as an owner's. */
export interface LeaseTiming {
  ttlMs: number;
  renewEveryMs: number;
}

export interface SlateKeepersOptions {
  store: Pick<StreamStore, "append" | "renew" | "release" | "claim" | "keepSlate" | "read" | "inputLoss" | "listStreams">;
  nodeId: string;
  config: Config;
  slates: Pick<Slates, "get">;
  lease: LeaseTiming;
  /** The nodes among these known dead now. */
  deadNodes(ids: Iterable<string>): Promise<Set<string>>;
  /** Whether this node takes streams' slates now (ready: not draining, not closing). */
  accepting(): boolean;
  /**
   * Where a hot standby of the stream that could take over runs (redundant ingest; one still warming up does
   * not count): "here", "elsewhere" (another live node's record says so), or null. A dead owner's stream with
   * such a standby goes to the standby, not to the slate.
   */
  standbyOf?(streamId: string): "here" | "elsewhere" | null;
  /** Whether a node's process started after `at` (NodeLiveness.restarted, read after deadNodes). */
  restarted?(nodeId: string, at: number): boolean;
  /** Tells this node's standby of the stream that the active input's node (holding `holder`) is dead. */
  takeOverDead?(streamId: string, holder: string): void;
  /** How long a lease-less stream is left to its ready standby (STANDBY_GRACE_MS unless told). */
  standbyGraceMs?: number;
  log: Logger;
  metrics: Metrics;
}

/** The node id in a lease's value (nodeId/publishId/epoch, perhaps with a mark). */
const holderNode = (holder: string): string => holder.split("/")[0] ?? "";

/**
 * How long a stream without a lease (released, or its owner's lease gone with the owner) is left to a ready hot
 * standby before the slate takes it: the standby looks every half second and takes such a stream at once, so
 * the slate covers only a standby that did not.
 */
export const STANDBY_GRACE_MS = 1500;

export class SlateKeepers {
  private readonly keepers = new Map<string, SlateKeeper>();
  /** Lease-less streams left to a ready standby, since when (this node's clock). */
  private readonly leftToStandby = new Map<string, number>();
  /** Streams being claimed or started here (a round does not start them twice). */
  private readonly starting = new Set<string>();
  private closed = false;

  constructor(private readonly o: SlateKeepersOptions) {}

  get size(): number {
    return this.keepers.size;
  }

  has(streamId: string): boolean {
    return this.keepers.has(streamId) || this.starting.has(streamId);
  }

  /** What /admin/status lists. */
  list(): { stream: string; epoch: number; segments: number }[] {
    return [...this.keepers.values()].map((k) => ({ stream: k.streamId, epoch: k.claim.epoch, segments: k.appended }));
  }

  /**
   * The publisher of a stream this node owns left: keep its slate under the owner's claim. False when it
   * cannot (the stream is no longer the claim's, or the slate could not start): the owner releases instead.
   */
  async keep(streamId: string, claim: Claim): Promise<boolean> {
    if (this.closed || !this.o.accepting()) return false;
    this.starting.add(streamId);
    try {
      const kept = await this.o.store.keepSlate(streamId, claim, this.o.lease.ttlMs);
      return kept !== null && (await this.start(streamId, kept));
    } catch (error) {
      this.o.log.warn("could not keep the slate; releasing the stream", { stream: streamId, error: errorMessage(error) });
      return false;
    } finally {
      this.starting.delete(streamId);
    }
  }

  /**
   * One round: claims the slate of every live stream that lost its input and that nobody keeps (no lease,
   * or a lease whose node is known dead). Also prepares each live stream's slate, so a takeover need not
   * wait for its encoding.
   */
  async round(): Promise<void> {
    if (this.closed || !this.o.accepting()) {
      // a node that takes no slates now starts every grace afresh when it takes them again
      this.leftToStandby.clear();
      return;
    }
    // each stream that may need a slate, and the node whose death would mean it does ("": none needed)
    const candidates: { id: string; node: string; holder: string | null; claimedAt: number }[] = [];
    for (const id of await this.o.store.listStreams()) {
      if (this.has(id)) continue;
      const { state, segments, holder, ladder, owner, released, claimedAt } = await this.o.store.inputLoss(id);
      if ((state !== "live" && state !== "reconnecting") || !segments) continue;
      if (ladder) this.prepare(ladder);
      // a lease held, or one that lapsed while its owner may live (Redis was away: it takes it back)
      const node = holder ? holderNode(holder) : released ? "" : owner;
      // this node's own lapsed claim is another process's when this one started after it (a crash, a restart)
      if (node === this.o.nodeId && (holder !== null || !this.o.restarted?.(node, claimedAt))) continue;
      candidates.push({ id, node, holder, claimedAt });
    }
    const dead = await this.o.deadNodes(candidates.flatMap((c) => (c.node ? [c.node] : [])));
    const waiting = new Set(candidates.filter((c) => c.holder === null).map((c) => c.id));
    for (const { id, node, holder, claimedAt } of candidates) {
      // a lapsed lease's owner restarted since its claim: the process that held it is gone
      const gone = node === "" || dead.has(node) || (holder === null && (this.o.restarted?.(node, claimedAt) ?? false));
      if (!gone) continue;
      // while the dead node's lease stands, a standby of the stream replaces it (its media, not the slate):
      // this node's at once, another node's in its own round; a stream without a lease (a drained owner
      // released it to the standby) is left to the standby for STANDBY_GRACE_MS, then the slate goes on anyway
      const standby = this.o.standbyOf?.(id) ?? null;
      if (holder && standby === "here") this.o.takeOverDead?.(id, holder);
      if (holder && standby !== null) continue;
      if (!holder && standby !== null && this.leaveToStandby(id)) continue;
      this.leftToStandby.delete(id);
      await this.adopt(id, holder ? node : "");
    }
    // a stream no longer waiting (taken, ended, or with its lease back) starts its grace afresh next time
    for (const id of this.leftToStandby.keys()) if (!waiting.has(id)) this.leftToStandby.delete(id);
  }

  /** Whether a lease-less stream is still within its standby's grace (the first look starts it). */
  private leaveToStandby(streamId: string): boolean {
    // read here, not once per round: the adoptions before this stream's turn in the round take time
    const now = Date.now();
    const since = this.leftToStandby.get(streamId) ?? now;
    this.leftToStandby.set(streamId, since);
    return now - since < (this.o.standbyGraceMs ?? STANDBY_GRACE_MS);
  }

  private async adopt(streamId: string, deadNode: string): Promise<void> {
    if (this.closed || !this.o.accepting() || this.has(streamId)) return;
    this.starting.add(streamId);
    try {
      const { config, nodeId } = this.o;
      const claim = await this.o.store.claim(streamId, nodeId, `slate-${nodeId}`, this.o.lease.ttlMs, config.hls.segmentDuration, { slate: true, deadNode });
      this.o.log.info("taking over the slate of a stream without input", { stream: streamId, epoch: claim.epoch, from: deadNode || "(no holder)" });
      await this.start(streamId, claim);
    } catch (error) {
      // someone else holds it now (a returning publisher, another node's round): nothing to do
      if (!(error instanceof BatonError)) this.o.log.debug("slate takeover failed", { stream: streamId, error: errorMessage(error) });
    } finally {
      this.starting.delete(streamId);
    }
  }

  /** Encodes a ladder's slate ahead of need (once per ladder: Slates caches it), so a takeover lists it at once. */
  prepare(ladder: LadderEntry[]): void {
    this.o.slates.get(ladder).catch((error: unknown) => this.o.log.warn("could not encode the slate", { error: errorMessage(error) }));
  }

  /**
   * Where the timeline stands at the claim (an older release's appends left no endsAt: then its last entry),
   * with the stream's ladder; null when there is no timeline to continue.
   */
  private async timelineEnd(streamId: string, claim: Claim): Promise<{ end: TimelineEnd; ladder: LadderEntry[] } | null> {
    if (claim.ladder && claim.nextSeq > 0 && claim.endsAt) {
      return { end: { nextSeq: claim.nextSeq, endsAt: claim.endsAt, listedAt: claim.listedAt ?? 0 }, ladder: claim.ladder };
    }
    const snapshot = await this.o.store.read(streamId);
    const last = snapshot?.entries.at(-1);
    if (!snapshot?.ladder || !last) return null;
    return { end: { nextSeq: snapshot.nextSeq, endsAt: last.pdt + Math.max(...Object.values(last.dur)) * 1000, listedAt: claim.listedAt ?? 0 }, ladder: snapshot.ladder };
  }

  /** The keeper of a claim; releases the claim when the slate cannot start. */
  private async start(streamId: string, claim: Claim): Promise<boolean> {
    const { store, log, metrics } = this.o;
    try {
      const where = await this.timelineEnd(streamId, claim);
      if (!where) throw new BatonError("NOT_LIVE", "no timeline to continue");
      const slate = await this.o.slates.get(where.ladder);
      if (this.closed) throw new BatonError("CLOSED", "node closing");
      const keeper = new SlateKeeper({
        streamId, claim, store, slate, ladder: where.ladder, end: where.end, leaseTtlMs: this.o.lease.ttlMs, renewEveryMs: this.o.lease.renewEveryMs,
        log, metrics,
      });
      keeper.reportListenerErrors((event, error) => log.error("slate listener failed", { event, error: errorMessage(error) }));
      this.keepers.set(streamId, keeper);
      metrics.streamsOnSlate.set(this.keepers.size);
      keeper.on("stopped", () => {
        if (this.keepers.get(streamId) === keeper) this.keepers.delete(streamId);
        metrics.streamsOnSlate.set(this.keepers.size);
      });
      keeper.start();
      return true;
    } catch (error) {
      log.warn("slate not started; releasing the stream", { stream: streamId, error: errorMessage(error) });
      await store.release(streamId, claim).catch(() => false);
      return false;
    }
  }

  /**
   * A publisher took over a stream without input: its transcoder's first segment is a segment duration or
   * more away, and the slate the stream showed stopped at the claim. The bridge hands the owner slate groups
   * at the timeline's cadence (to queue and append under its own claim) until it is stopped, at the owner's
   * first segment.
   */
  bridge(streamId: string, claim: Claim, queue: (group: SlateGroup) => void): SlateBridge {
    return new SlateBridge(this.timelineEnd(streamId, claim).then(async (where) => (where ? new SlateCadence(await this.o.slates.get(where.ladder), where.ladder, where.end, Date.now()) : null)), queue, (error) =>
      this.o.log.warn("no slate until the publisher's first segment", { stream: streamId, error: errorMessage(error) }),
    );
  }

  /** The slate of a stream this node keeps stops (its publisher returned here, or it was revoked). */
  async end(streamId: string, reason: string): Promise<void> {
    await this.keepers.get(streamId)?.close(reason);
  }

  /** A drain or a shutdown: every slate stops and its stream is released, for another node to keep. */
  async closeAll(reason: string, final = false): Promise<void> {
    if (final) this.closed = true;
    await Promise.all([...this.keepers.values()].map((k) => k.close(reason)));
  }
}

/** Slate groups for an owner until its first segment (SlateKeepers.bridge). */
export class SlateBridge {
  private timer: NodeJS.Timeout | null = null;
  private cadence: SlateCadence | null = null;
  private stopped = false;

  constructor(cadence: Promise<SlateCadence | null>, private readonly queue: (group: SlateGroup) => void, failed: (error: unknown) => void) {
    cadence.then((c) => {
      this.cadence = c;
      this.schedule();
    }, failed);
  }

  /** Where the slate's media ends (what the owner's date-times go on from), or null before any slate group. */
  get endsAt(): number | null {
    return this.cadence && this.cadence.count > 0 ? this.cadence.endsAt : null;
  }

  private schedule(): void {
    const cadence = this.cadence;
    if (this.stopped || !cadence) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.stopped) return;
      this.queue(cadence.peek());
      cadence.taken(Date.now());
      this.schedule();
    }, cadence.wait(Date.now()));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
