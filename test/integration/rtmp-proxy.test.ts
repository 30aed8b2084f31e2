// A node behind HAProxy with the PROXY protocol (rtmp.proxyProtocol, HAProxy's send-proxy-v2): per-address caps
// count each publisher's own address (RTMP and RTMPS, whose TLS HAProxy passes through), a connection without the
// header or from a peer not in http.trustedProxies is refused, the handshake deadline drops dawdlers, HAProxy's
// checks (to the HTTP port) keep the node in rotation, and a real ffmpeg publish through HAProxy works.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { adminStatus, playing, refused, sendAndWatch } from "../helpers/probe.ts";
import { proxyV2Header } from "../helpers/rtmp-attacks.ts";
import { connectObject, RtmpTestClient, openSocket, type OpenOptions } from "../helpers/rtmp-client.ts";
import { get, HOST, publish, startTestHaproxy, startTestNode, startTestRedis, stopAll, tempDir, testPrefix, waitFor, type TestHaproxy, type TestNode } from "../helpers/stack.ts";
import { selfSignedCertificate } from "../helpers/tls.ts";

const PER_ADDRESS = 4;
const DEADLINE_SECONDS = 3;

const handshake = (): Buffer => Buffer.concat([Buffer.from([3]), randomBytes(3072)]);

describe("RTMP ingest behind HAProxy with the PROXY protocol", function () {
  this.timeout(60000);
  let node: TestNode;
  let lb: TestHaproxy;
  let pid = 0;
  const clients: RtmpTestClient[] = [];

  /** Opens up to PER_ADDRESS + 1 clients at once; returns how many the node admitted. */
  async function fill(port: number, options: OpenOptions): Promise<number> {
    const opened = await Promise.allSettled(Array.from({ length: PER_ADDRESS + 1 }, () => RtmpTestClient.open(port, HOST, 5000, options)));
    for (const result of opened) if (result.status === "fulfilled") clients.push(result.value);
    return opened.filter((r) => r.status === "fulfilled").length;
  }

  before(async function () {
    this.timeout(40000);
    const redis = await startTestRedis();
    node = await startTestNode({
      redisUrl: redis.url, prefix: testPrefix(), rtmps: selfSignedCertificate(tempDir("pem")),
      env: {
        BATON_LOG_LEVEL: "info", BATON_RTMP_PROXYPROTOCOL: "true",
        BATON_RTMP_HANDSHAKETIMEOUT: String(DEADLINE_SECONDS), BATON_RTMP_MAXCONNECTIONSPERADDRESS: String(PER_ADDRESS),
      },
    });
    pid = node.proc.child.pid ?? 0;
    lb = await startTestHaproxy([node]);
    await waitFor("an RTMP handshake through HAProxy", async () => {
      const client = await RtmpTestClient.open(lb.rtmpPort);
      client.destroy();
      return true;
    }, 15000, 200);
  });

  afterEach(() => {
    for (const client of clients.splice(0)) client.destroy();
  });

  after(async function () {
    this.timeout(30000);
    await stopAll();
  });

  it(`through HAProxy, ${PER_ADDRESS} connections per client address: the node caps and names the real client`, async () => {
    const before = await refused(node, "too_many_connections_per_address");
    assert.equal(await fill(lb.rtmpPort, { localAddress: "127.0.0.2" }), PER_ADDRESS);
    assert.equal(await refused(node, "too_many_connections_per_address"), before + 1);
    await node.waitForLog(/RTMP connection refused.* remote=127\.0\.0\.2:\d+ reason=too_many_connections_per_address/, 5000);
    const other = await RtmpTestClient.open(lb.rtmpPort, HOST, 5000, { localAddress: "127.0.0.3" });
    clients.push(other);
    other.connect(connectObject(HOST, lb.rtmpPort));
    await other.waitForText("NetConnection.Connect.Success");
  });

  it("RTMPS through HAProxy (TLS passed through after the PROXY header): the same caps, the real client", async () => {
    assert.ok(lb.rtmpsPort > 0);
    assert.equal(await fill(lb.rtmpsPort, { localAddress: "127.0.0.5", tls: true }), PER_ADDRESS);
    await node.waitForLog(/RTMP connection refused.* remote=127\.0\.0\.5:\d+ reason=too_many_connections_per_address/, 5000);
    const client = clients[0]!;
    client.connect(connectObject(HOST, lb.rtmpsPort));
    await client.waitForText("NetConnection.Connect.Success");
  });

  it("directly: no header is refused, a bad one too, a header from an untrusted peer is not believed", async () => {
    const missing = await refused(node, "proxy_header_missing");
    assert.ok(await sendAndWatch(node.rtmpPort, handshake(), 5000));
    assert.equal(await refused(node, "proxy_header_missing"), missing + 1);
    const bad = await refused(node, "bad_proxy_header");
    assert.ok(await sendAndWatch(node.rtmpPort, Buffer.concat([Buffer.from("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), handshake()]), 5000));
    assert.equal(await refused(node, "bad_proxy_header"), bad + 1);
    const untrusted = await refused(node, "untrusted_proxy");
    assert.ok(await sendAndWatch(node.rtmpPort, Buffer.concat([proxyV2Header("198.51.100.7", 4000), handshake()]), 5000, { localAddress: "127.0.0.9" }));
    assert.equal(await refused(node, "untrusted_proxy"), untrusted + 1);
    await node.waitForLog(/RTMP connection refused.* remote=127\.0\.0\.9:\d+ reason=untrusted_proxy/, 5000);
  });

  it("directly from a trusted peer: a v1 header is believed and its client counted", async () => {
    const prefix = Buffer.from("PROXY TCP4 198.51.100.8 127.0.0.1 5555 1935\r\n");
    assert.equal(await fill(node.rtmpPort, { prefix }), PER_ADDRESS);
    await node.waitForLog(/RTMP connection refused.* remote=198\.51\.100\.8:5555 reason=too_many_connections_per_address/, 5000);
  });

  it(`past the handshake deadline (${DEADLINE_SECONDS} s): a silent client, a trickled handshake, a client that never publishes`, async function () {
    this.timeout(30000);
    const before = await refused(node, "handshake_timeout");
    const started = Date.now();
    const silent = await openSocket(lb.rtmpPort, { localAddress: "127.0.0.6" });
    const trickle = await openSocket(node.rtmpPort, { prefix: proxyV2Header("198.51.100.9", 1) });
    const idle = await RtmpTestClient.open(lb.rtmpPort, HOST, 5000, { localAddress: "127.0.0.7" });
    clients.push(idle);
    idle.connect(connectObject(HOST, lb.rtmpPort));
    await idle.waitForText("NetConnection.Connect.Success");
    const closedAt = (socket: typeof silent): Promise<number> => new Promise((resolve) => socket.once("close", () => resolve(Date.now())));
    for (const s of [silent, trickle]) s.on("error", () => undefined);
    const ends = [closedAt(silent), closedAt(trickle), idle.closed];
    const bytes = handshake();
    let sent = 0;
    // one byte every 200 ms (the handshake would take ten minutes) and a createStream every 500 ms: never idle
    const timers = [
      setInterval(() => trickle.destroyed || trickle.write(bytes.subarray(sent, ++sent)), 200),
      setInterval(() => idle.isClosed || idle.createStream(), 500),
    ];
    try {
      const times = await Promise.all(ends);
      for (const at of times) assert.ok(at - started >= (DEADLINE_SECONDS - 0.5) * 1000, `closed after ${at - started} ms, before the deadline`);
    } finally {
      for (const timer of timers) clearInterval(timer);
      silent.destroy();
      trickle.destroy();
    }
    assert.equal(await refused(node, "handshake_timeout"), before + 3);
  });

  it("a real ffmpeg publish through HAProxy is admitted and plays; the node is the same process", async function () {
    this.timeout(60000);
    const id = `lb-${randomBytes(3).toString("hex")}`;
    const ffmpeg = publish(lb.rtmp(id));
    try {
      await playing(node, id);
      assert.equal(ffmpeg.child.exitCode, null);
    } finally {
      ffmpeg.child.kill("SIGKILL");
    }
    assert.equal(node.proc.child.pid, pid);
    assert.equal(node.proc.child.exitCode, null);
    assert.equal((await get(node.http("/healthz"))).status, 200);
    await waitFor("every connection gone", async () => ((await adminStatus(node)).rtmp.connections === 0 ? true : undefined), 10000);
  });
});
