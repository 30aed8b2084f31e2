// The node's HTTP transport on its own (no Redis, no stream): the first-request deadline closes a socket that
// sends nothing, but neither a keep-alive socket that brought a request nor an upgraded WebSocket; a request
// target is read as the URL parser reads it.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { WebSocket, WebSocketServer } from "ws";
import { createLogger } from "../../src/core/log.ts";
import { Metrics } from "../../src/core/metrics.ts";
import { ClientAddresses } from "../../src/http/client-address.ts";
import { HttpServer, requestTarget } from "../../src/http/server.ts";
import { freePort } from "../../tools/processes.ts";
import { waitFor } from "../helpers/stack.ts";

describe("HTTP server: the first-request deadline", function () {
  this.timeout(10000);
  let http: HttpServer;
  const wss = new WebSocketServer({ noServer: true });
  let port = 0;

  before(async () => {
    port = await freePort();
    http = new HttpServer({
      port, bind: "127.0.0.1", maxConnections: 100, maxConnectionsPerAddress: 100, addresses: new ClientAddresses(["127.0.0.1"]),
      log: createLogger({ level: "error" }), metrics: new Metrics({ node: "t" }), readiness: { ready: () => ({ ok: true }) }, opsToken: null,
      firstRequestMs: 300,
    });
    http.onUpgrade((req, socket, head) => wss.handleUpgrade(req, socket, head, () => undefined));
    await http.start();
  });
  after(async () => {
    wss.close();
    await http.close();
  });

  it("closes a socket that sends nothing", async () => {
    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => undefined);
    await new Promise((resolve) => socket.once("close", resolve));
  });

  it("keeps an upgraded WebSocket and a keep-alive socket that brought a request past the deadline", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    let wsClosed = false;
    ws.on("close", () => (wsClosed = true));
    const socket = connect(port, "127.0.0.1");
    let socketClosed = false;
    socket.on("close", () => (socketClosed = true));
    socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    await waitFor("the health answer", () => (socket.readableLength > 0 || socket.bytesRead > 0 ? true : undefined), 2000, 20);
    // a silent socket opened after both is closed by its deadline: theirs have passed by then too
    const silent = connect(port, "127.0.0.1");
    silent.on("error", () => undefined);
    await new Promise((resolve) => silent.once("close", resolve));
    assert.equal(wsClosed, false, "the WebSocket outlived the first-request deadline");
    assert.equal(socketClosed, false, "the keep-alive socket outlived it");
    ws.close();
    socket.destroy();
  });
});

describe("HTTP server: reading a request target", () => {
  it("splits a plain path without the URL parser, and reads every other target as the URL parser does", () => {
    const token = `${"a".repeat(32)}.show.${"b".repeat(43)}`;
    const targets = [
      "/live/show/index.m3u8", `/live/show/s/${token}/360p/index.m3u8?resume=1700000000000`, "/live/show/360p/12.abcdefabcdef.ts?session=x&_HLS_skip=YES",
      "/live/a/../b", "/live/./a", "//evil/x", "/a%2e%2e/b", "/", "/live/x/", "/a?b=1#frag", "/a\\b", "/caf\u00e9", "/a?",
    ];
    for (const target of targets) {
      const fast = requestTarget(target);
      const url = new URL(target, "http://baton");
      assert.equal(fast.pathname, url.pathname, target);
      assert.deepEqual([...fast.searchParams], [...url.searchParams], target);
    }
  });
});
