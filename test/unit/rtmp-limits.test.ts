// The bounds hooked into node-media-server's real RTMP parser (in process, bytes in), the connection counts and
// the rate-limited refusal log.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { ConnectionCounts, RefusalLog } from "../../src/ingest/connection-limits.ts";
import { createRtmpProtocol, type AVPacket, type NmsRtmp } from "../../src/ingest/nms.ts";
import { MAX_CHUNK_STREAMS, MAX_COMMANDS_BEFORE_PUBLISH, MAX_MESSAGE_BEFORE_PUBLISH, ParserGuard, RtmpLimitError } from "../../src/ingest/rtmp-limits.ts";
import type { Fields, Logger } from "../../src/core/log.ts";
import { connectObject } from "../helpers/rtmp-client.ts";
import { commandPayload, message, setChunkSize, strictArrayConnect, type0Header, TYPE_AMF0_COMMAND, TYPE_VIDEO, amfStrictArray } from "../helpers/rtmp-attacks.ts";

const MiB = 1024 * 1024;

interface Parser {
  rtmp: NmsRtmp;
  guard: ParserGuard;
  packets: AVPacket[];
  pushes: number;
  feed(bytes: Buffer): void;
  /** Bytes of message buffers the parser holds. */
  held(): number;
}

/** A parser past the handshake, with the guard on. */
function parser(maxMessageSize = 8 * MiB): Parser {
  const rtmp = createRtmpProtocol();
  const guard = new ParserGuard(rtmp, maxMessageSize);
  const p: Parser = {
    rtmp, guard, packets: [], pushes: 0,
    feed: (bytes) => assert.equal(rtmp.parserData(bytes), null),
    held: () => [...rtmp.inPackets.values()].reduce((sum, s) => sum + s.capacity, 0),
  };
  rtmp.onOutputCallback = () => undefined;
  rtmp.onPacketCallback = (packet) => p.packets.push(packet);
  rtmp.onConnectCallback = () => undefined;
  rtmp.onPushCallback = () => void p.pushes++;
  p.feed(Buffer.concat([Buffer.from([3]), randomBytes(1536), randomBytes(1536)]));
  return p;
}

/** The reason of the RtmpLimitError `run` throws. */
function refusal(run: () => void): string {
  try {
    run();
  } catch (error) {
    if (error instanceof RtmpLimitError) return error.reason;
    throw error;
  }
  assert.fail("no limit was broken");
}

const video = (csid: number, payload: Buffer): Buffer => message(csid, TYPE_VIDEO, payload, { messageStreamId: 1 });

describe("ParserGuard on node-media-server's parser", () => {
  it("refuses a message declaring more than 64 KiB before a publish at its header, before storing a byte", () => {
    const p = parser();
    assert.equal(refusal(() => p.feed(type0Header(6, TYPE_VIDEO, MAX_MESSAGE_BEFORE_PUBLISH + 1, 1))), "message_too_large");
    assert.equal(p.held(), 0);
    // the 16 MiB command of the report, too: refused at its 12-byte header
    assert.equal(refusal(() => parser().feed(message(3, TYPE_AMF0_COMMAND, strictArrayConnect(16 * MiB - 1)).subarray(0, 12))), "message_too_large");
  });

  it("after the publish is admitted, passes a 6 MiB keyframe whole, in a buffer of its own, and refuses 9 MiB", () => {
    const p = parser();
    p.guard.admitted();
    const frame = randomBytes(6 * MiB);
    p.feed(video(6, frame));
    assert.equal(p.packets.length, 1);
    assert.equal(p.packets[0]!.size, frame.length);
    assert.ok(p.packets[0]!.data.equals(frame));
    assert.equal(p.held(), 0, "the chunk stream still holds the message");
    assert.equal(refusal(() => p.feed(type0Header(6, TYPE_VIDEO, 9 * MiB, 1))), "message_too_large");
  });

  it("gives each message its own buffer: a packet kept for later is not overwritten by the next", () => {
    const p = parser();
    p.guard.admitted();
    p.feed(video(6, Buffer.alloc(300, 1)));
    p.feed(video(6, Buffer.alloc(300, 2)));
    assert.deepEqual(p.packets.map((packet) => packet.data[0]), [1, 2]);
  });

  it(`refuses chunk stream number ${MAX_CHUNK_STREAMS + 1} (one- and two-byte ids)`, () => {
    const p = parser();
    const ids = [2, 3, 4, 5, 6, 7, 8, 60, 64, 100, 200, 319, 65, 66, 67, 68];
    assert.equal(ids.length, MAX_CHUNK_STREAMS);
    for (const id of ids) p.feed(video(id, Buffer.alloc(5)));
    assert.equal(refusal(() => p.feed(video(70, Buffer.alloc(5)))), "too_many_chunk_streams");
  });

  it("refuses SET_CHUNK_SIZE 0, below 128, above 16 MiB, 2^32-1 and a short one; takes 128, 4096 and 16 MiB - 1", () => {
    for (const size of [0, 1, 127, 0x1000000, 0x7fffffff, 0xffffffff]) {
      assert.equal(refusal(() => parser().feed(setChunkSize(size))), "bad_chunk_size", `size ${size}`);
    }
    assert.equal(refusal(() => parser().feed(message(2, 1, Buffer.from([0, 0])))), "bad_chunk_size");
    for (const size of [128, 4096, 0xffffff]) {
      const p = parser();
      p.guard.admitted();
      p.feed(setChunkSize(size));
      // the new size is in effect: a 1000-byte message in one chunk
      p.feed(message(6, TYPE_VIDEO, Buffer.alloc(Math.min(size, 1000), 7), { messageStreamId: 1, chunkSize: size }));
      assert.equal(p.packets.at(-1)?.size, Math.min(size, 1000));
    }
  });

  it("refuses a new message header in the middle of a message on the same chunk stream", () => {
    const p = parser();
    const first = video(6, Buffer.alloc(300));
    p.feed(first.subarray(0, 12 + 128));
    assert.equal(refusal(() => p.feed(type0Header(6, TYPE_VIDEO, 60000, 1))), "bad_chunk");
  });

  it("refuses more unfinished messages than the connection's budget (two of the largest allowed)", () => {
    const p = parser();
    const size = 60 * 1024;
    // each message's first chunk (128 bytes): its buffer is allocated, then the next chunk stream's turn
    const start = (csid: number): Buffer => Buffer.concat([type0Header(csid, TYPE_VIDEO, size, 1), Buffer.alloc(128)]);
    p.feed(start(4));
    p.feed(start(5));
    assert.equal(p.held(), 2 * size);
    assert.equal(refusal(() => p.feed(start(6))), "too_much_buffered");
  });

  it("refuses AMF that declares more than it holds, before node-media-server decodes it", () => {
    const lie = commandPayload("connect", 1, []);
    const p = parser();
    assert.equal(refusal(() => p.feed(message(3, TYPE_AMF0_COMMAND, Buffer.concat([lie, amfStrictArray(1e9, Buffer.alloc(1000, 5))])))), "bad_amf");
    assert.equal(p.held(), 0);
  });

  it(`refuses more than ${MAX_COMMANDS_BEFORE_PUBLISH} commands before a publish`, () => {
    const p = parser();
    const createStream = message(3, TYPE_AMF0_COMMAND, commandPayload("createStream", 2, [null]));
    for (let i = 0; i < MAX_COMMANDS_BEFORE_PUBLISH; i++) p.feed(createStream);
    assert.equal(refusal(() => p.feed(createStream)), "too_many_commands");
  });

  it("refuses a handshake of another RTMP version (C0 other than 3)", () => {
    const rtmp = createRtmpProtocol();
    new ParserGuard(rtmp, 8 * MiB);
    rtmp.onOutputCallback = () => undefined;
    assert.equal(refusal(() => rtmp.parserData(Buffer.concat([Buffer.from([6]), randomBytes(1536)]))), "bad_handshake");
  });

  it("lets a well-formed connect, createStream and publish through", () => {
    const p = parser();
    p.feed(message(3, TYPE_AMF0_COMMAND, commandPayload("connect", 1, [connectObject("127.0.0.1", 1935)])));
    p.feed(message(3, TYPE_AMF0_COMMAND, commandPayload("createStream", 2, [null])));
    p.feed(message(3, TYPE_AMF0_COMMAND, commandPayload("publish", 3, [null, "s?token=x", "live"]), { messageStreamId: 1 }));
    assert.equal(p.pushes, 1);
  });

  it("release() drops what an unfinished message holds", () => {
    const p = parser();
    p.feed(Buffer.concat([type0Header(6, TYPE_VIDEO, 60000, 1), Buffer.alloc(128)]));
    assert.equal(p.held(), 60000);
    p.guard.release();
    assert.equal(p.held(), 0);
    assert.equal(p.rtmp.inPackets.size, 0);
  });
});

describe("ConnectionCounts", () => {
  it("caps the total, and each address, and gives slots back once", () => {
    const counts = new ConnectionCounts(3, 2, (address) => address === "10.0.0.1");
    const a = counts.take()!;
    const b = counts.take()!;
    assert.ok(a.bind("192.0.2.1") && b.bind("192.0.2.1"));
    const c = counts.take()!;
    assert.equal(c.bind("192.0.2.1"), false, "a third from one address");
    assert.equal(counts.take(), null, "a fourth in all");
    assert.ok(c.bind("192.0.2.2"));
    a.release();
    a.release();
    assert.equal(counts.open, 2);
    const d = counts.take()!;
    assert.ok(d.bind("192.0.2.1"), "the released slot is free again");
    d.release();
    const e = counts.take()!;
    assert.ok(e.bind("10.0.0.1"), "a shared (balancer) address counts only in the total");
  });

  it("counts an IPv6 client as its /64, so its other addresses buy it nothing", () => {
    const counts = new ConnectionCounts(10, 2, () => false);
    const [a, b, c, d] = [counts.take()!, counts.take()!, counts.take()!, counts.take()!];
    assert.ok(a.bind("2001:db8:1:2::1") && b.bind("2001:db8:1:2:ffff::9"));
    assert.equal(c.bind("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), false, "a third from the same /64");
    assert.ok(d.bind("2001:db8:1:3::1"), "another /64 is another client");
  });
});

describe("RefusalLog", () => {
  it("writes ten lines a second per reason, then one line counting the rest by reason", () => {
    const lines: [string, Fields | undefined][] = [];
    const log = { warn: (message: string, fields?: Fields) => lines.push([message, fields]) } as unknown as Logger;
    const refusals = new RefusalLog(log);
    for (let i = 0; i < 30; i++) refusals.refused("bad_amf", `192.0.2.1:${i}`, "x");
    for (let i = 0; i < 12; i++) refusals.refused("too_many_connections", `192.0.2.2:${i}`, "y");
    assert.equal(lines.length, 20, "a flood of one reason hides the other");
    assert.deepEqual(lines[0], ["RTMP connection refused", { remote: "192.0.2.1:0", reason: "bad_amf", detail: "x" }]);
    assert.deepEqual(lines[10], ["RTMP connection refused", { remote: "192.0.2.2:0", reason: "too_many_connections", detail: "y" }]);
    refusals.close();
    assert.equal(lines.length, 21);
    assert.deepEqual(lines[20], ["RTMP connections refused without a line each", { count: 22, bad_amf: 20, too_many_connections: 2 }]);
  });
});
