// Publishers during a rolling update: a stream moved off a draining node should land on a node already on
// the new release, or it moves again when that node's turn comes (issue 12: once per update). While an
// update names the nodes already updated and one of them is ready, every other node takes no new publisher:
// its agent answers `drain` to the publishers' backend (HAProxy sends the encoder to an updated node) and its
// admission refuses one that reaches it anyway.
import type { NodeRecord } from "../core/model.ts";
import type { ActiveRollout } from "../state/rollouts.ts";

/** Why this node takes no new publisher now (the updated nodes to go to), or null when it takes them. */
export function steeredAway(active: ActiveRollout | null, records: NodeRecord[], selfId: string, now: number, ttlMs: number): string | null {
  if (!active || active.steerTo.length === 0 || active.steerTo.includes(selfId)) return null;
  // an updated node with no room for another stream would refuse the encoder too (slots: cluster/capacity.ts)
  const ready = records
    .filter((r) => active.steerTo.includes(r.id) && r.state === "ready" && now - r.heartbeatAt < ttlMs && (r.load.slots ?? 1) > 0)
    .map((r) => r.id);
  // with no updated node ready to take it, refusing would leave the encoder nowhere to go
  return ready.length > 0 ? `a rolling update to ${active.to} is under way: new publishers go to ${ready.join(", ")}` : null;
}
