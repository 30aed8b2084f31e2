// Request bodies: JSON of a bounded size, read only by the routes that take one.
import type { IncomingMessage } from "node:http";
import { HttpError } from "./errors.ts";

const MAX_BODY = 4096;

/** The body as JSON: 413 past MAX_BODY bytes (nothing more is read), 400 when it is not JSON. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, "TOO_LARGE", `a body of at most ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
  } catch {
    throw new HttpError(400, "BAD_JSON", "the body is not JSON");
  }
}
