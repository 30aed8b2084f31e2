// The address of the client behind a request, as limits and counts use it. A request from a trusted proxy (the
// balancer, `http.trustedProxies`) is the client the proxy names in X-Forwarded-For: HAProxy sets that header
// to the address it saw, replacing whatever the client sent, so its first value is the one to believe. From
// anyone else the header is the client's own word and is ignored.
import type { Client } from "./answer.ts";
import { isIP, type Socket } from "node:net";

/** `::ffff:127.0.0.1` (an IPv4 peer on a dual-stack socket) is 127.0.0.1. */
function plain(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

export class ClientAddresses {
  private readonly trustAll: boolean;
  private readonly trusted: Set<string>;

  constructor(trustedProxies: readonly string[]) {
    this.trustAll = trustedProxies.includes("*");
    this.trusted = new Set(trustedProxies.map(plain));
  }

  /** A socket's peer address, or null when the peer is a trusted proxy (its sockets carry many clients). */
  peer(socket: Socket): string | null {
    const peer = plain(socket.remoteAddress ?? "");
    return this.trustAll || this.trusted.has(peer) ? null : peer;
  }

  of(req: Client): string {
    const peer = plain(req.socket.remoteAddress ?? "");
    if (!this.trustAll && !this.trusted.has(peer)) return peer;
    const header = req.headers["x-forwarded-for"];
    const first = (Array.isArray(header) ? header[0] : header)?.split(",")[0]?.trim();
    // only an address is an address: anything else (a header a client made up) falls back to the peer
    return first && isIP(first) ? plain(first) : peer;
  }
}
