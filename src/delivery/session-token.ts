// Viewer session tokens: `<sessionId>.<streamId>.<signature>`, the signature an HMAC-SHA256 over both ids.
// The token names its session and its stream, so a node checks it without a Redis round trip, in constant time.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { isStreamId } from "../ingest/stream-id.ts";

/** 128 bits of randomness, hex. */
export const SESSION_ID = /^[0-9a-f]{32}$/;

export function newSessionId(): string {
  return randomBytes(16).toString("hex");
}

function sign(secret: string, sessionId: string, streamId: string): Buffer {
  return createHmac("sha256", secret).update(`session\n${sessionId}\n${streamId}`).digest();
}

export function makeSessionToken(secret: string, sessionId: string, streamId: string): string {
  return `${sessionId}.${streamId}.${sign(secret, sessionId, streamId).toString("base64url")}`;
}

/** The session and stream a token names, or null when it is not a token this secret signed. */
export function readSessionToken(secret: string, token: unknown): { sessionId: string; streamId: string } | null {
  if (typeof token !== "string" || token.length > 200) return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  const [sessionId, streamId, signature] = parts as [string, string, string];
  if (!SESSION_ID.test(sessionId) || !isStreamId(streamId) || !/^[A-Za-z0-9_-]{43}$/.test(signature)) return null;
  const given = Buffer.from(signature, "base64url");
  const expected = sign(secret, sessionId, streamId);
  return given.length === expected.length && timingSafeEqual(given, expected) ? { sessionId, streamId } : null;
}
