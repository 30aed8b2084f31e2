// Publish tokens: `<issued>.<expiry>.<signature>`, the signature an HMAC-SHA256 over the stream id, the issue
// time and the expiry (unix seconds), base64url, checked in constant time. The issue time is what a revocation
// compares with (`baton revoke` refuses every token issued up to that moment); the expiry bounds how long a
// leaked token can start a broadcast. A broadcast started with a token keeps taking that token's reconnects
// after it expires, until the broadcast ends (see StreamOwner), so a long show survives drains.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { AdmissionError } from "../core/errors.ts";

/** What a well-signed token says; `expired` is decided by the caller's clock, and may still be forgiven. */
export interface PublishCredential {
  issuedAt: number;
  expiresAt: number;
  expired: boolean;
  /** A digest of the token (never the token), to recognise it again for its broadcast's reconnects. */
  digest: string;
}

function sign(secret: string, streamId: string, issued: number, expiry: number): Buffer {
  return createHmac("sha256", secret).update(`publish\n${streamId}\n${issued}\n${expiry}`).digest();
}

export function makePublishToken(secret: string, streamId: string, ttlSeconds: number, now = Date.now()): string {
  const issued = Math.floor(now / 1000);
  const expiry = issued + ttlSeconds;
  return `${issued}.${expiry}.${sign(secret, streamId, issued, expiry).toString("base64url")}`;
}

/** Throws AdmissionError (missing_token, bad_token) unless the token is one this secret signed for the stream. */
export function readPublishToken(secret: string, streamId: string, token: unknown, now = Date.now()): PublishCredential {
  if (typeof token !== "string" || token === "") throw new AdmissionError("missing_token", "publish token missing: add ?token=... to the stream key");
  const match = /^(\d{1,12})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!match) {
    const old = /^\d{1,12}\.[A-Za-z0-9_-]{43}$/.test(token);
    throw new AdmissionError("bad_token", old ? "publish token of an older format: make a new one (npm run baton -- token <stream>)" : "publish token malformed");
  }
  const issuedAt = Number(match[1]);
  const expiresAt = Number(match[2]);
  const given = Buffer.from(match[3]!, "base64url");
  const expected = sign(secret, streamId, issuedAt, expiresAt);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new AdmissionError("bad_token", "publish token does not match this stream");
  }
  const digest = createHash("sha256").update(token).digest("base64url").slice(0, 22);
  return { issuedAt, expiresAt, expired: expiresAt * 1000 < now, digest };
}

/** Throws AdmissionError (missing_token, bad_token, expired_token) unless the token is good for the stream now. */
export function checkPublishToken(secret: string, streamId: string, token: unknown, now = Date.now()): PublishCredential {
  const credential = readPublishToken(secret, streamId, token, now);
  if (credential.expired) throw new AdmissionError("expired_token", "publish token expired");
  return credential;
}
