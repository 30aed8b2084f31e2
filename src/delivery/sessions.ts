// Viewer sessions as delivery sees them: tokens checked without Redis, a short-lived per-node cache of
// session records (written through by this node's updates), positions converted between seconds on the
// stream's timeline and program date-time, and the resume point a paused viewer's playlists carry.
import type { Session, SessionStore } from "../state/sessions.ts";
import type { StreamSnapshot } from "../state/store.ts";
import { HttpError } from "./http-error.ts";
import { makeSessionToken, newSessionId, readSessionToken } from "./session-token.ts";

/** How long a node trusts its copy of a session record it did not write itself (API reads). */
const CACHE_MS = 2000;
/**
 * How long the copy decides a media playlist's EXT-X-START. A player uses EXT-X-START only when it loads, and a
 * load starts with a master playlist request, which reads the session afresh: so a player's playlist reloads
 * cost no Redis round trip.
 */
const START_CACHE_MS = 30000;
const MAX_CACHED = 100000;

export interface ResumePoint {
  /** Seconds from the start of the playlist (EXT-X-START TIME-OFFSET). */
  offset: number;
  /** False when the position left the window: the viewer resumes at the oldest available point. */
  inWindow: boolean;
}

/** Where a program date-time falls in a rendition's current window. */
export function resumePoint(stream: StreamSnapshot, rendition: string, pdt: number): ResumePoint | null {
  const entries = stream.entries;
  if (entries.length === 0) return null;
  if (pdt < entries[0]!.pdt) return { offset: 0, inWindow: false };
  let offset = 0;
  for (const [i, entry] of entries.entries()) {
    const duration = entry.dur[rendition] ?? 0;
    const next = entries[i + 1];
    if (!next || pdt < next.pdt) {
      return { offset: offset + Math.min(duration, Math.max(0, (pdt - entry.pdt) / 1000)), inWindow: true };
    }
    offset += duration;
  }
  return null;
}

/** Seconds on the stream's timeline for a program date-time, and back. */
export const positionOf = (stream: Pick<StreamSnapshot, "createdAt">, pdt: number): number => Math.round(pdt - stream.createdAt) / 1000;
export const pdtOf = (stream: Pick<StreamSnapshot, "createdAt">, position: number): number => Math.round(stream.createdAt + position * 1000);

export class ViewerSessions {
  private readonly cache = new Map<string, { session: Session; at: number }>();

  constructor(
    private readonly store: SessionStore,
    private readonly secret: string,
    private readonly nodeId: string,
    private readonly onCreate: () => void = () => undefined,
  ) {}

  /** Whether session state can be read and written now (Redis reachable). */
  get available(): boolean {
    return this.store.connected;
  }

  /**
   * The session a request's token names. null when there is no token; 403 when the token is not one of
   * ours or names another stream than `streamId` (when given).
   */
  check(token: string | null | undefined, streamId?: string): { sessionId: string; streamId: string; token: string } | null {
    if (token === null || token === undefined || token === "") return null;
    const named = readSessionToken(this.secret, token);
    if (!named) throw new HttpError(403, "BAD_SESSION", "this session token is not valid");
    if (streamId !== undefined && named.streamId !== streamId) {
      throw new HttpError(403, "WRONG_STREAM", "this session belongs to another stream");
    }
    return { ...named, token };
  }

  async create(streamId: string): Promise<{ session: Session; token: string }> {
    const session = await this.store.create(newSessionId(), streamId, this.nodeId);
    this.onCreate();
    this.remember(session);
    return { session, token: makeSessionToken(this.secret, session.id, streamId) };
  }

  async get(sessionId: string, fresh = false, maxAgeMs = CACHE_MS): Promise<Session | null> {
    const cached = this.cache.get(sessionId);
    if (!fresh && cached && Date.now() - cached.at < maxAgeMs) return cached.session;
    const session = await this.store.get(sessionId);
    if (session) this.remember(session);
    else this.cache.delete(sessionId);
    return session;
  }

  /** A player (re)loads: read its session afresh, so its media playlists start where it paused. */
  async loading(sessionId: string): Promise<void> {
    await this.get(sessionId, true).catch(() => null);
  }

  /** A playlist request: which rendition the viewer plays, and from which node. */
  touch(sessionId: string, rendition: string | null): void {
    const cached = this.cache.get(sessionId);
    if (cached && rendition) cached.session.rendition = rendition;
    void this.store.update(sessionId, { node: this.nodeId, ...(rendition ? { rendition } : {}) });
  }

  /** A segment request: the viewer is at least this far (for players that never report). */
  inferred(sessionId: string, stream: StreamSnapshot, pdt: number): void {
    const cached = this.cache.get(sessionId);
    if (cached && cached.session.source !== "reported") Object.assign(cached.session, { pdt, position: positionOf(stream, pdt), source: "inferred" });
    void this.store.update(sessionId, { inferred: { position: positionOf(stream, pdt), pdt } });
  }

  /** An explicit report (API or WebSocket); resolves once it is in Redis. */
  report(sessionId: string, stream: Pick<StreamSnapshot, "createdAt"> | null, position: number, paused: boolean): Promise<void> {
    const pdt = stream ? pdtOf(stream, position) : null;
    const cached = this.cache.get(sessionId);
    if (cached) Object.assign(cached.session, { position, pdt, paused, source: "reported", updatedAt: Date.now() });
    return this.store.update(sessionId, { node: this.nodeId, report: { position, pdt, paused } });
  }

  /** EXT-X-START offset for a paused session's media playlist, if it has one. */
  async startOffset(sessionId: string, stream: StreamSnapshot, rendition: string): Promise<number | undefined> {
    const session = await this.get(sessionId, false, START_CACHE_MS).catch(() => null);
    if (!session?.paused || session.pdt === null) return undefined;
    return resumePoint(stream, rendition, session.pdt)?.offset;
  }

  private remember(session: Session): void {
    if (this.cache.size >= MAX_CACHED) {
      const cutoff = Date.now() - CACHE_MS;
      for (const [id, entry] of this.cache) if (entry.at < cutoff) this.cache.delete(id);
      if (this.cache.size >= MAX_CACHED) this.cache.clear();
    }
    this.cache.set(session.id, { session, at: Date.now() });
  }
}
