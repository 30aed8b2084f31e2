// Playback tokens for a site's backend, behind the admin bearer token:
//   POST /admin/playback-tokens {"streamId": "...", "ttl": seconds} -> 201 {"token", "expiresAt", "url", "playlistUrl"}
// The URLs are paths: the backend puts them after the address its viewers use (the balancer's).
import { isStreamId } from "../core/ids.ts";
import { checkBearer } from "../http/bearer.ts";
import { HttpError, sendJson } from "../http/errors.ts";
import { readJson } from "../http/body.ts";
import type { Routes } from "../http/server.ts";
import { makePlaybackToken, playbackUrls } from "./playback-token.ts";
import { PRIVATE } from "./sessions-api.ts";

/** The longest a token made here may live, seconds: a year. */
const MAX_TTL = 365 * 86400;

export function addPlaybackTokenApi(http: Routes, o: { adminToken: string; secret: string; defaultTtl: number }): void {
  http.addRoute(["POST"], "admin_playback_tokens", /^\/admin\/playback-tokens$/, async ({ req, res }) => {
    checkBearer(req.headers.authorization, o.adminToken);
    const body = (await readJson(req)) as { streamId?: unknown; ttl?: unknown } | null;
    const streamId = body?.streamId;
    const ttl = body?.ttl ?? o.defaultTtl;
    if (!isStreamId(streamId)) throw new HttpError(400, "BAD_STREAM_ID", "streamId must be 1 to 64 of A-Z, a-z, 0-9, '_', '-'");
    if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL) {
      throw new HttpError(400, "BAD_TTL", `ttl must be a whole number of seconds, 1 to ${MAX_TTL}`);
    }
    const { token, expiresAt } = makePlaybackToken(o.secret, streamId, ttl);
    sendJson(res, 201, { streamId, token, expiresAt: new Date(expiresAt).toISOString(), ...playbackUrls("", streamId, token) }, PRIVATE);
  });
}
