// How many RTMP connections a node holds, in all and per client address, and the log of the ones it closes.
// A flood is thousands of refusals a second: the log says each, up to a few a second, then how many more.
import type { Logger } from "../core/log.ts";
import { clientKey } from "../core/address.ts";

/** Why an RTMP connection was refused or closed; the `reason` label of baton_rtmp_connections_refused_total. */
export type RtmpCloseReason =
  | "too_many_connections"
  | "too_many_connections_per_address"
  | "proxy_header_missing"
  | "bad_proxy_header"
  | "untrusted_proxy"
  | "tls_error"
  | "handshake_timeout"
  | "bad_handshake"
  | "message_too_large"
  | "too_many_chunk_streams"
  | "bad_chunk"
  | "bad_chunk_size"
  | "too_much_buffered"
  | "bad_amf"
  | "too_many_commands"
  | "slow_reader"
  | "malformed";

/** One connection's place in the counts; release() is safe to call twice. */
export interface Slot {
  /** Counts the connection for its client's address; false when that address has its share already. */
  bind(address: string): boolean;
  release(): void;
}

export class ConnectionCounts {
  private total = 0;
  private readonly byAddress = new Map<string, number>();

  /** `shared(address)`: an address that stands for many clients (a balancer's), counted only in the total. */
  constructor(
    private readonly max: number,
    private readonly maxPerAddress: number,
    private readonly shared: (address: string) => boolean,
  ) {}

  get open(): number {
    return this.total;
  }

  /** A slot in the total, or null when the node holds `max` connections. */
  take(): Slot | null {
    if (this.total >= this.max) return null;
    this.total++;
    let address: string | null = null;
    let released = false;
    return {
      bind: (client) => {
        if (released || address !== null || this.shared(client)) return true;
        // an IPv6 client is its /64: walking through its own addresses buys it no more connections
        const key = clientKey(client);
        const count = this.byAddress.get(key) ?? 0;
        if (count >= this.maxPerAddress) return false;
        this.byAddress.set(key, count + 1);
        address = key;
        return true;
      },
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        if (address === null) return;
        const left = (this.byAddress.get(address) ?? 1) - 1;
        if (left > 0) this.byAddress.set(address, left);
        else this.byAddress.delete(address);
      },
    };
  }
}

/** Lines logged per second and reason before the rest of that second's refusals are only counted. */
const LINES_PER_SECOND = 10;

/**
 * Refusals logged at warn with the remote and the reason: up to LINES_PER_SECOND a second for each reason (a
 * flood of one kind hides no other), the rest summed in one line a second later.
 */
export class RefusalLog {
  private readonly windows = new Map<RtmpCloseReason, { start: number; lines: number }>();
  private readonly suppressed = new Map<RtmpCloseReason, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly log: Logger) {}

  refused(reason: RtmpCloseReason, remote: string, detail: string): void {
    const now = Date.now();
    let window = this.windows.get(reason);
    if (!window || now - window.start >= 1000) {
      window = { start: now, lines: 0 };
      this.windows.set(reason, window);
    }
    if (window.lines < LINES_PER_SECOND) {
      window.lines++;
      this.log.warn("RTMP connection refused", { remote, reason, detail });
      return;
    }
    this.suppressed.set(reason, (this.suppressed.get(reason) ?? 0) + 1);
    this.timer ??= setTimeout(() => this.summarize(), 1000).unref();
  }

  private summarize(): void {
    this.timer = null;
    const counts = Object.fromEntries(this.suppressed);
    const total = [...this.suppressed.values()].reduce((a, b) => a + b, 0);
    this.suppressed.clear();
    if (total > 0) this.log.warn("RTMP connections refused without a line each", { count: total, ...counts });
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.summarize();
  }
}
