// Admission by capacity on the real stack: three nodes behind HAProxy with transcode.capacity 1. Publishers
// spread one per node; a publisher sent straight to a full node while another has room is refused
// `at_capacity`; once every node is full the next one is refused `cluster_full` (HAProxy's backups bring it to a
// node, which says so) and `baton status` says so; when a stream ends, the waiting encoder's retry is admitted.
// Then a node whose CPU target its one stream already fills refuses a second publisher by measurement, and a
// stream whose transcoder cannot keep real time (1080p at x264's slow preset on a small machine) moves to a
// faster preset for new segments, its sequence, target duration and ladder unchanged.
import assert from "node:assert/strict";
import { ReconnectingPublisher } from "../../tools/chaos/publisher.ts";
import { parseM3u8, withoutSession } from "../helpers/hls.ts";
import { status } from "../../tools/admin-cli.ts";
import type { Managed } from "../../tools/processes.ts";
import {
  ADMIN, ADMIN_TOKEN, get, nodeMetric, publish, startTestHaproxy, startTestNode, startTestRedis, stopAll, testPrefix, waitFor,
  type TestHaproxy, type TestNode,
} from "../helpers/stack.ts";

interface StreamRow {
  id: string;
  owner: string;
  state: string;
}

async function streams(lb: TestHaproxy): Promise<StreamRow[]> {
  return (JSON.parse((await get(lb.http("/api/streams"), ADMIN)).text) as { streams: StreamRow[] }).streams;
}

async function liveOwner(lb: TestHaproxy, id: string): Promise<string | undefined> {
  return (await streams(lb)).find((s) => s.id === id && s.state === "live")?.owner;
}

const refusals = async (nodes: TestNode[], reason: string): Promise<number> => {
  let sum = 0;
  for (const n of nodes) sum += await nodeMetric(n, "baton_publish_refusals_total", `reason="${reason}"`);
  return sum;
};

describe("admission by capacity", function () {
  this.timeout(180000);
  let nodes: TestNode[];
  let lb: TestHaproxy;
  const publishers: ReconnectingPublisher[] = [];

  before(async () => {
    const redis = await startTestRedis();
    const prefix = testPrefix();
    const env = { BATON_TRANSCODE_CAPACITY: "1", BATON_HLS_RECONNECTWINDOW: "0" };
    nodes = [];
    for (let i = 0; i < 3; i++) nodes.push(await startTestNode({ redisUrl: redis.url, prefix, env }));
    lb = await startTestHaproxy(nodes);
    await waitFor("every node ready through HAProxy", async () => ((await get(lb.http("/readyz"))).status === 200 ? true : undefined));
  });

  after(async () => {
    for (const p of publishers) await p.stop();
    await stopAll();
  });

  function push(url: string): ReconnectingPublisher {
    const p = new ReconnectingPublisher({ url, width: 320, height: 240, retryDelayMs: 500 });
    publishers.push(p);
    p.start();
    return p;
  }

  it("registers each node's release: one release on all three, though their ids and ports differ", async () => {
    const r = JSON.parse((await get(lb.http("/api/nodes"), ADMIN)).text) as { nodes: { id: string; release?: { version: string; commit: string; config: string } }[] };
    assert.equal(r.nodes.length, 3);
    const releases = new Set(r.nodes.map((n) => JSON.stringify(n.release)));
    assert.equal(releases.size, 1, [...releases].join(" vs "));
    assert.match(r.nodes[0]!.release!.config, /^[0-9a-f]{12}$/);
    assert.match(await status({ url: lb.http(""), token: ADMIN_TOKEN, say: () => undefined }), new RegExp(`cfg ${r.nodes[0]!.release!.config}`));
  });

  it("puts one stream on each node, refuses a full node's extra publisher at_capacity, then cluster_full", async () => {
    push(lb.rtmp("cap1"));
    const first = await waitFor("cap1 live", () => liveOwner(lb, "cap1"), 30000);
    // straight to the full node while two others have room: refused, told to go elsewhere
    const full = nodes.find((n) => n.id === first)!;
    const atCapacity = await refusals(nodes, "at_capacity");
    await waitFor("the full node to know the others have room", async () => {
      const direct = publish(full.rtmp("direct"), { seconds: 2, width: 160, height: 120 });
      await direct.exited;
      return (await refusals(nodes, "at_capacity")) > atCapacity ? true : undefined;
    }, 20000, 500);
    assert.equal(await liveOwner(lb, "direct"), undefined, "a full node admitted a second stream");

    push(lb.rtmp("cap2"));
    push(lb.rtmp("cap3"));
    const second = await waitFor("cap2 live", () => liveOwner(lb, "cap2"), 30000);
    const third = await waitFor("cap3 live", () => liveOwner(lb, "cap3"), 30000);
    assert.equal(new Set([first, second, third]).size, 3, `streams stacked on a node: ${first}, ${second}, ${third}`);

    const clusterFull = await refusals(nodes, "cluster_full");
    const fourth = push(lb.rtmp("cap4"));
    // counted at the refusal; the encoder sees its connection end (and ffmpeg exits) a moment later
    await waitFor("cap4 refused as cluster_full, its connection ended", async () =>
      ((await refusals(nodes, "cluster_full")) > clusterFull && fourth.drops.length >= 1 ? true : undefined), 30000);
    assert.equal(await liveOwner(lb, "cap4"), undefined);
    const text = await status({ url: lb.http(""), token: ADMIN_TOKEN, say: () => undefined });
    assert.match(text, /cluster full/i, text);

    // one broadcast ends: its node has room again, and the waiting encoder's next retry lands there
    const ended = publishers[1]!;
    await ended.stop();
    const owner = await waitFor("cap4 admitted after cap2 ended", () => liveOwner(lb, "cap4"), 60000);
    assert.equal(owner, second, "cap4 went to a node that was full");
  });

  it("a drain of a node when no other has room stacks nothing: its encoder waits, refused cluster_full", async () => {
    const owner = (await liveOwner(lb, "cap1"))!;
    const refused = await refusals(nodes, "cluster_full");
    const r = await fetch(lb.http(`/admin/nodes/${owner}/drain`), { method: "POST", headers: { ...ADMIN, "Content-Type": "application/json" }, body: "{}" });
    assert.ok(r.status === 200 || r.status === 202, `drain answered ${r.status}`);
    // the drained stream's encoder comes back through HAProxy and is turned away, again and again
    await waitFor("cap1's encoder refused twice", async () => ((await refusals(nodes, "cluster_full")) >= refused + 2 ? true : undefined), 60000);
    const records = JSON.parse((await get(lb.http("/api/nodes"), ADMIN)).text) as { nodes: { id: string; load: { publishers: number } }[] };
    for (const n of records.nodes) assert.ok(n.load.publishers <= 1, `${n.id} holds ${n.load.publishers} streams, over its capacity`);
    assert.equal(await liveOwner(lb, "cap1"), undefined, "cap1 is live somewhere, over capacity");
  });
});

describe("admission by measured CPU", function () {
  this.timeout(120000);
  let node: TestNode;
  let publishers: Managed[] = [];

  before(async () => {
    const redis = await startTestRedis();
    // a CPU target so small that one stream fills it: the node takes its first stream (an empty node always
    // does), and the measurement, not the count (capacity 4), refuses the second
    node = await startTestNode({ redisUrl: redis.url, prefix: testPrefix(), env: { BATON_TRANSCODE_CPUTARGET: "0.02", BATON_TRANSCODE_CAPACITY: "4" } });
  });

  after(async () => {
    publishers = [];
    await stopAll();
  });

  it("takes one stream, then refuses the next while the first fills the CPU target", async () => {
    publishers.push(publish(node.rtmp("cpu1"), { width: 320, height: 240 }));
    await waitFor("cpu1 live", async () => {
      const r = await get(node.http("/api/streams"), ADMIN);
      return (JSON.parse(r.text) as { streams: StreamRow[] }).streams.some((s) => s.id === "cpu1" && s.state === "live") ? true : undefined;
    }, 30000);
    const second = publish(node.rtmp("cpu2"), { seconds: 5, width: 160, height: 120 });
    const exit = await second.exited;
    assert.notEqual(exit.code, 0, "the second publisher was not refused");
    assert.ok((await nodeMetric(node, "baton_publish_refusals_total", 'reason="cluster_full"')) >= 1, "not refused for capacity");
    assert.equal(await nodeMetric(node, "baton_capacity_slots"), 0);
    // the registry record, written each heartbeat, says so too (baton status and other nodes read it)
    await waitFor("the registry record to say the node is full", async () => {
      const nodes = JSON.parse((await get(node.http("/api/nodes"), ADMIN)).text) as { nodes: { load: { slots?: number } }[] };
      return nodes.nodes[0]?.load.slots === 0 ? true : undefined;
    }, 10000);
  });
});

describe("a transcoder behind real time", function () {
  this.timeout(150000);
  let node: TestNode;

  before(async () => {
    const redis = await startTestRedis();
    const ladder = [{ name: "1080p", height: 1080, videoBitrate: 3000, audioBitrate: 96, maxFrameRate: 30 }];
    node = await startTestNode({
      redisUrl: redis.url, prefix: testPrefix(),
      env: { BATON_TRANSCODE_PRESET: "slow", BATON_TRANSCODE_LADDER: JSON.stringify(ladder), BATON_TRANSCODE_CPUTARGET: "0.85" },
    });
  });

  after(() => stopAll());

  it("moves the stream to a faster preset, keeping its sequence, target duration and ladder, and takes no other", async () => {
    publish(node.rtmp("heavy"), { width: 1920, height: 1080 });
    const master = await waitFor("the master playlist", async () => {
      const r = await get(node.http("/live/heavy/index.m3u8"));
      return r.status === 200 ? r.text : undefined;
    }, 60000);
    const step = await node.waitForLog(/faster preset/, 90000);
    assert.match(step, /from=slow to=medium/);
    assert.ok((await nodeMetric(node, "baton_transcoder_preset_changes_total", 'direction="degrade"')) >= 1);
    // a node whose stream is behind takes no other (capacity 4 by count, the measurement says none)
    const second = publish(node.rtmp("light"), { seconds: 5, width: 160, height: 120 });
    assert.notEqual((await second.exited).code, 0, "a second publisher was admitted beside a stream behind real time");
    assert.ok((await nodeMetric(node, "baton_publish_refusals_total", 'reason="cluster_full"')) >= 1);
    // the run that follows the switch publishes on: later segments, after a discontinuity, same target duration
    const before = parseM3u8((await get(node.http("/live/heavy/1080p/index.m3u8"))).text);
    const lastBefore = before.mediaSequence + before.segments.length - 1;
    const after = await waitFor("segments after the switch, past a discontinuity", async () => {
      const p = parseM3u8((await get(node.http("/live/heavy/1080p/index.m3u8"))).text);
      const last = p.mediaSequence + p.segments.length - 1;
      return last >= lastBefore + 3 && p.segments.some((s) => s.discontinuity) ? p : undefined;
    }, 60000, 500);
    assert.equal(after.targetDuration, before.targetDuration);
    for (const s of after.segments) assert.ok(s.duration <= after.targetDuration + 0.5, `a segment of ${s.duration} s`);
    const again = await get(node.http("/live/heavy/index.m3u8"));
    assert.equal(withoutSession(again.text), withoutSession(master), "the master playlist changed");
  });
});
