// The node registry's records in Redis: one key per node with a short TTL, refreshed by its heartbeat, and a
// set of the ids that registered (members whose record expired are dropped by readers).
import type { Redis } from "ioredis";
import type { NodeRecord } from "../core/model.ts";
import type { Keys } from "./keys.ts";

export class NodeRecords {
  constructor(private readonly redis: Redis, private readonly keys: Keys) {}

  /** Whether records can be written now (Redis reachable). */
  get writable(): boolean {
    return this.redis.status === "ready";
  }

  async write(record: NodeRecord, ttlMs: number): Promise<void> {
    await this.redis.multi().set(this.keys.node(record.id), JSON.stringify(record), "PX", ttlMs).sadd(this.keys.nodes(), record.id).exec();
  }

  async remove(nodeId: string): Promise<void> {
    await this.redis.multi().del(this.keys.node(nodeId)).srem(this.keys.nodes(), nodeId).exec();
  }

  /** Every live node's record, sorted by id; ids whose record expired are dropped from the set. */
  async list(): Promise<NodeRecord[]> {
    const ids = await this.redis.smembers(this.keys.nodes());
    if (ids.length === 0) return [];
    const values = await this.redis.mget(ids.map((id) => this.keys.node(id)));
    const gone = ids.filter((_, i) => values[i] === null);
    if (gone.length > 0) await this.redis.srem(this.keys.nodes(), ...gone);
    return values
      .filter((v): v is string => v !== null)
      .map((v) => JSON.parse(v) as NodeRecord)
      .sort((a, b) => a.id.localeCompare(b.id));
  }
}
