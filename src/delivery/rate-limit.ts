// A token bucket per client address: `perMinute` in a burst, refilled continuously at `perMinute` a minute.
// An IPv6 client is its /64 (one subscriber's network), so walking through its own addresses buys it nothing.
// Memory is bounded however many addresses appear: past `maxAddresses`, buckets that refilled (the same as
// no bucket) are dropped, then the least recently used ones.
import { clientKey } from "../core/address.ts";

/** Addresses tracked at most: about 100 bytes each. */
export const MAX_ADDRESSES = 20000;

interface Bucket {
  tokens: number;
  at: number;
}

export class AddressLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;

  constructor(private readonly perMinute: number, private readonly maxAddresses = MAX_ADDRESSES) {
    this.perMs = perMinute / 60000;
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Takes one from the address's bucket: 0 when it had one, else the seconds until it will. */
  take(address: string, now = Date.now()): number {
    const key = clientKey(address);
    const bucket = this.buckets.get(key);
    const tokens = bucket ? Math.min(this.perMinute, bucket.tokens + (now - bucket.at) * this.perMs) : this.perMinute;
    // re-inserted, so the map's order is least recently used first
    this.buckets.delete(key);
    if (this.buckets.size >= this.maxAddresses) this.evict(now);
    if (tokens < 1) {
      this.buckets.set(key, { tokens, at: now });
      return Math.max(1, Math.ceil((1 - tokens) / this.perMs / 1000));
    }
    this.buckets.set(key, { tokens: tokens - 1, at: now });
    return 0;
  }

  /** Frees an eighth of the room at least, so a full map costs one sweep per many new addresses. */
  private evict(now: number): void {
    for (const [key, b] of this.buckets) if (b.tokens + (now - b.at) * this.perMs >= this.perMinute) this.buckets.delete(key);
    const keep = Math.floor((this.maxAddresses * 7) / 8);
    for (const key of this.buckets.keys()) {
      if (this.buckets.size <= keep) break;
      this.buckets.delete(key);
    }
  }
}
