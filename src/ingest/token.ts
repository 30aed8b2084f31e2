// Publish tokens: `<expiry>.<signature>`, the signature an HMAC-SHA256 over the stream id and the expiry
// (unix seconds), base64url. Checked in constant time.
import { createHmac, timingSafeEqual } from "node:crypto";
import { AdmissionError } from "../errors.ts";

function sign(secret: string, streamId: string, expiry: number): Buffer {
  return createHmac("sha256", secret).update(`publish\n${streamId}\n${expiry}`).digest();
}

export function makePublishToken(secret: string, streamId: string, ttlSeconds: number, now = Date.now()): string {
  const expiry = Math.floor(now / 1000) + ttlSeconds;
  return `${expiry}.${sign(secret, streamId, expiry).toString("base64url")}`;
}

/** Throws AdmissionError (missing_token, bad_token, expired_token) unless the token is good for the stream. */
export function checkPublishToken(secret: string, streamId: string, token: unknown, now = Date.now()): void {
  if (typeof token !== "string" || token === "") throw new AdmissionError("missing_token", "publish token missing: add ?token=... to the stream key");
  const match = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!match) throw new AdmissionError("bad_token", "publish token malformed");
  const expiry = Number(match[1]);
  const given = Buffer.from(match[2]!, "base64url");
  const expected = sign(secret, streamId, expiry);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new AdmissionError("bad_token", "publish token does not match this stream");
  }
  if (expiry * 1000 < now) throw new AdmissionError("expired_token", "publish token expired");
}
