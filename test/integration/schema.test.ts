// Two releases share one Redis during a rolling update: a node whose release cannot read the cluster's
// schema stays unready, says why, and writes nothing (no registry record); one that can takes work.
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { SCHEMA_VERSION } from "../../src/state/schema.ts";
import { get, startTestNode, startTestRedis, stopAll, testPrefix, waitFor } from "../helpers/stack.ts";

describe("cluster schema version", function () {
  this.timeout(120000);
  after(stopAll);

  it("a node that cannot read the cluster's schema answers /readyz 503 with the reason and never registers", async () => {
    const redis = await startTestRedis();
    const prefix = testPrefix();
    const client = new Redis(redis.url);
    try {
      await client.set(`${prefix}schema`, String(SCHEMA_VERSION + 1));
      const node = await startTestNode({ redisUrl: redis.url, prefix });
      // first "not read yet", then the reason once the node read the cluster's schema
      const refusal = new RegExp(`cluster's data is schema ${SCHEMA_VERSION + 1}; this release reads schema ${SCHEMA_VERSION} at most`);
      const answer = await waitFor("/readyz naming the cluster's schema", async () => {
        const r = await get(node.http("/readyz"));
        return r.status === 503 && refusal.test(r.text) ? r : undefined;
      });
      assert.match((JSON.parse(answer.text) as { reason: string }).reason, refusal);
      await node.waitForLog(/refusing work: this release cannot read the cluster's data/);
      // a few heartbeats' time: still no record, and the schema is left as it was
      const health = await get(node.http("/healthz"));
      assert.equal(health.status, 200, "it runs; it only refuses work");
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.equal(await client.get(`${prefix}node:${node.id}`), null);
      assert.equal(await client.get(`${prefix}schema`), String(SCHEMA_VERSION + 1));

      // the same node on a cluster of its own schema takes work and registers with it
      const other = testPrefix();
      const good = await startTestNode({ redisUrl: redis.url, prefix: other });
      await waitFor("the node ready", async () => ((await get(good.http("/readyz"))).status === 200 ? true : undefined));
      assert.equal(await client.get(`${other}schema`), String(SCHEMA_VERSION), "the first node sets the cluster's schema");
      const record = await waitFor("its record", async () => (await client.get(`${other}node:${good.id}`)) ?? undefined);
      assert.equal((JSON.parse(record) as { schema: number }).schema, SCHEMA_VERSION);
    } finally {
      client.disconnect();
    }
  });
});
