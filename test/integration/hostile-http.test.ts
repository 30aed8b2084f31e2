// Hostile HTTP input against a real node, directly and through HAProxy with the generated configuration: the
// requests that used to end the process, generated malformed requests, refused upgrades that the client resets,
// sockets that send nothing, floods of unknown stream ids, user agents and forwarded addresses. At the end the
// node is the same process (same startedAt), answers /healthz, reached its last line of defence zero times,
// and what it holds (timelines, tracked viewers, heap) and what Redis holds stayed bounded.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { Redis } from "ioredis";
import {
  ADMIN, HOST, get, nodeMetric, pool, publish, startTestHaproxy, startTestNode, startTestRedis, stopAll, testPrefix, waitFor,
  type TestHaproxy, type TestNode, type TestRedis,
} from "../helpers/stack.ts";

interface Held {
  timelines: number;
  viewersTracked: number;
  heapUsedBytes: number;
  rssBytes: number;
}

interface Status {
  startedAt: number;
  held: Held;
}

async function status(node: TestNode): Promise<Status> {
  const r = await get(node.http("/admin/status"), ADMIN);
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text) as Status;
}

/** Every Redis key but the stream's own (they carry its id as a hash tag) and the sweeper's lease (it comes and goes). */
async function keysBesides(redis: Redis, stream: string): Promise<string[]> {
  const keys = await redis.keys("*");
  return keys.filter((k) => !k.includes(`{${stream}}`) && !k.endsWith(":sweeper")).sort();
}

/** Sends raw bytes on a new connection; resolves with what came back once the peer closed (or after `ms`). */
function raw(port: number, bytes: Buffer | string, o: { ms?: number; reset?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, HOST);
    const chunks: Buffer[] = [];
    const done = (): void => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString("latin1"));
    };
    const timer = setTimeout(() => {
      socket.destroy();
      done();
    }, o.ms ?? 3000);
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", () => undefined);
    socket.on("close", done);
    socket.on("connect", () => {
      socket.write(bytes);
      // a client that resets right after asking: the node's refusal meets a dead socket
      if (o.reset) setImmediate(() => socket.resetAndDestroy());
    });
  });
}

const upgrade = (target: string, extra = ""): string =>
  `GET ${target} HTTP/1.1\r\nHost: baton\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

/** Random printable junk of a random length, sometimes with CR/LF and bytes above 0x7f. */
function junk(max: number): string {
  const n = 1 + Math.floor(Math.random() * max);
  const alphabet = "abcAZ09 /%?#[]:@!$&'()*+,;=\r\n\t\"<>\\^`{|}~\x7f\xff\x00";
  let out = "";
  for (let i = 0; i < n; i++) out += alphabet[Math.floor(Math.random() * alphabet.length)];
  return out;
}

/** A malformed request of one of several shapes: bad request lines, targets, headers, framing. */
function malformed(i: number): string {
  switch (i % 8) {
    case 0:
      return `${junk(40)}\r\n\r\n`;
    case 1:
      return `GET ${junk(200)} HTTP/1.1\r\nHost: x\r\n\r\n`;
    case 2:
      return `GET /live/${junk(80)}/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n`;
    case 3:
      return `GET / HTTP/1.1\r\n${junk(60)}: ${junk(200)}\r\n\r\n`;
    case 4:
      return `POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: ${junk(6)}\r\n\r\n${junk(50)}`;
    case 5:
      return `GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nzz\r\n`;
    case 6:
      return `GET /${"a".repeat(20000)} HTTP/1.1\r\nHost: x\r\n\r\n`;
    default:
      return upgrade(`/${junk(30)}`, Math.random() < 0.5 ? `X: ${junk(100)}\r\n` : "");
  }
}

describe("hostile HTTP input: the node survives, answers, and stays bounded", function () {
  this.timeout(180000);
  let redis: TestRedis;
  let node: TestNode;
  let lb: TestHaproxy;
  let startedAt: number;
  let redisClient: Redis;
  const stream = `hostile-${randomBytes(3).toString("hex")}`;

  before(async () => {
    redis = await startTestRedis();
    node = await startTestNode({ redisUrl: redis.url, prefix: testPrefix(), env: { BATON_LOG_LEVEL: "info" } });
    lb = await startTestHaproxy([node]);
    startedAt = (await status(node)).startedAt;
    redisClient = new Redis(redis.url, { lazyConnect: true });
    await redisClient.connect();
    publish(node.rtmp(stream));
    await waitFor("the stream to be live", async () => ((await get(node.http(`/live/${stream}/index.m3u8`))).status === 200 ? true : undefined), 30000);
  });

  after(async () => {
    redisClient?.disconnect();
    await stopAll();
  });

  it("upgrade requests whose target is no URL are answered 400, directly and through HAProxy", async () => {
    for (const target of ["//%", "//[", "http://a:99999/ws"]) {
      for (const port of [node.httpPort, lb.httpPort]) {
        const answer = await raw(port, upgrade(target));
        // HAProxy refuses some of these itself (400); the node must answer 400 to the rest, and live on
        assert.match(answer, /^HTTP\/1\.[01] 400/, `${target} on ${port === lb.httpPort ? "HAProxy" : "the node"}: ${answer.slice(0, 60)}`);
      }
    }
    const plain = await get(node.http("/"));
    assert.notEqual(plain.status, 0);
    const bad = await raw(node.httpPort, "GET //% HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(bad, /^HTTP\/1\.1 400/, "an invalid target is the client's error, not a 503 HAProxy would retry");
  });

  it("refused upgrades that the client resets at once do not end the process", async () => {
    const refusedTargets = ["/ws", "/ws?session=forged.token.x", "/nope"];
    await pool(300, 20, (i) => raw(i % 2 ? node.httpPort : lb.httpPort, upgrade(refusedTargets[i % 3]!), { reset: true, ms: 500 }));
    assert.equal((await get(node.http("/healthz"))).status, 200);
    assert.equal((await status(node)).startedAt, startedAt, "the node is the same process");
  });

  it("2,000 generated malformed requests, directly and through HAProxy, get 4xx answers or closed sockets, never a 5xx or a crash", async () => {
    const answers: string[] = [];
    await pool(2000, 25, async (i) => answers.push(await raw(i % 2 ? node.httpPort : lb.httpPort, malformed(i), { ms: 1500 })));
    // nothing the client got wrong is a 5xx (which HAProxy would retry on other nodes, three times the load)
    const fiveHundreds = answers.filter((a) => /^HTTP\/1\.[01] 5\d\d/.test(a));
    assert.deepEqual(fiveHundreds.map((a) => a.split("\r\n")[0]), []);
    assert.ok(answers.filter((a) => /^HTTP\/1\.[01] 4\d\d/.test(a)).length > 1000, "most were answered with a 4xx");
    assert.equal((await status(node)).startedAt, startedAt);
  });

  it("a socket that sends nothing is closed by the node (the balancer's timeouts cannot be bypassed)", async () => {
    const sockets: Socket[] = [];
    const closed = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const socket = connect(node.httpPort, HOST);
      socket.on("error", () => undefined);
      socket.on("close", () => closed.add(i));
      sockets.push(socket);
    }
    // the node's first-request deadline is 10 s; without it these stay open for ever
    await waitFor("the node to close every silent socket", () => (closed.size === sockets.length ? true : undefined), 30000, 250);
    assert.ok((await nodeMetric(node, "baton_http_connections_refused_total", 'reason="no_request"')) >= 20);
  });

  it("15,000 requests for unknown stream ids, unique user agents and forged forwarded addresses leave bounded state", async () => {
    const before = await status(node);
    const redisBefore = await keysBesides(redisClient, stream);
    await pool(15000, 50, async (i) => {
      if (i % 3 === 0) {
        const r = await fetch(node.http(`/live/nope-${randomBytes(8).toString("hex")}/index.m3u8`), { signal: AbortSignal.timeout(10000) });
        assert.equal(r.status, 404);
        await r.arrayBuffer();
        return;
      }
      // through HAProxy, each with an 8 KB user agent of its own and a made-up X-Forwarded-For
      const r = await fetch(lb.http(`/live/${stream}/240p/index.m3u8`), {
        headers: { "User-Agent": randomBytes(3000).toString("base64").slice(0, 8000), "X-Forwarded-For": `10.${i % 250}.${(i >> 8) % 250}.7` },
        signal: AbortSignal.timeout(10000),
      });
      await r.arrayBuffer();
    });
    const after = await status(node);
    assert.equal(after.startedAt, startedAt);
    assert.ok(after.held.timelines <= 10000, `timeline cache holds ${after.held.timelines} entries`);
    // every request came from one address (HAProxy names the peer, not what the client claimed): a handful of viewers
    const viewers = JSON.parse((await get(node.http("/api/streams"), ADMIN)).text) as { streams: { id: string; viewers: number }[] };
    const counted = viewers.streams.find((s) => s.id === stream)?.viewers ?? 0;
    assert.ok(counted <= 16, `${counted} viewers counted for one address with many user agents`);
    assert.ok(after.held.viewersTracked <= 64, `the tracker holds ${after.held.viewersTracked} entries`);
    // bounded heap: 60,000 unknown ids used to hold 41 MB, 20,000 user agents 154 MB
    const grown = (after.held.heapUsedBytes - before.held.heapUsedBytes) / 1048576;
    assert.ok(grown < 40, `heap grew ${grown.toFixed(1)} MB`);
    // nothing lasting in Redis either (the live stream's own keys grow with its segments, whatever clients do)
    assert.deepEqual(await keysBesides(redisClient, stream), redisBefore);
  });

  it("the event loop was never blocked, and nothing reached the last line of defence", async () => {
    // prom-client's event-loop figures cover the time since the previous scrape
    const lagMax = await nodeMetric(node, "nodejs_eventloop_lag_max_seconds");
    assert.ok(lagMax < 1, `event loop blocked for ${lagMax.toFixed(2)} s`);
    assert.equal(await nodeMetric(node, "baton_internal_errors_total"), 0);
    assert.equal((await get(node.http("/healthz"))).status, 200);
    assert.equal((await get(lb.http(`/live/${stream}/index.m3u8`))).status, 200, "viewers still play through HAProxy");
    assert.equal((await status(node)).startedAt, startedAt, "the node is the same process");
  });
});

describe("hostile HTTP input: connections per address", function () {
  this.timeout(60000);
  after(stopAll);

  it("a direct peer holds at most http.maxConnectionsPerAddress sockets; the trusted balancer is not capped", async () => {
    const redis = await startTestRedis();
    // only ::1 is trusted here, so 127.0.0.1 is a direct peer like any client
    const node = await startTestNode({
      redisUrl: redis.url, prefix: testPrefix(), env: { BATON_HTTP_TRUSTEDPROXIES: '["::1"]', BATON_HTTP_MAXCONNECTIONSPERADDRESS: "10" },
    });
    const sockets: Socket[] = [];
    const closed = new Set<number>();
    for (let i = 0; i < 25; i++) {
      const socket = connect(node.httpPort, HOST);
      socket.on("error", () => undefined);
      socket.on("close", () => closed.add(i));
      sockets.push(socket);
      await new Promise((resolve) => socket.once("connect", resolve));
    }
    await waitFor("the sockets over the cap to be closed", () => (closed.size >= 15 ? true : undefined), 5000, 50);
    for (const s of sockets) s.destroy();
    // the node counts a socket free once it saw it close: until then a new request of this peer is refused too
    await waitFor("the peer's sockets to be released", async () => ((await get(node.http("/healthz"))).status === 200 ? true : undefined), 5000);
    assert.ok((await nodeMetric(node, "baton_http_connections_refused_total", 'reason="per_address"')) >= 15);
  });
});
