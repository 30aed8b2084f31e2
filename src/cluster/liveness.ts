// Which nodes are known dead, sooner than their publish leases say: a node whose HTTP port refuses connections
// (its process is gone: a SIGKILL, a crash) is dead at once, and so is one whose registry record expired
// (no heartbeat for NODE_TTL_MS) unless it still answers its health check. A node that does not answer in
// time is not called dead: its lease decides. Being wrong costs a disruption, never the timeline: whoever
// takes a stream takes it at a higher epoch, and the fence refuses the old holder's writes.
import type { NodeRecords } from "../state/nodes.ts";

/** How long a health check may take; a slower answer leaves the node to its lease. */
const PROBE_TIMEOUT_MS = 500;
/** Node ids whose last URL is remembered (the registry's ids come and go over a cluster's life). */
const MAX_REMEMBERED = 1000;

type Probe = "up" | "refused" | "unknown";

async function probe(httpUrl: string): Promise<Probe> {
  try {
    const response = await fetch(`${httpUrl}/healthz`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    await response.body?.cancel();
    return "up";
  } catch (error) {
    const code = (error as { cause?: { code?: string } }).cause?.code;
    return code === "ECONNREFUSED" ? "refused" : "unknown";
  }
}

export class NodeLiveness {
  private readonly urls = new Map<string, string>();
  /** When each registered node's process started, as its record said at the last look. */
  private readonly starts = new Map<string, number>();

  constructor(private readonly records: Pick<NodeRecords, "list">, private readonly selfId: string) {}

  /** The nodes among `ids` known dead now (never this node). */
  async dead(ids: Iterable<string>): Promise<Set<string>> {
    const wanted = new Set([...ids].filter((id) => id !== this.selfId));
    const dead = new Set<string>();
    if (wanted.size === 0) return dead;
    const listed = new Map((await this.records.list()).map((r) => [r.id, r]));
    for (const [id, record] of listed) {
      this.remember(id, record.httpUrl);
      this.starts.set(id, record.startedAt);
    }
    for (const id of this.starts.keys()) if (!listed.has(id)) this.starts.delete(id);
    await Promise.all([...wanted].map(async (id) => {
      const url = this.urls.get(id);
      // never seen and not registered: its heartbeat stopped before this node looked
      if (url === undefined) {
        if (!listed.has(id)) dead.add(id);
        return;
      }
      const answer = await probe(url);
      if (answer === "refused" || (answer === "unknown" && !listed.has(id))) dead.add(id);
    }));
    return dead;
  }

  /**
   * Whether the node's process started after `at` (ms since the epoch), as its record said at the last dead()
   * call: a claim made before then was its previous process's, which is gone (a crash and a restart between
   * two looks leaves the node answering, its streams' claims held by nobody).
   */
  restarted(id: string, at: number): boolean {
    return (this.starts.get(id) ?? 0) > at;
  }

  /** Whether the process of `id` that claimed something at `claimedAt` is gone: the node dead, or restarted since. */
  async gone(id: string, claimedAt: number): Promise<boolean> {
    return (await this.dead([id])).has(id) || this.restarted(id, claimedAt);
  }

  private remember(id: string, url: string): void {
    this.urls.delete(id);
    this.urls.set(id, url);
    if (this.urls.size > MAX_REMEMBERED) this.urls.delete(this.urls.keys().next().value!);
  }
}
