// The stream owner's state machine against an in-memory timeline writer (no Redis, no ffmpeg): refused claims,
// fencing, in-order retries while the writer fails, the release on close, and the publish-token checks it makes
// before it claims (revocation, an expired token carrying its own broadcast's reconnects).
import assert from "node:assert/strict";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { AlreadyLiveError, FencedError } from "../../src/core/errors.ts";
import { createLogger } from "../../src/core/log.ts";
import { Metrics } from "../../src/core/metrics.ts";
import type { Claim, ClaimRef, SegmentGroup, StreamState, TimelineEntry } from "../../src/core/model.ts";
import type { OfferedEntry } from "../../src/state/store.ts";
import type { PublisherConnection } from "../../src/ingest/rtmp-server.ts";
import type { PublishCredential } from "../../src/ingest/token.ts";
import { FakeConnection } from "../helpers/fake-connection.ts";
import { StreamOwner, type PublishGrants, type TimelineWriter } from "../../src/stream/owner.ts";
import { mapScriptError } from "../../src/state/scripts.ts";
import type { SegmentGroupOut } from "../../src/transcode/job.ts";
import { waitFor } from "../helpers/stack.ts";

/** A timeline writer in memory: what it was asked, and failures the test switches on. */
class FakeWriter implements TimelineWriter, PublishGrants {
  calls: string[] = [];
  appended: number[] = [];
  failAppends: "no" | "transient" | "fenced" = "no";
  claimError: Error | null = null;
  grant = { revokedAt: null as number | null, grant: null as string | null, state: null as StreamState | null };
  private readonly claimOf: Claim = { id: "0123456789ab", epoch: 3, nextSeq: 7, targetDuration: 1, ladder: null, holder: "node-a/fake/3", broadcast: "00000000000b" };

  async claim(): Promise<Claim> {
    this.calls.push("claim");
    if (this.claimError) throw this.claimError;
    return { ...this.claimOf };
  }
  async renew(): Promise<boolean> {
    return true;
  }
  /** What a standby of the stream would see: the lease of another publisher of `activeRole`. */
  view: Awaited<ReturnType<TimelineWriter["inputView"]>> = { holder: "node-b/other/2", state: "live", nextSeq: 7, role: "primary", ladder: null, owner: "node-b", claimedAt: 1 };
  async inputView(): ReturnType<TimelineWriter["inputView"]> {
    return { ...this.view };
  }
  async setLadder(_s: string, _c: Claim, ladder: Parameters<TimelineWriter["setLadder"]>[2]): ReturnType<TimelineWriter["setLadder"]> {
    return ladder;
  }
  /** Sequence numbers the owner tried to append, in order, failed attempts included. */
  attempts: number[] = [];
  /** Groups whose media was written, by sequence number. */
  media: number[] = [];
  async writeMedia(_s: string, _c: Claim, group: SegmentGroup): Promise<void> {
    this.media.push(group.seq);
  }
  async appendEntry(_s: string, _c: ClaimRef, entry: OfferedEntry): Promise<TimelineEntry> {
    this.attempts.push(entry.seq);
    if (this.failAppends === "transient") throw new Error("redis away");
    if (this.failAppends === "fenced") throw new FencedError("STALE_EPOCH", "write refused: the stream moved to epoch 4");
    assert.ok(this.media.includes(entry.seq), `seq ${entry.seq} appended before its media was written`);
    this.appended.push(entry.seq);
    return { ...entry, cc: 0 };
  }
  async markHandoff(): Promise<boolean> {
    this.calls.push("markHandoff");
    return true;
  }
  async release(): Promise<boolean> {
    this.calls.push("release");
    return true;
  }
  async publishGrant(): ReturnType<PublishGrants["publishGrant"]> {
    return this.grant;
  }
  async setGrant(_s: string, digest: string): Promise<void> {
    this.calls.push(`setGrant ${digest}`);
  }
}

function group(n: number): SegmentGroupOut {
  return {
    run: 0, pdt: 1_700_000_000_000 + n * 1000, disc: false, finishedAt: Date.now(),
    segments: ["360p", "240p"].map((rendition) => ({ rendition, index: n, start: n, duration: 1, bytes: Buffer.from(`${rendition}/${n}`) })),
  };
}

function owner(
  writer: FakeWriter, connection: FakeConnection, nodeAlive = async (): Promise<boolean> => true, standbyElsewhere?: () => boolean,
): { owner: StreamOwner; metrics: Metrics } {
  const metrics = new Metrics({ node: "node-a" });
  const o = new StreamOwner({
    connection: connection as unknown as PublisherConnection,
    store: writer,
    grants: writer,
    nodeId: "node-a",
    config: { ...DEFAULTS, hls: { ...DEFAULTS.hls, segmentDuration: 1 } },
    log: createLogger({ level: "error" }),
    metrics,
    nodeAlive,
    ownerGone: async () => false,
    ...(standbyElsewhere ? { standbyElsewhere } : {}),
  });
  return { owner: o, metrics };
}

const enqueue = (o: StreamOwner, g: SegmentGroupOut): void => (o as unknown as { enqueue(g: SegmentGroupOut): void }).enqueue(g);
const refusals = async (m: Metrics, reason: string): Promise<number> =>
  (await m.refusals.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

const credential = (o: Partial<PublishCredential> = {}): PublishCredential => ({ issuedAt: 1000, expiresAt: 2000, expired: false, digest: "d1", ...o });

describe("stream owner state machine (fake writer)", () => {
  it("a claim held by a live node's publisher is refused at once: the connection is closed with the reason, and counted", async () => {
    const writer = new FakeWriter();
    writer.claimError = new AlreadyLiveError("node-b");
    const connection = new FakeConnection("cam");
    const { owner: o, metrics } = owner(writer, connection);
    assert.equal(await o.start(), false);
    assert.equal(connection.closed, true);
    assert.match(connection.closedWith ?? "", /live on node-b/);
    assert.equal(await refusals(metrics, "already_live"), 1);
    assert.deepEqual(writer.calls, ["claim"], "nothing released: the claim was never the owner's");
  });

  it("a claim refused for another segment duration refuses the publisher with config_conflict, naming both", async () => {
    const writer = new FakeWriter();
    writer.claimError = mapScriptError(new Error("CONFIG_CONFLICT 2 4")) as Error;
    const connection = new FakeConnection("cam");
    const { owner: o, metrics } = owner(writer, connection);
    assert.equal(await o.start(), false);
    assert.match(connection.closedWith ?? "", /timeline has 2-s segments.*hls\.segmentDuration is 4/);
    assert.equal(await refusals(metrics, "config_conflict"), 1);
    assert.deepEqual(writer.calls, ["claim"]);
  });

  it("appends from the claim's next sequence, in order, retrying the head while the writer fails, with no gap", async () => {
    const writer = new FakeWriter();
    const connection = new FakeConnection("cam");
    const { owner: o } = owner(writer, connection);
    assert.equal(await o.start(), true);
    writer.failAppends = "transient";
    for (let n = 0; n < 3; n++) enqueue(o, group(n));
    // the head is retried while the writer fails, and nothing behind it is tried out of order
    await waitFor("the head retried", () => (writer.attempts.length >= 2 ? true : undefined), 5000, 20);
    assert.ok(writer.attempts.every((seq) => seq === 7), `tried ${writer.attempts.join(",")}`);
    writer.failAppends = "no";
    await waitFor("the queue published", () => (writer.appended.length === 3 ? true : undefined), 5000, 20);
    assert.deepEqual(writer.appended, [7, 8, 9]);
    await o.close("test over");
    assert.deepEqual(writer.calls.slice(-2), ["markHandoff", "release"], "a close marks the handoff, then releases");
  });

  it("a publisher leaving while Redis is away: its queued segments wait for Redis past the flush, then land in order before the release", async () => {
    const writer = new FakeWriter();
    const connection = new FakeConnection("cam");
    const { owner: o } = owner(writer, connection);
    assert.equal(await o.start(), true);
    writer.failAppends = "transient";
    for (let n = 0; n < 2; n++) enqueue(o, group(n));
    const flushMs = 200;
    const closedAt = Date.now();
    const closed = o.close("publisher left", flushMs, true);
    await waitFor("the flush window over, the head still retried", () => (Date.now() - closedAt > 2 * flushMs && writer.attempts.length >= 2 ? true : undefined), 5000, 20);
    assert.deepEqual(writer.appended, []);
    writer.failAppends = "no";
    await closed;
    assert.deepEqual(writer.appended, [7, 8], "nothing dropped, nothing out of order");
    assert.deepEqual(writer.calls.slice(-2), ["markHandoff", "release"]);
  });

  it("handing over to a hot standby elsewhere, it lists nothing its transcoder finishes after the handoff mark (the standby's aligned segments continue from the last one listed)", async () => {
    for (const standby of [true, false]) {
      const writer = new FakeWriter();
      // the connection's end is the transcoder's input's end: ffmpeg finishes the segment it cut short
      const connection = new FakeConnection("cam");
      const { owner: o } = owner(writer, connection, undefined, () => standby);
      connection.close = (reason: string): void => {
        FakeConnection.prototype.close.call(connection, reason);
        enqueue(o, group(1));
      };
      assert.equal(await o.start(), true);
      enqueue(o, group(0));
      await waitFor("the first group listed", () => (writer.appended.length === 1 ? true : undefined), 5000, 20);
      await o.close("node draining");
      assert.deepEqual(writer.appended, standby ? [7] : [7, 8], standby ? "the cut-short segment is left to the standby" : "without a standby it is listed");
      assert.deepEqual(writer.calls.slice(-2), ["markHandoff", "release"]);
    }
  });

  it("a fenced append means another node owns the stream: it stops writing and drops the publisher", async () => {
    const writer = new FakeWriter();
    const connection = new FakeConnection("cam");
    const { owner: o } = owner(writer, connection);
    await o.start();
    writer.failAppends = "fenced";
    enqueue(o, group(0));
    await waitFor("the publisher dropped", () => (connection.closed ? true : undefined), 5000, 20);
    assert.match(connection.closedWith ?? "", /taken over/);
    writer.failAppends = "no";
    const tried = writer.attempts.length;
    enqueue(o, group(1));
    await o.close("test over");
    assert.equal(writer.attempts.length, tried, "a lost stream is never written again, not even by its close");
    assert.deepEqual(writer.appended, []);
  });

  it("refuses a token issued up to the stream's revocation, before it claims", async () => {
    const writer = new FakeWriter();
    writer.grant.revokedAt = 1500;
    const connection = new FakeConnection("cam", credential({ issuedAt: 1500 }));
    const { owner: o, metrics } = owner(writer, connection);
    assert.equal(await o.start(), false);
    assert.equal(await refusals(metrics, "revoked"), 1);
    assert.deepEqual(writer.calls, [], "no claim");
  });

  it("takes an expired token only for the live broadcast it started, and records a fresh one as the broadcast's", async () => {
    const expired = credential({ expired: true, digest: "started-it" });
    const writer = new FakeWriter();
    writer.grant = { revokedAt: null, grant: "started-it", state: "reconnecting" };
    const ok = owner(writer, new FakeConnection("cam", expired));
    assert.equal(await ok.owner.start(), true);
    await ok.owner.close("done");

    const other = new FakeWriter();
    other.grant = { revokedAt: null, grant: "another", state: "live" };
    const refused = owner(other, new FakeConnection("cam", expired));
    assert.equal(await refused.owner.start(), false);
    assert.equal(await refusals(refused.metrics, "expired_token"), 1);

    const fresh = new FakeWriter();
    const accepted = owner(fresh, new FakeConnection("cam", credential({ digest: "new-one" })));
    assert.equal(await accepted.owner.start(), true);
    assert.ok(fresh.calls.includes("setGrant new-one"));
    await accepted.owner.close("done");
  });
});
