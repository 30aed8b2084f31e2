// The viewer API: POST /api/sessions, GET /api/sessions/{id}, PUT /api/sessions/{id}/position.
// The token comes as `Authorization: Bearer <token>` or `?session=<token>`. Without one: 401; with another
// session's: 403, never its data. Every answer carries a session's token or data: `Cache-Control: private`.
import { SESSION_ID_PATTERN, isStreamId } from "../core/ids.ts";
import type { Session } from "../state/sessions.ts";
import type { StreamSnapshot } from "../core/model.ts";
import { HttpError, sendJson } from "../http/errors.ts";
import { bearerToken } from "../http/bearer.ts";
import { readJson } from "../http/body.ts";
import type { Request, Routes } from "../http/server.ts";
import type { TimelineCache } from "./timeline-cache.ts";
import { readReport, MAX_POSITION, positionOf, resumePoint, type NamedSession, type ViewerSessions } from "./sessions.ts";

/** Answers about one viewer's session: never kept by a shared cache, nor stored at all. */
export const PRIVATE = { "Cache-Control": "private, no-store" };

function bearer({ req, query }: Request): string | null {
  return bearerToken(req.headers.authorization) ?? query.get("session");
}

export interface SessionView {
  id: string;
  streamId: string;
  rendition: string | null;
  node: string;
  position: number | null;
  programDateTime: string | null;
  paused: boolean;
  source: Session["source"];
  createdAt: number;
  lastSeen: number;
  updatedAt: number | null;
  /** The stream's clock origin, ms: position = (program date-time - streamStartedAt) / 1000. */
  streamStartedAt: number | null;
  /** Where the viewer resumes: its position while in the window, else the oldest available point. */
  resume: { position: number; inWindow: boolean; reason?: string } | null;
}

export function sessionView(session: Session, stream: StreamSnapshot | null): SessionView {
  let resume: SessionView["resume"] = null;
  if (stream && session.pdt !== null) {
    const point = resumePoint(stream, session.rendition ?? stream.ladder?.[0]?.name ?? "", session.pdt);
    if (point?.inWindow) resume = { position: session.position ?? positionOf(stream, session.pdt), inWindow: true };
    else if (point) {
      resume = {
        position: positionOf(stream, stream.entries[0]!.pdt),
        inWindow: false,
        reason: "the position left the stream's window; playback resumes at the oldest available point",
      };
    }
  }
  return {
    id: session.id,
    streamId: session.streamId,
    rendition: session.rendition,
    node: session.node,
    position: session.position,
    programDateTime: session.pdt === null ? null : new Date(session.pdt).toISOString(),
    paused: session.paused,
    source: session.source,
    createdAt: session.createdAt,
    lastSeen: session.lastSeen,
    updatedAt: session.updatedAt,
    streamStartedAt: stream?.createdAt ?? null,
    resume,
  };
}

export function addSessionsApi(http: Routes, timelines: TimelineCache, sessions: ViewerSessions): void {
  const stream = async (id: string): Promise<StreamSnapshot | null> => (await timelines.get(id).catch(() => null))?.snapshot ?? null;

  /** The session a request may see: 401 without a token, 403 for another session's token. */
  const authorized = (request: Request, id: string): NamedSession => {
    const token = bearer(request);
    if (!token) throw new HttpError(401, "NO_SESSION", "a session token is needed (Authorization: Bearer <token>)", { "WWW-Authenticate": "Bearer" });
    const named = sessions.check(token);
    if (!named || named.sessionId !== id) throw new HttpError(403, "FORBIDDEN", "this token is for another session");
    return named;
  };
  const gone = (): HttpError => new HttpError(404, "UNKNOWN_SESSION", "no such session (it may have expired)");

  // a session only for a stream that is live or recorded; when Redis cannot be read and this node does not
  // know the stream, the timeline read throws and the answer is a 503
  http.addRoute(["POST"], "api_sessions", /^\/api\/sessions$/, async ({ req, res }) => {
    const body = (await readJson(req)) as { streamId?: unknown; token?: unknown } | null;
    const streamId = body?.streamId;
    if (!isStreamId(streamId)) throw new HttpError(400, "BAD_STREAM_ID", "streamId must be 1 to 64 of A-Z, a-z, 0-9, '_', '-'");
    sessions.authorize(streamId, typeof body?.token === "string" ? body.token : null);
    const { snapshot } = await timelines.get(streamId);
    if (!snapshot) throw new HttpError(404, "UNKNOWN_STREAM", `stream ${streamId} is not live`);
    const { session, token } = sessions.start(req, streamId);
    sendJson(res, 201, { ...sessionView(session, snapshot), token }, PRIVATE);
  });

  http.addRoute(["GET", "HEAD"], "api_session", new RegExp(`^/api/sessions/(${SESSION_ID_PATTERN})$`), async (request) => {
    const named = authorized(request, request.params[0]!);
    const session = await sessions.view(named, true);
    if (!session) throw gone();
    sendJson(request.res, 200, sessionView(session, await stream(session.streamId)), PRIVATE);
  });

  http.addRoute(["PUT"], "api_session_position", new RegExp(`^/api/sessions/(${SESSION_ID_PATTERN})/position$`), async (request) => {
    const id = request.params[0]!;
    const named = authorized(request, id);
    const body = (await readJson(request.req)) as { position?: unknown; paused?: unknown } | null;
    if (typeof (body?.paused ?? false) !== "boolean") throw new HttpError(400, "BAD_PAUSED", "paused must be true or false");
    const report = readReport(body?.position, body?.paused ?? false);
    if (!report) throw new HttpError(400, "BAD_POSITION", `position must be a number of seconds, 0 to ${MAX_POSITION}`);
    const { position, paused } = report;
    const snapshot = await stream(named.streamId);
    const queue = (): void => {
      // Redis is away: the token is signed, so the write is queued (it never recreates an expired session)
      void sessions.report(named, snapshot, position, paused);
      sendJson(request.res, 202, { id, position, paused, queued: true }, PRIVATE);
    };
    if (!sessions.available) return queue();
    let known: Session | null;
    try {
      known = await sessions.view(named);
    } catch {
      return queue();
    }
    if (!known) throw gone();
    await sessions.report(named, snapshot, position, paused);
    const session = await sessions.get(id);
    sendJson(request.res, 200, session ? sessionView(session, snapshot) : { id, position, paused }, PRIVATE);
  });
}
