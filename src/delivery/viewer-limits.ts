// Caps on viewers (delivery.maxViewersPerStream, delivery.maxViewersPerNode): checked only where a new viewer
// starts (a session start, or in CDN mode a playlist request from a client this node has not counted), so a
// viewer already watching is never turned away. A refused viewer gets 503 with Retry-After: players retry,
// and a viewer who leaves makes room within the viewer window (30 s).
import type { NodeRecord } from "../core/model.ts";
import { HttpError } from "../http/errors.ts";

/** Seconds a refused viewer is told to wait before trying again. */
export const RETRY_AFTER_S = 30;

export interface ViewerLimitOptions {
  /** delivery.maxViewersPerStream; 0: none. */
  perStream: number;
  /** delivery.maxViewersPerNode; 0: none. */
  perNode: number;
  /** This node's viewers per stream now. */
  local(): Record<string, number>;
  /** The other nodes' viewers of a stream, from their last registry records. */
  elsewhere(streamId: string): number;
  refused(reason: "stream" | "node"): void;
}

export class ViewerLimits {
  constructor(private readonly o: ViewerLimitOptions) {}

  get active(): boolean {
    return this.o.perStream > 0 || this.o.perNode > 0;
  }

  /** Throws the 503 a new viewer of the stream gets when a cap is reached. */
  admit(streamId: string): void {
    if (!this.active) return;
    const local = this.o.local();
    if (this.o.perNode > 0) {
      let total = 0;
      for (const n of Object.values(local)) total += n;
      if (total >= this.o.perNode) this.refuse("node", `this node serves its limit of ${this.o.perNode} viewers; try again shortly`);
    }
    if (this.o.perStream > 0 && (local[streamId] ?? 0) + this.o.elsewhere(streamId) >= this.o.perStream) {
      this.refuse("stream", `stream ${streamId} has its limit of ${this.o.perStream} viewers; try again shortly`);
    }
  }

  private refuse(reason: "stream" | "node", message: string): never {
    this.o.refused(reason);
    throw new HttpError(503, "TOO_MANY_VIEWERS", message, { "Retry-After": String(RETRY_AFTER_S) });
  }
}

/** Viewers per stream on the other nodes with a fresh registry record (each record carries its node's counts). */
export function viewersElsewhere(records: NodeRecord[], selfId: string, now: number, freshMs: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of records) {
    if (r.id === selfId || now - r.heartbeatAt >= freshMs) continue;
    for (const [stream, n] of Object.entries(r.load.viewers)) out.set(stream, (out.get(stream) ?? 0) + n);
  }
  return out;
}
