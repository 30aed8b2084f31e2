// Counts the viewers a node serves: distinct clients that fetched a playlist of a stream in the last 30 s.
// A client is its session token when it has one, else its address (behind HAProxy, X-Forwarded-For) and
// user agent. Bounded: entries older than the window are dropped on each count.
import type { IncomingMessage } from "node:http";

const WINDOW_MS = 30000;

export class ViewerTracker {
  private readonly streams = new Map<string, Map<string, number>>();

  seen(streamId: string, req: IncomingMessage, session: string | null): void {
    const forwarded = req.headers["x-forwarded-for"];
    const address = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(",")[0]?.trim() ?? req.socket.remoteAddress ?? "";
    const key = session ?? `${address}|${req.headers["user-agent"] ?? ""}`;
    let viewers = this.streams.get(streamId);
    if (!viewers) this.streams.set(streamId, (viewers = new Map()));
    viewers.set(key, Date.now());
  }

  counts(): Record<string, number> {
    const cutoff = Date.now() - WINDOW_MS;
    const out: Record<string, number> = {};
    for (const [streamId, viewers] of this.streams) {
      for (const [key, at] of viewers) if (at < cutoff) viewers.delete(key);
      if (viewers.size === 0) this.streams.delete(streamId);
      else out[streamId] = viewers.size;
    }
    return out;
  }
}
