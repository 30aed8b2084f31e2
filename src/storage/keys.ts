// The segment store's object keys, built by one function from validated ids, and the checks every backend runs
// on a key or prefix before it touches a file or sends a request: a key that does not match is refused, so no
// path or object name is ever made from what a request carried.
import { StorageError } from "../core/errors.ts";
import {
  BROADCAST_ID_PATTERN, CLAIM_ID_PATTERN, RENDITION_PATTERN, STREAM_ID_PATTERN,
  isBroadcastId, isClaimId, isRendition, isStreamId,
} from "../core/ids.ts";

/** A segment's sequence number: what the timeline numbers it by (at most 2^53 - 1, no leading zero). */
const SEQ_PATTERN = "0|[1-9][0-9]{0,15}";

// a segment (`{rendition}/{seq}.{claim}.ts`), a timeline page (`pages/{firstSeq}.{claim}.json`) or an ended
// broadcast's manifest (`manifest.json`): the extensions differ, so a rendition named "pages" cannot collide
const KEY = new RegExp(
  `^streams/(?:${STREAM_ID_PATTERN})/(?:${BROADCAST_ID_PATTERN})/` +
    `(?:(?:${RENDITION_PATTERN})/(?:${SEQ_PATTERN})\\.(?:${CLAIM_ID_PATTERN})\\.ts|pages/(?:${SEQ_PATTERN})\\.(?:${CLAIM_ID_PATTERN})\\.json|manifest\\.json)$`,
);
// a prefix names a whole subtree (one stream, one broadcast, one rendition) and ends in "/", so
// `streams/abc/` never takes `streams/abcd/` with it; "streams/" (everything) is for list only
const PREFIX = new RegExp(`^streams/(?:(?:${STREAM_ID_PATTERN})/(?:(?:${BROADCAST_ID_PATTERN})/(?:(?:${RENDITION_PATTERN})/)?)?)?$`);

export const isStorageKey = (key: unknown): key is string => typeof key === "string" && KEY.test(key);
export const isStoragePrefix = (prefix: unknown): prefix is string => typeof prefix === "string" && PREFIX.test(prefix);

/** The key, or a STORAGE_REFUSED error naming it; what every backend calls first. */
export function checkKey(key: string): string {
  if (!isStorageKey(key)) throw new StorageError("STORAGE_REFUSED", `storage: ${JSON.stringify(key)} is not a segment key`);
  return key;
}

/** The prefix, or STORAGE_REFUSED; `deletePrefix` also refuses the whole store ("streams/"). */
export function checkPrefix(prefix: string, what: "list" | "delete"): string {
  if (!isStoragePrefix(prefix) || (what === "delete" && prefix === storageKeys.all())) {
    throw new StorageError("STORAGE_REFUSED", `storage: ${JSON.stringify(prefix)} is not a prefix a store may ${what}`);
  }
  return prefix;
}

function need(ok: boolean, what: string, value: unknown): void {
  if (!ok) throw new StorageError("STORAGE_REFUSED", `storage: ${what} ${JSON.stringify(value)} is not valid`);
}

/** The only way a storage key or prefix is made. Each throws STORAGE_REFUSED on an id that fails its pattern. */
export const storageKeys = {
  /** Every object of the store (for measuring it). */
  all: (): string => "streams/",
  stream(streamId: string): string {
    need(isStreamId(streamId), "stream id", streamId);
    return `streams/${streamId}/`;
  },
  /** Every object of one broadcast: what expiry deletes. */
  broadcast(streamId: string, broadcastId: string): string {
    need(isBroadcastId(broadcastId), "broadcast id", broadcastId);
    return `${storageKeys.stream(streamId)}${broadcastId}/`;
  },
  rendition(streamId: string, broadcastId: string, rendition: string): string {
    need(isRendition(rendition), "rendition", rendition);
    return `${storageKeys.broadcast(streamId, broadcastId)}${rendition}/`;
  },
  /** One segment, named by the claim that wrote it, so a sequence restarted by a new claim never reuses a key. */
  segment(streamId: string, broadcastId: string, rendition: string, seq: number, claimId: string): string {
    need(Number.isSafeInteger(seq) && seq >= 0, "sequence number", seq);
    need(isClaimId(claimId), "claim id", claimId);
    return `${storageKeys.rendition(streamId, broadcastId, rendition)}${seq}.${claimId}.ts`;
  },
  /**
   * One timeline page (an immutable JSON array of entries that left Redis), named by its first entry's
   * sequence number and claim, so every writer that archives the same entries writes the same object.
   */
  page(streamId: string, broadcastId: string, firstSeq: number, claimId: string): string {
    need(Number.isSafeInteger(firstSeq) && firstSeq >= 0, "sequence number", firstSeq);
    need(isClaimId(claimId), "claim id", claimId);
    return `${storageKeys.pages(streamId, broadcastId)}${firstSeq}.${claimId}.json`;
  },
  /** Every timeline page of one broadcast (what its manifest lists when it ends). */
  pages: (streamId: string, broadcastId: string): string => `${storageKeys.broadcast(streamId, broadcastId)}pages/`,
  /** An ended broadcast's manifest: its ladder and its pages, written once (state/broadcasts.ts). */
  manifest: (streamId: string, broadcastId: string): string => `${storageKeys.broadcast(streamId, broadcastId)}manifest.json`,
};
