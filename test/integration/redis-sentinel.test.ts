// Redis high availability with Sentinel: a primary, one replica and three sentinels; a node that knows only the
// sentinels; a live stream and a viewer session. The primary is SIGKILLed: the sentinels promote the replica,
// the node's connections (commands, the claims' WAIT connection, the subscriber) find it by themselves, and the
// stream goes on with its sequence numbers, the session keeps its position, and no error escapes. Then the
// case asynchronous replication allows: a segment the primary took and the replica never got.
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { Keys } from "../../src/state/keys.ts";
import type { Managed } from "../../tools/processes.ts";
import { lastSeq, parseM3u8, type ParsedPlaylist } from "../helpers/hls.ts";
import { startTestSentinels, type TestSentinels } from "../helpers/sentinel.ts";
import { ADMIN, HOST, get, publish, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestNode, type TestRedis } from "../helpers/stack.ts";
import { createSession, getSession, putPosition } from "../helpers/viewer-api.ts";

const STREAM = "failover";
const PLAYLIST = `/live/${STREAM}/360p/index.m3u8`;

async function media(node: TestNode): Promise<ParsedPlaylist | undefined> {
  const r = await get(node.http(PLAYLIST));
  return r.status === 200 ? parseM3u8(r.text) : undefined;
}

/** The sum of a counter's series (one per label set; none before the first increment). */
async function counter(node: TestNode, name: string): Promise<number> {
  const text = (await get(node.http("/metrics"), ADMIN)).text;
  return text.split("\n").filter((l) => l.startsWith(`${name}{`)).reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

/** The last sequence number in a Redis's copy of the stream's timeline (-1: none). */
async function storedLastSeq(redis: Redis, keys: Keys): Promise<number> {
  const last = await redis.lindex(keys.timeline(STREAM), -1);
  return last === null ? -1 : (JSON.parse(last) as { seq: number }).seq;
}

/** The connection names of the clients a Redis has now. */
async function clientNames(redis: Redis): Promise<string[]> {
  const list = (await redis.client("LIST")) as string;
  return list.split("\n").map((line) => /\bname=(\S*)/.exec(line)?.[1] ?? "").filter(Boolean);
}

interface Stack {
  primary: TestRedis;
  replica: TestRedis;
  sentinels: TestSentinels;
  node: TestNode;
  onPrimary: Redis;
  onReplica: Redis;
}

describe("Redis Sentinel failover (primary SIGKILLed)", function () {
  this.timeout(90000);
  const prefix = testPrefix();
  const keys = new Keys(prefix);
  const clients: Redis[] = [];
  const sentinelSets: TestSentinels[] = [];
  let publishing = true;

  async function connect(redis: TestRedis): Promise<Redis> {
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    client.on("error", () => undefined);
    clients.push(client);
    await client.connect();
    return client;
  }

  /** A primary, its replica, three sentinels and a node that knows only the sentinels; ready to take a stream. */
  async function stack(waitReplicas: number): Promise<Stack> {
    const primary = await startTestRedis();
    const replica = await startTestRedis({ replicaOf: primary.port });
    const [onPrimary, onReplica] = [await connect(primary), await connect(replica)];
    // until its first sync is done the replica acknowledges nothing, and the first claim would be refused
    await waitFor("the replica's first sync", async () => (/master_link_status:up/.test(await onReplica.info("replication")) ? true : undefined), 10000);
    const sentinels = await startTestSentinels({ name: "batontest", primaryPort: primary.port, count: 3, downAfterMs: 1000, failoverTimeoutMs: 5000 });
    sentinelSets.push(sentinels);
    const node = await startTestNode({
      // nothing listens on port 1: every connection must come from what the sentinels answer
      redisUrl: `redis://${HOST}:1`,
      prefix,
      env: {
        BATON_REDIS_SENTINELS: JSON.stringify(sentinels.addresses),
        BATON_REDIS_SENTINELNAME: sentinels.name,
        BATON_REDIS_WAITREPLICAS: String(waitReplicas),
      },
    });
    await waitFor("the node to be ready through the sentinels", async () => ((await get(node.http("/readyz"))).status === 200 ? true : undefined), 20000);
    return { primary, replica, sentinels, node, onPrimary, onReplica };
  }

  /** ffmpeg pushing to the node, started again if the node drops it, as an encoder reconnects; until stopped. */
  function keepPublishing(node: TestNode): { stop(): void } {
    let on = true;
    let current: Managed;
    const start = (): void => {
      current = publish(node.rtmp(STREAM));
      void current.exited.then(() => {
        if (on && publishing) setTimeout(start, 500);
      });
    };
    start();
    return { stop: () => ((on = false), current.child.kill("SIGKILL")) };
  }

  /** A viewer's reloads of the playlist until stopped: the media sequence of each answer. */
  function watch(node: TestNode): { sequences: number[]; newest: [number, number][]; stop(): Promise<void> } {
    const sequences: number[] = [];
    const newest: [number, number][] = [];
    let watching = true;
    const done = (async () => {
      while (watching) {
        const p = await media(node).catch(() => undefined);
        if (p) sequences.push(p.mediaSequence);
        if (p) newest.push([Date.now(), lastSeq(p)]);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    return { sequences, newest, stop: () => ((watching = false), done) };
  }

  async function promoted(s: Stack): Promise<void> {
    await waitFor("the sentinels to promote the replica", async () => ((await s.sentinels.primaryPort().catch(() => 0)) === s.replica.port ? true : undefined), 30000, 100);
  }

  after(async () => {
    publishing = false;
    for (const sentinels of sentinelSets) sentinels.close();
    for (const client of clients) client.disconnect();
    await stopAll();
  });

  it("promotes the replica; the node follows it and the stream, its sequence and the session go on", async () => {
    // redis.waitReplicas 1: the claim is on the replica before the publisher is accepted
    const s = await stack(1);
    const { node, onReplica } = s;
    const publisher = keepPublishing(node);
    const before = await waitFor("three segments", async () => {
      const p = await media(node).catch(() => undefined);
      return p && p.segments.length >= 3 ? p : undefined;
    }, 40000);
    const session = await createSession(node, STREAM);
    await putPosition(node, session, 3.5, false);
    // replication is asynchronous: wait until the replica has the session, as it would a moment later anyway
    await waitFor("the session on the replica", async () => ((await onReplica.hget(keys.session(session.id), "position")) === "3.5" ? true : undefined), 10000);

    const seqAtKill = await storedLastSeq(s.onPrimary, keys);
    s.primary.proc.child.kill("SIGKILL");
    const killedAt = Date.now();
    const viewer = watch(node);
    await promoted(s);
    const promotedAt = Date.now();
    const seqAtPromotion = await storedLastSeq(onReplica, keys);
    await waitFor("the node to write to the new primary", async () => ((await storedLastSeq(onReplica, keys)) > seqAtPromotion ? true : undefined), 20000, 100);
    const writtenAt = Date.now();
    const after = await waitFor("the playlist to go on past the kill", async () => {
      const p = await media(node).catch(() => undefined);
      return p && lastSeq(p) >= Math.max(seqAtKill, lastSeq(before)) + 4 ? p : undefined;
    }, 30000);
    await viewer.stop();

    const { sequences } = viewer;
    // while no primary answered (a failover takes seconds: down-after 1 s, then the vote and the promotion), the
    // node kept listing the owner's new segments from memory (cluster/peers.ts): the live edge never waited
    const listedAtKill = viewer.newest.find(([at]) => at >= killedAt)?.[1] ?? -1;
    const listedBeforeWritten = Math.max(-1, ...viewer.newest.filter(([at]) => at < writtenAt).map(([, seq]) => seq));
    assert.ok(listedBeforeWritten > listedAtKill, `new segments listed during the failover: ${JSON.stringify(viewer.newest.map(([at, seq]) => [at - killedAt, seq]))}, written again after ${writtenAt - killedAt} ms`);
    for (let i = 1; i < sequences.length; i++) assert.ok(sequences[i]! >= sequences[i - 1]!, `media sequence went back: ${sequences.join(",")}`);
    assert.ok(after.mediaSequence >= before.mediaSequence, "no restart at 0");
    // every connection of the node found the new primary: commands, the claims' WAIT connection, the subscriber
    const names = await clientNames(onReplica);
    for (const name of ["baton", "baton-acked", "baton-sub"]) assert.ok(names.includes(name), `${name} on the new primary: ${names.join(",")}`);
    assert.equal((await get(node.http("/readyz"))).status, 200);
    assert.equal((await getSession(node, session)).position, 3.5);
    assert.equal(await counter(node, "baton_internal_errors_total"), 0);

    // a segment appended in the last moment before the kill may not have reached the replica (the next test)
    const reclaimed = node.lines.some((line) => line.includes("stream lost to another owner"));
    if (!reclaimed) assert.ok(!after.segments.some((p) => p.discontinuity), "a failover that lost nothing is no discontinuity");
    process.stderr.write(
      `      promoted after ${promotedAt - killedAt} ms, written again after ${writtenAt - killedAt} ms; ` +
      `last seq ${seqAtKill} on the primary at the kill, ${seqAtPromotion} on the replica at its promotion; ` +
      `playlist ${lastSeq(before)} -> ${lastSeq(after)}; ${reclaimed ? "re-claimed (a write was lost)" : "same claim (nothing lost)"}\n`,
    );
    publisher.stop();
    await node.stop("SIGKILL");
  });

  it("a segment the replica never got: the owner is refused, its publisher comes back under a new claim", async () => {
    const s = await stack(0);
    const { node, onPrimary, onReplica } = s;
    const publisher = keepPublishing(node);
    await waitFor("three segments", async () => {
      const p = await media(node).catch(() => undefined);
      return p && p.segments.length >= 3 ? p : undefined;
    }, 40000);
    // cut the replication link and keep it cut (the replica's AUTH is refused: the primary has no password)
    // until the primary has a segment the replica has not
    await onReplica.config("SET", "masterauth", "not-the-password");
    await onPrimary.call("CLIENT", "KILL", "TYPE", "replica");
    await waitFor("the replication link to be down", async () => (/master_link_status:down/.test(await onReplica.info("replication")) ? true : undefined), 10000);
    const seqAtKill = await waitFor("a segment only the primary has", async () => {
      const [onP, onR] = [await storedLastSeq(onPrimary, keys), await storedLastSeq(onReplica, keys)];
      return onP > onR ? onP : undefined;
    }, 10000);
    s.primary.proc.child.kill("SIGKILL");
    const viewer = watch(node);
    await promoted(s);
    const seqAtPromotion = await storedLastSeq(onReplica, keys);
    assert.ok(seqAtPromotion < seqAtKill, `the replica missed segments (${seqAtPromotion} < ${seqAtKill})`);

    await node.waitForLog(/stream lost to another owner/, 20000);
    const after = await waitFor("the stream to go on under a new claim", async () => {
      const p = await media(node).catch(() => undefined);
      return p && lastSeq(p) >= seqAtKill + 3 && p.segments.some((x) => x.discontinuity) ? p : undefined;
    }, 40000);
    await viewer.stop();
    publisher.stop();
    // the segments after the replica's last one are the new claim's, from the number the lost one had
    const timeline = (await onReplica.lrange(keys.timeline(STREAM), 0, -1)).map((line) => JSON.parse(line) as { seq: number; claim: string });
    const old = timeline.find((e) => e.seq === seqAtPromotion)?.claim;
    const next = timeline.find((e) => e.seq === seqAtPromotion + 1);
    assert.ok(old && next && next.claim !== old, `a new claim goes on from ${seqAtPromotion + 1}`);
    const wentBack = viewer.sequences.some((n, i) => i > 0 && n < viewer.sequences[i - 1]!);
    assert.equal(await counter(node, "baton_internal_errors_total"), 0);
    process.stderr.write(
      `      lost ${seqAtKill - seqAtPromotion} segment(s) (primary ${seqAtKill}, replica ${seqAtPromotion}); playlist at ${lastSeq(after)} with a ` +
      `discontinuity; media sequence seen ${wentBack ? "going back" : "only growing"}: ${viewer.sequences.join(",")}\n`,
    );
  });
});
