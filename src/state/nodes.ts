// The node registry's records in Redis: one key per node with a short TTL, refreshed by its heartbeat, and a
// set of the ids that registered (members whose record expired are dropped by readers).
import type { RedisClient } from "./client.ts";
import type { NodeRecord } from "../core/model.ts";
import type { Keys } from "./keys.ts";

export class NodeRecords {
  constructor(private readonly redis: RedisClient, private readonly keys: Keys) {}

  /** Whether records can be written now (Redis reachable). */
  get writable(): boolean {
    return this.redis.status === "ready";
  }

  // A record and the set are written by two commands, not one MULTI: in a Redis Cluster they are on
  // different shards. Nothing needs them changed together: each heartbeat writes both again, and a reader
  // drops a listed id without a record (one that a record is about to follow comes back with the next beat).
  async write(record: NodeRecord, ttlMs: number): Promise<void> {
    await Promise.all([
      this.redis.set(this.keys.node(record.id), JSON.stringify(record), "PX", ttlMs),
      this.redis.sadd(this.keys.nodes(), record.id),
    ]);
  }

  async remove(nodeId: string): Promise<void> {
    await Promise.all([this.redis.del(this.keys.node(nodeId)), this.redis.srem(this.keys.nodes(), nodeId)]);
  }

  /** Every live node's record, sorted by id; ids whose record expired are dropped from the set. */
  async list(): Promise<NodeRecord[]> {
    const ids = await this.redis.smembers(this.keys.nodes());
    if (ids.length === 0) return [];
    // one GET per record rather than an MGET, which a Redis Cluster refuses across shards (a few nodes)
    const values = await Promise.all(ids.map((id) => this.redis.get(this.keys.node(id))));
    const gone = ids.filter((_, i) => values[i] === null);
    if (gone.length > 0) await this.redis.srem(this.keys.nodes(), ...gone);
    return values
      .filter((v): v is string => v !== null)
      .map((v) => JSON.parse(v) as NodeRecord)
      .sort((a, b) => a.id.localeCompare(b.id));
  }
}
