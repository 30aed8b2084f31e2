// Polls every node directly and flags any disagreement about what a sequence number is (URI, duration,
// program date-time, discontinuity number) or a media sequence going back on a node. It also keeps each node's
// playlist growth (for the timeline picture) and the timeline's entries (for the publisher gaps).
import { parseMedia } from "./m3u8.ts";

export interface NodeUrl {
  id: string;
  httpUrl: string;
}

export interface Entry {
  pdt: number | null;
  duration: number;
  discontinuity: boolean;
  /** A slate segment (the stream had no input). */
  slate: boolean;
  /** When a node first listed it, as this checker saw (within its polling interval). */
  seenAt: number;
}

export class ConsistencyChecker {
  readonly violations: string[] = [];
  /** Per node: [time, highest listed sequence number]. */
  readonly growth = new Map<string, { at: number; lastSeq: number }[]>();
  /** Per stream: what each sequence number is, as first seen. */
  private readonly seen = new Map<string, Map<number, string>>();
  readonly entries = new Map<string, Map<number, Entry>>();
  private readonly lastMediaSequence = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  polls = 0;

  constructor(
    private readonly nodes: () => Promise<NodeUrl[]>,
    private readonly streams: { id: string; rendition: string }[],
    private readonly everyMs = 500,
  ) {}

  /** The nodes at the last successful listing. */
  private known: NodeUrl[] = [];

  start(): void {
    this.timer ??= setInterval(() => void this.poll(), this.everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async poll(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      // the node list comes through Redis: while Redis is away, the nodes known last are checked
      const nodes = await this.nodes().then((list) => (this.known = list)).catch(() => this.known);
      await Promise.all(nodes.flatMap((node) => this.streams.map((s) => this.check(node, s.id, s.rendition))));
      this.polls += 1;
    } finally {
      this.running = false;
    }
  }

  private async check(node: NodeUrl, streamId: string, rendition: string): Promise<void> {
    let text: string;
    try {
      const r = await fetch(`${node.httpUrl}/live/${streamId}/${rendition}/index.m3u8`, { signal: AbortSignal.timeout(2000) });
      if (r.status !== 200) return; // a node that is down or draining is not a disagreement
      text = await r.text();
    } catch {
      return;
    }
    const at = Date.now();
    const p = parseMedia(text);
    const key = `${node.id}/${streamId}`;
    const before = this.lastMediaSequence.get(key);
    if (before !== undefined && p.mediaSequence < before) {
      this.violations.push(`${node.id} ${streamId}: media sequence went back from ${before} to ${p.mediaSequence}`);
    }
    this.lastMediaSequence.set(key, Math.max(before ?? 0, p.mediaSequence));
    const seen = this.seen.get(streamId) ?? new Map<number, string>();
    this.seen.set(streamId, seen);
    const entries = this.entries.get(streamId) ?? new Map<number, Entry>();
    this.entries.set(streamId, entries);
    let cc = p.discontinuitySequence;
    for (const s of p.segments) {
      if (s.discontinuity) cc += 1;
      const value = `${s.uri.split("?")[0]}|${s.duration}|${s.pdt}|${cc}`;
      const known = seen.get(s.seq);
      if (known !== undefined && known !== value) this.violations.push(`${node.id} ${streamId} seq ${s.seq}: ${value} where another node said ${known}`);
      if (known === undefined) seen.set(s.seq, value);
      if (!entries.has(s.seq)) entries.set(s.seq, { pdt: s.pdt, duration: s.duration, discontinuity: s.discontinuity, slate: s.slate, seenAt: at });
    }
    const last = p.segments.length ? p.segments[p.segments.length - 1]!.seq : -1;
    const growth = this.growth.get(node.id) ?? [];
    this.growth.set(node.id, growth);
    growth.push({ at, lastSeq: last });
  }

  /**
   * Segments lost: sequence numbers some node listed during the run that the nodes' final playlists no longer
   * list although they are inside them (the DVR window keeps the whole run), or that were never listed
   * between two that were (a hole in the timeline). Fetched from every node once, at the end of the run.
   */
  async lost(): Promise<{ count: number; examples: string[] }> {
    const examples: string[] = [];
    let count = 0;
    for (const { id, rendition } of this.streams) {
      const seen = this.seen.get(id);
      if (!seen || seen.size === 0) continue;
      const finals = await Promise.all(this.known.map(async (node) => {
        const r = await fetch(`${node.httpUrl}/live/${id}/${rendition}/index.m3u8`, { signal: AbortSignal.timeout(5000) }).catch(() => null);
        return r?.status === 200 ? parseMedia(await r.text()) : null;
      }));
      const listed = new Set(finals.flatMap((p) => (p ? p.segments.map((x) => x.seq) : [])));
      const from = Math.min(...finals.flatMap((p) => (p ? [p.mediaSequence] : [])));
      const seqs = [...seen.keys()].sort((a, b) => a - b);
      for (let seq = seqs[0]!; seq <= seqs.at(-1)!; seq++) {
        const gone = seen.has(seq) ? Number.isFinite(from) && seq >= from && !listed.has(seq) : true;
        if (!gone) continue;
        count += 1;
        if (examples.length < 10) examples.push(`${id} seq ${seq}: ${seen.has(seq) ? "listed during the run, not at its end" : "never listed, between listed ones"}`);
      }
    }
    return { count, examples };
  }

  /**
   * The publisher gaps viewers saw: at each discontinuity, the time between the end of the last segment before
   * the move and the start of the first after, in ms.
   */
  gaps(): number[] {
    const out: number[] = [];
    for (const entries of this.entries.values()) {
      for (const [seq, e] of entries) {
        const prev = entries.get(seq - 1);
        if (!e.discontinuity || !prev || e.pdt === null || prev.pdt === null) continue;
        out.push(Math.max(0, Math.round(e.pdt - (prev.pdt + prev.duration * 1000))));
      }
    }
    return out;
  }
}
