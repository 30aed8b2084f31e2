// Counts the viewers a node serves: distinct clients that fetched a playlist of a stream in the last 30 s.
// A client is its session when it has one, else its address (behind the balancer, the one HAProxy names) and
// user agent. Nothing a client sends grows it without bound: keys are short, an address counts as at most a
// few user agents, the whole table has a ceiling, and it forgets on its own timer (prune()), never waiting on
// Redis.
import { createHash } from "node:crypto";
import type { Client } from "../http/answer.ts";
import type { ClientAddresses } from "../http/client-address.ts";

const WINDOW_MS = 30000;
/** Entries kept per node; beyond this, new viewers are counted in an overflow bucket per stream. */
const MAX_TRACKED = 100000;
/** Distinct user agents counted per address and stream (a household, a NAT), so unique agents cannot inflate it. */
const AGENTS_PER_ADDRESS = 8;
/** Distinct user agents whose key is remembered; user agents are client text, so this is bounded too. */
const MAX_AGENT_KEYS = 1000;

export class ViewerTracker {
  private readonly streams = new Map<string, Map<string, number>>();
  /** Per stream and address: the user agents counted, with when each was last seen. */
  private readonly agents = new Map<string, Map<string, number>>();
  private tracked = 0;
  private readonly overflow = new Map<string, number>();
  private readonly agentKeys = new Map<string, string>();

  constructor(private readonly addresses: Pick<ClientAddresses, "of">) {}

  /** A playlist request of a stream, by a session (its token) or by an address and a user agent. */
  seen(streamId: string, req: Client, session: string | null): void {
    const key = session === null ? this.anonymous(streamId, this.addresses.of(req), req.headers["user-agent"] ?? "") : `s:${session.slice(0, 64)}`;
    let viewers = this.streams.get(streamId);
    if (!viewers) this.streams.set(streamId, (viewers = new Map()));
    if (!viewers.has(key)) {
      if (this.tracked >= MAX_TRACKED) {
        this.overflow.set(streamId, Date.now());
        return;
      }
      this.tracked += 1;
    }
    viewers.set(key, Date.now());
  }

  /** Whether a client without a session is counted as a viewer of the stream now (CDN mode's viewer caps). */
  counted(streamId: string, req: Client): boolean {
    const viewers = this.streams.get(streamId);
    if (!viewers) return false;
    const address = this.addresses.of(req);
    return viewers.has(`a:${address}|${this.agentKey(req.headers["user-agent"] ?? "")}`) || viewers.has(`a:${address}|*`);
  }

  private anonymous(streamId: string, address: string, userAgent: string): string {
    const agent = this.agentKey(userAgent);
    const at = `${streamId}|${address}`;
    let agents = this.agents.get(at);
    if (!agents) {
      if (this.agents.size >= MAX_TRACKED) return `a:${address}|*`;
      this.agents.set(at, (agents = new Map()));
    }
    // past the few agents an address may have, more count as one
    if (agents.size >= AGENTS_PER_ADDRESS && !agents.has(agent)) return `a:${address}|*`;
    agents.set(agent, Date.now());
    return `a:${address}|${agent}`;
  }

  /** A user agent's short key: hashed once per distinct agent (a player sends the same one on every request). */
  private agentKey(userAgent: string): string {
    let key = this.agentKeys.get(userAgent);
    if (key === undefined) {
      key = createHash("sha1").update(userAgent).digest("base64").slice(0, 12);
      if (this.agentKeys.size >= MAX_AGENT_KEYS) this.agentKeys.clear();
      if (userAgent.length <= 512) this.agentKeys.set(userAgent, key);
    }
    return key;
  }

  /** Forgets viewers quiet for the window. */
  prune(): void {
    const cutoff = Date.now() - WINDOW_MS;
    for (const [streamId, viewers] of this.streams) {
      for (const [key, at] of viewers) {
        if (at >= cutoff) continue;
        viewers.delete(key);
        this.tracked -= 1;
      }
      if (viewers.size === 0) this.streams.delete(streamId);
    }
    for (const [streamId, at] of this.overflow) if (at < cutoff) this.overflow.delete(streamId);
    for (const [at, agents] of this.agents) {
      for (const [agent, seen] of agents) if (seen < cutoff) agents.delete(agent);
      if (agents.size === 0) this.agents.delete(at);
    }
  }

  /** Viewers per stream seen in the window (a stream over the ceiling counts what fit, plus one). */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [streamId, viewers] of this.streams) out[streamId] = viewers.size + (this.overflow.has(streamId) ? 1 : 0);
    return out;
  }

  /** Entries held, for tests and metrics. */
  get size(): number {
    return this.tracked;
  }
}
