// Which nodes are known dead, and whether the process that made a claim is gone: a node whose port refuses,
// one whose record expired and that does not answer, and one that answers but restarted since the claim.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { NodeLiveness } from "../../src/cluster/liveness.ts";
import type { NodeRecord } from "../../src/core/model.ts";
import { freePort } from "../../tools/processes.ts";

const record = (id: string, httpUrl: string, startedAt: number): NodeRecord => ({
  id, state: "ready", httpUrl, rtmpUrl: "", version: "t", startedAt, heartbeatAt: Date.now(),
  load: { publishers: 0, viewers: {}, cpu: 0, readyChecks: 1 },
});

describe("node liveness", () => {
  let server: Server;
  let up: string;
  before(async () => {
    server = createServer((_req, res) => res.end("ok"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    up = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("calls dead a node whose port refuses, and one gone from the registry, never one that answers or itself", async () => {
    const refused = `http://127.0.0.1:${await freePort()}`;
    let records = [record("a", up, 1000), record("b", refused, 1000), record("self", refused, 1000)];
    const liveness = new NodeLiveness({ list: async () => records }, "self");
    assert.deepEqual([...(await liveness.dead(["a", "b", "self"]))], ["b"]);
    // a node never seen and not registered: its heartbeat stopped before this node looked
    assert.deepEqual([...(await liveness.dead(["never"]))], ["never"]);
    // a remembered node whose record expired is dead only if it does not answer either
    records = [];
    assert.deepEqual([...(await liveness.dead(["a", "b"]))].sort(), ["b"]);
  });

  it("calls gone the process of a claim made before its node's current process started", async () => {
    let startedAt = 1000;
    const liveness = new NodeLiveness({ list: async () => [record("a", up, startedAt)] }, "self");
    assert.equal(await liveness.gone("a", 5000), false, "the process that claimed at 5000 is the one running since 1000");
    startedAt = 9000;
    assert.equal(await liveness.gone("a", 5000), true, "a crash and a restart since the claim: that process is gone");
    assert.equal(liveness.restarted("a", 9500), false, "a claim of the new process is its own");
  });
});
