import assert from "node:assert/strict";
import { Keys } from "../../src/state/keys.ts";

const PREFIX = "baton-test:";

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
    pages: keys.pages(streamId),
    broadcasts: keys.broadcasts(streamId),
    lease: keys.lease(streamId),
    revoked: keys.revoked(streamId),
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

  it("keys differ per stream and per kind (segment bytes are not in Redis: see the storage tests)", () => {
    const all: string[] = [];
    for (const id of ["cam1", "cam2", "cam10", "cam1-", "Cam1"]) all.push(...Object.values(streamKeys(keys, id)));
    all.push(keys.streams(), keys.timelineChannel(), keys.sweeper(), keys.expiring());
    assert.equal(new Set(all).size, all.length, "no two keys are the same");
  });

  it("the same arguments give the same key", () => {
    assert.equal(keys.lease("cam1"), keys.lease("cam1"));
    assert.equal(new Keys(PREFIX).meta("cam1"), keys.meta("cam1"));
  });

  it("the prefix separates installations", () => {
    const other = new Keys("other:");
    assert.notEqual(other.meta("cam1"), keys.meta("cam1"));
    assert.ok(other.lease("cam1").startsWith("other:"));
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
      assert.throws(() => keys.revoked(streamId), /invalid stream id/);
    });
  }
});
