// Bearer-token checks for the operators' endpoints (the admin API, and /api/nodes, /api/streams, /metrics):
// compared in constant time.
import { createHash, timingSafeEqual } from "node:crypto";
import { HttpError } from "./errors.ts";

const digest = (text: string): Buffer => createHash("sha256").update(text).digest();

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(header: string | undefined): string | null {
  return (header ? /^Bearer\s+(\S+)$/i.exec(header)?.[1] : undefined) ?? null;
}

/** Throws 401 without `Authorization: Bearer <token>`, 403 with another token. */
export function checkBearer(header: string | undefined, token: string): void {
  const given = bearerToken(header);
  if (given === null) throw new HttpError(401, "NO_ADMIN_TOKEN", "this needs Authorization: Bearer <admin token>", { "WWW-Authenticate": "Bearer" });
  // hashing first gives equal lengths, so the comparison takes the same time whatever was sent
  if (!timingSafeEqual(digest(given), digest(token))) throw new HttpError(403, "BAD_ADMIN_TOKEN", "wrong admin token");
}
