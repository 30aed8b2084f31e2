// baton on a real Redis Cluster: three masters with a replica each, two nodes that know only the cluster's seed
// nodes (redis.cluster), HAProxy in front. Streams chosen to land on different shards are published; each
// stream's keys are on its own shard only, sessions spread over shards; the nodes render the same playlists,
// a script's announcement on one shard reaches a subscriber on another, a session written on one node is read
// on the other, a drain hands the stream over (the admin command crosses the cluster's pub/sub), the sweeper
// ends a stream whose publisher left, a shard's manual failover while a stream is live loses nothing, and a
// master SIGKILLed (its shard fails over, a subscription it held moves) stops nothing.
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { ReconnectingPublisher } from "../../tools/chaos/publisher.ts";
import { keySlot } from "../../src/state/client.ts";
import { Keys } from "../../src/state/keys.ts";
import { lastSeq, parseM3u8, type ParsedPlaylist } from "../helpers/hls.ts";
import { shardOf, startTestCluster, type Shard, type TestCluster } from "../helpers/redis-cluster.ts";
import {
  ADMIN, ADMIN_TOKEN, HOST, get, nodeMetric, publish, startTestHaproxy, startTestNode, stopAll, testPrefix, waitFor,
  type TestHaproxy, type TestNode,
} from "../helpers/stack.ts";
import { createSession, getSession, putPosition, type View } from "../helpers/viewer-api.ts";

const playlist = (stream: string): string => `/live/${stream}/360p/index.m3u8`;

async function media(url: string): Promise<ParsedPlaylist | undefined> {
  const r = await get(url).catch(() => undefined);
  return r?.status === 200 ? parseM3u8(r.text) : undefined;
}

async function streamInfo(lb: TestHaproxy, id: string): Promise<{ owner: string; epoch: number; state: string } | undefined> {
  const r = await get(lb.http("/api/streams"), ADMIN);
  return (JSON.parse(r.text) as { streams: { id: string; owner: string; epoch: number; state: string }[] }).streams.find((s) => s.id === id);
}

/** How many of the baton nodes' subscriptions (ioredis names them after baton-sub) each cluster node holds. */
async function subscribersOn(cluster: TestCluster): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  for (const port of cluster.alive()) {
    const list = (await (await cluster.node(port)).client("LIST")) as string;
    counts.set(port, list.split("\n").filter((line) => /\bname=\S*subscriber\S*:baton-sub\b/.test(line)).length);
  }
  return counts;
}

describe("Redis Cluster (three shards with a replica each)", function () {
  this.timeout(240000);
  const prefix = testPrefix();
  const keys = new Keys(prefix);
  let cluster: TestCluster;
  let shards: Shard[];
  let nodes: TestNode[];
  let lb: TestHaproxy;
  let publisher: ReconnectingPublisher;
  /** The live stream (on the first shard) and the one the sweeper ends (on the second). */
  let live = "";
  let swept = "";
  const sessions: (View & { token: string })[] = [];

  before(async () => {
    cluster = await startTestCluster({ masters: 3, replicasPerMaster: 1 });
    shards = await cluster.shards();
    const onShard = (index: number): string => {
      for (let i = 0; ; i++) if (shardOf(shards, keySlot(keys.meta(`show-${i}`))) === shards[index]) return `show-${i}`;
    };
    [live, swept] = [onShard(0), onShard(1)];
    nodes = [];
    // nothing listens on port 1: every connection must come from the seed nodes; claims and releases wait
    // for their shard's replica (WAIT in the script's pipeline, so on the stream's shard)
    const env = { BATON_REDIS_CLUSTER: JSON.stringify(cluster.seeds), BATON_REDIS_WAITREPLICAS: "1", BATON_HLS_RECONNECTWINDOW: "3" };
    for (const id of ["c1", "c2"]) nodes.push(await startTestNode({ redisUrl: `redis://${HOST}:1`, prefix, id, env }));
    for (const node of nodes) {
      await waitFor(`${node.id} ready on the cluster`, async () => ((await get(node.http("/readyz"))).status === 200 ? true : undefined), 20000);
    }
    lb = await startTestHaproxy(nodes);
    publisher = new ReconnectingPublisher({ url: lb.rtmp(live), retryDelayMs: 300 });
    publisher.start();
    await waitFor("three segments on every node", async () => {
      for (const node of nodes) if (((await media(node.http(playlist(live))))?.segments.length ?? 0) < 3) return undefined;
      return true;
    }, 40000);
  });
  after(async () => {
    await publisher?.stop();
    cluster?.close();
    await stopAll();
  });

  it("hashes baton's keys as the cluster does, and spreads streams over every shard", async () => {
    const any = await cluster.node(shards[0]!.master);
    const used = new Set<Shard>();
    for (let i = 0; i < 30; i++) {
      const id = `show-${i}`;
      const slot = Number(await any.call("CLUSTER", "KEYSLOT", keys.meta(id)));
      assert.equal(keySlot(keys.meta(id)), slot);
      for (const key of [keys.timeline(id), keys.lease(id), keys.revoked(id)]) assert.equal(Number(await any.call("CLUSTER", "KEYSLOT", key)), slot);
      used.add(shardOf(shards, slot));
    }
    assert.equal(used.size, 3, "30 streams on all three shards");
  });

  it("renders the same playlist on both nodes", async () => {
    const same = await waitFor("the same playlist text on both nodes", async () => {
      const [a, b] = await Promise.all(nodes.map((n) => get(n.http(playlist(live)))));
      return a!.status === 200 && a!.text === b!.text ? a!.text : undefined;
    }, 20000);
    assert.ok(parseM3u8(same).segments.length >= 3);
  });

  it("announces a stream's appends, made by a script on its shard, to a subscriber on another shard", async () => {
    const listener = new Redis({ host: HOST, port: shards[2]!.master, lazyConnect: true, maxRetriesPerRequest: 1 });
    listener.on("error", () => undefined);
    try {
      await listener.connect();
      const heard: string[] = [];
      listener.on("message", (_channel: string, id: string) => heard.push(id));
      await listener.subscribe(keys.timelineChannel());
      // a segment a second: the next append is announced within a few
      await waitFor("the live stream's id on the timeline channel", () => (heard.includes(live) ? true : undefined), 10000);
    } finally {
      listener.disconnect();
    }
  });

  it("reads on one node a session's position written on the other, with sessions on several shards", async () => {
    // twelve sessions written at once, so one flush carries sessions of several shards
    const made = await Promise.all(Array.from({ length: 12 }, () => createSession(nodes[0]!, live)));
    await Promise.all(made.map((s, i) => putPosition(nodes[0]!, s, 2 + i, i % 2 === 0)));
    sessions.push(...made);
    for (const [i, s] of made.entries()) {
      const seen = await getSession(nodes[1]!, s);
      assert.equal(seen.position, 2 + i);
      assert.equal(seen.paused, i % 2 === 0);
    }
    const holding = new Set(made.map((s) => shardOf(shards, keySlot(keys.session(s.id)))));
    assert.ok(holding.size >= 2, `twelve sessions on ${holding.size} shard(s)`);
  });

  it("keeps each stream's keys on its own shard", async () => {
    const onMasters = await Promise.all(shards.map(async (s) => (await cluster.node(s.master)).keys(`${prefix}*`)));
    const ofLive = (list: string[]): string[] => list.filter((k) => k.startsWith(`${prefix}{${live}}:`)).sort();
    assert.deepEqual(ofLive(onMasters[0]!), [keys.lease(live), keys.meta(live), keys.timeline(live)].sort());
    assert.deepEqual([...ofLive(onMasters[1]!), ...ofLive(onMasters[2]!)], []);
    // the sessions' records are where their slots are, and nowhere else
    for (const s of sessions) {
      const at = shards.indexOf(shardOf(shards, keySlot(keys.session(s.id))));
      onMasters.forEach((list, i) => assert.equal(list.includes(keys.session(s.id)), i === at, `session ${s.id} on shard ${i}`));
    }
  });

  it("hands the stream over when its owner drains (the command crosses the cluster's pub/sub)", async () => {
    const before = (await streamInfo(lb, live))!;
    const owner = nodes.find((n) => n.id === before.owner)!;
    const other = nodes.find((n) => n !== owner)!;
    const seqBefore = lastSeq((await media(other.http(playlist(live))))!);
    // asked of the node that does not own the stream: it relays the drain over the admin channel
    const r = await fetch(other.http(`/admin/nodes/${owner.id}/drain`), { method: "POST", headers: { Authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(10000) });
    assert.equal(r.status, 202);
    const moved = await waitFor("the stream live on the other node", async () => {
      const s = await streamInfo(lb, live);
      return s && s.owner === other.id && s.state === "live" ? s : undefined;
    }, 40000);
    assert.ok(moved.epoch > before.epoch);
    await waitFor("the new owner's segments in the playlist", async () => {
      const p = await media(other.http(playlist(live)));
      return p && lastSeq(p) >= seqBefore + 3 && p.segments.some((s) => s.discontinuity) ? true : undefined;
    }, 40000);
    for (const s of sessions.slice(0, 3)) assert.ok((await getSession(other, s)).position !== null);
  });

  it("ends a stream whose publisher left, once its reconnect window passed (the sweeper)", async () => {
    // the drained node takes no publisher: push to the one that is ready
    const target = await waitFor("a node taking publishers", async () => {
      for (const n of nodes) if ((await get(n.http("/readyz"))).status === 200) return n;
      return undefined;
    });
    const p = publish(target.rtmp(swept));
    await waitFor("two segments of the second stream", async () => ((await media(target.http(playlist(swept))))?.segments.length ?? 0) >= 2 ? true : undefined, 40000);
    const master = await cluster.node(shards[1]!.master);
    assert.equal(await master.hget(keys.meta(swept), "state"), "live", "the second stream's state is on the second shard");
    p.child.kill("SIGKILL");
    for (const n of nodes) {
      await waitFor(`EXT-X-ENDLIST on ${n.id}`, async () => ((await media(n.http(playlist(swept))))?.endList ? true : undefined), 30000);
    }
    assert.equal(await master.hget(keys.meta(swept), "state"), "ended");
  });

  it("goes on through a shard's manual failover (CLUSTER FAILOVER on the replica) with nothing lost", async () => {
    const shard = shardOf(await cluster.shards(), keySlot(keys.meta(live)));
    const replica = await cluster.node(shard.replicas[0]!);
    const owner = (await streamInfo(lb, live))!.owner;
    const ownerNode = nodes.find((n) => n.id === owner)!;
    const sequences: number[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const p = await media(ownerNode.http(playlist(live)));
        if (p) sequences.push(p.mediaSequence);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    const seqAtFailover = lastSeq((await media(ownerNode.http(playlist(live))))!);
    assert.equal(await replica.call("CLUSTER", "FAILOVER"), "OK");
    await waitFor("the replica promoted", async () => (shardOf(await cluster.shards(), keySlot(keys.meta(live))).master === shard.replicas[0] ? true : undefined), 20000);
    await waitFor("the stream going on past the failover", async () => {
      const p = await media(ownerNode.http(playlist(live)));
      return p && lastSeq(p) >= seqAtFailover + 4 ? true : undefined;
    }, 40000);
    watching = false;
    await watcher;
    for (let i = 1; i < sequences.length; i++) assert.ok(sequences[i]! >= sequences[i - 1]!, `media sequence went back: ${sequences.join(",")}`);
    // nothing lost: the new master's timeline runs on without a gap, under the same claim as before
    const timeline = (await replica.lrange(keys.timeline(live), 0, -1)).map((line) => JSON.parse(line) as { seq: number; claim: string });
    for (let i = 1; i < timeline.length; i++) assert.equal(timeline[i]!.seq, timeline[i - 1]!.seq + 1);
    const across = timeline.filter((e) => e.seq >= seqAtFailover);
    assert.ok(across.length >= 4 && across.every((e) => e.claim === across[0]!.claim), "one claim across the failover");
    for (const s of sessions) assert.ok((await getSession(nodes[0]!, s)).position !== null);
    for (const n of nodes) assert.equal(await nodeMetric(n, "baton_internal_errors_total"), 0);
  });

  it("goes on when a master is SIGKILLed: its shard fails over, a subscription it held moves", async () => {
    const before = await subscribersOn(cluster);
    assert.equal([...before.values()].reduce((a, b) => a + b, 0), 2, "both nodes' subscriptions are on the cluster");
    // a master holding a subscription when there is one (both paths at once); else the live stream's master
    const masters = (await cluster.shards()).map((s) => s.master);
    const victim = masters.find((port) => before.get(port)! > 0) ?? shardOf(await cluster.shards(), keySlot(keys.meta(live))).master;
    const ownerId = (await streamInfo(lb, live))!.owner;
    const owner = nodes.find((n) => n.id === ownerId)!;
    const seqAtKill = lastSeq((await media(owner.http(playlist(live))))!);
    await cluster.kill(victim);
    await waitFor("both subscriptions on the nodes left", async () => {
      const counts = await subscribersOn(cluster);
      return [...counts.values()].reduce((a, b) => a + b, 0) === 2 ? true : undefined;
    }, 30000, 200);
    await waitFor("its replica promoted", async () => ((await cluster.shards()).every((s) => s.master !== victim) ? true : undefined), 30000, 200);
    for (const n of nodes) {
      await waitFor(`${n.id}'s playlist going on past the kill`, async () => {
        const p = await media(n.http(playlist(live)));
        return p && lastSeq(p) >= seqAtKill + 4 ? true : undefined;
      }, 40000);
    }
    // pub/sub still reaches every node: the drained node is undrained through the other one (the admin channel)
    const drained = await waitFor("the drained node", async () => {
      for (const n of nodes) if ((await get(n.http("/readyz"))).status === 503) return n;
      return undefined;
    });
    const relay = nodes.find((n) => n !== drained)!;
    await waitFor("the other node ready", async () => ((await get(relay.http("/readyz"))).status === 200 ? true : undefined), 20000);
    const r = await fetch(relay.http(`/admin/nodes/${drained.id}/undrain`), { method: "POST", headers: { Authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(10000) });
    assert.equal(r.status, 200, await r.text());
    await waitFor("the drained node ready again", async () => ((await get(drained.http("/readyz"))).status === 200 ? true : undefined), 20000);
    for (const s of sessions) assert.ok((await getSession(relay, s)).position !== null, `session ${s.id} kept`);
    for (const n of nodes) assert.equal(await nodeMetric(n, "baton_internal_errors_total"), 0);
    process.stderr.write(`      killed a master holding ${before.get(victim)} subscription(s); seq ${seqAtKill} at the kill\n`);
  });
});
