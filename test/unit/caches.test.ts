import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { SegmentCache } from "../../src/delivery/segment-cache.ts";
import { TimelineCache } from "../../src/delivery/timeline-cache.ts";
import { RecordSchemaError } from "../../src/state/schema.ts";
import type { StreamSnapshot } from "../../src/core/model.ts";

/** A promise resolved from outside, so a test decides when a load finishes. */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function bytes(size: number, fill = 1): Buffer {
  return Buffer.alloc(size, fill);
}

describe("SegmentCache", () => {
  /** A loader per key that counts its calls and returns a buffer of the given size. */
  function loaders(size: number): { load: (key: string) => () => Promise<Buffer>; calls: Map<string, number> } {
    const calls = new Map<string, number>();
    return {
      calls,
      load: (key) => async () => {
        calls.set(key, (calls.get(key) ?? 0) + 1);
        return bytes(size, key.charCodeAt(0));
      },
    };
  }

  it("a hit is served from memory without calling the loader", async () => {
    const cache = new SegmentCache(1000, 60_000);
    const { load, calls } = loaders(100);
    const first = await cache.get("a", load("a"));
    const second = await cache.get("a", load("a"));
    assert.equal(calls.get("a"), 1);
    assert.equal(second, first);
    assert.equal(cache.bytes, 100);
  });

  it("stays within maxBytes", async () => {
    const cache = new SegmentCache(350, 60_000);
    const { load } = loaders(100);
    for (const key of "abcdefghij") {
      await cache.get(key, load(key));
      assert.ok(cache.bytes <= 350, `${cache.bytes} bytes after ${key}`);
    }
    assert.equal(cache.bytes, 300);
  });

  it("evicts the least recently used entry first", async () => {
    const cache = new SegmentCache(300, 60_000);
    const { load, calls } = loaders(100);
    await cache.get("a", load("a"));
    await cache.get("b", load("b"));
    await cache.get("c", load("c"));
    await cache.get("a", load("a")); // a is now the most recently used; b the least
    assert.equal(calls.get("a"), 1);
    await cache.get("d", load("d")); // evicts b
    assert.equal(cache.bytes, 300);

    await cache.get("a", load("a"));
    await cache.get("c", load("c"));
    await cache.get("d", load("d"));
    assert.deepEqual([calls.get("a"), calls.get("c"), calls.get("d")], [1, 1, 1], "a, c and d stayed");
    await cache.get("b", load("b"));
    assert.equal(calls.get("b"), 2, "b was evicted and loaded again");
  });

  it("evicts as many entries as a large one needs", async () => {
    const cache = new SegmentCache(300, 60_000);
    for (const key of "abc") await cache.get(key, async () => bytes(100));
    await cache.get("big", async () => bytes(250));
    assert.equal(cache.bytes, 250);
  });

  it("does not keep an entry larger than maxBytes, nor evict others for it", async () => {
    const cache = new SegmentCache(300, 60_000);
    const { load, calls } = loaders(100);
    await cache.get("a", load("a"));
    let bigLoads = 0;
    const big = await cache.get("big", async () => {
      bigLoads++;
      return bytes(301);
    });
    assert.equal(big?.length, 301, "the caller still gets the bytes");
    assert.equal(cache.bytes, 100);
    await cache.get("big", async () => {
      bigLoads++;
      return bytes(301);
    });
    assert.equal(bigLoads, 2);
    await cache.get("a", load("a"));
    assert.equal(calls.get("a"), 1);
  });

  it("concurrent misses for one key call the loader once", async () => {
    const cache = new SegmentCache(1000, 60_000);
    const pending = deferred<Buffer | null>();
    let loads = 0;
    let misses = 0;
    const load = (): Promise<Buffer | null> => {
      loads++;
      return pending.promise;
    };
    const gets = [1, 2, 3, 4, 5].map(() => cache.get("seg", load, () => misses++));
    assert.equal(loads, 1);
    const data = bytes(10, 7);
    pending.resolve(data);
    const results = await Promise.all(gets);
    for (const result of results) assert.equal(result, data);
    assert.equal(loads, 1);
    assert.equal(misses, 1);
    assert.equal(await cache.get("seg", load), data);
    assert.equal(loads, 1);
  });

  it("concurrent misses for different keys each call their loader", async () => {
    const cache = new SegmentCache(1000, 60_000);
    const { load, calls } = loaders(10);
    await Promise.all([cache.get("a", load("a")), cache.get("b", load("b")), cache.get("a", load("a"))]);
    assert.equal(calls.get("a"), 1);
    assert.equal(calls.get("b"), 1);
  });

  it("does not cache a missing segment (null)", async () => {
    const cache = new SegmentCache(1000, 60_000);
    let loads = 0;
    const load = async (): Promise<Buffer | null> => {
      loads++;
      return null;
    };
    assert.equal(await cache.get("gone", load), null);
    assert.equal(await cache.get("gone", load), null);
    assert.equal(loads, 2);
    assert.equal(cache.bytes, 0);
  });

  it("a failed load is passed to every waiter and the next get tries again", async () => {
    const cache = new SegmentCache(1000, 60_000);
    const pending = deferred<Buffer | null>();
    let loads = 0;
    const failing = (): Promise<Buffer | null> => {
      loads++;
      return pending.promise;
    };
    const first = cache.get("seg", failing);
    const second = cache.get("seg", failing);
    pending.reject(new Error("redis down"));
    await assert.rejects(first, /redis down/);
    await assert.rejects(second, /redis down/);
    assert.equal(loads, 1);
    const data = bytes(5);
    assert.equal(await cache.get("seg", async () => data), data);
  });

  it("reloads entries older than maxAgeMs", async () => {
    const cache = new SegmentCache(1000, 40);
    let loads = 0;
    const load = async (): Promise<Buffer> => bytes(50, ++loads);
    const first = await cache.get("seg", load);
    assert.equal(loads, 1);
    assert.equal(await cache.get("seg", load), first, "fresh: from memory");
    assert.equal(loads, 1);
    await delay(200); // five times the maximum age
    const second = await cache.get("seg", load);
    assert.equal(loads, 2, "old: loaded again");
    assert.notEqual(second, first);
    assert.equal(second?.[0], 2);
    assert.equal(cache.bytes, 50, "the old copy's bytes are not counted twice");
  });

  it("clear() empties the cache", async () => {
    const cache = new SegmentCache(1000, 60_000);
    const { load, calls } = loaders(100);
    await cache.get("a", load("a"));
    cache.clear();
    assert.equal(cache.bytes, 0);
    await cache.get("a", load("a"));
    assert.equal(calls.get("a"), 2);
  });
});

describe("TimelineCache", () => {
  function snapshot(nextSeq: number, epoch = 1, overrides: Partial<StreamSnapshot> = {}): StreamSnapshot {
    return {
      id: "cam1",
      epoch,
      // each epoch is one claim here; a test that needs another claim at the same epoch overrides it
      claim: epoch.toString(16).padStart(12, "0"),
      broadcast: "00000000000a",
      owner: "node-a",
      state: "live",
      targetDuration: 2,
      ladder: null,
      nextSeq,
      createdAt: 1,
      claimedAt: 1,
      releasedAt: null,
      entries: [],
      ...overrides,
    };
  }

  /** A reader whose answers the test sets; counts its calls per stream. */
  class Reader {
    calls = 0;
    answer: () => Promise<StreamSnapshot | null> = async () => null;
    read = (streamId: string): Promise<StreamSnapshot | null> => {
      assert.equal(streamId, "cam1");
      this.calls++;
      return this.answer();
    };
    returns(value: StreamSnapshot | null): void {
      this.answer = async () => value;
    }
    fails(message: string): void {
      this.answer = async () => {
        throw new Error(message);
      };
    }
  }

  function setup(): { reader: Reader; cache: TimelineCache } {
    const reader = new Reader();
    const cache = new TimelineCache(reader.read);
    cache.subscribed = true;
    return { reader, cache };
  }

  it("serves from memory without calling the reader again", async () => {
    const { reader, cache } = setup();
    const s = snapshot(5);
    reader.returns(s);
    assert.deepEqual(await cache.get("cam1"), { snapshot: s, stale: false });
    reader.returns(snapshot(99));
    for (let i = 0; i < 5; i++) assert.deepEqual(await cache.get("cam1"), { snapshot: s, stale: false });
    assert.equal(reader.calls, 1);
  });

  it("concurrent first gets share one read", async () => {
    const { reader, cache } = setup();
    const pending = deferred<StreamSnapshot | null>();
    reader.answer = () => pending.promise;
    const gets = [cache.get("cam1"), cache.get("cam1"), cache.get("cam1")];
    const s = snapshot(3);
    pending.resolve(s);
    for (const result of await Promise.all(gets)) assert.equal(result.snapshot, s);
    assert.equal(reader.calls, 1);
  });

  it("caches a stream that has no state (null) too", async () => {
    const { reader, cache } = setup();
    reader.returns(null);
    assert.deepEqual(await cache.get("cam1"), { snapshot: null, stale: false });
    assert.deepEqual(await cache.get("cam1"), { snapshot: null, stale: false });
    assert.equal(reader.calls, 1);
  });

  it("changed() makes the next get read again", async () => {
    const { reader, cache } = setup();
    reader.returns(snapshot(5));
    await cache.get("cam1");
    const newer = snapshot(6);
    reader.returns(newer);
    cache.changed("cam1");
    const result = await cache.get("cam1");
    assert.equal(result.snapshot, newer);
    assert.equal(result.stale, false);
    assert.equal(reader.calls, 2, "one read for the change, shared by the get");
    assert.equal((await cache.get("cam1")).snapshot, newer);
    assert.equal(reader.calls, 2);
  });

  it("changed() for a stream never read does not read it", async () => {
    const { reader, cache } = setup();
    cache.changed("cam1");
    assert.equal(reader.calls, 0);
    reader.returns(snapshot(1));
    assert.equal((await cache.get("cam1")).snapshot?.nextSeq, 1);
    assert.equal(reader.calls, 1);
  });

  it("a change announced during a read is read again", async () => {
    const { reader, cache } = setup();
    const slow = deferred<StreamSnapshot | null>();
    reader.answer = () => slow.promise;
    const first = cache.get("cam1");
    // the change arrives while the first read is in flight: its answer may already be old
    const fresh = deferred<StreamSnapshot | null>();
    reader.answer = () => {
      fresh.resolve(snapshot(8));
      return fresh.promise;
    };
    cache.changed("cam1");
    slow.resolve(snapshot(7));
    assert.equal((await first).snapshot?.nextSeq, 7);
    await fresh.promise;
    const after = await cache.get("cam1");
    assert.equal(after.snapshot?.nextSeq, 8);
    assert.equal(reader.calls, 2);
  });

  it("when the reader throws, the last snapshot is served with stale=true", async () => {
    const { reader, cache } = setup();
    const s = snapshot(5);
    reader.returns(s);
    await cache.get("cam1");
    reader.fails("redis down");
    cache.changed("cam1");
    assert.deepEqual(await cache.get("cam1"), { snapshot: s, stale: true });
    assert.deepEqual(await cache.get("cam1"), { snapshot: s, stale: true }, "still stale on the next request");
    reader.returns(snapshot(6));
    assert.deepEqual(await cache.get("cam1"), { snapshot: snapshot(6), stale: false }, "fresh again once Redis answers");
  });

  it("a read that meets an entry of a newer schema is no outage: it fails instead of serving the last snapshot", async () => {
    const { reader, cache } = setup();
    reader.returns(snapshot(5));
    await cache.get("cam1");
    reader.answer = async () => {
      throw new RecordSchemaError("a timeline entry", "2", 1);
    };
    cache.changed("cam1");
    await assert.rejects(cache.get("cam1"), RecordSchemaError);
  });

  it("when the reader throws and there is no snapshot, the error propagates", async () => {
    const { reader, cache } = setup();
    reader.fails("redis down");
    await assert.rejects(cache.get("cam1"), /redis down/);
    reader.returns(snapshot(1));
    assert.equal((await cache.get("cam1")).snapshot?.nextSeq, 1, "the failure is not cached");
  });

  it("an entry expires after its maximum age without a subscription", async () => {
    const { reader, cache } = setup();
    cache.subscribed = false;
    reader.returns(snapshot(1));
    await cache.get("cam1");
    await cache.get("cam1");
    assert.equal(reader.calls, 1);
    await delay(700); // the unsubscribed limit is 500 ms
    reader.returns(snapshot(2));
    assert.equal((await cache.get("cam1")).snapshot?.nextSeq, 2);
    assert.equal(reader.calls, 2);
  });

  it("invalidateAll() makes the next get read again", async () => {
    const { reader, cache } = setup();
    reader.returns(snapshot(1));
    await cache.get("cam1");
    cache.invalidateAll();
    reader.returns(snapshot(2));
    assert.equal((await cache.get("cam1")).snapshot?.nextSeq, 2);
    assert.equal(reader.calls, 2);
  });

  it("a read that returns an older snapshot (same epoch, lower nextSeq) never replaces a newer one", async () => {
    const { reader, cache } = setup();
    const newer = snapshot(10);
    reader.returns(newer);
    await cache.get("cam1");
    reader.returns(snapshot(8)); // a lagging replica, or a read that raced the newer one
    cache.changed("cam1");
    assert.equal((await cache.get("cam1")).snapshot, newer);
    assert.equal((await cache.get("cam1")).snapshot, newer, "and it stays");
    assert.equal(reader.calls, 2);
    const newest = snapshot(11);
    reader.returns(newest);
    cache.changed("cam1");
    assert.equal((await cache.get("cam1")).snapshot, newest, "a newer snapshot still replaces it");
  });

  it("a newer epoch replaces the snapshot even with a lower nextSeq", async () => {
    const { reader, cache } = setup();
    reader.returns(snapshot(10, 1));
    await cache.get("cam1");
    const next = snapshot(9, 2);
    reader.returns(next);
    cache.changed("cam1");
    assert.equal((await cache.get("cam1")).snapshot, next);
  });

  it("another claim's snapshot replaces it even at the same epoch with a lower nextSeq (a Redis that lost history)", async () => {
    const { reader, cache } = setup();
    reader.returns(snapshot(10, 3));
    await cache.get("cam1");
    // a replica promoted without the last claim: the new owner got epoch 3 again, under its own claim id
    const next = snapshot(7, 3, { claim: "00000000beef" });
    reader.returns(next);
    cache.changed("cam1");
    assert.equal((await cache.get("cam1")).snapshot, next);
  });

  it("a stream id created again after its state expired (epoch and nextSeq restart) replaces the old stream's snapshot", async () => {
    const { reader, cache } = setup();
    // the old stream: many claims, many segments, ended
    reader.returns(snapshot(100, 5, { state: "ended", createdAt: 1000 }));
    await cache.get("cam1");
    // its state expired in Redis; a new publisher creates the stream again: epoch 1, nextSeq 0
    const reborn = snapshot(0, 1, { state: "live", createdAt: 9_000_000 });
    reader.returns(reborn);
    cache.changed("cam1");
    assert.equal((await cache.get("cam1")).snapshot, reborn);
  });
});
