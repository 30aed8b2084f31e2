// Moves streams along their life when their owner cannot: any node, every second, sweeps every stream
// (state/scripts/sweep-3.lua): a stream whose owner died enters its reconnect window, one whose window
// passed ends with EXT-X-ENDLIST, one whose retention passed is forgotten.
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { StreamStore } from "../state/store.ts";

const EVERY_MS = 1000;

export class Sweeper {
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(private readonly store: Pick<StreamStore, "listStreams" | "sweep" | "ready">, private readonly log: Logger) {}

  start(): void {
    this.timer ??= setInterval(() => void this.sweep(), EVERY_MS);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async sweep(): Promise<void> {
    if (this.running || !this.store.ready) return;
    this.running = true;
    try {
      for (const id of await this.store.listStreams()) {
        const state = await this.store.sweep(id);
        if (state === "ended") this.log.info("stream ended: no publisher within the reconnect window", { stream: id });
      }
    } catch (error) {
      this.log.debug("sweep failed", { error: errorMessage(error) });
    } finally {
      this.running = false;
    }
  }
}
