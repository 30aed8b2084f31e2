// Viewer caps: a new viewer beyond a stream's or a node's cap is answered 503 with Retry-After; the cluster's
// count of a stream is this node's plus what the other nodes' fresh registry records say.
import assert from "node:assert/strict";
import type { NodeRecord } from "../../src/core/model.ts";
import { RETRY_AFTER_S, ViewerLimits, viewersElsewhere } from "../../src/delivery/viewer-limits.ts";
import { HttpError } from "../../src/http/errors.ts";

function limits(perStream: number, perNode: number, local: Record<string, number>, elsewhere: Record<string, number> = {}): { limits: ViewerLimits; refused: string[] } {
  const refused: string[] = [];
  return {
    refused,
    limits: new ViewerLimits({ perStream, perNode, local: () => local, elsewhere: (id) => elsewhere[id] ?? 0, refused: (r) => refused.push(r) }),
  };
}

function refusal(f: () => void): HttpError {
  try {
    f();
  } catch (error) {
    if (error instanceof HttpError) return error;
    throw error;
  }
  assert.fail("the viewer was admitted");
}

describe("viewer limits", () => {
  it("admits everyone with no cap set", () => {
    const { limits: l } = limits(0, 0, { a: 1_000_000 });
    assert.equal(l.active, false);
    l.admit("a");
  });

  it("refuses a new viewer of a stream at its cap, counting the other nodes' viewers too", () => {
    const under = limits(10, 0, { a: 6 }, { a: 3 });
    under.limits.admit("a");
    const at = limits(10, 0, { a: 6 }, { a: 4 });
    const error = refusal(() => at.limits.admit("a"));
    assert.equal(error.status, 503);
    assert.equal(error.code, "TOO_MANY_VIEWERS");
    assert.equal(error.headers?.["Retry-After"], String(RETRY_AFTER_S));
    assert.deepEqual(at.refused, ["stream"]);
    at.limits.admit("b");
  });

  it("refuses a new viewer of any stream once the node serves its cap", () => {
    const { limits: l, refused } = limits(0, 5, { a: 3, b: 2 });
    assert.match(refusal(() => l.admit("c")).message, /limit of 5 viewers/);
    assert.deepEqual(refused, ["node"]);
  });

  it("sums the other nodes' fresh records per stream, not its own nor a stale one", () => {
    const record = (id: string, viewers: Record<string, number>, age: number): NodeRecord => ({
      id, state: "ready", httpUrl: "", rtmpUrl: "", version: "", startedAt: 0, heartbeatAt: 10_000 - age,
      load: { publishers: 0, viewers, cpu: 0, readyChecks: 0 },
    });
    const out = viewersElsewhere([record("me", { a: 50 }, 0), record("b", { a: 2, x: 1 }, 0), record("c", { a: 3 }, 500), record("d", { a: 9 }, 5000)], "me", 10_000, 3000);
    assert.deepEqual([...out.entries()].sort(), [["a", 5], ["x", 1]]);
  });
});
