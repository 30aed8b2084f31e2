// Request bodies: JSON of a bounded size, read only by the routes that take one.
import type { IncomingMessage } from "node:http";
import { HttpError } from "./errors.ts";

const MAX_BODY = 4096;

/** The body's bytes: 413 past `maxBytes` (nothing more is read). */
export async function readBody(req: IncomingMessage, maxBytes = MAX_BODY): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new HttpError(413, "TOO_LARGE", `a body of at most ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Bytes as JSON: 400 when they are not JSON. */
export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8")) as unknown;
  } catch {
    throw new HttpError(400, "BAD_JSON", "the body is not JSON");
  }
}

/** The body as JSON: 413 past `maxBytes` bytes (nothing more is read), 400 when it is not JSON. */
export async function readJson(req: IncomingMessage, maxBytes = MAX_BODY): Promise<unknown> {
  return parseJson(await readBody(req, maxBytes));
}
