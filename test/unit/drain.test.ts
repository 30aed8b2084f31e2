// The drain's state machine (src/cluster/drain.ts) against fake parts: the order of its steps, when it is
// drained, the deadline, and undrain in the middle. The end-to-end drain (HAProxy, viewers, a publisher)
// is test/integration/drain.test.ts.
import assert from "node:assert/strict";
import { BALANCER_GRACE_MS, Drainer, type DrainParts } from "../../src/cluster/drain.ts";
import type { NodeState } from "../../src/core/model.ts";
import { createLogger } from "../../src/core/log.ts";

interface Fake {
  parts: DrainParts;
  steps: string[];
  set: { inFlight: number; sockets: number; publishers: number; websockets: number; balancerSaw: boolean; balancerAsked: number };
  releasePublishers: () => void;
}

function fake(o: { publishers?: number; inFlight?: number; websockets?: number; handoffHangs?: boolean; balancerSaw?: boolean } = {}): Fake {
  const steps: string[] = [];
  const set = { inFlight: o.inFlight ?? 0, sockets: 3, publishers: o.publishers ?? 0, websockets: o.websockets ?? 0, balancerSaw: o.balancerSaw ?? true, balancerAsked: 0 };
  let releasePublishers = (): void => undefined;
  const parts: DrainParts = {
    publishState: async (state: NodeState) => void steps.push(`state ${state}`),
    http: {
      drain: () => steps.push("http drain"),
      undrain: () => steps.push("http undrain"),
      closeIdle: () => steps.push("http closeIdle"),
      dropAll: () => steps.push("http dropAll"),
      get inFlight() {
        return set.inFlight;
      },
      get openSockets() {
        return set.sockets;
      },
    },
    viewers: {
      handoff: () => {
        steps.push("viewers handoff");
        const n = set.websockets;
        set.websockets = 0;
        return n;
      },
      setDraining: (on) => steps.push(`viewers draining ${on}`),
      get size() {
        return set.websockets;
      },
    },
    publishers: {
      handoffAll: () => {
        steps.push("publishers handoff");
        return o.handoffHangs
          ? new Promise<void>((resolve) => (releasePublishers = resolve))
          : Promise.resolve().then(() => void (set.publishers = 0));
      },
      abortAll: async () => {
        steps.push("publishers abort");
        set.publishers = 0;
      },
      get size() {
        return set.publishers;
      },
    },
    balancerSaw: () => {
      set.balancerAsked++;
      return set.balancerSaw;
    },
    log: createLogger({ level: "error" }),
  };
  return { parts, steps, set, releasePublishers: () => releasePublishers() };
}

describe("drain state machine", () => {
  it("announces draining first, then HTTP, WebSockets and publishers, and is drained once nothing is left", async () => {
    const f = fake({ publishers: 2, websockets: 5 });
    const drainer = new Drainer(f.parts);
    const report = await drainer.drain("test", 5);
    assert.deepEqual(f.steps, [
      "state draining", "http drain", "viewers draining true", "viewers handoff", "publishers handoff", "http closeIdle", "state drained",
    ]);
    assert.equal(drainer.state, "drained");
    assert.equal(report.publishersMoved, 2);
    assert.equal(report.websocketsHandedOff, 5);
    assert.equal(report.forced, false);
  });

  it("waits for requests in flight before it is drained", async () => {
    const f = fake({ inFlight: 1 });
    const drainer = new Drainer(f.parts);
    const done = drainer.drain("test", 5);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(drainer.state, "draining", "a request in flight holds the drain");
    f.set.inFlight = 0;
    const report = await done;
    assert.equal(drainer.state, "drained");
    assert.equal(report.forced, false);
  });

  it("is drained only once the balancer has seen the drain, so a node stopped once drained gets no more requests", async () => {
    const f = fake({ balancerSaw: false });
    const drainer = new Drainer(f.parts);
    const done = drainer.drain("test", 5);
    const deadline = Date.now() + 2000;
    while (f.set.balancerAsked < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.ok(f.set.balancerAsked >= 3, "the drain asks whether the balancer saw it");
    assert.equal(drainer.state, "draining", "nothing left to do, but the balancer still sends requests");
    f.set.balancerSaw = true;
    const report = await done;
    assert.equal(drainer.state, "drained");
    assert.equal(report.forced, false);
  });

  it("where no balancer checks the node, is drained after the balancer's grace", async () => {
    const f = fake({ balancerSaw: false });
    const drainer = new Drainer(f.parts);
    const report = await drainer.drain("test", 10);
    assert.equal(drainer.state, "drained");
    assert.equal(report.forced, false);
    assert.ok(report.durationMs >= BALANCER_GRACE_MS, `${report.durationMs} ms`);
  });

  it("past the deadline, aborts the publishers, drops the sockets and is drained anyway", async () => {
    const f = fake({ publishers: 1, inFlight: 1, handoffHangs: true });
    const drainer = new Drainer(f.parts);
    const report = await drainer.drain("test", 0.3);
    assert.equal(report.forced, true);
    assert.ok(f.steps.includes("publishers abort") && f.steps.includes("http dropAll"), f.steps.join(", "));
    assert.equal(drainer.state, "drained");
    f.releasePublishers();
  });

  it("joins a drain already running instead of starting a second", async () => {
    const f = fake({ inFlight: 1 });
    const drainer = new Drainer(f.parts);
    const first = drainer.drain("first", 5);
    const second = drainer.drain("second", 5);
    f.set.inFlight = 0;
    assert.equal(await first, await second);
    assert.equal(f.steps.filter((s) => s === "state draining").length, 1);
  });

  it("undrain in the middle stops waiting and takes work again", async () => {
    const f = fake({ inFlight: 1 });
    const drainer = new Drainer(f.parts);
    const done = drainer.drain("test", 5);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await drainer.undrain();
    await done;
    assert.equal(drainer.state, "ready");
    assert.ok(f.steps.includes("http undrain") && f.steps.includes("viewers draining false") && f.steps.includes("state ready"));
    assert.ok(!f.steps.includes("state drained"), "an undrained node is never reported drained");
  });
});
