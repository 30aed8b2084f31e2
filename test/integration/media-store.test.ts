// Media lives in the segment store, state in Redis: a live stream's segments are written to the store (a
// directory two nodes share, or an S3-protocol server), every node serves the same bytes from it, and Redis
// holds no segment bytes and no key over 64 KB.
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { Redis } from "ioredis";
import { lastSeq, parseM3u8 } from "../helpers/hls.ts";
import { S3_BUCKET, startTestS3 } from "../helpers/s3.ts";
import { s3rverNodeEnv } from "../../tools/s3rver.ts";
import { get, publish, segmentDir, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestNode } from "../helpers/stack.ts";

/** The newest segment's URI of the 240p playlist, once the stream has a few. */
async function newestSegment(node: TestNode, id: string): Promise<string> {
  return waitFor(`segments of ${id}`, async () => {
    const r = await get(node.http(`/live/${id}/240p/index.m3u8`));
    if (r.status !== 200) return undefined;
    const p = parseM3u8(r.text);
    return p.segments.length >= 2 && lastSeq(p) >= 1 ? p.segments[p.segments.length - 1]!.uri.split("?")[0] : undefined;
  }, 40000);
}

async function redisFootprint(url: string): Promise<{ segmentKeys: string[]; largest: number }> {
  const client = new Redis(url, { lazyConnect: true });
  await client.connect();
  try {
    const keys = await client.keys("*");
    let largest = 0;
    for (const key of keys) largest = Math.max(largest, (await client.memory("USAGE", key)) ?? 0);
    return { segmentKeys: keys.filter((k) => k.includes(":seg:")), largest };
  } finally {
    client.disconnect();
  }
}

describe("media in the segment store", function () {
  this.timeout(90000);
  after(stopAll);

  it("fs: two nodes share the directory; both serve the same bytes; Redis holds no segment bytes, no key over 64 KB", async () => {
    const redis = await startTestRedis();
    const prefix = testPrefix();
    const [a, b] = [await startTestNode({ redisUrl: redis.url, prefix, id: "ms-a" }), await startTestNode({ redisUrl: redis.url, prefix, id: "ms-b" })];
    publish(a.rtmp("media"));
    const uri = await newestSegment(a, "media");
    const [fromA, fromB] = [await get(a.http(`/live/media/240p/${uri}`)), await get(b.http(`/live/media/240p/${uri}`))];
    assert.equal(fromA.status, 200);
    assert.equal(fromB.status, 200);
    assert.equal(fromA.bytes[0], 0x47, "an MPEG-TS segment");
    assert.ok(fromA.bytes.equals(fromB.bytes), "every node serves the same bytes");
    // the object is in the shared directory, under the stream's broadcast
    const streamDir = join(segmentDir(prefix), "streams", "media");
    assert.ok(existsSync(streamDir));
    const [broadcast] = readdirSync(streamDir);
    assert.ok(existsSync(join(streamDir, broadcast!, "240p", uri!)), `${uri} in the store`);
    const { segmentKeys, largest } = await redisFootprint(redis.url);
    assert.deepEqual(segmentKeys, []);
    assert.ok(largest < 64 * 1024, `the largest Redis key holds ${largest} bytes`);
  });

  it("s3: a node writes each segment to an S3-protocol server and serves it from there", async () => {
    const s3 = await startTestS3();
    const redis = await startTestRedis();
    const node = await startTestNode({
      redisUrl: redis.url, prefix: testPrefix(), id: "ms-s3",
      env: s3rverNodeEnv(s3),
    });
    publish(node.rtmp("cloud"));
    const uri = await newestSegment(node, "cloud");
    const segment = await get(node.http(`/live/cloud/240p/${uri}`));
    assert.equal(segment.status, 200);
    assert.equal(segment.bytes[0], 0x47);
    const client = s3.client();
    try {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: S3_BUCKET, Prefix: "streams/cloud/" }));
      assert.ok((listed.Contents ?? []).some((o) => o.Key?.endsWith(`/240p/${uri}`)), `${uri} in the bucket`);
    } finally {
      client.destroy();
    }
    assert.deepEqual((await redisFootprint(redis.url)).segmentKeys, []);
    await s3.stop();
  });
});
