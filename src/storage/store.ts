// The segment store: where the cluster keeps segment bytes, one object per segment, behind one small interface
// with two backends (fs.ts: a shared directory; s3.ts: any S3-compatible store). Keys come from keys.ts only.
import { StorageError } from "../core/errors.ts";

/** Bytes `start` to `end` of an object, both included, as in an HTTP Range header. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface StoredObject {
  key: string;
  /** Bytes. */
  size: number;
}

export interface SegmentStore {
  /**
   * Stores the bytes under the key, replacing what it held. Atomic: a reader gets the old bytes or the new
   * ones, never part of either.
   */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /**
   * The object's bytes, or the range of them (an end past the object is cut at its last byte), or null when
   * there is no such object. A range that starts past the end throws STORAGE_RANGE.
   */
  get(key: string, range?: ByteRange): Promise<Buffer | null>;
  /** Deletes these objects (those missing are no error): segments that left a playlist. */
  delete(keys: string[]): Promise<void>;
  /** Deletes every object under the prefix (one stream, broadcast or rendition: storageKeys makes it). */
  deletePrefix(prefix: string): Promise<void>;
  /** The objects under the prefix, a page at a time, so a large store is never held in memory at once. */
  list(prefix: string): AsyncIterable<StoredObject>;
  /** Frees the backend's sockets; safe twice; any later call throws STORAGE_UNAVAILABLE. */
  close(): Promise<void>;
}

/** The range, or STORAGE_REFUSED when it is no range at all (negative, reversed, not integers). */
export function checkRange(range: ByteRange | undefined): ByteRange | undefined {
  if (range === undefined) return undefined;
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new StorageError("STORAGE_REFUSED", `storage: bytes ${start}-${end} is not a byte range`);
  }
  return range;
}

export function rangeNotSatisfiable(key: string, range: ByteRange): StorageError {
  return new StorageError("STORAGE_RANGE", `storage: bytes ${range.start}-${range.end} start past the end of ${key}`);
}

export function closedError(): StorageError {
  return new StorageError("STORAGE_UNAVAILABLE", "storage: the segment store is closed");
}
