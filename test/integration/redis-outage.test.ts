// Redis is not the live edge's heartbeat: while Redis is frozen for every node, or cut off from the owner
// alone, every node keeps listing the stream's new segments (the owner offers them directly: nodes that reach
// Redis append them for it, nodes that do not list them from memory), with the same sequence numbers and URIs
// on every node, and when Redis is back everyone converges on Redis's timeline, which holds exactly those
// entries: nothing renumbered, no URI changed, no second writer.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Redis } from "ioredis";
import { Keys } from "../../src/state/keys.ts";
import { disagreements, entries, holes, lastSeq, parseM3u8, type ParsedPlaylist } from "../helpers/hls.ts";
import { ADMIN, get, nodeMetric, publish, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestNode, type TestRedis } from "../helpers/stack.ts";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.ts";

const PATH = (id: string): string => `/live/${id}/240p/index.m3u8`;
/** Long enough that the owner's lease (4 s) and the trust in a cached timeline (5 s) both run out. */
const OUTAGE_MS = 12000;

/** Whether a process is stopped by a signal (state T in /proc/PID/stat). */
function stopped(pid: number): boolean {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
}

async function playlist(node: TestNode, id: string): Promise<ParsedPlaylist | null> {
  const r = await get(node.http(PATH(id))).catch(() => null);
  return r && r.status === 200 ? parseM3u8(r.text) : null;
}

/**
 * Polls every node's playlist until `done`, and keeps every node's view: the newest sequence number each
 * listed over time, and every (sequence number -> URI, duration, date-time, discontinuity) any node listed.
 */
class Watch {
  readonly seen = new Map<number, string>();
  readonly conflicts: string[] = [];
  readonly regressions: string[] = [];
  private readonly newest = new Map<string, number>();
  /** [ms since start, node, newest listed] whenever a node's newest advanced. */
  readonly advances: [number, string, number][] = [];
  private readonly started = Date.now();

  constructor(private readonly nodes: TestNode[], private readonly id: string) {}

  async poll(): Promise<void> {
    await Promise.all(this.nodes.map(async (node) => {
      const p = await playlist(node, this.id);
      if (!p) return;
      for (const problem of disagreements([p])) this.conflicts.push(`${node.id}: ${problem}`);
      for (const [seq, value] of entries(p)) {
        const before = this.seen.get(seq);
        if (before !== undefined && before !== value) this.conflicts.push(`${node.id} seq ${seq}: ${before} then ${value}`);
        this.seen.set(seq, value);
      }
      const last = lastSeq(p);
      const was = this.newest.get(node.id) ?? -1;
      if (last < was) this.regressions.push(`${node.id}: ${was} -> ${last}`);
      if (last > was) {
        this.newest.set(node.id, last);
        this.advances.push([Date.now() - this.started, node.id, last]);
      }
    }));
  }

  newestOn(node: TestNode): number {
    return this.newest.get(node.id) ?? -1;
  }

  async during(ms: number, check: () => void = () => undefined): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      await this.poll();
      check();
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

describe("Redis away: the live edge keeps moving on every node", function () {
  this.timeout(180000);
  let redis: TestRedis;
  let proxy: TcpProxy | null = null;
  let nodes: TestNode[] = [];
  let prefix: string;

  before(async () => {
    redis = await startTestRedis();
    prefix = testPrefix();
    // node 0 reaches Redis through a proxy the partition test cuts; the others directly
    proxy = await startTcpProxy(redis.port);
    nodes = [
      await startTestNode({ redisUrl: proxy.url, prefix, id: "outage-owner" }),
      await startTestNode({ redisUrl: redis.url, prefix, id: "outage-b" }),
      await startTestNode({ redisUrl: redis.url, prefix, id: "outage-c" }),
    ];
    // each node knows the others from the registry before anything is cut
    await waitFor("every node registered", async () => {
      const r = await get(nodes[1]!.http("/api/nodes"), ADMIN);
      return r.status === 200 && (JSON.parse(r.text) as { nodes: unknown[] }).nodes.length === 3 ? true : undefined;
    });
  });
  after(async () => {
    redis?.proc.child.kill("SIGCONT");
    proxy?.thaw();
    await stopAll();
    await proxy?.close();
  });

  async function live(id: string): Promise<{ stop(): void; watch: Watch }> {
    const publisher = publish(nodes[0]!.rtmp(id));
    await waitFor(`${id} listed on every node`, async () => {
      for (const node of nodes) {
        const p = await playlist(node, id);
        if (!p || p.segments.length < 3) return undefined;
      }
      return true;
    }, 60000);
    // a few seconds of the stream as it was before, so each node holds it in memory
    const watch = new Watch(nodes, id);
    await watch.during(1500);
    return { stop: () => publisher.child.kill("SIGKILL"), watch };
  }

  it("Redis frozen for every node: each keeps listing the owner's new segments, the same ones, and Redis ends with exactly those", async () => {
    const { stop, watch } = await live("frozen-all");
    const pid = redis.proc.child.pid!;
    const before = nodes.map((n) => watch.newestOn(n));
    redis.proc.child.kill("SIGSTOP");
    try {
      await waitFor("Redis stopped", () => (stopped(pid) ? true : undefined), 5000, 10);
      await watch.during(OUTAGE_MS, () => assert.ok(stopped(pid), "Redis is still stopped"));
      // every node listed new segments while no node could reach Redis: at 1-s segments, most of the outage
      for (const [i, node] of nodes.entries()) {
        const gained = watch.newestOn(node) - before[i]!;
        assert.ok(gained >= OUTAGE_MS / 1000 / 2, `${node.id} listed ${gained} new segments in ${OUTAGE_MS / 1000} s of a frozen Redis: ${JSON.stringify(watch.advances)}`);
      }
      // a segment listed only from the owner's offer is served by a node that is not the owner
      const p = (await playlist(nodes[2]!, "frozen-all"))!;
      const newest = p.segments.at(-1)!.uri;
      const bytes = await get(nodes[2]!.http(`/live/frozen-all/240p/${newest}`));
      assert.equal(bytes.status, 200, `the newest segment from a node without Redis: ${bytes.status}`);
      // a new viewer still starts: its session is a signed token, nothing in Redis until its first report
      const master = await get(nodes[1]!.http("/live/frozen-all/index.m3u8"));
      assert.equal(master.status, 200, master.text);
      assert.match(master.text, /^s\/[^/\s]+\/240p\/index\.m3u8$/m, "the new viewer's session is in its media playlist's path");
      assert.ok(stopped(pid), "those answers came while Redis was stopped");
    } finally {
      redis.proc.child.kill("SIGCONT");
    }
    // Redis back: the owner's queued appends land; Redis's timeline holds exactly what the nodes listed
    const outageNewest = Math.max(...nodes.map((n) => watch.newestOn(n)));
    const client = new Redis(redis.url);
    try {
      await waitFor("Redis to hold what was listed during the outage", async () => {
        await watch.poll();
        const next = Number(await client.hget(new Keys(prefix).meta("frozen-all"), "nextSeq"));
        return next > outageNewest ? true : undefined;
      }, 30000, 200);
    } finally {
      client.disconnect();
    }
    await watch.during(3000);
    assert.deepEqual(watch.conflicts, [], "one sequence number, one segment, on every node and at every moment");
    assert.deepEqual(watch.regressions, [], "no node's newest sequence number ever went back");
    const after = (await playlist(nodes[1]!, "frozen-all"))!;
    assert.deepEqual(holes(after), [], "no hole in time across the outage");
    assert.ok(!after.segments.some((s) => s.discontinuity), "a frozen Redis is no discontinuity");
    for (const node of nodes) assert.equal(await nodeMetric(node, "baton_timeline_conflicts_total"), 0, node.id);
    stop();
  });

  it("the owner cut off from Redis, not from the nodes: the others append its segments for it, its lease holds, no other writer", async () => {
    const { stop, watch } = await live("cut-owner");
    const keys = new Keys(prefix);
    const client = new Redis(redis.url);
    try {
      const epoch = await client.hget(keys.meta("cut-owner"), "epoch");
      const holder = await client.get(keys.lease("cut-owner"));
      assert.ok(holder?.startsWith("outage-owner/"), `the owner holds the lease: ${holder}`);
      const nextBefore = Number(await client.hget(keys.meta("cut-owner"), "nextSeq"));
      proxy!.freeze();
      try {
        await watch.during(OUTAGE_MS);
        // Redis itself took the owner's segments meanwhile (relayed), and the lease stayed the owner's
        const nextDuring = Number(await client.hget(keys.meta("cut-owner"), "nextSeq"));
        assert.ok(nextDuring - nextBefore >= OUTAGE_MS / 1000 / 2, `Redis took ${nextDuring - nextBefore} segments while the owner could not reach it`);
        assert.equal(await client.hget(keys.meta("cut-owner"), "epoch"), epoch, "no other claim");
        assert.equal(await client.get(keys.lease("cut-owner")), holder, "the owner's lease, renewed by the others");
        assert.equal(await client.hget(keys.meta("cut-owner"), "state"), "live");
        for (const node of nodes.slice(1)) {
          assert.ok(watch.newestOn(node) >= nextDuring - 3, `${node.id} lists what Redis has: ${watch.newestOn(node)} vs ${nextDuring - 1}`);
        }
        assert.ok(await nodeMetric(nodes[1]!, "baton_peer_relayed_entries_total", 'result="relayed"') + await nodeMetric(nodes[2]!, "baton_peer_relayed_entries_total", 'result="relayed"') > 0);
      } finally {
        proxy!.thaw();
      }
      await watch.during(4000);
      const after = Number(await client.hget(keys.meta("cut-owner"), "nextSeq"));
      assert.ok(after > Math.max(...nodes.map((n) => watch.newestOn(n))) - 3, "the owner goes on appending itself once it reaches Redis");
      assert.equal(await client.hget(keys.meta("cut-owner"), "epoch"), epoch, "still the same claim");
      assert.deepEqual(watch.conflicts, [], "one sequence number, one segment, on every node and at every moment");
      assert.deepEqual(watch.regressions, []);
      const p = (await playlist(nodes[2]!, "cut-owner"))!;
      assert.deepEqual(holes(p), []);
      assert.ok(!p.segments.some((s) => s.discontinuity), "the partition is no discontinuity");
    } finally {
      client.disconnect();
      stop();
    }
  });
});
