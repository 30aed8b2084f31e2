// Capacity from measurement (a machine probe the test drives), the agent's answers per backend, and the
// prior cost of a ladder.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { AgentServer, agentAnswer } from "../../src/cluster/agent.ts";
import { BEHIND_SPEED, Capacity, ladderCost, roomElsewhere, systemProbe, type MachineProbe } from "../../src/cluster/capacity.ts";
import { DEFAULTS } from "../../src/config/defaults.ts";
import type { NodeRecord } from "../../src/core/model.ts";

/** A 2-core machine whose busy time and process CPU times the test sets. */
class FakeMachine implements MachineProbe {
  busyMs = 0;
  totalMs = 0;
  readonly processes = new Map<number, number>();
  machine(): { busyMs: number; totalMs: number; cores: number } {
    return { busyMs: this.busyMs, totalMs: this.totalMs, cores: 2 };
  }
  processMs(pid: number): number | null {
    return this.processes.get(pid) ?? null;
  }
  /** One second passes with the machine `busy` (0 to 1) and each listed process using its cores. */
  second(busy: number, cores: Record<number, number> = {}): void {
    this.totalMs += 2000;
    this.busyMs += 2000 * busy;
    for (const [pid, c] of Object.entries(cores)) this.processes.set(Number(pid), (this.processes.get(Number(pid)) ?? 0) + 1000 * c);
  }
}

function run(capacity: Capacity, machine: FakeMachine, seconds: number, busy: number, streams: { pid: number; cores: number; speed: number }[]): void {
  for (let i = 0; i < seconds; i++) {
    machine.second(busy, Object.fromEntries(streams.map((s) => [s.pid, s.cores])));
    capacity.tick(streams.map((s) => ({ pid: s.pid, speed: s.speed })), 1_000_000 + machine.totalMs / 2);
  }
}

describe("capacity", () => {
  it("an empty node always has room for one, up to transcode.capacity", () => {
    const machine = new FakeMachine();
    const capacity = new Capacity({ limit: 3, cpuTarget: 0.85, prior: 5, probe: machine });
    run(capacity, machine, 5, 0.99, []);
    assert.equal(capacity.room().slots, 3, "a busy machine refused a node its first stream");
  });

  it("admits as many more as the CPU its streams are measured to take leaves under the target", () => {
    const machine = new FakeMachine();
    const capacity = new Capacity({ limit: 10, cpuTarget: 0.85, prior: 5, probe: machine });
    // one stream taking 0.4 cores; the machine 30% busy (0.6 of 2 cores): 1.7 - 0.6 = 1.1 free, 2 more streams
    run(capacity, machine, 20, 0.3, [{ pid: 11, cores: 0.4, speed: 1.0 }]);
    assert.ok(Math.abs(capacity.costPerStream - 0.4) < 0.01, `cost ${capacity.costPerStream}`);
    assert.equal(capacity.room().slots, 2);
    // a stream admitted a moment ago has not shown in the machine's use: it counts at the measured cost
    assert.equal(capacity.room([{ pid: 11, speed: 1 }, { pid: null, speed: null }]).slots, 1);
  });

  it("uses the ladder's prior cost until a transcoder was measured", () => {
    const machine = new FakeMachine();
    const capacity = new Capacity({ limit: 10, cpuTarget: 1, prior: 0.5, probe: machine });
    run(capacity, machine, 3, 0, []);
    // two streams, neither measured: 2 x 0.5 of 2 cores used, 1 free: 2 more
    assert.equal(capacity.room([{ pid: null, speed: null }, { pid: null, speed: null }]).slots, 2);
  });

  it("takes no more streams while a transcoder falls behind real time, whatever the CPU says", () => {
    const machine = new FakeMachine();
    const capacity = new Capacity({ limit: 10, cpuTarget: 0.85, prior: 0.2, probe: machine });
    run(capacity, machine, 10, 0.1, [{ pid: 7, cores: 0.1, speed: BEHIND_SPEED - 0.05 }]);
    const room = capacity.room();
    assert.equal(room.slots, 0);
    assert.match(room.why, /0\.90x real time/);
  });

  it("counts streams only when cpuTarget is 0, and never goes past transcode.capacity", () => {
    const machine = new FakeMachine();
    const counting = new Capacity({ limit: 2, cpuTarget: 0, prior: 5, probe: machine });
    run(counting, machine, 5, 1, [{ pid: 1, cores: 2, speed: 0.5 }]);
    assert.equal(counting.room().slots, 1);
    const bounded = new Capacity({ limit: 1, cpuTarget: 0.85, prior: 0.01, probe: machine });
    run(bounded, machine, 5, 0, [{ pid: 2, cores: 0.01, speed: 1 }]);
    assert.deepEqual(bounded.room(), { slots: 0, why: "1 streams, transcode.capacity is 1" });
  });

  it("forgets a transcoder that exited (its pid may be reused)", () => {
    const machine = new FakeMachine();
    const capacity = new Capacity({ limit: 10, cpuTarget: 0.85, prior: 0.3, probe: machine });
    run(capacity, machine, 5, 0.2, [{ pid: 5, cores: 1.2, speed: 1 }]);
    assert.ok(capacity.costPerStream > 1);
    run(capacity, machine, 1, 0.2, []);
    assert.equal(capacity.costPerStream, 0.3);
  });

  it("reads a real process's CPU time from /proc and the machine's from the OS", () => {
    const before = systemProbe.processMs(process.pid);
    assert.ok(before !== null && before >= 0, "no CPU time for this process");
    // busy until the kernel's 10-ms ticks show it (a loaded machine may take longer than a quiet one)
    let after = before;
    for (const deadline = Date.now() + 10_000; after <= before && Date.now() < deadline; ) {
      for (let i = 0; i < 1e5; i++) Math.sqrt(Math.random());
      after = systemProbe.processMs(process.pid)!;
    }
    assert.ok(after > before, `CPU time did not grow: ${before} -> ${after}`);
    assert.equal(systemProbe.processMs(0x7ffffffe), null, "a pid that does not exist has no CPU time");
    const m = systemProbe.machine();
    assert.ok(m.cores >= 1 && m.totalMs >= m.busyMs && m.busyMs > 0);
  });

  it("prices the default ladder above a light one, and a slower preset above a faster one", () => {
    const production = ladderCost(DEFAULTS.transcode);
    const light = ladderCost({ preset: "ultrafast", ladder: [{ name: "240p", height: 240, videoBitrate: 400, audioBitrate: 64, maxFrameRate: 30 }] });
    assert.ok(production > 1 && production < 2, `default ladder ${production} cores`);
    assert.ok(light < 0.2, `light ladder ${light} cores`);
    assert.ok(ladderCost({ ...DEFAULTS.transcode, preset: "medium" }) > production);
  });

  it("counts a top rendition that copies the source as cheap: about the cost of the renditions below it", () => {
    const full = ladderCost(DEFAULTS.transcode);
    const copied = ladderCost(DEFAULTS.transcode, true);
    const below = ladderCost({ ...DEFAULTS.transcode, ladder: DEFAULTS.transcode.ladder.slice(1) });
    assert.equal(copied, below);
    // the 720p encode is over half the default ladder's pixels
    assert.ok(copied < full * 0.6, `copied ${copied} against full ${full}`);
    assert.equal(ladderCost({ ...DEFAULTS.transcode, passthrough: "always" }), copied);
    assert.equal(ladderCost({ ...DEFAULTS.transcode, passthrough: "auto" }), full, "auto cannot know its sources fit");
  });

  it("knows whether another ready node with a fresh record has room", () => {
    const record = (id: string, state: NodeRecord["state"], slots: number, age: number): NodeRecord => ({
      id, state, httpUrl: "", rtmpUrl: "", version: "", startedAt: 0, heartbeatAt: 10_000 - age,
      load: { publishers: 0, viewers: {}, cpu: 0, readyChecks: 0, slots },
    });
    assert.equal(roomElsewhere([record("a", "ready", 0, 0), record("b", "ready", 0, 0)], "a", 10_000, 3000), false);
    assert.equal(roomElsewhere([record("a", "ready", 0, 0), record("b", "ready", 2, 0)], "a", 10_000, 3000), true);
    assert.equal(roomElsewhere([record("a", "ready", 1, 0)], "a", 10_000, 3000), false, "itself is not elsewhere");
    assert.equal(roomElsewhere([record("b", "draining", 2, 0)], "a", 10_000, 3000), false, "a draining node takes nothing");
    assert.equal(roomElsewhere([record("b", "ready", 2, 5000)], "a", 10_000, 3000), false, "a stale record says nothing");
  });
});

describe("agent check", () => {
  it("tells the publishers' backend to drain a full node while viewers still reach it", () => {
    const full = { publishers: 1, capacity: 4, slots: 0 };
    assert.equal(agentAnswer("ready", full, "rtmp"), "drain\n");
    assert.equal(agentAnswer("ready", full, "http"), "up ready 100%\n", "the viewers' weight moved with publishers");
    assert.equal(agentAnswer("ready", { publishers: 1, capacity: 4, slots: 3 }, "rtmp"), "up ready 75%\n");
    assert.equal(agentAnswer("draining", { publishers: 0, capacity: 4, slots: 4 }, "http"), "drain\n");
    assert.equal(agentAnswer("drained", { publishers: 0, capacity: 4, slots: 4 }, "rtmp"), "maint\n");
  });

  async function ask(port: number, line: string | null): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port });
      let text = "";
      socket.on("connect", () => line !== null && socket.write(line));
      socket.on("data", (d) => (text += d.toString()));
      // a peer the agent drops (a line too long) sees the socket reset or closed with nothing said
      socket.on("close", () => resolve(text));
      socket.on("error", (error: NodeJS.ErrnoException) => (error.code === "ECONNRESET" ? resolve(text) : reject(error)));
    });
  }

  it("answers by the line HAProxy sends (agent-send), and as for viewers when none comes", async () => {
    const server = new AgentServer(0, "127.0.0.1", (backend) => `${backend}\n`);
    await server.start();
    try {
      assert.equal(await ask(server.boundPort, "rtmp\n"), "rtmp\n");
      assert.equal(await ask(server.boundPort, "http\n"), "http\n");
      assert.equal(await ask(server.boundPort, null), "http\n");
      assert.equal(await ask(server.boundPort, "x".repeat(100)), "", "a peer that is not HAProxy was answered");
    } finally {
      await server.close();
    }
  });

  it("counts only HAProxy's checks of the viewers' backend as seen out of rotation, not a stray connection", async () => {
    const server = new AgentServer(0, "127.0.0.1", () => "drain\n");
    await server.start();
    try {
      await ask(server.boundPort, null);
      await ask(server.boundPort, "rtmp\n");
      assert.equal(server.httpOutOfRotation, 0);
      await ask(server.boundPort, "http\n");
      await ask(server.boundPort, "http\n");
      assert.equal(server.httpOutOfRotation, 2);
    } finally {
      await server.close();
    }
  });
});
