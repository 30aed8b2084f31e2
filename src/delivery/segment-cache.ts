// A node's memory cache of segment bytes, bounded in bytes (least recently used out first), so each segment
// crosses from Redis to a node once rather than once per viewer. Concurrent misses share one Redis read.

export class SegmentCache {
  private readonly entries = new Map<string, { bytes: Buffer; at: number }>();
  private readonly loading = new Map<string, Promise<Buffer | null>>();
  private size = 0;

  constructor(
    private readonly maxBytes: number,
    /** Entries older than this are read again: a stream id can be reused after its state expired. */
    private readonly maxAgeMs: number,
  ) {}

  get bytes(): number {
    return this.size;
  }

  /** The bytes when memory holds them (fresh), without waiting; undefined: get() must load them. */
  peek(key: string): Buffer | undefined {
    const hit = this.entries.get(key);
    if (!hit || Date.now() - hit.at >= this.maxAgeMs) return undefined;
    this.entries.delete(key);
    this.entries.set(key, hit);
    return hit.bytes;
  }

  async get(key: string, load: () => Promise<Buffer | null>, onMiss: () => void = () => undefined): Promise<Buffer | null> {
    const hit = this.peek(key);
    if (hit) return hit;
    const pending = this.loading.get(key);
    if (pending) return pending;
    onMiss();
    const promise = load()
      .then((bytes) => {
        if (bytes) this.put(key, bytes);
        return bytes;
      })
      .finally(() => this.loading.delete(key));
    this.loading.set(key, promise);
    return promise;
  }

  private put(key: string, bytes: Buffer): void {
    const old = this.entries.get(key);
    if (old) {
      this.size -= old.bytes.length;
      this.entries.delete(key);
    }
    if (bytes.length > this.maxBytes) return;
    this.entries.set(key, { bytes, at: Date.now() });
    this.size += bytes.length;
    for (const [oldest, entry] of this.entries) {
      if (this.size <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.size -= entry.bytes.length;
    }
  }

  clear(): void {
    this.entries.clear();
    this.size = 0;
  }
}
