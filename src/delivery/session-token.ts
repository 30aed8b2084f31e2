// Viewer session tokens: `<sessionId>.<streamId>.<signature>`, the signature an HMAC-SHA256 over both ids.
// A session id is 32 hex digits: the unix millisecond it was issued (12 digits, as a UUIDv7 begins), then
// 80 random bits. So the token names its session, its stream and when it was issued, all under the signature,
// and a node checks it without a Redis round trip, in constant time. The shape is the one earlier releases
// issued and check, so during a rolling update a token from a new node still opens playlists on an old one.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { SESSION_ID } from "../core/ids.ts";
import { isStreamId } from "../core/ids.ts";

export { SESSION_ID };

export function newSessionId(now = Date.now()): string {
  return Math.floor(now).toString(16).padStart(12, "0").slice(-12) + randomBytes(10).toString("hex");
}

/**
 * When the session was issued, unix ms. An id made before ids carried their time reads as a random instant;
 * that only matters for a session without a record, and those ids always had one.
 */
export function issuedAt(sessionId: string): number {
  return Number.parseInt(sessionId.slice(0, 12), 16);
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
