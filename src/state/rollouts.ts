// Rollouts in Redis: the update in progress (which nodes already run the new release, so the others steer
// publishers to them), the last good release (what a rollback goes back to), and a bounded history.
import type { RedisClient } from "./client.ts";
import type { Keys } from "./keys.ts";

/** A release as the local cluster's supervisor starts it. */
export interface ReleaseTarget {
  /** What the operator named: a git ref, a directory, or `current` (the checkout the cluster started from). */
  label: string;
  /** The baton checkout a node runs from (absolute path). */
  root: string;
  /** The config file nodes load (absolute path), or null for none. */
  config: string | null;
}

/** The update in progress. */
export interface ActiveRollout {
  startedAt: number;
  to: string;
  /**
   * Nodes already on the release the update goes to (during a rollback: the nodes never updated). While one
   * of them is ready, the others take no new publisher, so a moved stream moves once.
   */
  steerTo: string[];
}

export interface RolloutEvent {
  at: number;
  kind: "update" | "rollback";
  from: string;
  to: string;
  outcome: "done" | "rolled_back" | "failed";
  why: string;
  /** The nodes it restarted. */
  nodes: string[];
}

/** Updates and rollbacks kept in the history; older ones are dropped. */
export const HISTORY_LENGTH = 100;

function parse<T>(text: string | null, valid: (value: unknown) => boolean): T | null {
  if (text === null) return null;
  try {
    const value: unknown = JSON.parse(text);
    return valid(value) ? (value as T) : null;
  } catch {
    return null;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isActive = (v: unknown): boolean => isObject(v) && Array.isArray(v.steerTo) && v.steerTo.every((n) => typeof n === "string");
const isTarget = (v: unknown): boolean => isObject(v) && typeof v.root === "string" && typeof v.label === "string";
const isEvent = (v: unknown): boolean => isObject(v) && typeof v.at === "number" && typeof v.outcome === "string";

export class RolloutStore {
  constructor(private readonly redis: RedisClient, private readonly keys: Keys) {}

  async active(): Promise<ActiveRollout | null> {
    return parse<ActiveRollout>(await this.redis.get(this.keys.rolloutActive()), isActive);
  }

  /** Written with a TTL the update keeps refreshing: an update whose CLI died stops steering by itself. */
  async setActive(active: ActiveRollout, ttlMs: number): Promise<void> {
    await this.redis.set(this.keys.rolloutActive(), JSON.stringify(active), "PX", ttlMs);
  }

  async clearActive(): Promise<void> {
    await this.redis.del(this.keys.rolloutActive());
  }

  async lastGood(): Promise<ReleaseTarget | null> {
    return parse<ReleaseTarget>(await this.redis.get(this.keys.rolloutLastGood()), isTarget);
  }

  async setLastGood(target: ReleaseTarget): Promise<void> {
    await this.redis.set(this.keys.rolloutLastGood(), JSON.stringify(target));
  }

  async record(event: RolloutEvent): Promise<void> {
    await this.redis
      .multi()
      .lpush(this.keys.rolloutHistory(), JSON.stringify(event))
      .ltrim(this.keys.rolloutHistory(), 0, HISTORY_LENGTH - 1)
      .hincrby(this.keys.rolloutCounts(), event.outcome, 1)
      .exec();
  }

  /** How many updates ended with each outcome (0 for none yet). */
  async counts(): Promise<Record<RolloutEvent["outcome"], number>> {
    const raw = await this.redis.hgetall(this.keys.rolloutCounts());
    return { done: Number(raw.done ?? 0), rolled_back: Number(raw.rolled_back ?? 0), failed: Number(raw.failed ?? 0) };
  }

  /** Each stream's EXT-X-TARGETDURATION as its first claim fixed it (the meta hash), for the streams that have one. */
  async targetDurations(streamIds: string[]): Promise<Map<string, number>> {
    const values = await Promise.all(streamIds.map((id) => this.redis.hget(this.keys.meta(id), "targetDuration")));
    return new Map(streamIds.flatMap((id, i) => (values[i] === null ? [] : [[id, Number(values[i])] as [string, number]])));
  }

  /** Newest first. */
  async history(limit = HISTORY_LENGTH): Promise<RolloutEvent[]> {
    const items = await this.redis.lrange(this.keys.rolloutHistory(), 0, Math.max(0, Math.min(limit, HISTORY_LENGTH) - 1));
    return items.map((text) => parse<RolloutEvent>(text, isEvent)).filter((e): e is RolloutEvent => e !== null);
  }
}
