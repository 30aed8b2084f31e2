// The schema of what baton keeps in Redis (timeline entries, session records, node records, stream meta): one
// version for the cluster's data, in `baton:schema`, written by the first node that finds none. Two releases
// share one Redis during a rolling update; a release whose SCHEMA_VERSION is older than the cluster's cannot
// read what newer nodes write, so it stays unready and writes nothing rather than corrupt it. A release that
// changes the layout incompatibly raises SCHEMA_VERSION (and migrates, or reads both, before it does).
//
// Each record carries the version it was written in as well (`v` in a timeline entry and a session hash,
// `schema` in a node record), so a record is never read by a release that does not know its layout: a node
// meeting one answers that request 503 (the balancer retries it on another node) and leaves the record as it
// is. A record without `v` was written before records carried it: schema 1.
import { BatonError } from "../core/errors.ts";
import type { RedisClient } from "./client.ts";
import type { Keys } from "./keys.ts";

/** The data layout this code reads and writes. */
export const SCHEMA_VERSION = 1;

/** Why this node may not use the cluster's data (null: it may), from the cluster's schema version. */
export function schemaRefusal(cluster: string | null, own = SCHEMA_VERSION): string | null {
  if (cluster === null) return null;
  const version = /^\d{1,6}$/.test(cluster) ? Number(cluster) : NaN;
  if (Number.isNaN(version)) return `the cluster's schema version ${JSON.stringify(cluster.slice(0, 20))} is unreadable`;
  if (version > own) return `the cluster's data is schema ${version}; this release reads schema ${own} at most (roll back, or update this node)`;
  return null;
}

/** Claims the schema for this release when the cluster has none, and says whether this node may use it. */
export async function checkSchema(redis: RedisClient, keys: Keys, own = SCHEMA_VERSION): Promise<string | null> {
  await redis.set(keys.schema(), String(own), "NX");
  return schemaRefusal(await redis.get(keys.schema()), own);
}

/** A record that this release does not read: written in a newer schema, or with a version it cannot parse. */
export class RecordSchemaError extends BatonError {
  constructor(what: string, version: string, own: number) {
    super("RECORD_SCHEMA", `${what} of schema ${JSON.stringify(version.slice(0, 20))}: this release reads schema ${own} at most`);
  }
}

/** A record's version as text: a number or its text as it is, anything else as JSON (which no version matches). */
const versionText = (v: unknown): string => (typeof v === "number" || typeof v === "string" ? String(v) : (JSON.stringify(v) ?? ""));

/** Whether this release reads a record of schema version `v` (a number, its text, or absent for schema 1). */
export function readableSchema(v: unknown, own = SCHEMA_VERSION): boolean {
  return v === undefined || (/^[1-9]\d{0,5}$/.test(versionText(v)) && Number(v) <= own);
}

/** Checks a record's schema version before it is read (see readableSchema): throws RecordSchemaError. */
export function checkRecord(what: string, v: unknown, own = SCHEMA_VERSION): void {
  if (!readableSchema(v, own)) throw new RecordSchemaError(what, versionText(v), own);
}
