// What a stream owner uses of a publish connection, without a socket: for the owner's unit tests.
import { TypedEmitter } from "../../src/core/events.ts";
import type { AVPacket } from "../../src/ingest/nms.ts";
import type { PublishCredential } from "../../src/ingest/token.ts";
import type { InputRole } from "../../src/core/model.ts";

export class FakeConnection extends TypedEmitter<{ packet: [AVPacket]; close: [reason: string] }> {
  readonly id = "fakepublish1";
  readonly remote = "127.0.0.1:50000";
  readonly source = { width: 640, height: 360, frameRate: 30, hasAudio: true };
  audioHeader = null;
  videoHeader = null;
  lastDataAt = Date.now();
  closed = false;
  /** The reason the owner gave when it closed the connection. */
  closedWith: string | null = null;
  constructor(readonly streamId: string, readonly credential: PublishCredential | null = null, readonly role: InputRole = "primary") {
    super();
  }
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closedWith = reason;
    this.emit("close", reason);
  }
}
