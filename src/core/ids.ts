// Every id baton builds keys, paths and processes from, each pattern written once: as text (for route
// patterns, which capture them), as an anchored RegExp, and as a type guard. Nothing is built from an id that
// did not pass its guard.

/** A stream id, as the design fixes it: `rtmp://HOST/live/{streamId}`. */
export const STREAM_ID_PATTERN = "[A-Za-z0-9_-]{1,64}";
/** A rendition's name in URLs (`/live/{stream}/{rendition}/index.m3u8`), from the ladder config. */
export const RENDITION_PATTERN = "[a-z0-9_-]{1,32}";
/** A viewer session's id: 128 bits, hex (its issue time and randomness; see delivery/session-token.ts). */
export const SESSION_ID_PATTERN = "[0-9a-f]{32}";
/** A node's id: what HAProxy, the registry and the admin API name it by. */
export const NODE_ID_PATTERN = "[a-z0-9][a-z0-9-]{0,62}";
/** A claim's id: 48 random bits, hex (see state/claim-id.ts). */
export const CLAIM_ID_PATTERN = "[0-9a-f]{12}";
/** A broadcast's id in the segment store: the claim id that started it, or an id of its own (up to 128 bits). */
export const BROADCAST_ID_PATTERN = "[0-9a-f]{12,32}";

const whole = (pattern: string): RegExp => new RegExp(`^(?:${pattern})$`);

export const STREAM_ID = whole(STREAM_ID_PATTERN);
export const RENDITION = whole(RENDITION_PATTERN);
export const SESSION_ID = whole(SESSION_ID_PATTERN);
export const NODE_ID = whole(NODE_ID_PATTERN);
export const CLAIM_ID = whole(CLAIM_ID_PATTERN);
export const BROADCAST_ID = whole(BROADCAST_ID_PATTERN);

const guard = (pattern: RegExp) => (value: unknown): value is string => typeof value === "string" && pattern.test(value);

export const isStreamId = guard(STREAM_ID);
export const isRendition = guard(RENDITION);
export const isSessionId = guard(SESSION_ID);
export const isNodeId = guard(NODE_ID);
export const isClaimId = guard(CLAIM_ID);
export const isBroadcastId = guard(BROADCAST_ID);
