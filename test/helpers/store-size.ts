// The fs segment store's size, as the soak tests measure it.
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** Bytes of every file under a directory (file sizes, without the file system's block rounding). */
export function directoryBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? directoryBytes(path) : statSync(path).size;
  }
  return total;
}
