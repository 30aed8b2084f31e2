// Input loss against a real redis-server and a real slate (ffmpeg): the owner whose publisher left keeps the
// slate under its claim; a node takes over the slate of a stream whose owner is known dead, at a higher epoch;
// a publish claim takes the stream from a slate holder, whose appends are refused from then on; the slate
// stops when the input-loss window passes. Sequence numbers, date-times and discontinuities are checked on
// the timeline the playlists render from.
import assert from "node:assert/strict";
import { DEFAULTS, type Config } from "../../src/config/defaults.ts";
import { FencedError } from "../../src/core/errors.ts";
import { createLogger } from "../../src/core/log.ts";
import { Metrics } from "../../src/core/metrics.ts";
import type { Claim, LadderEntry, TimelineEntry } from "../../src/core/model.ts";
import { renderMedia, SLATE_TAG } from "../../src/delivery/playlist.ts";
import { StreamStore } from "../../src/state/store.ts";
import { FsSegmentStore } from "../../src/storage/fs.ts";
import { SlateKeepers } from "../../src/stream/slate-keepers.ts";
import { SlateCadence } from "../../src/stream/slate-keeper.ts";
import { DEFAULT_SLATE, Slates, type Slate } from "../../src/transcode/slate.ts";
import { startTestRedis, stopAll, tempDir, testPrefix, waitFor, type TestRedis } from "../helpers/stack.ts";

const LADDER: LadderEntry[] = [
  { name: "360p", width: 640, height: 360, bandwidth: 900000, averageBandwidth: 800000, codecs: "avc1.64001e,mp4a.40.2", frameRate: 30 },
  { name: "240p", width: 426, height: 240, bandwidth: 500000, averageBandwidth: 450000, codecs: "avc1.640015,mp4a.40.2", frameRate: 30 },
];
const LEASE = { ttlMs: 4000, renewEveryMs: 1000 };
/** The standby grace of these keepers (STANDBY_GRACE_MS in production). */
const STANDBY_GRACE = 400;
const CONFIG: Config = { ...DEFAULTS, hls: { ...DEFAULTS.hls, segmentDuration: 1 } };

describe("input loss: slate keepers", function () {
  this.timeout(60000);
  let redis: TestRedis;
  let store: StreamStore;
  let slates: Slates;
  const keepers: SlateKeepers[] = [];

  /**
   * A node's keepers; `dead` is what its liveness check says; `standby`, where a stream's hot standby runs;
   * `started`, when each node's process started (its registry record), for claims its earlier process made.
   */
  function node(id: string, dead: Set<string> = new Set(), standby?: { of: "here" | "elsewhere"; told: string[] }, started = new Map<string, number>()): SlateKeepers {
    const k = new SlateKeepers({
      store, nodeId: id, config: CONFIG, slates, lease: LEASE, deadNodes: async () => dead, accepting: () => true, standbyGraceMs: STANDBY_GRACE,
      restarted: (nodeId, at) => (started.get(nodeId) ?? 0) > at,
      log: createLogger({ level: "error", node: id }), metrics: new Metrics({ node: id }),
      ...(standby ? { standbyOf: () => standby.of, takeOverDead: (stream: string, holder: string) => void standby.told.push(`${stream} ${holder}`) } : {}),
    });
    keepers.push(k);
    return k;
  }

  /** A live stream with `count` media segments of one second each, appended by a publish claim of `nodeId`. */
  async function liveStream(id: string, nodeId: string, count: number): Promise<{ claim: Claim; pdt0: number }> {
    const claim = await store.claim(id, nodeId, `pub-${nodeId}`, LEASE.ttlMs, 1);
    await store.setLadder(id, claim, LADDER);
    const pdt0 = Date.now() - count * 1000;
    for (let seq = 0; seq < count; seq++) await appendMedia(id, claim, seq, pdt0 + seq * 1000);
    return { claim, pdt0 };
  }

  async function appendMedia(id: string, claim: Claim, seq: number, pdt: number): Promise<TimelineEntry> {
    return store.append(id, claim, { seq, pdt, disc: false, renditions: LADDER.map((r) => ({ name: r.name, duration: 1, bytes: Buffer.from(`${r.name}/${seq}`) })) });
  }

  const entries = async (id: string): Promise<TimelineEntry[]> => (await store.read(id))?.entries ?? [];
  const slateCount = async (id: string): Promise<number> => (await entries(id)).filter((e) => e.slate).length;

  before(async () => {
    redis = await startTestRedis();
    store = new StreamStore({
      url: redis.url, prefix: testPrefix(), window: 30, reconnectWindowMs: 30000, retentionSec: 60, commandTimeoutMs: 2000, waitReplicas: 0,
      media: new FsSegmentStore(tempDir("segments")),
    });
    await store.connect();
    slates = new Slates({ ffmpegPath: "ffmpeg", image: DEFAULT_SLATE, segmentDuration: 1, workDir: tempDir("slate") });
  });
  after(async () => {
    for (const k of keepers) await k.closeAll("test over", true);
    await store?.close();
    await stopAll();
  });

  it("continues the owner's timeline with slate segments in real time, then a publish claim on another node takes over", async () => {
    const { claim, pdt0 } = await liveStream("left", "node-a", 3);
    const a = node("node-a");
    assert.equal(await a.keep("left", claim), true);
    assert.equal((await store.read("left"))?.state, "reconnecting", "the reconnect window runs while the slate shows");
    await waitFor("three slate segments", async () => ((await slateCount("left")) >= 3 ? true : undefined), 20000);
    const listed = await entries("left");
    assert.deepEqual(listed.map((e) => e.seq).slice(0, 6), [0, 1, 2, 3, 4, 5], "the sequence goes on");
    assert.deepEqual(listed.slice(3, 6).map((e) => e.pdt), [3, 4, 5].map((n) => pdt0 + n * 1000), "date-times go on, one segment duration apart");
    assert.deepEqual(listed.slice(2, 6).map((e) => [e.disc, e.slate === true]), [[false, false], [true, true], [false, true], [false, true]]);
    assert.ok(listed.every((e) => e.claim === claim.id), "the slate is the owner's own claim: no new epoch");
    // a slate segment is listed only once its media would have been recorded: never ahead of real time
    assert.ok(listed.at(-1)!.pdt + 1000 <= Date.now() + 100);
    const bytes = await store.readSegment("left", claim.broadcast, "360p", 3, claim.id);
    assert.equal(bytes?.[0], 0x47, "the slate segment is in the segment store, MPEG-TS");
    const playlist = renderMedia((await store.read("left"))!, "360p");
    assert.match(playlist, new RegExp(`#EXT-X-DISCONTINUITY\\n#EXT-X-PROGRAM-DATE-TIME:[^\\n]+\\n${SLATE_TAG}\\n#EXTINF:1.000,\\n3\\.`));
    assert.equal((await store.read("left"))?.slate, true);

    // the publisher returns on node-b: its claim takes the slate's lease at once, at a higher epoch
    const returned = await store.claim("left", "node-b", "pub-back", LEASE.ttlMs, 1);
    assert.equal(returned.epoch, claim.epoch + 1);
    const slateEnd = (await entries("left")).at(-1)!;
    assert.equal(returned.inputLost, true, "the claim says the stream had no input: its owner shows the slate until its first segment");
    assert.equal(returned.endsAt, slateEnd.pdt + 1000, "the claim says where the timeline's media ends");
    assert.equal(claim.inputLost, false);
    await waitFor("node-a's slate stopped", () => (a.size === 0 ? true : undefined), 10000);
    const live = await appendMedia("left", returned, returned.nextSeq, Date.now());
    assert.equal(live.disc, true, "live media after the slate starts a discontinuity");
    assert.equal(live.slate, undefined);
    assert.equal((await store.read("left"))?.slate, false);
    // the fence: the slate holder's claim can append nothing more
    await assert.rejects(appendMedia("left", claim, returned.nextSeq + 1, Date.now()), (e: unknown) => e instanceof FencedError && e.code === "STALE_EPOCH");
    const seqs = (await entries("left")).map((e) => e.seq);
    assert.deepEqual(seqs, seqs.map((_, i) => i), "no sequence number twice, none skipped");
  });

  it("takes over the slate of a stream whose owner is known dead, before its lease runs out", async () => {
    const { claim } = await liveStream("crash", "node-dead", 2);
    // a node that believes node-dead alive waits for the lease; one that knows it dead takes the slate now
    const unsure = node("node-c");
    await unsure.round();
    assert.equal(unsure.has("crash"), false, "a lease of a node not known dead is respected");
    const sure = node("node-d", new Set(["node-dead"]));
    await sure.round();
    assert.equal(sure.has("crash"), true);
    const lease = await store.redis.get(store.keys.lease("crash"));
    assert.match(lease ?? "", /^node-d\/.*#slate$/, "the lease is the slate holder's, marked for the slate");
    await waitFor("a slate segment", async () => ((await slateCount("crash")) >= 1 ? true : undefined), 20000);
    const first = (await entries("crash")).find((e) => e.slate)!;
    assert.equal(first.seq, 2);
    assert.equal(first.disc, true);
    assert.notEqual(first.claim, claim.id);
    await assert.rejects(appendMedia("crash", claim, 3, Date.now()), FencedError, "the dead owner's claim is fenced off");
    // another node's round leaves a stream whose slate is kept alone
    const other = node("node-e", new Set(["node-dead"]));
    await other.round();
    assert.equal(other.has("crash"), false);
  });

  it("leaves a dead owner's stream to its hot standby (redundant ingest), telling this node's standby at once", async () => {
    await liveStream("backed", "node-gone", 2);
    const holder = (await store.redis.get(store.keys.lease("backed")))!;
    const here = { of: "here" as const, told: [] as string[] };
    const withStandby = node("node-s", new Set(["node-gone"]), here);
    await withStandby.round();
    assert.equal(withStandby.has("backed"), false, "no slate: the standby's media replaces the dead input");
    assert.deepEqual(here.told, [`backed ${holder}`]);
    const elsewhere = node("node-t", new Set(["node-gone"]), { of: "elsewhere", told: [] });
    await elsewhere.round();
    assert.equal(elsewhere.has("backed"), false, "another node's standby takes it in its own round");
    assert.equal(await store.redis.get(store.keys.lease("backed")), holder, "nobody claimed it for a slate");
  });

  it("leaves a stream its drained owner released to a ready hot standby for a moment, then keeps its slate if the standby did not take it", async () => {
    const { claim } = await liveStream("handed", "node-d", 2);
    assert.equal(await store.release("handed", claim), true);
    const k = node("node-k", new Set(), { of: "elsewhere", told: [] });
    const first = Date.now();
    await k.round();
    assert.equal(k.has("handed"), false, "the standby takes a released stream at its next look, with no slate between");
    assert.equal(await store.redis.get(store.keys.lease("handed")), null);
    // a standby that never takes it (its node died after its last record): the slate goes on after the grace
    await waitFor("the slate after the grace", async () => (await k.round(), k.has("handed") ? true : undefined), 10000);
    assert.ok(Date.now() - first >= STANDBY_GRACE, "not before the grace");
    assert.match((await store.redis.get(store.keys.lease("handed"))) ?? "", /^node-k\/.*#slate$/);
    // one the standby takes within the grace is never the slate's
    const taken = await liveStream("taken", "node-d", 2);
    assert.equal(await store.release("taken", taken.claim), true);
    await k.round();
    const standby = await store.claim("taken", "node-s", "pub-node-s", LEASE.ttlMs, 1, { role: "backup" });
    const until = Date.now() + 2 * STANDBY_GRACE;
    while (Date.now() < until) await k.round();
    assert.equal(k.has("taken"), false);
    assert.equal(await store.redis.get(store.keys.lease("taken")), standby.holder);
  });

  it("leaves a stream whose lease lapsed while its owner lives (Redis was away) to that owner; takes one its owner released", async () => {
    const { claim } = await liveStream("lapsed", "node-g", 2);
    await store.redis.del(store.keys.lease("lapsed"));
    const h = node("node-h");
    await h.round();
    assert.equal(h.has("lapsed"), false, "its owner takes the lease back at its next renewal");
    assert.equal(await store.renew("lapsed", claim, LEASE.ttlMs), true);
    // a drained owner lets the stream go: another node keeps its slate until the encoder is back
    assert.equal(await store.release("lapsed", claim), true);
    await h.round();
    assert.equal(h.has("lapsed"), true);
    assert.match((await store.redis.get(store.keys.lease("lapsed"))) ?? "", /^node-h\/.*#slate$/);
  });

  it("takes a lapsed lease whose owner's node restarted since the claim (a crash and a restart between two rounds), on another node or its own", async () => {
    await liveStream("reborn", "node-r", 2);
    await store.redis.del(store.keys.lease("reborn"));
    const later = new Map([["node-r", Date.now() + 1000]]);
    const other = node("node-o", new Set(), undefined, later);
    await other.round();
    assert.equal(other.has("reborn"), true, "the process that claimed it is gone, though node-r answers");
    await other.closeAll("test over", true);
    await liveStream("reborn2", "node-r", 2);
    await store.redis.del(store.keys.lease("reborn2"));
    const itself = node("node-r", new Set(), undefined, new Map([["node-r", Date.now() + 1000]]));
    await itself.round();
    assert.equal(itself.has("reborn2"), true, "node-r's new process keeps its old process's stream on the slate");
  });

  it("stops when the input-loss window passes: the stream ends and the slate holder's appends are refused", async () => {
    const short = new StreamStore({ ...store.options, reconnectWindowMs: 1500 });
    await short.connect();
    try {
      const { claim } = await liveStream("ends", "node-f", 2);
      const f = node("node-f");
      assert.equal(await f.keep("ends", claim), true);
      await waitFor("a slate segment", async () => ((await slateCount("ends")) >= 1 ? true : undefined), 20000);
      await waitFor("the stream ended", async () => ((await short.sweep("ends")).state === "ended" ? true : undefined), 20000);
      await waitFor("the slate stopped", () => (f.size === 0 ? true : undefined), 10000);
      assert.match(renderMedia((await store.read("ends"))!, "360p"), /#EXT-X-ENDLIST\n$/);
    } finally {
      await short.close();
    }
  });
});

describe("input loss: the slate's cadence", () => {
  // a stand-in slate: the cadence only asks it for segment bytes and its duration
  const slate = { segmentDuration: 2, gap: () => ({ segment: (rendition: string, index: number) => Buffer.from(`${rendition}/${index}`) }) } as unknown as Slate;

  it("lists the first slate segment when the next live one would have been listed, then one each segment duration", () => {
    const c = new SlateCadence(slate, LADDER, { nextSeq: 10, endsAt: 50_000, listedAt: 49_500 }, 50_000);
    assert.equal(c.wait(50_000), 1500, "one segment duration after the last listing");
    const first = c.peek();
    assert.deepEqual([first.seq, first.pdt, first.renditions.map((r) => [r.name, r.duration, r.bytes.toString()])], [10, 50_000, [["360p", 2, "360p/0"], ["240p", 2, "240p/0"]]]);
    c.taken(51_600);
    assert.equal(c.wait(51_600), 2000);
    assert.deepEqual([c.peek().seq, c.peek().pdt, c.endsAt], [11, 52_000, 52_000], "date-times go on one segment duration each");
  });

  it("lists at once when that moment passed (an owner that died listed nothing since)", () => {
    const c = new SlateCadence(slate, LADDER, { nextSeq: 3, endsAt: 10_000, listedAt: 9_000 }, 14_000);
    assert.equal(c.wait(14_000), 0);
    assert.equal(c.peek().pdt, 10_000, "the slate's date-times start where the media ended, not at the takeover");
  });
});
