// baton's named errors. What crosses a boundary (HTTP answer, log line, metric label) carries the stable code.

export class BatonError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A config value that baton refuses; the process exits before it opens a port. */
export class ConfigError extends BatonError {
  constructor(key: string, value: string, origin: string, expected: string) {
    super(
      "CONFIG_INVALID",
      expected === "no such key"
        ? `config: unknown key ${key} (from ${origin})`
        : `config: ${key} = ${value} (from ${origin}): expected ${expected}`,
    );
  }
}

/** Reasons a publish is refused; each is logged and counted under this code. */
export type RefusalReason =
  | "bad_stream_id"
  | "bad_app"
  | "missing_token"
  | "bad_token"
  | "expired_token"
  | "already_live"
  | "draining"
  | "state_unavailable"
  | "revoked"
  | "play_not_supported"
  | "at_capacity"
  | "cluster_full"
  | "updating"

  // redundant ingest (src/stream/standby.ts): an unknown ?role=, and a backup sent to its primary's node
  | "bad_role"
  | "other_input_here"
  // this node's config cannot continue the stream's live timeline (another hls.segmentDuration: a rollout's bad config)
  | "config_conflict";

export class AdmissionError extends BatonError {
  readonly reason: RefusalReason;
  constructor(reason: RefusalReason, message: string) {
    super(`PUBLISH_${reason.toUpperCase()}`, message);
    this.reason = reason;
  }
}

/** The stream's publish lease is held: by `node`, which may be alive (a duplicate) or dead (its lease expires). */
export class AlreadyLiveError extends AdmissionError {
  constructor(readonly node: string) {
    super("already_live", `the stream is live on ${node}`);
  }
}

/** A timeline write refused by Redis: the writer lost the stream, wrote out of order, or the stream ended. */
export class FencedError extends BatonError {
  constructor(
    code: "STALE_EPOCH" | "SEQ_MISMATCH" | "STREAM_ENDED" | "NO_STREAM",
    message: string,
    /** With SEQ_MISMATCH: the sequence number the timeline expects next. */
    readonly expectedSeq: number | null = null,
  ) {
    super(code, message);
  }
}

/** A draining owner is finishing the stream's last segment; a claim may retry in a moment. */
export class HandoffPendingError extends BatonError {
  constructor(message: string) {
    super("HANDOFF_PENDING", message);
  }
}

/**
 * A segment store call that failed. STORAGE_REFUSED: the call itself is wrong (a key that is not a storage key,
 * a bad range), nothing was sent; STORAGE_DENIED: the store refused the credentials or the permission;
 * STORAGE_RANGE: the range starts past the object's end; STORAGE_UNAVAILABLE: the store did not answer in time
 * or at all; STORAGE_FAILED: the store answered with another error (no such bucket, a full disk).
 */
export type StorageCode = "STORAGE_REFUSED" | "STORAGE_DENIED" | "STORAGE_RANGE" | "STORAGE_UNAVAILABLE" | "STORAGE_FAILED";

export class StorageError extends BatonError {
  declare readonly code: StorageCode;
  constructor(code: StorageCode, message: string) {
    super(code, message);
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
