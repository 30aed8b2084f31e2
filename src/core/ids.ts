/** Stream ids as the design fixes them: the only ids from which keys, paths and processes are built. */
export const STREAM_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function isStreamId(value: unknown): value is string {
  return typeof value === "string" && STREAM_ID.test(value);
}
