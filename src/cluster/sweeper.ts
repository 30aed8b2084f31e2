// Moves streams along their life when their owner cannot (state/scripts/sweep-4.lua): a stream whose owner
// died enters its reconnect window, one whose window passed ends with EXT-X-ENDLIST, one whose retention
// passed is forgotten. One node sweeps at a time, the holder of a short lease (lead-1.lua) that every node
// tries to take each second, so the cost is one small script per node and one sweep per stream each second,
// not nodes x streams; when the sweeping node stops, another takes over within the lease. A state change is
// logged once, by the node whose script made it.
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { StreamStore } from "../state/store.ts";

const EVERY_MS = 1000;
/** The sweeper's lease: a dead sweeper is replaced within this (plus a round). */
export const SWEEPER_LEASE_MS = 3000;

export class Sweeper {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** Whether this node swept in its last round (for tests and status). */
  leading = false;

  constructor(
    private readonly store: Pick<StreamStore, "listStreams" | "sweep" | "ready" | "lead" | "deleteExpired">,
    private readonly nodeId: string,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.sweep(), EVERY_MS);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.leading = false;
  }

  async sweep(): Promise<void> {
    if (this.running || !this.store.ready) return;
    this.running = true;
    try {
      const leading = await this.store.lead(this.nodeId, SWEEPER_LEASE_MS);
      if (leading !== this.leading) this.log.debug(leading ? "sweeping the cluster's streams" : "another node sweeps");
      this.leading = leading;
      if (!leading) return;
      for (const id of await this.store.listStreams()) {
        const { state, changed } = await this.store.sweep(id);
        if (!changed) continue;
        if (state === "ended") this.log.info("stream ended: no publisher within the reconnect window", { stream: id });
        else if (state === "reconnecting") this.log.info("stream's publish lease expired: waiting for its publisher", { stream: id });
      }
      // ended broadcasts whose retention passed: their media leaves the segment store
      const deleted = await this.store.deleteExpired();
      if (deleted > 0) this.log.info("deleted the media of expired broadcasts", { broadcasts: deleted });
    } catch (error) {
      this.log.debug("sweep failed", { error: errorMessage(error) });
    } finally {
      this.running = false;
    }
  }
}
