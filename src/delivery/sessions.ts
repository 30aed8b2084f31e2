// Viewer sessions as delivery sees them: tokens checked without Redis, who may start a session (a playback
// token when required, a rate per client address), a short-lived per-node cache of session records (written
// through by this node's updates), positions converted between seconds on the stream's timeline and program
// date-time, and the resume point a paused viewer's playlists carry. A new session is its token alone: the
// record comes with its first use (state/sessions.ts), so starting one costs Redis nothing.
import { startWindowMs, type Session, type SessionOrigin, type SessionStore } from "../state/sessions.ts";
import type { StreamSnapshot } from "../core/model.ts";
import type { Client } from "../http/answer.ts";
import type { ClientAddresses } from "../http/client-address.ts";
import { HttpError } from "../http/errors.ts";
import { checkPlaybackToken } from "./playback-token.ts";
import { AddressLimiter } from "./rate-limit.ts";
import { issuedAt, makeSessionToken, newSessionId, readSessionToken } from "./session-token.ts";

/** How long a node trusts its copy of a session record it did not write itself (API reads). */
const CACHE_MS = 2000;
/**
 * How long the copy decides a media playlist's EXT-X-START. A player uses EXT-X-START only when it loads, and a
 * load starts with a master playlist request, which reads the session afresh: so a player's playlist reloads
 * cost no Redis round trip.
 */
const START_CACHE_MS = 30000;
const MAX_CACHED = 100000;
/** Tokens a node remembers as checked (about 200 bytes each); past this the memory starts again. */
const MAX_VERIFIED = 50000;
/** The largest position taken, seconds (about 31 years): what a report can be without being nonsense. */
export const MAX_POSITION = 1e9;

/** A report's fields when they are a position (seconds, 0 to MAX_POSITION) and a paused flag; else null. */
export function readReport(position: unknown, paused: unknown): { position: number; paused: boolean } | null {
  const ok = typeof position === "number" && Number.isFinite(position) && position >= 0 && position <= MAX_POSITION && typeof paused === "boolean";
  return ok ? { position, paused } : null;
}

/** A session a request's token names. */
export interface NamedSession {
  sessionId: string;
  streamId: string;
  token: string;
  /** When the token was issued, unix ms. */
  issuedAt: number;
}

export interface ViewerSessionsOptions {
  store: SessionStore;
  /** HMAC secret of session tokens. */
  secret: string;
  nodeId: string;
  /** sessions.ttl, seconds. */
  ttlSec: number;
  /** auth.requirePlaybackToken and the secret playback tokens are checked with. */
  playback: { required: boolean; secret: string };
  /** sessions.startsPerMinute: sessions one client address may start a minute. */
  startsPerMinute: number;
  addresses: ClientAddresses;
  /** A session started (metrics). */
  onStart?: () => void;
  /** Throws when the stream or the node has all the viewers it may (delivery.maxViewers*): see viewer-limits.ts. */
  admitViewer?: (streamId: string) => void;
  /** A start refused (metrics), by a bounded reason. */
  onRefused?: (reason: "rate_limited" | "playback_token") => void;
}

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
  /** Sessions read and found to have no record yet, and when: not paused, so a playlist reload reads nothing. */
  private readonly absent = new Map<string, number>();
  /** Tokens whose signature was good (only ours get in: a forged token is checked every time). */
  private readonly verified = new Map<string, Readonly<NamedSession>>();
  private readonly starts: AddressLimiter;
  private readonly store: SessionStore;
  private readonly windowMs: number;

  constructor(private readonly o: ViewerSessionsOptions) {
    this.store = o.store;
    this.starts = new AddressLimiter(o.startsPerMinute);
    this.windowMs = startWindowMs(o.ttlSec);
  }

  /** Whether session state can be read and written now (Redis reachable). */
  get available(): boolean {
    return this.store.connected;
  }

  /**
   * The session a request's token names. null when there is no token; 403 when the token is not one of
   * ours or names another stream than `streamId` (when given).
   */
  check(token: string | null | undefined, streamId?: string): NamedSession | null {
    if (token === null || token === undefined || token === "") return null;
    let named = this.verified.get(token);
    if (!named) {
      const read = readSessionToken(this.o.secret, token);
      if (!read) throw new HttpError(403, "BAD_SESSION", "this session token is not valid");
      // a player sends its token with every playlist and segment request: its signature is checked once
      if (this.verified.size >= MAX_VERIFIED) this.verified.clear();
      named = Object.freeze({ ...read, token, issuedAt: issuedAt(read.sessionId) });
      this.verified.set(token, named);
    }
    if (streamId !== undefined && named.streamId !== streamId) {
      throw new HttpError(403, "WRONG_STREAM", "this session belongs to another stream");
    }
    return named;
  }

  /** Whether a token without a record may still become a session (its first use would create it). */
  private fresh(named: NamedSession, now = Date.now()): boolean {
    return Math.abs(now - named.issuedAt) <= this.windowMs;
  }

  /** May a viewer start a session on this stream: 401/403 when a playback token is required and not good. */
  authorize(streamId: string, playbackToken: string | null | undefined): void {
    if (!this.o.playback.required) return;
    try {
      checkPlaybackToken(this.o.playback.secret, streamId, playbackToken);
    } catch (error) {
      this.o.onRefused?.("playback_token");
      throw error;
    }
  }

  /**
   * Starts a session (after `authorize`, for a stream that exists): 429 past the client address's rate, 503
   * when the stream or the node has all the viewers it may.
   */
  start(req: Client, streamId: string): { session: Session; token: string } {
    this.o.admitViewer?.(streamId);
    const wait = this.starts.take(this.o.addresses.of(req));
    if (wait > 0) {
      this.o.onRefused?.("rate_limited");
      throw new HttpError(429, "TOO_MANY_SESSIONS", `too many new sessions from this address; retry in ${wait} s`, { "Retry-After": String(wait) });
    }
    const id = newSessionId();
    this.o.onStart?.();
    const named: NamedSession = { sessionId: id, streamId, token: makeSessionToken(this.o.secret, id, streamId), issuedAt: issuedAt(id) };
    return { session: this.unused(named), token: named.token };
  }

  /** A session that has no record yet, as its token describes it. */
  private unused(named: NamedSession): Session {
    const at = named.issuedAt;
    return {
      id: named.sessionId, streamId: named.streamId, rendition: null, node: this.o.nodeId, createdAt: at, lastSeen: at,
      position: null, pdt: null, paused: false, source: null, updatedAt: null,
    };
  }

  async get(sessionId: string, fresh = false, maxAgeMs = CACHE_MS): Promise<Session | null> {
    const cached = this.cache.get(sessionId);
    if (!fresh && cached && Date.now() - cached.at < maxAgeMs) return cached.session;
    const session = await this.store.get(sessionId);
    if (session) {
      this.remember(session);
      this.absent.delete(sessionId);
    } else {
      this.cache.delete(sessionId);
      if (this.absent.size >= MAX_CACHED) this.absent.clear();
      this.absent.set(sessionId, Date.now());
    }
    return session;
  }

  /** The session as it is now: its record, or what its token says while it may still be used; else null. */
  async view(named: NamedSession, fresh = false): Promise<Session | null> {
    const session = await this.get(named.sessionId, fresh);
    return session ?? (this.fresh(named) ? this.unused(named) : null);
  }

  /**
   * A player (re)loads: read its session afresh, so its media playlists start where it paused. False when the
   * session is over (expired, or never used in time); true when Redis cannot tell.
   */
  async loading(named: NamedSession): Promise<boolean> {
    try {
      return (await this.view(named, true)) !== null;
    } catch {
      return true;
    }
  }

  /** A playlist request: which rendition the viewer plays, and from which node (never creates the record). */
  touch(named: NamedSession, rendition: string | null): void {
    const cached = this.cache.get(named.sessionId);
    if (cached && rendition) cached.session.rendition = rendition;
    void this.store.update(named.sessionId, { node: this.o.nodeId, ...(rendition ? { rendition } : {}) });
  }

  /** A segment request: the viewer is at least this far (for players that never report), in this rendition. */
  inferred(named: NamedSession, stream: StreamSnapshot, pdt: number, rendition: string): void {
    const cached = this.cache.get(named.sessionId);
    if (cached && cached.session.source !== "reported") Object.assign(cached.session, { pdt, position: positionOf(stream, pdt), source: "inferred" });
    void this.store.update(named.sessionId, { node: this.o.nodeId, rendition, inferred: { position: positionOf(stream, pdt), pdt } }, origin(named));
  }

  /** An explicit report (API or WebSocket); resolves once it is in Redis. */
  report(named: NamedSession, stream: Pick<StreamSnapshot, "createdAt"> | null, position: number, paused: boolean): Promise<void> {
    const pdt = stream ? pdtOf(stream, position) : null;
    const cached = this.cache.get(named.sessionId);
    if (cached) Object.assign(cached.session, { position, pdt, paused, source: "reported", updatedAt: Date.now() });
    this.absent.delete(named.sessionId);
    return this.store.update(named.sessionId, { node: this.o.nodeId, report: { position, pdt, paused } }, origin(named));
  }

  /**
   * The resume point as this node's copy of the session knows it without a read: null when the copy says
   * not paused, undefined when there is no fresh copy (resumeAt() reads it).
   */
  knownResumeAt(sessionId: string): number | null | undefined {
    const cached = this.cache.get(sessionId);
    if (!cached) {
      // a session that had no record when last read (a player that never reports) is not paused either
      const readAt = this.absent.get(sessionId);
      return readAt !== undefined && Date.now() - readAt < START_CACHE_MS ? null : undefined;
    }
    if (Date.now() - cached.at >= START_CACHE_MS) return undefined;
    return cached.session.paused && cached.session.pdt !== null ? cached.session.pdt : null;
  }

  /** Where a paused session resumes (program date-time, ms), as this node last read it; null when not paused. */
  async resumeAt(sessionId: string): Promise<number | null> {
    const session = await this.get(sessionId, false, START_CACHE_MS).catch(() => null);
    return session?.paused && session.pdt !== null ? session.pdt : null;
  }

  /**
   * EXT-X-START offset for a paused session's media playlist, if it has one. `resume` is the point the master
   * playlist's node (which read the session afresh) wrote into the media playlist URIs: the balancer may send
   * the media playlist request to another node, whose copy of the session can be from before the pause.
   */
  async startOffset(sessionId: string, stream: StreamSnapshot, rendition: string, resume: number | null = null): Promise<number | undefined> {
    const pdt = resume ?? (await this.resumeAt(sessionId));
    return pdt === null ? undefined : resumePoint(stream, rendition, pdt)?.offset;
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

const origin = (named: NamedSession): SessionOrigin => ({ streamId: named.streamId, issuedAt: named.issuedAt });
