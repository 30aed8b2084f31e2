import assert from "node:assert/strict";
import { Keys } from "../../src/state/keys.ts";

const PREFIX = "baton-test:";
const CLAIM = "0123456789ab";

/** The part of a key Redis Cluster hashes: between the first "{" and the next "}", when non-empty. */
function hashTag(key: string): string | null {
  const open = key.indexOf("{");
  if (open < 0) return null;
  const close = key.indexOf("}", open + 1);
  if (close <= open + 1) return null;
  return key.slice(open + 1, close);
}

function streamKeys(keys: Keys, streamId: string): Record<string, string> {
  return {
    meta: keys.meta(streamId),
    timeline: keys.timeline(streamId),
    lease: keys.lease(streamId),
    segment: keys.segment(streamId, "720p", 0, CLAIM),
    segmentOther: keys.segment(streamId, "360p", 12, "ffffffffffff"),
  };
}

describe("redis keys", () => {
  const keys = new Keys(PREFIX);
  const streamIds = ["cam1", "CAM1", "a", "a-b_c", "x".repeat(64), "0"];

  it("every stream key starts with the prefix and carries {streamId} as its hash tag", () => {
    for (const id of streamIds) {
      for (const [what, key] of Object.entries(streamKeys(keys, id))) {
        assert.ok(key.startsWith(PREFIX), `${what} of ${id}: ${key}`);
        assert.equal(hashTag(key), id, `${what} of ${id}: ${key}`);
      }
    }
  });

  it("all of a stream's keys hash to the same slot, and different streams' keys to different tags", () => {
    const a = Object.values(streamKeys(keys, "cam1")).map(hashTag);
    const b = Object.values(streamKeys(keys, "cam2")).map(hashTag);
    assert.equal(new Set(a).size, 1);
    assert.equal(new Set(b).size, 1);
    assert.notEqual(a[0], b[0]);
  });

  it("keys differ per stream, per kind, per rendition, per sequence number and per claim", () => {
    const all: string[] = [];
    for (const id of ["cam1", "cam2", "cam10", "cam1-", "Cam1"]) {
      all.push(keys.meta(id), keys.timeline(id), keys.lease(id));
      for (const rendition of ["720p", "72", "0p", "360p", "a_b", "a-b"]) {
        for (const seq of [0, 1, 2, 10, 11, 101, 2 ** 40]) {
          for (const claim of [CLAIM, "0123456789ac", "1123456789ab"]) all.push(keys.segment(id, rendition, seq, claim));
        }
      }
    }
    all.push(keys.streams(), keys.timelineChannel());
    assert.equal(new Set(all).size, all.length, "no two keys are the same");
  });

  it("the same arguments give the same key", () => {
    assert.equal(keys.segment("cam1", "720p", 7, CLAIM), keys.segment("cam1", "720p", 7, CLAIM));
    assert.equal(new Keys(PREFIX).meta("cam1"), keys.meta("cam1"));
  });

  it("the prefix separates installations", () => {
    const other = new Keys("other:");
    assert.notEqual(other.meta("cam1"), keys.meta("cam1"));
    assert.ok(other.segment("cam1", "720p", 1, CLAIM).startsWith("other:"));
    assert.ok(other.streams().startsWith("other:"));
    assert.ok(other.timelineChannel().startsWith("other:"));
    assert.notEqual(other.streams(), keys.streams());
    assert.notEqual(other.timelineChannel(), keys.timelineChannel());
  });

  it("the stream set and the timeline channel start with the prefix and belong to no stream", () => {
    for (const key of [keys.streams(), keys.timelineChannel()]) {
      assert.ok(key.startsWith(PREFIX));
      assert.equal(hashTag(key), null);
    }
    assert.notEqual(keys.streams(), keys.timelineChannel());
  });

  const badIds: unknown[] = ["", "a b", "../etc", "a/b", "a:b", "{a}", "a}", "{", "x".repeat(65), "é", "a\n", "a*", 5, null, undefined];
  for (const id of badIds) {
    it(`throws for the stream id ${typeof id === "string" ? JSON.stringify(id) : String(id)}`, () => {
      const streamId = id as string;
      assert.throws(() => keys.meta(streamId), /invalid stream id/);
      assert.throws(() => keys.timeline(streamId), /invalid stream id/);
      assert.throws(() => keys.lease(streamId), /invalid stream id/);
      assert.throws(() => keys.segment(streamId, "720p", 0, CLAIM), /invalid/);
    });
  }

  for (const rendition of ["", "720P", "a b", "a:b", "a}", "{a", "../a", "x".repeat(33), "é"]) {
    it(`throws for the rendition ${JSON.stringify(rendition)}`, () => {
      assert.throws(() => keys.segment("cam1", rendition, 0, CLAIM), /invalid segment key part/);
    });
  }

  it("accepts a 32-character rendition name", () => {
    assert.ok(keys.segment("cam1", "r".repeat(32), 0, CLAIM).includes("r".repeat(32)));
  });

  for (const seq of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, -0.5]) {
    it(`throws for the sequence number ${seq}`, () => {
      assert.throws(() => keys.segment("cam1", "720p", seq, CLAIM), /invalid segment key part/);
    });
  }

  const badClaims: unknown[] = ["", "0123456789a", "0123456789abc", "0123456789AB", "0123456789a:", "{123456789a}", "g123456789ab", 12, null, undefined];
  for (const claim of badClaims) {
    it(`throws for the claim id ${typeof claim === "string" ? JSON.stringify(claim) : String(claim)}`, () => {
      assert.throws(() => keys.segment("cam1", "720p", 0, claim as string), /invalid segment key part/);
    });
  }

  it("accepts sequence number 0 and the largest safe integer", () => {
    assert.ok(keys.segment("cam1", "720p", 0, CLAIM).endsWith(`:0:${CLAIM}`));
    assert.ok(keys.segment("cam1", "720p", Number.MAX_SAFE_INTEGER, CLAIM).endsWith(`:${Number.MAX_SAFE_INTEGER}:${CLAIM}`));
  });
});
