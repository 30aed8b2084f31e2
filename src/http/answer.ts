// What a hot route (the viewers' HLS playlists and segments) answers, as data rather than writes on a
// ServerResponse, so both of the node's HTTP front ends send the same bytes: Node's http server for every
// request (`res.writeHead(status, headers)`), and the lean front (front.ts) for the simple GET and HEAD
// requests it answers itself (one serialized head per headers object).
import type { IncomingHttpHeaders } from "node:http";
import { HttpError } from "./errors.ts";

/** An answer: its status, one header object (precomputed per kind of answer, CORS included), its body. */
export interface Answer {
  status: number;
  headers: Readonly<Record<string, string | number>>;
  /** The body of a GET (its length is the Content-Length header); HEAD sends none of it. */
  body: Buffer | null;
}

/** The client of a request as delivery reads it: a few headers and the peer (IncomingMessage is one). */
export interface Client {
  headers: Pick<IncomingHttpHeaders, "accept-encoding" | "user-agent" | "range"> & { "x-forwarded-for"?: string | string[] | undefined };
  socket: { remoteAddress?: string | undefined };
}

/** A request to a hot route. */
export interface HotRequest {
  method: "GET" | "HEAD";
  path: string;
  params: string[];
  query: URLSearchParams;
  client: Client;
}

/** A value now, or once something was read: the hot routes answer from memory without a promise when they can. */
export type Soon<T> = T | Promise<T>;

export type HotHandler = (request: HotRequest) => Soon<Answer>;

/** What a handler's error answers (as sendJson writes it), with the route's CORS headers. */
export function errorAnswer(error: HttpError, cors: Readonly<Record<string, string>>): Answer {
  const body = Buffer.from(JSON.stringify({ error: error.code, message: error.message }));
  const headers = { ...cors, "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store", ...error.headers, "Content-Length": body.length };
  return { status: error.status, headers, body };
}

/** The 503 of a handler that failed for another reason than the request (Redis, the store). */
export const UNAVAILABLE = new HttpError(503, "UNAVAILABLE", "state unavailable, retry shortly", { "Retry-After": "1" });
