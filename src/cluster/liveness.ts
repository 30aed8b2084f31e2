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

  constructor(private readonly records: Pick<NodeRecords, "list">, private readonly selfId: string) {}

  /** The nodes among `ids` known dead now (never this node). */
  async dead(ids: Iterable<string>): Promise<Set<string>> {
    const wanted = new Set([...ids].filter((id) => id !== this.selfId));
    const dead = new Set<string>();
    if (wanted.size === 0) return dead;
    const listed = new Map((await this.records.list()).map((r) => [r.id, r]));
    for (const [id, record] of listed) this.remember(id, record.httpUrl);
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

  private remember(id: string, url: string): void {
    this.urls.delete(id);
    this.urls.set(id, url);
    if (this.urls.size > MAX_REMEMBERED) this.urls.delete(this.urls.keys().next().value!);
  }
}
