// Segment grouping: ffmpeg finishes segment n of each rendition at about the same time, but not at once and
// not always in order. A group (segment n of every rendition) is handed on only when complete, groups leave in
// order, and a rendition that fell behind does not hold the others (or memory) for ever: once any rendition is
// more than `maxBehind` segments past the oldest incomplete group, that group is dropped.
import type { FinishedSegment } from "./job.ts";

export interface Grouped {
  /** Segment n of every rendition, in ladder order. */
  segments: FinishedSegment[];
  /** Groups were dropped just before this one (the timeline marks a discontinuity). */
  afterGap: boolean;
}

export class SegmentGrouper {
  private readonly pending = new Map<number, FinishedSegment[]>();
  private next = 0;
  private highest = -1;
  private gap = false;
  /** Groups dropped so far (incomplete when a rendition fell behind). */
  dropped = 0;
  private readonly order: Map<string, number>;

  constructor(private readonly renditions: readonly string[], private readonly maxBehind = 3) {
    this.order = new Map(renditions.map((name, i) => [name, i]));
  }

  /** Adds one finished segment; returns the groups now complete, oldest first. */
  add(segment: FinishedSegment): Grouped[] {
    // a segment of a group already handed on or dropped, or of a rendition not in the ladder, is late: ignore it
    if (segment.index < this.next || !this.order.has(segment.rendition)) return [];
    const group = this.pending.get(segment.index) ?? [];
    if (group.some((s) => s.rendition === segment.rendition)) return [];
    group.push(segment);
    this.pending.set(segment.index, group);
    this.highest = Math.max(this.highest, segment.index);
    return this.take();
  }

  /** Segments held while their groups are incomplete (bounded by maxBehind groups). */
  get held(): number {
    let n = 0;
    for (const group of this.pending.values()) n += group.length;
    return n;
  }

  private take(): Grouped[] {
    const out: Grouped[] = [];
    for (;;) {
      const group = this.pending.get(this.next);
      if (group && group.length === this.renditions.length) {
        this.pending.delete(this.next++);
        group.sort((a, b) => this.order.get(a.rendition)! - this.order.get(b.rendition)!);
        out.push({ segments: group, afterGap: this.gap });
        this.gap = false;
        continue;
      }
      if (this.highest - this.next <= this.maxBehind) return out;
      this.pending.delete(this.next++);
      this.dropped += 1;
      this.gap = true;
    }
  }
}
