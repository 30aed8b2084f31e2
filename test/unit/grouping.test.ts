// The transcoder's segment grouping (src/transcode/grouping.ts) without ffmpeg: segments arrive per rendition,
// out of order; groups leave complete, in order, and a rendition that falls behind is dropped past, never
// waited for (nor held in memory) for ever.
import assert from "node:assert/strict";
import type { FinishedSegment } from "../../src/transcode/job.ts";
import { SegmentGrouper } from "../../src/transcode/grouping.ts";

const seg = (rendition: string, index: number): FinishedSegment => ({ rendition, index, start: index * 2, duration: 2, bytes: Buffer.from(`${rendition}${index}`) });
const shape = (groups: { segments: FinishedSegment[]; afterGap: boolean }[]): string[] =>
  groups.map((g) => `${g.segments.map((s) => `${s.rendition}${s.index}`).join("+")}${g.afterGap ? " (after a gap)" : ""}`);

describe("segment grouping", () => {
  it("hands a group on only when every rendition finished it, in ladder order", () => {
    const g = new SegmentGrouper(["720p", "360p"]);
    assert.deepEqual(shape(g.add(seg("360p", 0))), []);
    assert.deepEqual(shape(g.add(seg("720p", 0))), ["720p0+360p0"]);
  });

  it("keeps groups in order when a later one completes first", () => {
    const g = new SegmentGrouper(["a", "b"]);
    g.add(seg("a", 0));
    g.add(seg("a", 1));
    assert.deepEqual(shape(g.add(seg("b", 1))), [], "group 1 waits for group 0");
    assert.deepEqual(shape(g.add(seg("b", 0))), ["a0+b0", "a1+b1"]);
  });

  it("drops the oldest incomplete group once a rendition is more than three segments ahead, and says so", () => {
    const g = new SegmentGrouper(["a", "b"]);
    for (let i = 0; i <= 3; i++) g.add(seg("a", i));
    assert.equal(g.dropped, 0);
    const out = g.add(seg("a", 4));
    assert.deepEqual(shape(out), []);
    assert.equal(g.dropped, 1, "group 0 is given up");
    assert.deepEqual(shape(g.add(seg("b", 1))), ["a1+b1 (after a gap)"]);
    assert.deepEqual(shape(g.add(seg("b", 2))), ["a2+b2"], "only the first group after the gap is marked");
  });

  it("holds a bounded number of segments when one rendition never finishes anything", () => {
    const g = new SegmentGrouper(["a", "b"]);
    for (let i = 0; i < 1000; i++) g.add(seg("a", i));
    assert.ok(g.held <= 4, `${g.held} segments held`);
    assert.equal(g.dropped, 1000 - 4);
  });

  it("ignores a late segment of a group already handed on or dropped, a duplicate, and an unknown rendition", () => {
    const g = new SegmentGrouper(["a", "b"]);
    g.add(seg("a", 0));
    g.add(seg("b", 0));
    assert.deepEqual(shape(g.add(seg("a", 0))), []);
    g.add(seg("a", 1));
    assert.deepEqual(shape(g.add(seg("a", 1))), [], "a duplicate does not complete a group");
    assert.deepEqual(shape(g.add(seg("c", 1))), []);
    assert.deepEqual(shape(g.add(seg("b", 1))), ["a1+b1"]);
  });
});
