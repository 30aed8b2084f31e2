// Playback tokens: `<expiry>.<signature>`, the signature an HMAC-SHA256 over "play", the stream id and the
// expiry (unix seconds), base64url. With `auth.requirePlaybackToken` a viewer needs one to start a session.
// The "play" in the signed text and a secret of its own (by default derived from the sessions secret, see
// config/state-dir.ts) keep them apart from publish tokens: neither is ever taken for the other.
import { createHmac, timingSafeEqual } from "node:crypto";
import { HttpError } from "../http/errors.ts";

function sign(secret: string, streamId: string, expiry: number): Buffer {
  return createHmac("sha256", secret).update(`play\n${streamId}\n${expiry}`).digest();
}

export function makePlaybackToken(secret: string, streamId: string, ttlSeconds: number, now = Date.now()): { token: string; expiresAt: number } {
  const expiry = Math.floor(now / 1000) + ttlSeconds;
  return { token: `${expiry}.${sign(secret, streamId, expiry).toString("base64url")}`, expiresAt: expiry * 1000 };
}

/** Throws 401 without a token, 403 for one that is malformed, signed for another stream or expired. */
export function checkPlaybackToken(secret: string, streamId: string, token: unknown, now = Date.now()): void {
  if (typeof token !== "string" || token === "") {
    throw new HttpError(401, "PLAYBACK_TOKEN_REQUIRED", `stream ${streamId} needs a playback token: add ?token=... to the watch or playlist URL`);
  }
  const match = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token);
  const given = match ? Buffer.from(match[2]!, "base64url") : null;
  const expected = match ? sign(secret, streamId, Number(match[1])) : null;
  if (!given || !expected || given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new HttpError(403, "BAD_PLAYBACK_TOKEN", `this playback token is not valid for stream ${streamId}`);
  }
  if (Number(match![1]) * 1000 < now) throw new HttpError(403, "EXPIRED_PLAYBACK_TOKEN", "this playback token has expired: ask for a new link");
}

/** Where a viewer with the token watches (the player page) and plays (the master playlist); `base` "" gives paths. */
export function playbackUrls(base: string, streamId: string, token: string): { url: string; playlistUrl: string } {
  // the token is digits, a dot and base64url: nothing in it needs escaping
  return { url: `${base}/watch/${streamId}?token=${token}`, playlistUrl: `${base}/live/${streamId}/index.m3u8?token=${token}` };
}
