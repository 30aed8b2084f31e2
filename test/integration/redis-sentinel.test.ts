// Redis high availability with Sentinel: a primary, one replica and three sentinels; a node that knows only the
// sentinels; a live stream and a viewer session. The primary is SIGKILLed: the sentinels promote the replica,
// the node's connections (commands, the claims' WAIT connection, the subscriber) find it by themselves, and the
// stream goes on with its sequence numbers, the session keeps its position, and no error escapes.
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

describe("Redis Sentinel failover (primary SIGKILLed)", function () {
  this.timeout(90000);
  const prefix = testPrefix();
  const keys = new Keys(prefix);
  let primary: TestRedis;
  let replica: TestRedis;
  let sentinels: TestSentinels;
  let node: TestNode;
  const clients: Redis[] = [];
  let publishing = true;
  let publisher: Managed | null = null;

  function connect(redis: TestRedis): Redis {
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    client.on("error", () => undefined);
    clients.push(client);
    return client;
  }

  /** ffmpeg pushing to the node, started again if the node drops it, as an encoder reconnects. */
  function keepPublishing(): void {
    publisher = publish(node.rtmp(STREAM));
    void publisher.exited.then(() => {
      if (publishing) setTimeout(keepPublishing, 500);
    });
  }

  before(async () => {
    primary = await startTestRedis();
    replica = await startTestRedis({ replicaOf: primary.port });
    // until its first sync is done the replica acknowledges nothing, and the first claim would be refused
    const probe = connect(replica);
    await probe.connect();
    await waitFor("the replica's first sync", async () => (/master_link_status:up/.test(await probe.info("replication")) ? true : undefined), 10000);
    sentinels = await startTestSentinels({ name: "batontest", primaryPort: primary.port, count: 3, downAfterMs: 1000, failoverTimeoutMs: 5000 });
    node = await startTestNode({
      // nothing listens on port 1: every connection must come from what the sentinels answer
      redisUrl: `redis://${HOST}:1`,
      prefix,
      env: {
        BATON_REDIS_SENTINELS: JSON.stringify(sentinels.addresses),
        BATON_REDIS_SENTINELNAME: sentinels.name,
        // the claim is on the replica before the publisher is accepted, so the promotion keeps the ownership
        BATON_REDIS_WAITREPLICAS: "1",
      },
    });
  });
  after(async () => {
    publishing = false;
    sentinels?.close();
    for (const client of clients) client.disconnect();
    await stopAll();
  });

  it("promotes the replica; the node follows it and the stream, its sequence and the session go on", async () => {
    await waitFor("the node to be ready through the sentinels", async () => ((await get(node.http("/readyz"))).status === 200 ? true : undefined), 20000);
    keepPublishing();
    const before = await waitFor("three segments", async () => {
      const p = await media(node).catch(() => undefined);
      return p && p.segments.length >= 3 ? p : undefined;
    }, 40000);

    const session = await createSession(node, STREAM);
    await putPosition(node, session, 3.5, false);
    // replication is asynchronous: wait until the replica has the session, as it would a moment later anyway
    const onReplica = connect(replica);
    await onReplica.connect();
    await waitFor("the session on the replica", async () => ((await onReplica.hget(keys.session(session.id), "position")) === "3.5" ? true : undefined), 10000);

    const onPrimary = connect(primary);
    await onPrimary.connect();
    const seqAtKill = await storedLastSeq(onPrimary, keys);
    primary.proc.child.kill("SIGKILL");
    const killedAt = Date.now();
    onPrimary.disconnect();

    // a viewer's reloads through the failover: the media sequence never goes back
    const sequences: number[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const p = await media(node).catch(() => undefined);
        if (p) sequences.push(p.mediaSequence);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();

    await waitFor("the sentinels to promote the replica", async () => ((await sentinels.primaryPort().catch(() => 0)) === replica.port ? true : undefined), 30000, 100);
    const promotedAt = Date.now();
    const seqAtPromotion = await storedLastSeq(onReplica, keys);
    await waitFor("the node to write to the new primary", async () => ((await storedLastSeq(onReplica, keys)) > seqAtPromotion ? true : undefined), 20000, 100);
    const writtenAt = Date.now();

    const after = await waitFor("the playlist to go on past the kill", async () => {
      const p = await media(node).catch(() => undefined);
      return p && lastSeq(p) >= Math.max(seqAtKill, lastSeq(before)) + 4 ? p : undefined;
    }, 30000);
    watching = false;
    await watcher;

    for (let i = 1; i < sequences.length; i++) assert.ok(sequences[i]! >= sequences[i - 1]!, `media sequence went back: ${sequences.join(",")}`);
    assert.ok(after.mediaSequence >= before.mediaSequence, "no restart at 0");
    // every connection of the node found the new primary: commands, the claims' WAIT connection, the subscriber
    const names = await clientNames(onReplica);
    for (const name of ["baton", "baton-acked", "baton-sub"]) assert.ok(names.includes(name), `${name} on the new primary: ${names.join(",")}`);
    assert.equal((await get(node.http("/readyz"))).status, 200);

    const view = await getSession(node, session);
    assert.equal(view.position, 3.5);
    assert.equal(await counter(node, "baton_internal_errors_total"), 0);

    // a segment appended in the last moment before the kill may not have reached the replica: the owner's next
    // append is then refused (SEQ_MISMATCH), it drops the publisher, and the reconnect is a new claim
    const reclaimed = node.lines.some((line) => line.includes("stream lost to another owner"));
    if (!reclaimed) assert.ok(!after.segments.some((s) => s.discontinuity), "a failover that lost nothing is no discontinuity");
    process.stderr.write(
      `      promoted after ${promotedAt - killedAt} ms, written again after ${writtenAt - killedAt} ms; ` +
      `last seq ${seqAtKill} on the primary at the kill, ${seqAtPromotion} on the replica at its promotion; ` +
      `playlist ${lastSeq(before)} -> ${lastSeq(after)}; ${reclaimed ? "re-claimed (a write was lost)" : "same claim (nothing lost)"}\n`,
    );
    publishing = false;
    publisher?.child.kill("SIGKILL");
  });
});
