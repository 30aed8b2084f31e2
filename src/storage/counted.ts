// A segment store that reports each failed call (operation and StorageError code) before passing the error on,
// so an operator sees a failing store in the metrics rather than only in viewers' 503s. STORAGE_RANGE is a
// viewer's range past an object's end, not the store failing, and is not reported.
import { StorageError, type StorageCode } from "../core/errors.ts";
import type { ByteRange, SegmentStore, StoredObject } from "./store.ts";

export type StoreOp = "put" | "get" | "delete" | "delete_prefix" | "list" | "close";
/** The codes a failure is reported with: a StorageError's code, or OTHER for anything else (a bug). */
export type StoreErrorCode = StorageCode | "OTHER";

const codeOf = (error: unknown): StoreErrorCode => (error instanceof StorageError ? error.code : "OTHER");

export function countStoreErrors(store: SegmentStore, onError: (op: StoreOp, code: StoreErrorCode) => void): SegmentStore {
  async function counted<T>(op: StoreOp, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      const code = codeOf(error);
      if (code !== "STORAGE_RANGE") onError(op, code);
      throw error;
    }
  }
  return {
    put: (key: string, bytes: Uint8Array) => counted("put", () => store.put(key, bytes)),
    get: (key: string, range?: ByteRange) => counted("get", () => store.get(key, range)),
    delete: (keys: string[]) => counted("delete", () => store.delete(keys)),
    deletePrefix: (prefix: string) => counted("delete_prefix", () => store.deletePrefix(prefix)),
    list: (prefix: string): AsyncIterable<StoredObject> => ({
      async *[Symbol.asyncIterator]() {
        try {
          yield* store.list(prefix);
        } catch (error) {
          onError("list", codeOf(error));
          throw error;
        }
      },
    }),
    close: () => counted("close", () => store.close()),
  };
}
