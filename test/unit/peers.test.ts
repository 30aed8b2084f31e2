// The owners' direct line (cluster/peers.ts): what an offer must be, what a node does with one (append it for
// the owner when it reaches Redis, list it from memory when it does not), signed end to end over a real HTTP
// server, and the timeline cache's side (delivery/timeline-cache.ts show()).
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { FencedError } from "../../src/core/errors.ts";
import { createLogger } from "../../src/core/log.ts";
import { Metrics } from "../../src/core/metrics.ts";
import type { ClaimRef, StreamSnapshot, TimelineEntry } from "../../src/core/model.ts";
import { PeerLink, addPeerRoutes, checkOffer, newNonce, peerKey, receive, type Offer, type OfferTarget } from "../../src/cluster/peers.ts";
import { TimelineCache } from "../../src/delivery/timeline-cache.ts";
import { ClientAddresses } from "../../src/http/client-address.ts";
import { HttpServer } from "../../src/http/server.ts";
import type { OfferedEntry } from "../../src/state/store.ts";
import { freePort } from "../../tools/processes.ts";

const NOW = 1_800_000_000_000;
const CLAIM = { id: "0123456789ab", epoch: 4, broadcast: "00000000000b", targetDuration: 2, holder: "node-a/p1/4" };
const log = createLogger({ level: "error", write: () => undefined });

function entry(seq: number, disc = false): OfferedEntry {
  return { seq, claim: CLAIM.id, pdt: NOW + seq * 2000, disc, dur: { "720p": 2, "360p": 2 } };
}

function offer(first: number, count: number, more: Partial<Offer> = {}): Offer {
  return { v: 1, nonce: newNonce(), from: "node-a", at: NOW, stream: "cam", claim: { ...CLAIM }, entries: Array.from({ length: count }, (_, i) => entry(first + i)), renew: null, ...more };
}

describe("peer offers", () => {
  describe("checkOffer", () => {
    it("takes a well-formed offer, field by field", () => {
      const o = offer(10, 3, { renew: { leaseMs: 4000, handingOver: false } });
      assert.deepEqual(checkOffer(JSON.parse(JSON.stringify(o)), NOW), o);
    });

    const broken: [string, (o: Record<string, unknown>) => void][] = [
      ["another version", (o) => (o.v = 2)],
      ["no nonce", (o) => delete o.nonce],
      ["a bad node id", (o) => (o.from = "../x")],
      ["an old offer (a replay)", (o) => (o.at = NOW - 120000)],
      ["a bad stream id", (o) => (o.stream = "a/b")],
      ["a bad claim id", (o) => ((o.claim as Record<string, unknown>).id = "zz")],
      ["a claim at epoch 0", (o) => ((o.claim as Record<string, unknown>).epoch = 0)],
      ["a holder on another node", (o) => ((o.claim as Record<string, unknown>).holder = "node-b/p/4")],
      ["an entry of another claim", (o) => ((o.entries as Record<string, unknown>[])[1]!.claim = "ba9876543210")],
      ["a gap between entries", (o) => ((o.entries as Record<string, unknown>[])[2]!.seq = 99)],
      ["no renditions", (o) => ((o.entries as Record<string, unknown>[])[0]!.dur = {})],
      ["a bad rendition name", (o) => ((o.entries as Record<string, unknown>[])[0]!.dur = { "../x": 2 })],
      ["a negative duration", (o) => ((o.entries as Record<string, unknown>[])[0]!.dur = { "720p": -1 })],
      ["a duration that is not a number", (o) => ((o.entries as Record<string, unknown>[])[0]!.dur = { "720p": "2" })],
      ["a fractional sequence number", (o) => ((o.entries as Record<string, unknown>[])[0]!.seq = 1.5)],
      ["too many entries", (o) => (o.entries = Array.from({ length: 121 }, (_, i) => entry(i)))],
      ["a renewal without a lease", (o) => (o.renew = { handingOver: false })],
      ["not an object", (o) => Object.keys(o).forEach((k) => delete o[k])],
    ];
    for (const [what, breakIt] of broken) {
      it(`refuses ${what} with a 400`, () => {
        const o = JSON.parse(JSON.stringify(offer(10, 3))) as Record<string, unknown>;
        breakIt(o);
        assert.throws(() => checkOffer(o, NOW), (error: Error & { status?: number }) => error.status === 400);
      });
    }
  });

  describe("receive", () => {
    class FakeTarget implements OfferTarget {
      appended: number[] = [];
      shown: number[] = [];
      redisUp = true;
      next = 10;
      failWith: Error | null = null;
      renewed = true;
      store = {
        appendEntry: async (_s: string, _c: ClaimRef, e: OfferedEntry): Promise<TimelineEntry> => {
          if (this.failWith) throw this.failWith;
          if (e.seq !== this.next) throw new FencedError("SEQ_MISMATCH", "x", this.next);
          this.appended.push(e.seq);
          this.next += 1;
          return { ...e, cc: 0 };
        },
        renew: async (): Promise<boolean> => this.renewed,
      };
      reachable = (): boolean => this.redisUp;
      show = (_s: string, _c: ClaimRef, entries: OfferedEntry[]): number => {
        this.shown.push(...entries.map((e) => e.seq));
        return entries.length;
      };
    }
    const with_ = (t: FakeTarget): OfferTarget & { log: typeof log; metrics: Metrics } => Object.assign(t, { log, metrics: new Metrics({ node: "b" }) });

    it("appends the entries for the owner when it reaches Redis, counting those already there", async () => {
      const t = new FakeTarget();
      t.next = 12; // 10 and 11 were appended already (by the owner or another node)
      const reply = await receive(offer(10, 5), with_(t));
      assert.deepEqual(reply, { committed: 5, shown: 0, fenced: null, renewed: null });
      assert.deepEqual(t.appended, [12, 13, 14]);
      assert.deepEqual(t.shown, []);
    });

    it("renews the owner's lease, and says so when the lease is another claim's", async () => {
      const t = new FakeTarget();
      assert.equal((await receive(offer(10, 0, { renew: { leaseMs: 4000, handingOver: false } }), with_(t))).renewed, true);
      t.renewed = false;
      const reply = await receive(offer(10, 0, { renew: { leaseMs: 4000, handingOver: false } }), with_(t));
      assert.equal(reply.renewed, false);
      assert.match(reply.fenced ?? "", /another claim/);
    });

    it("passes Redis's refusal of the claim back to the owner, and lists nothing", async () => {
      const t = new FakeTarget();
      t.failWith = new FencedError("STALE_EPOCH", "write refused: the stream moved to epoch 5");
      const reply = await receive(offer(10, 3), with_(t));
      assert.match(reply.fenced ?? "", /epoch 5/);
      assert.deepEqual([reply.committed, reply.shown], [0, 0]);
    });

    it("a gap before the entries is no refusal, and nothing is listed from memory while Redis answers", async () => {
      const t = new FakeTarget();
      t.next = 5;
      const reply = await receive(offer(10, 3), with_(t));
      assert.deepEqual(reply, { committed: 0, shown: 0, fenced: null, renewed: null });
    });

    it("lists the entries from memory when it cannot reach Redis either", async () => {
      const t = new FakeTarget();
      t.redisUp = false;
      const reply = await receive(offer(10, 3), with_(t));
      assert.deepEqual([reply.committed, reply.shown], [0, 3]);
      assert.deepEqual(t.shown, [10, 11, 12]);
      assert.deepEqual(t.appended, []);
    });

    it("lists from memory what Redis did not take when Redis stops answering mid-relay", async () => {
      const t = new FakeTarget();
      const store = t.store;
      let calls = 0;
      t.store = { ...store, appendEntry: async (...args) => (++calls > 1 ? Promise.reject(new Error("Command timed out")) : store.appendEntry(...args)) };
      const reply = await receive(offer(10, 3), with_(t));
      assert.deepEqual([reply.committed, reply.shown], [1, 2]);
      assert.deepEqual(t.shown, [11, 12]);
    });
  });

  describe("over HTTP, signed", () => {
    let http: HttpServer;
    let port: number;
    const shown: number[] = [];
    const key = peerKey("the cluster's sessions secret, shared by every node");

    before(async () => {
      port = await freePort();
      http = new HttpServer({
        port, bind: "127.0.0.1", maxConnections: 100, maxConnectionsPerAddress: 100, addresses: new ClientAddresses([]),
        log, metrics: new Metrics({ node: "b" }), readiness: { ready: () => ({ ok: true }) }, opsToken: null,
      });
      addPeerRoutes(http, {
        key, nodeId: "node-b", log, metrics: new Metrics({ node: "b" }),
        store: { appendEntry: () => Promise.reject(new Error("unused")), renew: () => Promise.reject(new Error("unused")) },
        reachable: () => false,
        show: (_s, _c, entries) => (shown.push(...entries.map((e) => e.seq)), entries.length),
      });
      await http.start();
    });
    after(() => http.close());

    const link = (k: Buffer): PeerLink => new PeerLink({ key: k, peers: () => [`http://127.0.0.1:${port}`], log, metrics: new Metrics({ node: "a" }) });

    it("a node with the cluster's key is heard", async () => {
      const replies = await link(key).offer({ ...offer(10, 2), at: Date.now() });
      assert.deepEqual(replies, [{ committed: 0, shown: 2, fenced: null, renewed: null }]);
      assert.deepEqual(shown, [10, 11]);
    });

    it("an offer is taken once: a replay of it is refused (409) and lists nothing", async () => {
      shown.length = 0;
      const once = { ...offer(20, 1), at: Date.now() };
      assert.equal((await link(key).offer(once)).length, 1);
      assert.deepEqual(await link(key).offer(once), [], "the same offer again");
      assert.deepEqual(shown, [20]);
    });

    it("anyone else is refused (403) and changes nothing", async () => {
      shown.length = 0;
      assert.deepEqual(await link(peerKey("another secret")).offer({ ...offer(10, 2), at: Date.now() }), []);
      const r = await fetch(`http://127.0.0.1:${port}/internal/timeline`, { method: "POST", body: JSON.stringify({ ...offer(10, 2), at: Date.now() }) });
      assert.equal(r.status, 403);
      assert.deepEqual(shown, []);
    });

    it("an answer not signed with the cluster's key is not believed (it would make the owner skip appends)", async () => {
      const forger = createServer((_req, res) => {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ committed: 2, shown: 0, fenced: null, renewed: true }));
      });
      await new Promise<void>((resolve) => forger.listen(0, "127.0.0.1", resolve));
      try {
        const at = (forger.address() as AddressInfo).port;
        const forged = new PeerLink({ key, peers: () => [`http://127.0.0.1:${at}`], log, metrics: new Metrics({ node: "a" }) });
        assert.deepEqual(await forged.offer({ ...offer(10, 2), at: Date.now() }), []);
      } finally {
        forger.close();
      }
    });

    it("a body past its bound is refused unread (413)", async () => {
      const r = await fetch(`http://127.0.0.1:${port}/internal/timeline`, { method: "POST", body: "x".repeat(70 * 1024), headers: { "x-baton-peer": "0".repeat(64) } });
      assert.equal(r.status, 413);
    });
  });

  describe("the timeline cache lists offered entries", () => {
    const snapshot = (next: number, more: Partial<StreamSnapshot> = {}): StreamSnapshot => ({
      id: "cam", epoch: CLAIM.epoch, claim: CLAIM.id, broadcast: CLAIM.broadcast, owner: "node-a", state: "live", targetDuration: 2, ladder: null,
      nextSeq: next, createdAt: NOW, claimedAt: NOW, releasedAt: null,
      entries: Array.from({ length: next }, (_, seq) => ({ ...entry(seq), cc: 1 })),
      ...more,
    });

    async function cacheWith(s: StreamSnapshot | null, o: ConstructorParameters<typeof TimelineCache>[1] = {}): Promise<{ cache: TimelineCache; setRedis(v: StreamSnapshot | null | Error): void }> {
      let redis: StreamSnapshot | null | Error = s;
      const cache = new TimelineCache(async () => {
        if (redis instanceof Error) throw redis;
        return redis;
      }, o);
      await cache.get("cam");
      return { cache, setRedis: (v) => (redis = v) };
    }

    it("continues the timeline it holds, numbering discontinuities as Redis would, cut to the window", async () => {
      const { cache } = await cacheWith(snapshot(5), { trim: (e) => e.slice(-6) });
      assert.equal(cache.show("cam", CLAIM, [entry(4), entry(5), entry(6, true), entry(7)]), 3, "5, 6 and 7 are new");
      const s = (await cache.get("cam")).snapshot!;
      assert.equal(s.nextSeq, 8);
      assert.deepEqual(s.entries.map((e) => [e.seq, e.cc]), [[2, 1], [3, 1], [4, 1], [5, 1], [6, 2], [7, 2]]);
    });

    it("lists nothing for another claim, another epoch, an ended stream, or after a gap", async () => {
      const { cache } = await cacheWith(snapshot(5));
      assert.equal(cache.show("cam", { id: "ba9876543210", epoch: CLAIM.epoch }, [entry(5)]), 0);
      assert.equal(cache.show("cam", { id: CLAIM.id, epoch: 5 }, [entry(5)]), 0);
      assert.equal(cache.show("cam", CLAIM, [entry(6)]), 0);
      assert.equal(cache.show("other", CLAIM, [entry(0)]), 0);
      const ended = await cacheWith(snapshot(5, { state: "ended" }));
      assert.equal(ended.cache.show("cam", CLAIM, [entry(5)]), 0);
    });

    it("keeps them over a Redis read that is behind, and counts a conflict when Redis names other segments", async () => {
      const conflicts: string[] = [];
      const { cache, setRedis } = await cacheWith(snapshot(5), { conflict: (id) => conflicts.push(id) });
      cache.show("cam", CLAIM, [entry(5), entry(6)]);
      cache.changed("cam");
      assert.equal((await cache.get("cam")).snapshot!.nextSeq, 7, "Redis (still at 5) does not take them away");
      // Redis caught up with the same entries: no conflict
      setRedis(snapshot(7));
      cache.changed("cam");
      assert.equal((await cache.get("cam")).snapshot!.nextSeq, 7);
      assert.deepEqual(conflicts, []);
      // another writer's entries for numbers this node listed from an offer
      cache.show("cam", CLAIM, [entry(7)]);
      const other = snapshot(8, { claim: "ba9876543210", epoch: 5 });
      other.entries[7] = { ...other.entries[7]!, claim: "ba9876543210" };
      setRedis(other);
      cache.changed("cam");
      await cache.get("cam");
      assert.deepEqual(conflicts, ["cam"]);
    });

    it("answers from memory at once while Redis is away, without waiting for a read", async () => {
      let up = true;
      const { cache, setRedis } = await cacheWith(snapshot(5), { reachable: () => up });
      up = false;
      setRedis(new Promise(() => undefined) as unknown as Error); // a read that never returns
      cache.changed("cam");
      const read = await Promise.race([cache.get("cam"), new Promise((resolve) => setTimeout(() => resolve("waited"), 2000))]);
      assert.notEqual(read, "waited");
      assert.equal((read as { stale: boolean }).stale, true);
    });
  });
});
