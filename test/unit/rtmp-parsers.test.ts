// The bounded AMF0 check and the PROXY protocol parser, on hand-made bytes.
import assert from "node:assert/strict";
import { checkAmf0, MAX_AMF_DEPTH, MAX_AMF_VALUES } from "../../src/ingest/amf-check.ts";
import { parseProxyHeader, PROXY_HEADER_MAX, type ProxyHeader } from "../../src/ingest/proxy-protocol.ts";
import { amfNull, amfNumber, amfObject, amfString } from "../helpers/rtmp-client.ts";
import { amfStrictArray, proxyV2Header, strictArrayConnect } from "../helpers/rtmp-attacks.ts";

/** An ECMA array (onMetaData's body): marker, a count, then an object's properties. */
function ecmaArray(count: number, properties: Record<string, Buffer>): Buffer {
  const head = Buffer.alloc(5);
  head[0] = 0x08;
  head.writeUInt32BE(count, 1);
  const body = Object.entries(properties).map(([key, value]) => Buffer.concat([Buffer.from([0, key.length]), Buffer.from(key), value]));
  return Buffer.concat([head, ...body, Buffer.from([0, 0, 9])]);
}

describe("checkAmf0", () => {
  it("accepts what encoders send: ffmpeg's connect, publish and @setDataFrame", () => {
    const connect = Buffer.concat([
      amfString("connect"), amfNumber(1),
      amfObject({ app: "live", type: "nonprivate", flashVer: "FMLE/3.0 (compatible; Lavf61.7.100)", tcUrl: "rtmp://127.0.0.1:1935/live" }),
    ]);
    assert.equal(checkAmf0(connect), null);
    assert.equal(checkAmf0(Buffer.concat([amfString("publish"), amfNumber(5), amfNull(), amfString("s?token=1.x"), amfString("live")])), null);
    const metadata = Buffer.concat([
      amfString("@setDataFrame"), amfString("onMetaData"),
      ecmaArray(0, { duration: amfNumber(0), width: amfNumber(1280), stereo: Buffer.from([1, 1]), encoder: amfString("Lavf61") }),
    ]);
    assert.equal(checkAmf0(metadata), null);
    assert.equal(checkAmf0(Buffer.concat([amfStrictArray(3, Buffer.concat([amfNumber(1), amfNull(), amfString("x")]))])), null);
    assert.equal(checkAmf0(Buffer.alloc(0)), null);
  });

  it("refuses a strict array declaring more elements than bytes follow, without looping on the count", () => {
    assert.match(checkAmf0(strictArrayConnect(16 * 1024 * 1024)) ?? "", /declaring 4294967295 elements/);
    assert.match(checkAmf0(amfStrictArray(10, Buffer.alloc(9, 0x05))) ?? "", /declaring 10 elements in 9 bytes/);
  });

  it(`refuses more than ${MAX_AMF_VALUES} values and nesting deeper than ${MAX_AMF_DEPTH}`, () => {
    assert.equal(checkAmf0(amfStrictArray(MAX_AMF_VALUES - 1, Buffer.alloc(MAX_AMF_VALUES - 1, 0x05))), null);
    assert.match(checkAmf0(amfStrictArray(MAX_AMF_VALUES, Buffer.alloc(MAX_AMF_VALUES, 0x05))) ?? "", /more than 512 values/);
    let nested = amfNull();
    for (let i = 0; i <= MAX_AMF_DEPTH; i++) nested = amfStrictArray(1, nested);
    assert.match(checkAmf0(nested) ?? "", /nested deeper than 8/);
  });

  const refused: [string, Buffer, RegExp][] = [
    ["a truncated number", Buffer.from([0x00, 1, 2, 3]), /a number at byte 1 needs 8 bytes, 3 left/],
    ["a string longer than the message", Buffer.from([0x02, 0xff, 0xff, 0x61]), /a string at byte 3 needs 65535 bytes/],
    ["a long string longer than the message", Buffer.from([0x0c, 0xff, 0xff, 0xff, 0xff]), /a long string/],
    ["an object that never ends", Buffer.concat([Buffer.from([0x03, 0, 1, 0x61]), amfNull()]), /a length at byte 5 needs 2 bytes, 0 left/],
    ["an empty property name without an end", Buffer.from([0x03, 0, 0, 0x05]), /empty property name without an object end/],
    ["a property name of 300 bytes", Buffer.concat([Buffer.from([0x03, 0x01, 0x2c]), Buffer.alloc(300, 0x61), amfNull(), Buffer.from([0, 0, 9])]), /a property name of 300 bytes/],
    ["a reference", Buffer.from([0x07, 0, 1]), /unsupported AMF0 type 0x07/],
    ["a typed object", Buffer.concat([Buffer.from([0x10]), amfString("Class").subarray(1), Buffer.from([0, 0, 9])]), /unsupported AMF0 type 0x10/],
    ["an AMF3 switch", Buffer.from([0x11, 0x01]), /unsupported AMF0 type 0x11/],
    ["an object end where a value goes", Buffer.from([0x09]), /unsupported AMF0 type 0x09/],
  ];
  for (const [what, bytes, message] of refused) {
    it(`refuses ${what}`, () => assert.match(checkAmf0(bytes) ?? "accepted", message));
  }
});

// ---- PROXY protocol ----------------------------------------------------------------------------------------

const SIGNATURE = Buffer.from("0d0a0d0a000d0a515549540a", "hex");

function v2(command: number, familyTransport: number, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head[0] = 0x20 | command;
  head[1] = familyTransport;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([SIGNATURE, head, body]);
}

/** The address block of a v2 header for TCP over IPv4 (what follows the 16-byte header). */
const ipv4Block = (source: string, sourcePort: number): Buffer => proxyV2Header(source, sourcePort, "10.0.0.1").subarray(16);

function ipv6Block(source: Buffer, sourcePort: number): Buffer {
  const block = Buffer.alloc(36);
  source.copy(block, 0);
  block.writeUInt16BE(sourcePort, 32);
  block.writeUInt16BE(1935, 34);
  return block;
}

const done = (length: number, address: string | null, port = 0): ProxyHeader => ({ state: "done", length, source: address === null ? null : { address, port } });

describe("parseProxyHeader", () => {
  it("reads a v2 header for TCP over IPv4, leaving what follows", () => {
    const header = v2(1, 0x11, ipv4Block("203.0.113.7", 50123));
    assert.ok(header.equals(proxyV2Header("203.0.113.7", 50123, "10.0.0.1")));
    assert.deepEqual(parseProxyHeader(Buffer.concat([header, Buffer.from([3, 1, 2])])), done(28, "203.0.113.7", 50123));
  });

  it("reads IPv6 in its canonical form, and an IPv4-mapped address as IPv4", () => {
    const v6 = Buffer.from("20010db8000000000000000000000001", "hex");
    assert.deepEqual(parseProxyHeader(v2(1, 0x21, ipv6Block(v6, 40000))), done(52, "2001:db8::1", 40000));
    const mapped = Buffer.from("00000000000000000000ffffc0000201", "hex");
    assert.deepEqual(parseProxyHeader(v2(1, 0x21, ipv6Block(mapped, 1))), done(52, "192.0.2.1", 1));
  });

  it("skips TLVs after the addresses", () => {
    const tlv = Buffer.from([0x05, 0, 4, 1, 2, 3, 4]);
    assert.deepEqual(parseProxyHeader(v2(1, 0x11, Buffer.concat([ipv4Block("198.51.100.2", 7), tlv]))), done(35, "198.51.100.2", 7));
  });

  it("LOCAL (the proxy's own connection) and UNSPEC leave the peer as the client", () => {
    assert.deepEqual(parseProxyHeader(v2(0, 0x00, Buffer.alloc(0))), done(16, null));
    assert.deepEqual(parseProxyHeader(v2(0, 0x11, ipv4Block("1.2.3.4", 5))), done(28, null));
    assert.deepEqual(parseProxyHeader(v2(1, 0x00, Buffer.alloc(3))), done(19, null));
  });

  it("is incomplete at every prefix of a header, never wrong", () => {
    const header = v2(1, 0x11, ipv4Block("203.0.113.7", 50123));
    for (let n = 1; n < header.length; n++) assert.deepEqual(parseProxyHeader(header.subarray(0, n)), { state: "incomplete" }, `at ${n} bytes`);
    const line = Buffer.from("PROXY TCP4 192.0.2.1 192.0.2.2 1000 1935\r\n");
    for (let n = 1; n < line.length; n++) assert.deepEqual(parseProxyHeader(line.subarray(0, n)), { state: "incomplete" }, `at ${n} bytes`);
  });

  it("says a connection that starts like RTMP (C0 = 3) has no header", () => {
    const result = parseProxyHeader(Buffer.from([3, 0, 0, 0]));
    assert.equal(result.state, "invalid");
    assert.ok(result.state === "invalid" && result.missing);
    assert.equal(parseProxyHeader(Buffer.from("GET / HTTP/1.1\r\n")).state, "invalid");
  });

  const badV2: [string, Buffer, RegExp][] = [
    ["version 1 in the binary form", Buffer.concat([SIGNATURE, Buffer.from([0x11, 0x11, 0, 0])]), /version 1/],
    ["an unassigned command", Buffer.concat([SIGNATURE, Buffer.from([0x22, 0x11, 0, 0])]), /command 2/],
    ["an unknown family", Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x41, 0, 0])]), /family\/transport 0x41/],
    ["a body longer than any balancer sends", Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]), /65535 bytes/],
    ["an IPv4 block too short", v2(1, 0x11, Buffer.alloc(8)), /IPv4 address block of 8 bytes/],
  ];
  for (const [what, bytes, message] of badV2) {
    it(`refuses a v2 header with ${what}`, () => {
      const result = parseProxyHeader(bytes);
      assert.ok(result.state === "invalid" && !result.missing, JSON.stringify(result));
      assert.match(result.message, message);
    });
  }

  it("reads v1 lines: TCP4, TCP6, UNKNOWN", () => {
    const line = (text: string): [Buffer, number] => [Buffer.from(`${text}\r\nrest`), text.length + 2];
    const cases: [string, string | null, number][] = [
      ["PROXY TCP4 192.0.2.1 192.0.2.2 56324 1935", "192.0.2.1", 56324],
      ["PROXY TCP6 2001:DB8:0:0::1 ::1 0 1935", "2001:db8::1", 0],
      ["PROXY TCP6 ::ffff:192.0.2.9 ::1 5 1935", "192.0.2.9", 5],
      ["PROXY UNKNOWN", null, 0],
      ["PROXY UNKNOWN ffff::1 ffff::2 1 2", null, 0],
    ];
    for (const [text, address, port] of cases) {
      const [bytes, length] = line(text);
      assert.deepEqual(parseProxyHeader(bytes), done(length, address, port), text);
    }
  });

  const badV1 = [
    "PROXY TCP4 192.0.2.1 192.0.2.2 056324 1935\r\n",
    "PROXY TCP4 192.0.2.1 192.0.2.2 65536 1935\r\n",
    "PROXY TCP4 ::1 192.0.2.2 1 1935\r\n",
    "PROXY TCP6 192.0.2.1 ::1 1 1935\r\n",
    "PROXY UDP4 192.0.2.1 192.0.2.2 1 1935\r\n",
    "PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n",
    "PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n",
    "PROXY TCP4 not.an.ip 192.0.2.2 1 2\r\n",
    `PROXY UNKNOWN ${"f".repeat(120)}`,
  ];
  for (const line of badV1) {
    it(`refuses the v1 line ${JSON.stringify(line.slice(0, 50))}`, () => assert.equal(parseProxyHeader(Buffer.from(line)).state, "invalid"));
  }

  it(`decides within ${PROXY_HEADER_MAX} bytes whatever follows`, () => {
    const junk = [Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x11, 0x08, 0x00]), Buffer.alloc(PROXY_HEADER_MAX)]), Buffer.from(`PROXY ${"x".repeat(PROXY_HEADER_MAX)}`)];
    for (const bytes of junk) assert.notEqual(parseProxyHeader(bytes.subarray(0, PROXY_HEADER_MAX)).state, "incomplete");
  });
});
