// The node registry: each node writes its record (state, URLs, version, load) every second with a TTL of a
// few seconds, so a node that stops heartbeating leaves the registry within that TTL.
import type { Redis } from "ioredis";
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Keys } from "../state/keys.ts";

export type NodeState = "ready" | "draining" | "drained";

export interface NodeRecord {
  id: string;
  state: NodeState;
  httpUrl: string;
  rtmpUrl: string;
  version: string;
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
  };
}

export const HEARTBEAT_MS = 1000;
export const NODE_TTL_MS = 3000;

export class Registry {
  private timer: NodeJS.Timeout | null = null;
  private lastCpu = process.cpuUsage();
  private lastAt = Date.now();

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly record: () => Omit<NodeRecord, "heartbeatAt" | "load"> & { load: Omit<NodeRecord["load"], "cpu"> },
    private readonly log: Logger,
  ) {}

  start(): void {
    void this.beat();
    this.timer ??= setInterval(() => void this.beat(), HEARTBEAT_MS);
  }

  async beat(): Promise<void> {
    if (this.redis.status !== "ready") return;
    const now = Date.now();
    const cpu = process.cpuUsage(this.lastCpu);
    const load = (cpu.user + cpu.system) / 1000 / Math.max(1, now - this.lastAt);
    this.lastCpu = process.cpuUsage();
    this.lastAt = now;
    const base = this.record();
    const record: NodeRecord = { ...base, heartbeatAt: now, load: { ...base.load, cpu: Math.round(load * 1000) / 1000 } };
    try {
      await this.redis.multi().set(this.keys.node(record.id), JSON.stringify(record), "PX", NODE_TTL_MS).sadd(this.keys.nodes(), record.id).exec();
    } catch (error) {
      this.log.debug("heartbeat failed", { error: errorMessage(error) });
    }
  }

  /** Stops heartbeating; `remove` also deletes the record at once (a clean exit). */
  async stop(remove: boolean, nodeId: string): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (remove && this.redis.status === "ready") {
      await this.redis.multi().del(this.keys.node(nodeId)).srem(this.keys.nodes(), nodeId).exec().catch(() => undefined);
    }
  }
}

/** Every live node's record, sorted by id; ids whose record expired are dropped from the set. */
export async function listNodes(redis: Redis, keys: Keys): Promise<NodeRecord[]> {
  const ids = await redis.smembers(keys.nodes());
  if (ids.length === 0) return [];
  const values = await redis.mget(ids.map((id) => keys.node(id)));
  const gone = ids.filter((_, i) => values[i] === null);
  if (gone.length > 0) await redis.srem(keys.nodes(), ...gone);
  return values
    .filter((v): v is string => v !== null)
    .map((v) => JSON.parse(v) as NodeRecord)
    .sort((a, b) => a.id.localeCompare(b.id));
}
