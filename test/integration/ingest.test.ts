// RTMP ingest against a real node process: malformed messages, refusals, the end of a publish, a silent
// publisher and RTMP playback. Raw RTMP goes through test/helpers/rtmp-client.ts; real publishes are ffmpeg.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { makePublishToken } from "../../src/ingest/token.ts";
import type { Managed } from "../../tools/processes.ts";
import { connectObject, RtmpTestClient, type AmfValue } from "../helpers/rtmp-client.ts";
import { get, HOST, publish, SECRET, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestNode, ADMIN } from "../helpers/stack.ts";

/** A stream id unique to this run and test. */
function streamId(label: string): string {
  return `${label}-${randomBytes(4).toString("hex")}`;
}

function token(id: string): string {
  return makePublishToken(SECRET, id, 3600);
}

/** The node process is running and answers /healthz with 200. */
async function assertAlive(node: TestNode): Promise<void> {
  assert.equal(node.proc.child.exitCode, null, "the node process exited");
  assert.equal(node.proc.child.signalCode, null, "the node process was killed");
  const health = await get(node.http("/healthz"));
  assert.equal(health.status, 200, `/healthz answered ${health.status}: ${health.text}`);
}

/** baton_publish_refusals_total for one reason (0 while the series does not exist yet). */
async function refusals(node: TestNode, reason: string): Promise<number> {
  const metrics = await get(node.http("/metrics"), ADMIN);
  assert.equal(metrics.status, 200);
  const line = metrics.text.split("\n").find((l) => l.startsWith("baton_publish_refusals_total{") && l.includes(`reason="${reason}"`));
  if (!line) return 0;
  const value = Number(line.slice(line.lastIndexOf(" ") + 1));
  assert.ok(Number.isFinite(value), `unreadable metric line: ${line}`);
  return value;
}

/** The segment sequence numbers the first rendition's media playlist lists now, or undefined before any. */
async function segments(node: TestNode, id: string): Promise<number[] | undefined> {
  const master = await get(node.http(`/live/${id}/index.m3u8`));
  if (master.status !== 200) return undefined;
  // URIs carry the viewer's session in their path (s/<token>/<rendition>/index.m3u8)
  const rendition = master.text.split("\n").find((l) => /^(s\/[^/]+\/)?[a-z0-9_-]+\/index\.m3u8(\?|$)/.test(l));
  if (!rendition) return undefined;
  const media = await get(node.http(`/live/${id}/${rendition}`));
  if (media.status !== 200) return undefined;
  const seqs = media.text
    .split("\n")
    .map((l) => /^(\d+)\.[0-9a-f]{12}\.ts(\?.*)?$/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]));
  return seqs.length > 0 ? seqs : undefined;
}

/** Waits until the stream lists a segment numbered above `after`; returns the newest number. */
function segmentAfter(node: TestNode, id: string, after: number, timeoutMs = 30000): Promise<number> {
  return waitFor(
    `a segment of ${id} numbered above ${after}`,
    async () => {
      const seqs = await segments(node, id);
      const last = seqs?.[seqs.length - 1];
      return last !== undefined && last > after ? last : undefined;
    },
    timeoutMs,
    200,
  );
}

/** Resolves with the exit code of a process; rejects if it is still running after `timeoutMs`. */
async function exitOf(p: Managed, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${p.name} still running after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A handshaken raw client that has connected to app "live" properly. */
async function connected(node: TestNode): Promise<RtmpTestClient> {
  const client = await RtmpTestClient.open(node.rtmpPort);
  client.connect(connectObject(HOST, node.rtmpPort));
  await client.waitForText("NetConnection.Connect.Success");
  return client;
}

describe("RTMP ingest", function () {
  this.timeout(60000);
  let node: TestNode;
  const clients: RtmpTestClient[] = [];

  before(async function () {
    this.timeout(40000);
    const redis = await startTestRedis();
    node = await startTestNode({ redisUrl: redis.url, prefix: testPrefix() });
    await assertAlive(node);
  });

  afterEach(() => {
    for (const client of clients.splice(0)) client.destroy();
  });

  after(async function () {
    this.timeout(30000);
    await stopAll();
  });

  describe("malformed RTMP messages do not kill the node", function () {
    // The default idle timeout is 10 s: a close well before it is the server dropping the connection.
    const DROPPED_WITHIN_MS = 4000;

    const cases: { name: string; run(client: RtmpTestClient): Promise<void>; mustNotSee: string }[] = [
      {
        name: "a connect without tcUrl",
        mustNotSee: "NetConnection.Connect.Success",
        run: async (client) => {
          client.connect({ app: "live", type: "nonprivate", flashVer: "FMLE/3.0" });
        },
      },
      {
        name: 'a connect whose tcUrl is "not a url"',
        mustNotSee: "NetConnection.Connect.Success",
        run: async (client) => {
          client.connect({ app: "live", type: "nonprivate", tcUrl: "not a url" });
        },
      },
      {
        name: "a publish whose stream name is a number",
        mustNotSee: "NetStream.Publish.Start",
        run: async (client) => {
          client.connect(connectObject(HOST, node.rtmpPort));
          await client.waitForText("NetConnection.Connect.Success");
          client.createStream();
          client.publish(12345);
        },
      },
      {
        name: "a publish whose stream name is an object",
        mustNotSee: "NetStream.Publish.Start",
        run: async (client) => {
          client.connect(connectObject(HOST, node.rtmpPort));
          await client.waitForText("NetConnection.Connect.Success");
          client.createStream();
          const name: AmfValue = { name: "evil", token: token("evil"), nested: { deeper: 2 } };
          client.publish(name);
        },
      },
    ];

    for (const c of cases) {
      it(`${c.name}: the server closes that connection and stays up`, async function () {
        this.timeout(15000);
        const client = await RtmpTestClient.open(node.rtmpPort);
        clients.push(client);
        const sentAt = Date.now();
        await c.run(client);
        const closedAt = await client.waitForClose(DROPPED_WITHIN_MS);
        assert.ok(closedAt - sentAt < DROPPED_WITHIN_MS, `closed after ${closedAt - sentAt} ms`);
        assert.ok(!client.saw(c.mustNotSee), `the server answered ${c.mustNotSee} to ${c.name}`);
        await assertAlive(node);
      });
    }

    it("a real ffmpeg publish still works after them", async function () {
      this.timeout(60000);
      const id = streamId("after-malformed");
      const ffmpeg = publish(node.rtmp(id));
      try {
        const master = await waitFor(
          `the master playlist of ${id}`,
          async () => {
            const r = await get(node.http(`/live/${id}/index.m3u8`));
            return r.status === 200 ? r.text : undefined;
          },
          40000,
          200,
        );
        assert.match(master, /^#EXTM3U/);
        assert.match(master, /#EXT-X-STREAM-INF:/);
        await segmentAfter(node, id, -1, 40000);
        assert.equal(ffmpeg.child.exitCode, null, "the publisher exited");
      } finally {
        ffmpeg.child.kill("SIGKILL");
        await ffmpeg.exited;
      }
      await assertAlive(node);
    });
  });

  describe("refusals", function () {
    it("a bad token is refused: ffmpeg fails and bad_token is counted", async function () {
      this.timeout(40000);
      const before = await refusals(node, "bad_token");
      const id = streamId("bad-token");
      const ffmpeg = publish(node.rtmp(id, "123.bad"));
      const exit = await exitOf(ffmpeg, 20000);
      assert.ok(exit.code !== 0, `ffmpeg exited ${exit.code ?? exit.signal} for a refused publish`);
      assert.ok((await refusals(node, "bad_token")) >= before + 1, "baton_publish_refusals_total{reason=bad_token} did not grow");
      assert.ok((await refusals(node, "bad_token")) >= 1);
      const playlist = await get(node.http(`/live/${id}/index.m3u8`));
      assert.equal(playlist.status, 404, `a refused stream has a playlist (${playlist.status})`);
      await assertAlive(node);
    });

    const hostile = ["..%2f..%2fetc", "../../etc/passwd", "a b", "x".repeat(65), ""];
    for (const name of hostile) {
      it(`a hostile stream name ${JSON.stringify(name.length > 20 ? `${name.slice(0, 8)}... (${name.length} chars)` : name)} is refused and creates nothing`, async function () {
        this.timeout(15000);
        const before = await refusals(node, "bad_stream_id");
        const client = await connected(node);
        clients.push(client);
        client.createStream();
        client.publish(`${name}?token=${token(name)}`);
        await client.waitForText("NetStream.Publish.BadName");
        await client.waitForClose(5000);
        assert.ok((await refusals(node, "bad_stream_id")) >= before + 1, "baton_publish_refusals_total{reason=bad_stream_id} did not grow");
        const paths = [`/live/${encodeURIComponent(name)}/index.m3u8`, `/live/${encodeURIComponent(name.slice(0, 64))}/index.m3u8`];
        for (const path of paths) {
          const r = await get(node.http(path));
          assert.ok(r.status === 400 || r.status === 404, `GET ${path} answered ${r.status}`);
        }
        await assertAlive(node);
      });
    }

    it("a second publisher to a live stream is refused and the first keeps going", async function () {
      this.timeout(90000);
      const id = streamId("dup");
      const first = publish(node.rtmp(id));
      try {
        const firstSeq = await segmentAfter(node, id, -1, 40000);
        const before = await refusals(node, "already_live");
        const second = publish(node.rtmp(id));
        const exit = await exitOf(second, 20000);
        assert.ok(exit.code !== 0, `the duplicate ffmpeg exited ${exit.code ?? exit.signal}`);
        assert.ok((await refusals(node, "already_live")) >= before + 1, "baton_publish_refusals_total{reason=already_live} did not grow");
        assert.equal(first.child.exitCode, null, "the first publisher was dropped");
        const refusedAt = (await segments(node, id)) ?? [firstSeq];
        const lastAtRefusal = refusedAt[refusedAt.length - 1]!;
        // two more segments after the refusal: the first publisher's stream is still being transcoded and published
        await segmentAfter(node, id, lastAtRefusal + 1, 20000);
        assert.equal(first.child.exitCode, null, "the first publisher was dropped");
      } finally {
        first.child.kill("SIGKILL");
        await first.exited;
      }
      await assertAlive(node);
    });
  });

  describe("the end of a publish", function () {
    it("is seen at once when the publisher is SIGKILLed", async function () {
      this.timeout(60000);
      const id = streamId("killed");
      const ffmpeg = publish(node.rtmp(id));
      await segmentAfter(node, id, -1, 40000);
      const ended = new RegExp(`publish ended.* stream=${id}(\\s|$)`);
      assert.equal(node.lines.find((l) => ended.test(l)), undefined, "the publish ended before the kill");
      const killedAt = Date.now();
      ffmpeg.child.kill("SIGKILL");
      await node.waitForLog(ended, 15000);
      const elapsed = Date.now() - killedAt;
      assert.ok(elapsed <= 1500, `"publish ended" was logged ${elapsed} ms after the publisher died (limit 1500 ms)`);
      await assertAlive(node);
    });
  });

  describe("an RTMP play request", function () {
    it("is refused and its connection closed", async function () {
      this.timeout(15000);
      const before = await refusals(node, "play_not_supported");
      const client = await connected(node);
      clients.push(client);
      client.createStream();
      client.play(streamId("play"));
      await client.waitForText("NetStream.Play.Failed");
      await client.waitForClose(5000);
      assert.ok((await refusals(node, "play_not_supported")) >= before + 1, "play_not_supported was not counted");
      await assertAlive(node);
    });
  });
});

describe("RTMP ingest: a silent publisher", function () {
  this.timeout(60000);
  let node: TestNode;
  const IDLE_SECONDS = 2;

  before(async function () {
    this.timeout(40000);
    const redis = await startTestRedis();
    node = await startTestNode({ redisUrl: redis.url, prefix: testPrefix(), env: { BATON_RTMP_IDLETIMEOUT: String(IDLE_SECONDS) } });
    await assertAlive(node);
  });

  after(async function () {
    this.timeout(30000);
    await stopAll();
  });

  it(`is closed after rtmp.idleTimeout (${IDLE_SECONDS} s) without data`, async function () {
    this.timeout(20000);
    const id = streamId("silent");
    const client = await connected(node);
    try {
      client.createStream();
      const publishedAt = Date.now();
      client.publish(`${id}?token=${token(id)}`);
      await client.waitForText("NetStream.Publish.Start");
      await node.waitForLog(new RegExp(`publish accepted.* stream=${id}(\\s|$)`), 5000);
      const closedAt = await client.waitForClose(12000);
      const silentFor = closedAt - publishedAt;
      assert.ok(!client.saw("NetStream.Publish.BadName"), "the publish was refused, not timed out");
      assert.ok(silentFor >= 1500, `closed after only ${silentFor} ms of silence`);
      assert.ok(silentFor <= 10000, `closed after ${silentFor} ms of silence`);
      await node.waitForLog(new RegExp(`publish ended.* stream=${id}(\\s|$)`), 10000);
      await assertAlive(node);
    } finally {
      client.destroy();
    }
  });
});
