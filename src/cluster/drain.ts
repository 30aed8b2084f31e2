// The drain of one node (an operator's rolling update). In order:
// 1. state `draining` in Redis at once: /readyz answers 503 and the agent `drain`, so the balancer sends the
//    node no new connection within about a second;
// 2. HTTP answers carry `Connection: close` and idle keep-alive sockets close; requests in flight finish, and
//    any other node serves the viewers' next requests from the shared state;
// 3. WebSocket clients get a handoff message and a 1012 close, and reconnect through the balancer;
// 4. each stream's owner marks the handoff, ends its publisher's connection (the encoder reconnects through
//    the balancer to a healthy node, which waits for the release), publishes the last segment and releases;
// 5. with no publisher, no request in flight and no WebSocket left, and once the balancer has seen the drain
//    (its checks were answered "not ready"; at most BALANCER_GRACE_MS), the node is `drained`. A node that
//    is drained may be stopped at once: were the balancer still sending it requests, every viewer of a stream
//    hashed to it would meet a closed port at the same moment.
// A deadline bounds the whole drain; past it, whatever is left is dropped.
import type { Logger } from "../core/log.ts";
import type { NodeState } from "../core/model.ts";

export interface DrainParts {
  /** Records the node's state where the cluster sees it (the registry) and resolves once written. */
  publishState(state: NodeState): Promise<void>;
  http: { drain(): void; undrain(): void; closeIdle(): void; dropAll(): void; readonly inFlight: number; readonly openSockets: number };
  viewers: { handoff(reason: string): number; setDraining(on: boolean): void; readonly size: number };
  publishers: { handoffAll(): Promise<void>; abortAll(): Promise<void>; readonly size: number };
  /** Whether the balancer has seen the drain: its checks since the drain began were answered "not ready". */
  balancerSaw(): boolean;
  log: Logger;
}

export interface DrainReport {
  reason: string;
  startedAt: number;
  finishedAt: number;
  durationMs: number;
  publishersMoved: number;
  websocketsHandedOff: number;
  /** The deadline passed and what was left was dropped. */
  forced: boolean;
}

const POLL_MS = 50;

/**
 * How long a drain waits at most for the balancer to see it. HAProxy's agent and readiness checks run every
 * 500 ms (src/cluster/haproxy.ts CHECK); where nothing checks the node (no balancer), the drain ends this
 * much later than its work.
 */
export const BALANCER_GRACE_MS = 3000;

export class Drainer {
  state: NodeState = "ready";
  last: DrainReport | null = null;
  private current: Promise<DrainReport> | null = null;
  private cancelled = false;

  constructor(private readonly parts: DrainParts) {}

  /** Starts (or joins) a drain; resolves with its report once the node is drained. */
  drain(reason: string, deadlineSec: number): Promise<DrainReport> {
    this.current ??= this.run(reason, deadlineSec).finally(() => (this.current = null));
    return this.current;
  }

  /** Takes work again. A drain in progress stops waiting; what it already handed over stays handed over. */
  async undrain(): Promise<void> {
    if (this.state === "ready") return;
    this.cancelled = true;
    this.state = "ready";
    this.parts.http.undrain();
    this.parts.viewers.setDraining(false);
    await this.parts.publishState("ready");
    this.parts.log.info("undrained: taking work again");
  }

  private async run(reason: string, deadlineSec: number): Promise<DrainReport> {
    const { http, viewers, publishers, log } = this.parts;
    const startedAt = Date.now();
    const deadline = startedAt + deadlineSec * 1000;
    this.cancelled = false;
    this.state = "draining";
    log.info("draining", { reason, publishers: publishers.size, websockets: viewers.size, deadline: deadlineSec });
    await this.parts.publishState("draining").catch(() => undefined);
    http.drain();
    viewers.setDraining(true);
    const websocketsHandedOff = viewers.handoff("node draining");
    const publishersMoved = publishers.size;
    const timeout = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now())).unref());
    await Promise.race([publishers.handoffAll(), timeout()]);

    const done = (): boolean => publishers.size === 0 && http.inFlight === 0 && viewers.size === 0;
    const graceEnd = Math.min(deadline, startedAt + BALANCER_GRACE_MS);
    const seen = (): boolean => this.parts.balancerSaw() || Date.now() >= graceEnd;
    while (!(done() && seen()) && Date.now() < deadline && !this.cancelled) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    const forced = !done() && !this.cancelled;
    if (forced) {
      log.warn("drain deadline passed; dropping what is left", { publishers: publishers.size, requests: http.inFlight, websockets: viewers.size });
      await publishers.abortAll();
      http.dropAll();
    }
    http.closeIdle();
    const report: DrainReport = {
      reason, startedAt, finishedAt: Date.now(), durationMs: Date.now() - startedAt, publishersMoved, websocketsHandedOff, forced,
    };
    if (this.cancelled) {
      log.info("drain cancelled by undrain", { durationMs: report.durationMs });
      return report;
    }
    this.state = "drained";
    await this.parts.publishState("drained").catch(() => undefined);
    this.last = report;
    log.info("drained", { durationMs: report.durationMs, publishers: publishersMoved, websockets: websocketsHandedOff, forced });
    return report;
  }
}

/** Whether a node takes new work (what /readyz answers and the agent check follows), and why not. */
export function readiness(o: { closing: boolean; state: NodeState; redisReachable: boolean; schema?: string | null }): { ok: true } | { ok: false; reason: string } {
  if (o.closing) return { ok: false, reason: "shutting down" };
  // a release that cannot read the cluster's data takes no work at all (state/schema.ts)
  if (o.schema) return { ok: false, reason: o.schema };
  if (o.state !== "ready") return { ok: false, reason: o.state };
  if (!o.redisReachable) return { ok: false, reason: "redis unreachable" };
  return { ok: true };
}
