// The lean HTTP front (src/http/front.ts) on a real socket on loopback: it answers plain GET/HEAD requests of
// hot routes with the bytes Node's server sends for them (but its Date and Connection), keeps pipelined answers
// in order (an answer that waits included), and hands everything unusual to Node's server at a request
// boundary: request smuggling shapes, LF-only heads, obs-fold, bad versions, oversize heads, junk bursts,
// paths with dot segments, escapes or NUL. Slow and hostile clients: a head that never completes gets 408,
// a first request that never completes is dropped at the first-request deadline, a reader that does not read
// stops the answering (memory stays bounded), a drain closes idle connections.
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { createLogger } from "../../src/core/log.ts";
import { Metrics } from "../../src/core/metrics.ts";
import type { Answer } from "../../src/http/answer.ts";
import { ClientAddresses } from "../../src/http/client-address.ts";
import { HttpError } from "../../src/http/errors.ts";
import { parseHead } from "../../src/http/front.ts";
import { CORS_HEADERS, HttpServer } from "../../src/http/server.ts";
import { freePort } from "../../tools/processes.ts";
import { waitFor } from "../helpers/stack.ts";

const FIRST_REQUEST_MS = 400;
const PLAYLIST = Buffer.from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n");
const BIG = Buffer.alloc(1024 * 1024, 0x47);

interface Response {
  status: number;
  head: string;
  headers: Map<string, string>;
  body: Buffer;
}

/** Reads HTTP/1.1 responses framed by Content-Length from a byte stream (`heads`: the requests that were HEAD). */
function responses(bytes: Buffer, heads: ReadonlySet<number> = new Set()): Response[] {
  const out: Response[] = [];
  let at = 0;
  while (at < bytes.length) {
    const end = bytes.indexOf("\r\n\r\n", at);
    if (end === -1) break;
    const head = bytes.toString("latin1", at, end);
    const [line, ...lines] = head.split("\r\n");
    const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
    const length = heads.has(out.length) ? 0 : Number(headers.get("content-length") ?? 0);
    if (end + 4 + length > bytes.length) break;
    out.push({ status: Number(line!.split(" ")[1]), head, headers, body: bytes.subarray(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
  return out;
}

/** A raw connection: what it wrote, what came back, whether the server closed it. */
class Raw {
  readonly socket: Socket;
  private chunks: Buffer[] = [];
  closed = false;

  constructor(port: number) {
    this.socket = connect(port, "127.0.0.1");
    this.socket.on("data", (d: Buffer) => this.chunks.push(d));
    this.socket.on("error", () => undefined);
    this.socket.on("close", () => (this.closed = true));
  }

  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  async answers(count: number, heads?: ReadonlySet<number>, ms = 5000): Promise<Response[]> {
    return waitFor(`${count} answers`, () => {
      const got = responses(this.bytes, heads);
      return got.length >= count ? got : undefined;
    }, ms, 5);
  }

  async closing(ms = 5000): Promise<void> {
    await waitFor("the server to close the connection", () => (this.closed ? true : undefined), ms, 5);
  }
}

const request = (target: string, extra = "", method = "GET"): string => `${method} ${target} HTTP/1.1\r\nHost: baton\r\n${extra}\r\n`;
/** The headers both front ends send alike (the date and the connection's own headers aside). */
const comparable = (r: Response): string[] => [...r.headers].filter(([name]) => !["date", "connection", "keep-alive"].includes(name)).map(([n, v]) => `${n}: ${v}`);

describe("HTTP front: answering the hot routes on node:net, handing the rest to Node", function () {
  this.timeout(30000);
  let http: HttpServer;
  let port = 0;
  const calls = new Map<string, number>();
  const seen: { address: string; encoding: string | undefined; agent: string | undefined }[] = [];
  let release: (() => void) | null = null;
  const addresses = new ClientAddresses(["127.0.0.1"]);
  const headers = { ...CORS_HEADERS, "Content-Type": "application/vnd.apple.mpegurl", "Content-Length": PLAYLIST.length, "Cache-Control": "public, max-age=1" };
  const laterHeaders = { ...headers, "Content-Length": 6 };
  const bigHeaders = { ...CORS_HEADERS, "Content-Type": "video/mp2t", "Content-Length": BIG.length };

  before(async () => {
    port = await freePort();
    http = new HttpServer({
      port, bind: "127.0.0.1", maxConnections: 100, maxConnectionsPerAddress: 100, addresses,
      log: createLogger({ level: "error" }), metrics: new Metrics({ node: "t" }), readiness: { ready: () => ({ ok: true }) }, opsToken: null,
      firstRequestMs: FIRST_REQUEST_MS,
    });
    http.addHotRoute("media", /^\/live\/([a-z]+)\/index\.m3u8$/, ({ params, client }): Answer | Promise<Answer> => {
      const name = params[0]!;
      calls.set(name, (calls.get(name) ?? 0) + 1);
      seen.push({ address: addresses.of(client), encoding: client.headers["accept-encoding"], agent: client.headers["user-agent"] });
      if (name === "missing") throw new HttpError(404, "UNKNOWN_STREAM", "stream missing is not live");
      if (name === "broken") return Promise.reject(new Error("redis is down"));
      if (name === "big") return { status: 200, headers: bigHeaders, body: BIG };
      // answered once a test lets it: an answer that needs I/O
      if (name === "later") return new Promise((resolve) => (release = () => resolve({ status: 200, headers: laterHeaders, body: Buffer.from("later\n") })));
      return { status: 200, headers, body: PLAYLIST };
    });
    http.addRoute(["GET", "POST"], "plain", /^\/plain$/, ({ res }) => {
      res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": 6 });
      res.end("plain\n");
    });
    await http.start();
  });
  after(async () => {
    await http.close();
  });

  it("reads only plain GET and HEAD heads, and nothing that could frame a body or smuggle a request", () => {
    const ok = parseHead("GET /live/a/index.m3u8?_HLS_skip=YES HTTP/1.1\r\nHost: b\r\nAccept-Encoding: gzip\r\naccept-encoding: br\r\nUser-Agent: one\r\nUser-Agent: two\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: Keep-Alive");
    assert.deepEqual(ok, { method: "GET", target: "/live/a/index.m3u8?_HLS_skip=YES", headers: { "accept-encoding": "gzip, br", "user-agent": "one", "x-forwarded-for": "10.0.0.1" } });
    assert.equal(parseHead("HEAD /x HTTP/1.1\r\nhost: b")?.method, "HEAD");
    const refused = [
      "POST /x HTTP/1.1\r\nHost: b", "get /x HTTP/1.1\r\nHost: b", "GET /x HTTP/1.0\r\nHost: b", "GET /x HTTP/2.0\r\nHost: b", "GET x HTTP/1.1\r\nHost: b",
      "GET /x  HTTP/1.1\r\nHost: b", "GET /x HTTP/1.1", "GET /x HTTP/1.1\r\nHost: b\r\nHost: c", "GET /x HTTP/1.1\r\nHost: b\r\nContent-Length: 0",
      "GET /x HTTP/1.1\r\nHost: b\r\ncontent-length: 5\r\nTRANSFER-ENCODING: chunked", "GET /x HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked",
      "GET /x HTTP/1.1\r\nHost: b\r\nRange: bytes=0-1", "GET /x HTTP/1.1\r\nHost: b\r\nUpgrade: websocket", "GET /x HTTP/1.1\r\nHost: b\r\nExpect: 100-continue",
      "GET /x HTTP/1.1\r\nHost: b\r\nConnection: close", "GET /x HTTP/1.1\r\nHost: b\r\nConnection: keep-alive, Upgrade",
      "GET /x HTTP/1.1\r\nHost: b\r\nX-A: 1\r\n folded", "GET /x HTTP/1.1\r\nHost: b\r\nX-A : 1", "GET /x HTTP/1.1\r\nHost: b\r\n: 1",
      "GET /x HTTP/1.1\nHost: b", "GET /x HTTP/1.1\r\nHost: b\nX-A: 1", "GET /x HTTP/1.1\r\nHost: b\rX-A: 1", "GET /x\0 HTTP/1.1\r\nHost: b",
      "GET /x HTTP/1.1\r\nHost: b\r\nX-A: \u00ff", "GET /x HTTP/1.1\r\nHost: b\r\nX-A: a\u0001b", "\r\nGET /x HTTP/1.1\r\nHost: b",
    ];
    for (const head of refused) assert.equal(parseHead(head), null, JSON.stringify(head));
  });

  it("answers a hot request with the status, headers and body Node's server sends for it", async () => {
    const before = http.front.handedOver;
    for (const [target, method] of [["/live/a/index.m3u8", "GET"], ["/live/a/index.m3u8", "HEAD"], ["/live/missing/index.m3u8", "GET"], ["/live/broken/index.m3u8", "GET"]] as const) {
      const lean = new Raw(port);
      lean.socket.write(request(target, "", method));
      const [fast] = await lean.answers(1, method === "HEAD" ? new Set([0]) : undefined);
      // Connection: close is not the front's to answer: Node's server answers the same request
      const node = new Raw(port);
      node.socket.write(request(target, "Connection: close\r\n", method));
      const [slow] = await node.answers(1, method === "HEAD" ? new Set([0]) : undefined);
      await node.closing();
      assert.equal(fast!.status, slow!.status, `${method} ${target}`);
      assert.deepEqual(comparable(fast!).sort(), comparable(slow!).sort(), `${method} ${target}`);
      assert.deepEqual(fast!.body, slow!.body, `${method} ${target}`);
      assert.equal(fast!.headers.get("connection"), "keep-alive");
      assert.match(fast!.headers.get("date") ?? "", /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
      assert.equal(lean.closed, false, "the front keeps the connection");
      lean.socket.destroy();
    }
    assert.equal(http.front.handedOver - before, 4, "only the Connection: close requests went to Node");
  });

  it("answers pipelined requests in order, one that waits and one Node answers among them", async () => {
    const raw = new Raw(port);
    raw.socket.write(request("/live/a/index.m3u8") + request("/live/later/index.m3u8") + request("/live/b/index.m3u8") + request("/plain") + request("/live/c/index.m3u8"));
    await waitFor("the waiting answer to be asked for", () => (release ? true : undefined), 5000, 5);
    assert.equal(responses(raw.bytes).length, 1, "nothing overtakes the answer that waits");
    assert.equal(calls.get("b"), undefined, "the request after it is not read yet");
    release!();
    release = null;
    const got = await raw.answers(5);
    assert.deepEqual(got.map((r) => r.body.toString()), [PLAYLIST.toString(), "later\n", PLAYLIST.toString(), "plain\n", PLAYLIST.toString()]);
    assert.equal(raw.closed, false);
    raw.socket.destroy();
  });

  it("answers a burst of pipelined requests in one write, in order", async () => {
    const raw = new Raw(port);
    const count = 2000;
    raw.socket.write(Array.from({ length: count }, (_, i) => request(`/live/${i % 2 ? "a" : "b"}/index.m3u8`)).join(""));
    const got = await raw.answers(count, undefined, 20000);
    assert.equal(got.length, count);
    assert.ok(got.every((r) => r.status === 200 && r.body.equals(PLAYLIST)));
    raw.socket.destroy();
  });

  it("reads the client's address from a trusted proxy's X-Forwarded-For, and its user agent and encodings", async () => {
    const raw = new Raw(port);
    raw.socket.write(request("/live/who/index.m3u8", "X-Forwarded-For: 192.0.2.7, 10.0.0.1\r\nUser-Agent: hls.js\r\nAccept-Encoding: gzip\r\n"));
    await raw.answers(1);
    assert.deepEqual(seen.at(-1), { address: "192.0.2.7", encoding: "gzip", agent: "hls.js" });
    raw.socket.destroy();
  });

  it("hands request smuggling shapes, bad framing and bad versions to Node's parser", async () => {
    const cases: [string, number][] = [
      // both framings, and two lengths: Node refuses them
      ["GET /live/a/index.m3u8 HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
      ["GET /live/a/index.m3u8 HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400],
      ["GET /live/a/index.m3u8 HTTP/1.1\r\nHost: b\r\nX-A: 1\r\n folded\r\n\r\n", 400],
      ["GET /live/a/index.m3u8 HTTP/1.1\r\n\r\n", 400],
      ["GET /live/a\0/index.m3u8 HTTP/1.1\r\nHost: b\r\n\r\n", 400],
      ["GET /live/a/index.m3u8 HTTP/1.1\r\nHost: b\r\nX-A: a\rSet-Cookie: x\r\n\r\n", 400],
      ["GET /live/a/index.m3u8 HTTP/9.9\r\nHost: b\r\n\r\n", 400],
    ];
    const hot = calls.get("a") ?? 0;
    for (const [bytes, status] of cases) {
      const raw = new Raw(port);
      raw.socket.write(bytes);
      await raw.closing();
      assert.equal(responses(raw.bytes)[0]?.status, status, JSON.stringify(bytes));
    }
    assert.equal(calls.get("a") ?? 0, hot, "no refused request reached the route");
    // LF-only line ends: not this front's to read; Node's parser reads (or refuses) it at once, no deadline waited for
    const lf = new Raw(port);
    lf.socket.write("GET /plain HTTP/1.1\nHost: b\n\n");
    await waitFor("an answer to the LF-only request", () => (lf.bytes.length > 0 ? true : undefined), FIRST_REQUEST_MS - 100, 5);
    lf.socket.destroy();
  });

  it("hands a request with a body, a Range or an older version to Node, which answers it and keeps the connection", async () => {
    const raw = new Raw(port);
    raw.socket.write("POST /plain HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nabc" + request("/live/a/index.m3u8", "Range: bytes=0-1\r\n") + request("/live/a/index.m3u8"));
    const got = await raw.answers(3);
    assert.deepEqual(got.map((r) => r.status), [200, 200, 200]);
    assert.deepEqual(got.map((r) => r.body.toString()), ["plain\n", PLAYLIST.toString(), PLAYLIST.toString()]);
    raw.socket.destroy();
    const old = new Raw(port);
    old.socket.write("GET /live/a/index.m3u8 HTTP/1.0\r\nHost: b\r\n\r\n");
    await old.closing();
    assert.equal(responses(old.bytes)[0]?.status, 200);
  });

  it("leaves paths with dot segments, escapes or a great length to Node's router, which reads them as a URL parser does", async () => {
    const hot = [...calls.values()].reduce((a, b) => a + b, 0);
    const handed = http.front.handedOver;
    for (const [target, status] of [["/live/../live/a/index.m3u8", 200], ["/live/%2e%2e/a/index.m3u8", 404], ["/live/a/%2e%2e/index.m3u8", 404], [`/live/${"a".repeat(8000)}/index.m3u8`, 200], [`/live/a/${"x".repeat(8000)}`, 404]] as const) {
      const raw = new Raw(port);
      raw.socket.write(request(target));
      const [r] = await raw.answers(1);
      assert.equal(r!.status, status, target.slice(0, 40));
      raw.socket.destroy();
    }
    assert.equal(http.front.handedOver - handed, 4, "all but the long plain path went to Node");
    assert.equal([...calls.values()].reduce((a, b) => a + b, 0), hot + 2, "the long plain path and the dot segments' URL reached the route");
    const raw = new Raw(port);
    raw.socket.write(request("/live/a/index.m3u8?x=%0d%0aSet-Cookie:%20a"));
    const [r] = await raw.answers(1);
    assert.ok(!/set-cookie/i.test(r!.head), "nothing of the query reaches the answer's head");
    raw.socket.destroy();
  });

  it("answers a head dripped in many pieces (Node's parser reads it: the front would copy it whole per piece)", async () => {
    const raw = new Raw(port);
    raw.socket.setNoDelay(true);
    const bytes = Buffer.from(request("/live/a/index.m3u8", "User-Agent: dripping\r\n"));
    for (let i = 0; i < bytes.length; i += 2) {
      raw.socket.write(bytes.subarray(i, i + 2));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const [answer] = await raw.answers(1);
    assert.equal(answer!.status, 200);
    assert.deepEqual(answer!.body, PLAYLIST);
    raw.socket.destroy();
  });

  it("refuses an oversize head and a junk burst as Node does (431, 400) and closes the connection", async () => {
    const big = new Raw(port);
    big.socket.write(request("/live/a/index.m3u8", `X-Big: ${"x".repeat(20000)}\r\n`));
    await big.closing();
    assert.equal(responses(big.bytes)[0]?.status, 431);
    // a megabyte of a head that never ends, written at once: refused once it passes the limit
    const burst = new Raw(port);
    burst.socket.write("GET /live/a/index.m3u8 HTTP/1.1\r\nHost: b\r\n" + "X-A: y\r\n".repeat(131072));
    await burst.closing();
    assert.equal(responses(burst.bytes)[0]?.status, 431);
    const junk = new Raw(port);
    junk.socket.write(request("/live/a/index.m3u8") + "\x16\x03\x01junk\r\n\r\n".repeat(10000));
    await junk.closing();
    assert.deepEqual(responses(junk.bytes).map((r) => r.status), [200, 400]);
  });

  it("stops answering a client that does not read: what it holds stays bounded", async () => {
    const before = calls.get("big") ?? 0;
    const raw = new Raw(port);
    raw.socket.pause();
    const count = 40;
    raw.socket.write(request("/live/big/index.m3u8").repeat(count));
    await waitFor("the first answers", () => ((calls.get("big") ?? 0) - before >= 2 ? true : undefined), 5000, 5);
    // the answers the socket buffers hold, and no more: give the server time to answer on if it would
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const answered = (calls.get("big") ?? 0) - before;
    assert.ok(answered < 25, `${answered} answers of 1 MiB made for a client that reads none`);
    raw.socket.resume();
    const got = await raw.answers(count, undefined, 20000);
    assert.ok(got.every((r) => r.status === 200 && r.body.length === BIG.length));
    raw.socket.destroy();
  });

  it("drops a first request that never completes at the deadline, and answers 408 to a later one", async () => {
    const slow = new Raw(port);
    slow.socket.write("GET /live/a/ind");
    const trickle = setInterval(() => slow.socket.write("e"), 50);
    try {
      await slow.closing();
    } finally {
      clearInterval(trickle);
    }
    assert.equal(slow.bytes.length, 0);
    const later = new Raw(port);
    later.socket.write(request("/live/a/index.m3u8") + "GET /live/a/index.m3u8 HTTP/1.1\r\nHost:");
    await later.closing();
    assert.deepEqual(responses(later.bytes).map((r) => r.status), [200, 408]);
  });

  it("counts its answers in the request metrics, and closes its idle connections on a drain", async () => {
    const metric = async (): Promise<{ requests: number; timed: number; fast: number }> => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const read = (pattern: RegExp): number => Number(pattern.exec(text)?.[1] ?? 0);
      return {
        requests: read(/^baton_http_requests_total\{route="media",status="200"[^}]*\} (\d+)/m),
        timed: read(/^baton_http_request_duration_seconds_count\{route="media"[^}]*\} (\d+)/m),
        // an answer from memory takes well under a second: every one is in the 1-s bucket
        fast: read(/^baton_http_request_duration_seconds_bucket\{route="media",le="1"[^}]*\} (\d+)/m),
      };
    };
    const counted = await metric();
    const idle = new Raw(port);
    idle.socket.write(request("/live/a/index.m3u8"));
    await idle.answers(1);
    const after = await metric();
    assert.equal(after.requests, counted.requests + 1);
    assert.equal(after.timed, counted.timed + 1, "timed in the duration histogram");
    assert.equal(after.fast, counted.fast + 1);
    http.drain();
    try {
      await idle.closing();
      const late = new Raw(port);
      late.socket.write(request("/live/a/index.m3u8"));
      const [r] = await late.answers(1);
      assert.equal(r!.headers.get("connection"), "close", "during a drain Node's server answers, closing");
      await late.closing();
    } finally {
      http.undrain();
    }
  });
});
