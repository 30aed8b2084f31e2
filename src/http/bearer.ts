// Bearer-token checks for the operators' endpoints (the admin API, and /api/nodes, /api/streams, /metrics):
// compared in constant time.
import { createHash, timingSafeEqual } from "node:crypto";
import { HttpError } from "./errors.ts";

const digest = (text: string): Buffer => createHash("sha256").update(text).digest();

/** Throws 401 without `Authorization: Bearer <token>`, 403 with another token. */
export function checkBearer(header: string | undefined, token: string): void {
  const match = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  if (!match) throw new HttpError(401, "NO_ADMIN_TOKEN", "this needs Authorization: Bearer <admin token>", { "WWW-Authenticate": "Bearer" });
  // hashing first gives equal lengths, so the comparison takes the same time whatever was sent
  if (!timingSafeEqual(digest(match[1]!), digest(token))) throw new HttpError(403, "BAD_ADMIN_TOKEN", "wrong admin token");
}
