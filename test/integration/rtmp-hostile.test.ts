// Hostile RTMP against a real node process, before any authentication: the attacks of the security report
// (64 messages of 16 MiB, hundreds of chunk stream ids, SET_CHUNK_SIZE 0 and huge, 16 MiB connects with strict
// arrays declaring billions of elements, four at once), seeded random chunks, handshakes and AMF, and connection
// floods over the caps. After all of it the node is the same process, its memory is bounded, its event loop was
// never blocked, and real ffmpeg publishers (RTMP and RTMPS) are admitted and produce playlists.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { makePublishToken } from "../../src/ingest/token.ts";
import { MAX_CHUNK_STREAMS } from "../../src/ingest/rtmp-limits.ts";
import { adminStatus, inParallel, memory, metric, openUntilRefused, playing, refused, sendAndWatch } from "../helpers/probe.ts";
import { connectObject, RtmpTestClient } from "../helpers/rtmp-client.ts";
import {
  MAX_MESSAGE, TYPE_AMF0_COMMAND, TYPE_VIDEO, message, random, randomSession, setChunkSize, strictArrayConnect, type0Header,
} from "../helpers/rtmp-attacks.ts";
import { get, HOST, publish, SECRET, startTestNode, startTestRedis, stopAll, tempDir, testPrefix, waitFor, type TestNode } from "../helpers/stack.ts";
import { selfSignedCertificate } from "../helpers/tls.ts";

const MiB = 1024 * 1024;
/** Caps of the node under attack (small, so a flood is quick). */
const MAX_CONNECTIONS = 40;
const PER_ADDRESS = 6;

/** Event-loop lag and /healthz answers while `attack` runs: the lag metric resets at every scrape. */
async function during(node: TestNode, attack: () => Promise<void>): Promise<{ lagMax: number; health: number[] }> {
  await metric(node, "nodejs_eventloop_lag_max_seconds");
  const health: number[] = [];
  let running = true;
  const poller = (async () => {
    while (running) {
      health.push((await get(node.http("/healthz")).catch(() => ({ status: 0 }))).status);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  try {
    await attack();
  } finally {
    running = false;
    await poller;
  }
  const lagMax = await metric(node, "nodejs_eventloop_lag_max_seconds");
  assert.ok(lagMax !== undefined);
  return { lagMax, health };
}

/**
 * Unblocked: a naive parser stalls the loop 2 s per 16 MiB connect (measured on main), these limits keep it in
 * milliseconds; 1 s leaves a slow machine half an order of magnitude.
 */
function assertResponsive(result: { lagMax: number; health: number[] }): void {
  assert.ok(result.lagMax < 1, `the event loop stalled ${result.lagMax.toFixed(3)} s`);
  assert.ok(result.health.length > 0 && result.health.every((s) => s === 200), `/healthz during the attack: ${result.health.join(",")}`);
}

describe("RTMP ingest under hostile input", function () {
  this.timeout(60000);
  let node: TestNode;
  let baseline: { pid: number; startedAt: number; rss: number; heap: number };
  const clients: RtmpTestClient[] = [];

  before(async function () {
    this.timeout(40000);
    const redis = await startTestRedis();
    const pem = selfSignedCertificate(tempDir("pem"));
    node = await startTestNode({
      redisUrl: redis.url, prefix: testPrefix(), rtmps: pem,
      env: {
        BATON_LOG_LEVEL: "info", BATON_RTMP_HANDSHAKETIMEOUT: "30",
        BATON_RTMP_MAXCONNECTIONS: String(MAX_CONNECTIONS), BATON_RTMP_MAXCONNECTIONSPERADDRESS: String(PER_ADDRESS),
      },
    });
    const status = await adminStatus(node);
    baseline = { pid: node.proc.child.pid ?? 0, startedAt: status.startedAt, ...(await memory(node)) };
  });

  afterEach(() => {
    for (const client of clients.splice(0)) client.destroy();
  });

  after(async function () {
    this.timeout(30000);
    await stopAll();
  });

  it("64 messages of 16 MiB on one connection: refused at the first header, nothing held", async () => {
    const before = await refused(node, "message_too_large");
    const client = await RtmpTestClient.open(node.rtmpPort);
    clients.push(client);
    const body = Buffer.alloc(MAX_MESSAGE, 0x05);
    const result = await during(node, async () => {
      await client.send(setChunkSize(MAX_MESSAGE));
      for (let i = 0; i < 64; i++) {
        if (!(await client.send(type0Header(64 + i, TYPE_VIDEO, MAX_MESSAGE))) || !(await client.send(body))) break;
      }
      await client.waitForClose(10000);
    });
    assertResponsive(result);
    assert.equal(await refused(node, "message_too_large"), before + 1);
    const { rss } = await memory(node);
    assert.ok(rss - baseline.rss < 64 * MiB, `RSS grew ${((rss - baseline.rss) / MiB).toFixed(0)} MiB`);
  });

  it("an admitted publisher: a 6 MiB video message passes, one of 16 MiB closes the connection", async () => {
    const id = `big-${randomBytes(3).toString("hex")}`;
    const client = await RtmpTestClient.open(node.rtmpPort);
    clients.push(client);
    client.connect(connectObject(HOST, node.rtmpPort));
    await client.waitForText("NetConnection.Connect.Success");
    client.createStream();
    client.publish(`${id}?token=${makePublishToken(SECRET, id, 600)}`);
    await client.waitForText("NetStream.Publish.Start");
    await node.waitForLog(new RegExp(`publish accepted.* stream=${id}(\\s|$)`), 10000);
    // an inter frame (0x27): the stream waits for a keyframe, so nothing is transcoded
    const frame = Buffer.concat([Buffer.from([0x27, 1, 0, 0, 0]), randomBytes(6 * MiB)]);
    await client.send(Buffer.concat([setChunkSize(65536), message(6, TYPE_VIDEO, frame, { messageStreamId: 1, chunkSize: 65536 })]));
    await client.send(message(4, 8, Buffer.from([0xaf, 1, 0, 0]), { messageStreamId: 1, chunkSize: 65536 }));
    assert.equal(client.isClosed, false);
    const before = await refused(node, "message_too_large");
    await client.send(type0Header(6, TYPE_VIDEO, MAX_MESSAGE, 1));
    await client.waitForClose(5000);
    assert.equal(await refused(node, "message_too_large"), before + 1);
    await node.waitForLog(new RegExp(`publish ended.* stream=${id}(\\s|$)`), 10000);
  });

  it(`chunk stream ids beyond ${MAX_CHUNK_STREAMS}, in one-, two- and three-byte forms: refused`, async () => {
    const before = await refused(node, "too_many_chunk_streams");
    const ids = [...Array.from({ length: 10 }, (_, i) => 10 + i), ...Array.from({ length: 10 }, (_, i) => 100 + i), ...Array.from({ length: 10 }, (_, i) => 1000 + i * 300)];
    const chunks = Buffer.concat(ids.map((id) => message(id, TYPE_VIDEO, Buffer.alloc(8))));
    assert.ok(await sendAndWatch(node.rtmpPort, Buffer.concat([Buffer.from([3]), randomBytes(3072), chunks]), 5000));
    assert.equal(await refused(node, "too_many_chunk_streams"), before + 1);
  });

  for (const size of [0, 0xffffffff]) {
    it(`SET_CHUNK_SIZE ${size}: refused at once (it stalled the parser until the idle timeout)`, async () => {
      const before = await refused(node, "bad_chunk_size");
      const client = await RtmpTestClient.open(node.rtmpPort);
      clients.push(client);
      await client.send(setChunkSize(size));
      await client.send(message(3, TYPE_AMF0_COMMAND, Buffer.alloc(200, 0x05)));
      await client.waitForClose(5000);
      assert.equal(await refused(node, "bad_chunk_size"), before + 1);
    });
  }

  it("four 16 MiB connects whose strict arrays declare 2^32-1 elements, at once: refused, the loop never blocked", async () => {
    const before = await refused(node, "message_too_large");
    const connect = Buffer.concat([setChunkSize(MAX_MESSAGE), message(3, TYPE_AMF0_COMMAND, strictArrayConnect(MAX_MESSAGE), { chunkSize: MAX_MESSAGE })]);
    const four = await Promise.all([0, 1, 2, 3].map(() => RtmpTestClient.open(node.rtmpPort)));
    clients.push(...four);
    const result = await during(node, async () => {
      await Promise.all(four.map(async (client) => {
        await client.send(connect);
        await client.waitForClose(10000);
      }));
    });
    assertResponsive(result);
    assert.equal(await refused(node, "message_too_large"), before + 4);
  });

  it("four connects within the size cap whose strict arrays lie about their count: refused by the AMF check", async () => {
    const before = await refused(node, "bad_amf");
    const connect = message(3, TYPE_AMF0_COMMAND, strictArrayConnect(60 * 1024));
    const result = await during(node, async () => {
      const closed = await Promise.all([0, 1, 2, 3].map(() => sendAndWatch(node.rtmpPort, Buffer.concat([Buffer.from([3]), randomBytes(3072), connect]), 5000)));
      assert.deepEqual(closed, [true, true, true, true]);
    });
    assertResponsive(result);
    assert.equal(await refused(node, "bad_amf"), before + 4);
  });

  it("seeded random handshakes, chunk headers, sizes, lengths and AMF (400 clients, 8 at a time, some to the RTMPS port)", async function () {
    this.timeout(60000);
    const seed = Number(process.env.RTMP_FUZZ_SEED ?? Date.now() % 1e9);
    const sessions = Array.from({ length: 400 }, (_, i) => i);
    const result = await during(node, async () => {
      await inParallel(sessions, 8, async (i) => {
        const bytes = randomSession(random(seed + i));
        // one in ten to the RTMPS port: half of them over TLS, half raw bytes where a ClientHello belongs
        const rtmps = i % 10 === 0;
        await sendAndWatch(rtmps ? node.rtmpsPort : node.rtmpPort, bytes, 300, { tls: rtmps && i % 20 === 0 });
      });
    });
    assertResponsive(result);
    await waitFor(`every random connection gone (seed ${seed})`, async () => ((await adminStatus(node)).rtmp.connections === 0 ? true : undefined), 10000);
    assert.equal(node.proc.child.exitCode, null, `the node exited (seed ${seed})`);
  });

  it(`connection floods: ${PER_ADDRESS} per address, ${MAX_CONNECTIONS} in all, then all freed`, async () => {
    const perAddressBefore = await refused(node, "too_many_connections_per_address");
    const totalBefore = await refused(node, "too_many_connections");
    const first = await openUntilRefused(node.rtmpPort, PER_ADDRESS + 3, { localAddress: "127.0.0.2" });
    clients.push(...first.open);
    assert.equal(first.refusedAt, PER_ADDRESS, `refused at ${first.refusedAt}`);
    assert.equal(await refused(node, "too_many_connections_per_address"), perAddressBefore + 1);
    await node.waitForLog(/RTMP connection refused.* remote=127\.0\.0\.2:\d+ reason=too_many_connections_per_address/, 5000);
    // other addresses fill the node up to its total
    for (let i = 3; clients.length < MAX_CONNECTIONS; i++) {
      const more = await openUntilRefused(node.rtmpPort, Math.min(PER_ADDRESS, MAX_CONNECTIONS - clients.length), { localAddress: `127.0.0.${i}` });
      clients.push(...more.open);
      assert.equal(more.refusedAt, null);
    }
    const over = await openUntilRefused(node.rtmpPort, 1, { localAddress: "127.0.0.99" });
    assert.equal(over.refusedAt, 0, "a connection over rtmp.maxConnections was taken");
    assert.equal(await refused(node, "too_many_connections"), totalBefore + 1);
    assert.equal((await adminStatus(node)).rtmp.connections, MAX_CONNECTIONS);
    for (const client of clients.splice(0)) client.destroy();
    await waitFor("the slots freed", async () => ((await adminStatus(node)).rtmp.connections === 0 ? true : undefined), 10000);
  });

  it("afterwards: the same process, memory bounded, /healthz 200, real ffmpeg publishers over RTMP and RTMPS", async function () {
    this.timeout(60000);
    assert.equal(node.proc.child.exitCode, null);
    assert.equal(node.proc.child.pid, baseline.pid);
    assert.equal((await adminStatus(node)).startedAt, baseline.startedAt, "the node restarted");
    assert.equal((await get(node.http("/healthz"))).status, 200);
    const now = await memory(node);
    // the attacks sent over 1 GiB; main held all of it (+1,026 MB RSS after 64 x 16 MiB)
    assert.ok(now.rss - baseline.rss < 96 * MiB, `RSS grew from ${(baseline.rss / MiB).toFixed(0)} to ${(now.rss / MiB).toFixed(0)} MiB`);
    assert.ok(now.heap - baseline.heap < 32 * MiB, `heap grew from ${(baseline.heap / MiB).toFixed(0)} to ${(now.heap / MiB).toFixed(0)} MiB`);
    const plain = `after-${randomBytes(3).toString("hex")}`;
    const secure = `tls-${randomBytes(3).toString("hex")}`;
    const publishers = [
      publish(node.rtmp(plain)),
      publish(`rtmps://${HOST}:${node.rtmpsPort}/live/${secure}?token=${makePublishToken(SECRET, secure, 600)}`),
    ];
    try {
      await Promise.all([playing(node, plain), playing(node, secure)]);
      await node.waitForLog(new RegExp(`publish accepted.* stream=${secure}(\\s|$)`), 5000);
      for (const p of publishers) assert.equal(p.child.exitCode, null, `${p.name} exited`);
    } finally {
      for (const p of publishers) p.child.kill("SIGKILL");
    }
  });
});
