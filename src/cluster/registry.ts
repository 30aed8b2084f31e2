// The node registry: each node writes its record (state, URLs, version, load) every second with a TTL of a
// few seconds, so a node that stops heartbeating leaves the registry within that TTL.
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { NodeRecord } from "../core/model.ts";
import type { NodeRecords } from "../state/nodes.ts";

export const HEARTBEAT_MS = 1000;
export const NODE_TTL_MS = 3000;

export class Registry {
  private timer: NodeJS.Timeout | null = null;
  private lastCpu = process.cpuUsage();
  private lastAt = Date.now();

  constructor(
    private readonly records: NodeRecords,
    private readonly record: () => Omit<NodeRecord, "heartbeatAt" | "load"> & { load: Omit<NodeRecord["load"], "cpu"> },
    private readonly log: Logger,
    /** While true the node writes no record (it cannot read the cluster's schema: state/schema.ts). */
    private readonly silent: () => boolean = () => false,
  ) {}

  start(): void {
    void this.beat();
    this.timer ??= setInterval(() => void this.beat(), HEARTBEAT_MS);
  }

  async beat(): Promise<void> {
    if (!this.records.writable || this.silent()) return;
    const now = Date.now();
    const cpu = process.cpuUsage(this.lastCpu);
    const load = (cpu.user + cpu.system) / 1000 / Math.max(1, now - this.lastAt);
    this.lastCpu = process.cpuUsage();
    this.lastAt = now;
    const base = this.record();
    const record: NodeRecord = { ...base, heartbeatAt: now, load: { ...base.load, cpu: Math.round(load * 1000) / 1000 } };
    try {
      await this.records.write(record, NODE_TTL_MS);
    } catch (error) {
      this.log.debug("heartbeat failed", { error: errorMessage(error) });
    }
  }

  /** Stops heartbeating; `remove` also deletes the record at once (a clean exit). */
  async stop(remove: boolean, nodeId: string): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (remove && this.records.writable) await this.records.remove(nodeId).catch(() => undefined);
  }
}
