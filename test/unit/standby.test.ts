// Redundant ingest, one module at a time: when a standby takes over (ActiveWatch), where its media continues
// the timeline (StandbyGroups), and a standby owner against a fake writer: nothing listed while it stands by,
// a takeover at the claim's next sequence number from the group that continues the last listed one.
import assert from "node:assert/strict";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { AlreadyLiveError } from "../../src/core/errors.ts";
import { createLogger } from "../../src/core/log.ts";
import { Metrics } from "../../src/core/metrics.ts";
import type { Claim, ClaimRef, NodeRecord, SegmentGroup, StreamInput, TimelineEntry } from "../../src/core/model.ts";
import { admitPublish, type AdmissionPolicy } from "../../src/ingest/admission.ts";
import type { PublisherConnection } from "../../src/ingest/rtmp-server.ts";
import type { InputView, OfferedEntry } from "../../src/state/store.ts";
import { StreamOwner, type PublishGrants, type TimelineWriter } from "../../src/stream/owner.ts";
import { ActiveWatch, StandbyGroups, readyStandbyElsewhere } from "../../src/stream/standby.ts";
import type { SegmentGroupOut } from "../../src/transcode/job.ts";
import { FakeConnection } from "../helpers/fake-connection.ts";
import { LADDER } from "../helpers/playlists.ts";
import { waitFor } from "../helpers/stack.ts";

const T = 1_700_000_000_000;

function group(n: number, offsetMs = 0): SegmentGroupOut {
  return {
    run: 0, pdt: T + n * 1000 + offsetMs, disc: false, finishedAt: Date.now(),
    segments: ["360p", "240p"].map((rendition) => ({ rendition, index: n, start: n, duration: 1, bytes: Buffer.from(`${rendition}/${n}`) })),
  };
}

const live = (o: Partial<InputView> = {}): InputView => ({ holder: "node-a/pub/3", state: "live", nextSeq: 10, role: "primary", ladder: null, owner: "node-a", claimedAt: 1, ...o });

describe("standby: when a hot standby takes over", () => {
  it("takes a released lease at once, with nothing to preempt", () => {
    const watch = new ActiveWatch(3000, 0);
    assert.deepEqual(watch.look(live({ holder: null, released: true }), 0, false), { reason: "released", preempt: null });
  });

  it("never preempts an active input that keeps appending, however long it runs", () => {
    const watch = new ActiveWatch(3000, 0);
    for (let t = 0, seq = 10; t < 60000; t += 500, seq += t % 1000 === 0 ? 1 : 0) {
      assert.equal(watch.look(live({ nextSeq: seq }), t, true), null, `at ${t} ms`);
    }
  });

  it("preempts a stalled holder once nothing was appended for takeoverAfter, only with fresh media of its own", () => {
    const watch = new ActiveWatch(3000, 0);
    assert.equal(watch.look(live(), 0, true), null);
    assert.equal(watch.look(live(), 2999, true), null);
    assert.equal(watch.look(live(), 3000, false), null, "a standby without media of its own waits");
    assert.deepEqual(watch.look(live(), 3000, true), { reason: "stalled", preempt: "node-a/pub/3" });
    assert.equal(watch.look(live({ nextSeq: 11 }), 3100, true), null, "an append restarts the count");
  });

  it("takes a lease marked for a handoff (the active input is leaving) at once, its mark stripped, without waiting for the flush", () => {
    const watch = new ActiveWatch(3000, 0);
    assert.equal(watch.look(live({ holder: "node-a/pub/3#handoff" }), 0, false), null, "a standby without media of its own waits for the release");
    assert.deepEqual(watch.look(live({ holder: "node-a/pub/3#handoff" }), 0, true), { reason: "handoff", preempt: "node-a/pub/3" });
    // the active input left and another node keeps the stream on the slate: the standby replaces the slate
    assert.deepEqual(watch.look(live({ holder: "node-c/slate/4#slate" }), 0, true), { reason: "slate", preempt: null });
    assert.equal(watch.look(live({ holder: "node-c/slate/4#slate" }), 0, false), null, "not without media of its own");
  });

  it("leaves a lease that lapsed while its owner lives (Redis was away) to that owner, unless the stream stalls", () => {
    const watch = new ActiveWatch(3000, 0);
    const lapsed = live({ holder: null, state: "live" });
    assert.equal(watch.look(lapsed, 0, true, false), null, "its owner renews it when Redis returns");
    assert.equal(watch.look(lapsed, 2999, true, false), null);
    assert.equal(watch.look({ ...lapsed, nextSeq: 11 }, 2000, true, false), null, "the owner appends again: no stall");
    assert.equal(watch.look({ ...lapsed, nextSeq: 11 }, 4999, true, false), null);
    assert.equal(watch.look({ ...lapsed, nextSeq: 11 }, 5000, false, false), null, "not without media of its own");
    assert.deepEqual(watch.look({ ...lapsed, nextSeq: 11 }, 5000, true, false), { reason: "stalled", preempt: null });
  });

  it("takes a lapsed lease at once when its owner's node is known dead, media or not", () => {
    const watch = new ActiveWatch(3000, 0);
    assert.deepEqual(watch.look(live({ holder: null }), 0, false, true), { reason: "dead", preempt: null });
  });
});

describe("standby: where its media continues the timeline", () => {
  it("lists from the held group whose middle is past the last listed end, then every later group", () => {
    const groups = new StandbyGroups(10);
    // the standby's boundaries fall 400 ms after the active's: group 5 (5.4 to 6.4 s) covers the end at 6 s
    for (let n = 0; n < 8; n++) groups.hold(group(n, 400));
    const listed = groups.takeOver(T + 6000);
    assert.deepEqual(listed.map((g) => (g.segments[0] as { index?: number }).index), [6, 7], "group 5 (5.4 to 6.4 s) is mostly media already listed");
    assert.equal(groups.shiftMs, -400, "its media repeats 400 ms of what was listed");
    assert.deepEqual(listed.map((g) => g.pdt - T), [6000, 7000], "the date-time runs on from the listed end");
    assert.equal(groups.next(group(8, 400))?.pdt, T + 8000);
  });

  it("finds the listed end in its own media by the active owner's date-time offset, so boundaries cut alike continue exactly", () => {
    // both pipelines cut on the same wall-clock boundaries; the active owner's date-times run 700 ms ahead of
    // its media (an earlier switch moved them), so the listed end at 6.7 s is its media's 6.0 s
    const cuts: { shiftMs: number; mismatchMs: number | null }[] = [];
    const groups = new StandbyGroups(10, (shiftMs, mismatchMs) => cuts.push({ shiftMs, mismatchMs }));
    for (let n = 0; n < 8; n++) groups.hold(group(n));
    const listed = groups.takeOver(T + 6700, 700);
    assert.deepEqual(listed.map((g) => (g.segments[0] as { index?: number }).index), [6, 7], "group 6 starts where the listed media ended");
    assert.deepEqual(cuts.slice(), [{ shiftMs: 700, mismatchMs: 0 }], "nothing repeated or skipped; the date-time runs on from 6.7 s");
    assert.deepEqual(listed.map((g) => g.pdt - T), [6700, 7700]);
    // read by the date-times alone, group 7 would have followed: 300 ms of media skipped
    const naive = new StandbyGroups(10, (shiftMs, mismatchMs) => cuts.push({ shiftMs, mismatchMs }));
    for (let n = 0; n < 8; n++) naive.hold(group(n));
    assert.deepEqual(naive.takeOver(T + 6700).map((g) => (g.segments[0] as { index?: number }).index), [7]);
    assert.deepEqual(cuts[1], { shiftMs: -300, mismatchMs: 300 });
    // after the slate the listed end is no media: the cut is made, no mismatch told
    const afterSlate = new StandbyGroups(10, (shiftMs, mismatchMs) => cuts.push({ shiftMs, mismatchMs }));
    for (let n = 0; n < 8; n++) afterSlate.hold(group(n));
    assert.deepEqual(afterSlate.takeOver(T + 6700, null).map((g) => (g.segments[0] as { index?: number }).index), [7]);
    assert.deepEqual(cuts[2], { shiftMs: -300, mismatchMs: null });
  });

  it("drops what arrives late but repeats listed media, until a group continues it", () => {
    const groups = new StandbyGroups(10);
    for (let n = 0; n < 3; n++) groups.hold(group(n));
    assert.deepEqual(groups.takeOver(T + 5000), [], "the standby is behind: nothing it holds continues the timeline");
    assert.equal(groups.next(group(4)), null);
    assert.equal(groups.next(group(5, 300))?.pdt, T + 5000, "skipped 300 ms");
    assert.equal(groups.next(group(6, 300))?.pdt, T + 6000);
  });

  it("keeps a bounded number of groups", () => {
    const groups = new StandbyGroups(3);
    for (let n = 0; n < 100; n++) groups.hold(group(n));
    assert.deepEqual(groups.takeOver(0).map((g) => (g.pdt - T) / 1000), [97, 98, 99]);
  });
});

describe("standby: a standby elsewhere that could take over", () => {
  const record = (id: string, input: StreamInput | undefined, age = 0): NodeRecord => ({
    id, state: "ready", httpUrl: "", rtmpUrl: "", version: "", startedAt: 0, heartbeatAt: 10_000 - age,
    load: { publishers: 1, viewers: {}, cpu: 0, readyChecks: 0, ...(input ? { inputs: { cam: input } } : {}) },
  });
  const standby = (ready?: boolean): StreamInput => ({ role: "backup", state: "standby", ...(ready === undefined ? {} : { ready }) });
  const seen = (records: NodeRecord[]): boolean => readyStandbyElsewhere(records, "a", "cam", 10_000, 3000);

  it("counts a ready standby on another live node, and one whose release does not say", () => {
    assert.equal(seen([record("b", standby(true))]), true);
    assert.equal(seen([record("b", standby())]), true, "an older release's record: ready, as before");
  });

  it("does not count a standby warming up, one on this node, a stale record, or an active input", () => {
    assert.equal(seen([record("b", standby(false))]), false, "warming up: the slate is not held off for it");
    assert.equal(seen([record("a", standby(true))]), false, "itself is not elsewhere");
    assert.equal(seen([record("b", standby(true), 5000)]), false, "a record older than the TTL says nothing");
    assert.equal(seen([record("b", { role: "primary", state: "active" }), record("c", undefined)]), false);
  });
});

describe("standby: admission of a redundant broadcast's two pushes", () => {
  const request = (query: Record<string, string>) => ({ app: "live", name: "cam1", query, remote: "127.0.0.1:1" });
  const policy = (here: "primary" | "backup" | null): AdmissionPolicy => ({
    requireToken: false, secret: "", isLive: () => here !== null, liveRole: () => here, refusing: () => false, full: () => null,
  });

  it("reads the role from ?role=, primary without one, and refuses any other role", () => {
    assert.equal(admitPublish(request({}), policy(null)).role, "primary");
    assert.equal(admitPublish(request({ role: "backup" }), policy(null)).role, "backup");
    assert.throws(() => admitPublish(request({ role: "spare" }), policy(null)), { reason: "bad_role" });
  });

  it("sends the other input to another node, with the reason, and refuses a duplicate as before", () => {
    assert.throws(() => admitPublish(request({ role: "backup" }), policy("primary")), (e: Error & { reason?: string }) => e.reason === "other_input_here" && /primary input is on this node/.test(e.message));
    assert.throws(() => admitPublish(request({}), policy("primary")), { reason: "already_live" });
  });
});

/** A writer whose stream is live from another node's primary until the test releases it. */
class StandbyWriter implements TimelineWriter, PublishGrants {
  view: InputView = live({ ladder: LADDER.slice(1) });
  claims: { preempt: string | undefined; role: string | undefined }[] = [];
  appended: SegmentGroup[] = [];
  /** What the claim says of the timeline's last entry: a slate segment's. */
  endsOnSlate = false;
  async claim(...args: Parameters<TimelineWriter["claim"]>): Promise<Claim> {
    const input = args[5] ?? {};
    this.claims.push({ preempt: input.preempt, role: input.role });
    // as claim-4.lua: a held lease only when preempted by name; a slate's lease any publish claim takes
    if (this.view.holder !== null && !this.view.holder.endsWith("#slate") && input.preempt !== this.view.holder) throw new AlreadyLiveError("node-a");
    this.view = { ...this.view, holder: "node-b/fakepublish1/4", role: input.role ?? "primary" };
    return { id: "0123456789ab", epoch: 4, nextSeq: this.view.nextSeq, targetDuration: 1, ladder: this.view.ladder, holder: "node-b/fakepublish1/4", broadcast: "00000000000b", endsAt: T + 6000, endsOnSlate: this.endsOnSlate };
  }
  /** How many times the standby looked at the active input. */
  looks = 0;
  async inputView(): Promise<InputView> {
    this.looks++;
    return { ...this.view };
  }
  async renew(): Promise<boolean> {
    return true;
  }
  async setLadder(_s: string, _c: Claim, ladder: Parameters<TimelineWriter["setLadder"]>[2]): ReturnType<TimelineWriter["setLadder"]> {
    return ladder;
  }
  /** Groups whose media was written, by sequence number: appended once their entry is. */
  private readonly media = new Map<number, SegmentGroup>();
  async writeMedia(_s: string, _c: Claim, g: SegmentGroup): Promise<void> {
    this.media.set(g.seq, g);
  }
  async appendEntry(_s: string, _c: ClaimRef, e: OfferedEntry): Promise<TimelineEntry> {
    const g = this.media.get(e.seq);
    assert.ok(g, `seq ${e.seq} appended before its media was written`);
    this.appended.push({ ...g, pdt: e.pdt });
    return { ...e, cc: 0 };
  }
  async markHandoff(): Promise<boolean> {
    return true;
  }
  async release(): Promise<boolean> {
    return true;
  }
  async publishGrant(): ReturnType<PublishGrants["publishGrant"]> {
    return { revokedAt: null, grant: null, state: "live" };
  }
  async setGrant(): Promise<void> {}
}

describe("standby: a standby owner (fake writer)", () => {
  function standbyOwner(writer: StandbyWriter, role: "primary" | "backup"): { owner: StreamOwner; connection: FakeConnection; metrics: Metrics } {
    const connection = new FakeConnection("cam", null, role);
    const metrics = new Metrics({ node: "node-b" });
    const owner = new StreamOwner({
      connection: connection as unknown as PublisherConnection, store: writer, grants: writer, nodeId: "node-b",
      config: { ...DEFAULTS, hls: { ...DEFAULTS.hls, segmentDuration: 1 }, standby: { takeoverAfter: 1 } },
      log: createLogger({ level: "error" }), metrics, nodeAlive: async () => true, ownerGone: async () => false,
    });
    return { owner, connection, metrics };
  }
  const enqueue = (o: StreamOwner, g: SegmentGroupOut): void => (o as unknown as { enqueue(g: SegmentGroupOut): void }).enqueue(g);

  it("a second primary is still a duplicate: refused, never a standby", async () => {
    const writer = new StandbyWriter();
    const { owner, connection } = standbyOwner(writer, "primary");
    assert.equal(await owner.start(), false);
    assert.match(connection.closedWith ?? "", /live on node-a/);
  });

  it("a backup stands by, lists nothing while the primary is live, and on its release continues the timeline at the next sequence", async () => {
    const writer = new StandbyWriter();
    const { owner, metrics } = standbyOwner(writer, "backup");
    assert.equal(await owner.start(), true);
    assert.deepEqual(owner.input, { role: "backup", state: "standby", offsetMs: 0, ready: false }, "no media yet: warming up");
    for (let n = 0; n < 8; n++) enqueue(owner, group(n, 400));
    assert.equal(owner.input.ready, true, "its transcoder delivered: ready to take over");
    writer.view = { ...writer.view, nextSeq: 11 };
    // two looks at a live active input: nothing taken, nothing listed
    const looked = writer.looks;
    await waitFor("two looks at the active input", () => (writer.looks >= looked + 2 ? true : undefined), 5000, 20);
    assert.equal(writer.appended.length, 0, "a standby's segments are not listed");
    writer.view = { ...writer.view, holder: null, state: "reconnecting", released: true };
    await waitFor("the takeover's appends", () => (writer.appended.length === 2 ? true : undefined), 5000, 20);
    assert.deepEqual({ ...owner.input, offsetMs: undefined }, { role: "backup", state: "active", offsetMs: undefined });
    assert.deepEqual(writer.appended.map((g) => [g.seq, g.pdt - T, g.renditions[0]!.bytes.toString()]), [[11, 6000, "360p/6"], [12, 7000, "360p/7"]], "from the group that continues the end at 6 s, at the next sequence number");
    assert.deepEqual(writer.claims.at(-1), { preempt: "", role: "backup" });
    assert.equal((await metrics.standbyTakeovers.get()).values.find((v) => v.labels.reason === "released")?.value, 1);
    await owner.close("test over");
  });

  for (const endsOnSlate of [false, true]) {
    it(`takes a stream put on the slate at once; ${endsOnSlate ? "after a slate segment it tells no media mismatch" : "before the slate listed one it continues the input's media and tells the mismatch"}`, async () => {
      const writer = new StandbyWriter();
      writer.endsOnSlate = endsOnSlate;
      const { owner, metrics } = standbyOwner(writer, "backup");
      assert.equal(await owner.start(), true);
      for (let n = 0; n < 8; n++) enqueue(owner, group(n, 20));
      writer.view = { ...writer.view, holder: "node-a/pub/3#slate" };
      await waitFor("the takeover's appends", () => (writer.appended.length === 2 ? true : undefined), 5000, 20);
      assert.deepEqual(writer.appended.map((g) => g.pdt - T), [6000, 7000], "from the group at the end, moved onto it");
      assert.equal((await metrics.standbyTakeovers.get()).values.find((v) => v.labels.reason === "slate")?.value, 1);
      const told = (await metrics.standbyShift.get()).values.find((v) => v.metricName === "baton_standby_shift_seconds_count")?.value ?? 0;
      assert.equal(told, endsOnSlate ? 0 : 1);
      await owner.close("test over");
    });
  }

  it("takes a released stream even before the active input set a ladder (it plans one as a first owner does)", async () => {
    const writer = new StandbyWriter();
    writer.view = { ...writer.view, ladder: null };
    const { owner } = standbyOwner(writer, "backup");
    assert.equal(await owner.start(), true);
    writer.view = { ...writer.view, holder: null, released: true };
    await waitFor("the takeover", () => (owner.input.state === "active" ? true : undefined), 5000, 20);
    await owner.close("test over");
  });

  it("preempts a stalled active input through the claim, naming the holder it saw", async () => {
    const writer = new StandbyWriter();
    const { owner } = standbyOwner(writer, "backup");
    assert.equal(await owner.start(), true);
    const feed = setInterval(() => enqueue(owner, group(Math.floor((Date.now() - T) / 1000))), 200);
    try {
      await waitFor("the takeover", () => (owner.input.state === "active" ? true : undefined), 10000, 50);
    } finally {
      clearInterval(feed);
    }
    assert.deepEqual(writer.claims.at(-1), { preempt: "node-a/pub/3", role: "backup" });
    await owner.close("test over");
  });
});
