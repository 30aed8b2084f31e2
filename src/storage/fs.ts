// The fs backend: one directory, shared by every node of a one-machine cluster. A write goes to a temporary
// name in the object's own directory and is renamed over the key (atomic on POSIX, within one file system), so
// a reader opens the old file or the new one; an open file keeps its bytes even if it is replaced or deleted.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { mkdir, open, opendir, rename, rm, stat, unlink, writeFile } from "node:fs/promises";
import { dirname, relative, resolve, sep } from "node:path";
import { StorageError, errorMessage } from "../core/errors.ts";
import { checkKey, checkPrefix, isStorageKey } from "./keys.ts";
import { checkRange, closedError, rangeNotSatisfiable, type ByteRange, type SegmentStore, type StoredObject } from "./store.ts";

function failed(what: string, error: unknown): StorageError {
  const code = (error as NodeJS.ErrnoException).code;
  return new StorageError(code === "EACCES" || code === "EPERM" ? "STORAGE_DENIED" : "STORAGE_FAILED", `storage: ${what}: ${errorMessage(error)}`);
}

const isMissing = (error: unknown): boolean => (error as NodeJS.ErrnoException).code === "ENOENT";

export class FsSegmentStore implements SegmentStore {
  private readonly root: string;
  private closed = false;

  constructor(path: string) {
    this.root = resolve(path);
  }

  /** The file of a checked key or prefix: joined under the root, and proved to stay there. */
  private pathOf(checked: string): string {
    const path = resolve(this.root, checked);
    if (!path.startsWith(this.root + sep)) throw new StorageError("STORAGE_REFUSED", `storage: ${JSON.stringify(checked)} leaves the store`);
    return path;
  }

  private open(): void {
    if (this.closed) throw closedError();
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    this.open();
    const path = this.pathOf(checkKey(key));
    // the temporary name matches no key, so list never shows it; the same directory keeps rename atomic
    const temp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
    try {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(temp, bytes, { flush: true });
      await rename(temp, path);
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw failed(`writing ${key}`, error);
    }
  }

  async get(key: string, range?: ByteRange): Promise<Buffer | null> {
    this.open();
    const path = this.pathOf(checkKey(key));
    checkRange(range);
    let file;
    try {
      // the store's files are the ones it wrote: a symbolic link in their place is never followed
      file = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (error) {
      if (isMissing(error)) return null;
      if ((error as NodeJS.ErrnoException).code === "ELOOP") throw new StorageError("STORAGE_REFUSED", `storage: ${key} is a symbolic link`);
      throw failed(`reading ${key}`, error);
    }
    try {
      const { size } = await file.stat();
      const start = range?.start ?? 0;
      if (range && start >= size) throw rangeNotSatisfiable(key, range);
      const end = Math.min(range?.end ?? size - 1, size - 1);
      const bytes = Buffer.alloc(end - start + 1);
      let done = 0;
      while (done < bytes.length) {
        const { bytesRead } = await file.read(bytes, done, bytes.length - done, start + done);
        // a file never shrinks under its open descriptor here (writers replace it), so 0 means it is corrupt
        if (bytesRead === 0) throw new StorageError("STORAGE_FAILED", `storage: ${key} ended at byte ${start + done} of ${size}`);
        done += bytesRead;
      }
      return bytes;
    } catch (error) {
      throw error instanceof StorageError ? error : failed(`reading ${key}`, error);
    } finally {
      await file.close();
    }
  }

  async delete(keys: string[]): Promise<void> {
    this.open();
    const paths = keys.map((key) => this.pathOf(checkKey(key)));
    for (const [i, path] of paths.entries()) {
      try {
        await rm(path, { force: true });
      } catch (error) {
        throw failed(`deleting ${keys[i]}`, error);
      }
    }
  }

  async deletePrefix(prefix: string): Promise<void> {
    this.open();
    const path = this.pathOf(checkPrefix(prefix, "delete"));
    try {
      await rm(path, { recursive: true, force: true });
    } catch (error) {
      throw failed(`deleting ${prefix}`, error);
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    this.open();
    const top = this.pathOf(checkPrefix(prefix, "list"));
    yield* this.walk(top);
  }

  private async *walk(dir: string): AsyncGenerator<StoredObject> {
    let entries;
    try {
      entries = await opendir(dir);
    } catch (error) {
      if (isMissing(error)) return;
      throw failed(`listing ${relative(this.root, dir)}`, error);
    }
    for await (const entry of entries) {
      const path = resolve(dir, entry.name);
      // symbolic links are neither followed nor listed (a Dirent describes the link itself)
      if (entry.isDirectory()) {
        yield* this.walk(path);
        continue;
      }
      const key = relative(this.root, path).split(sep).join("/");
      if (!entry.isFile() || !isStorageKey(key)) continue;
      try {
        yield { key, size: (await stat(path)).size };
      } catch (error) {
        // deleted between the listing and the stat: it is gone, which is what a list taken a moment later says
        if (!isMissing(error)) throw failed(`listing ${key}`, error);
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
