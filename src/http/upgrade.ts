// Refusing a WebSocket upgrade (the viewer channel's and the server's own refusals) without leaving the socket
// to chance.
import type { Duplex } from "node:stream";

/** How long a refused upgrade's socket may take to read the answer before it is destroyed. */
const REFUSED_LINGER_MS = 1000;

/**
 * Answers a refused upgrade and closes its socket. The HTTP server stops watching a socket once it is
 * upgraded, so this one needs its own error listener (a client that resets it would otherwise raise an
 * unhandled 'error' and end the process) and its own deadline (a client that never reads is not kept).
 */
export function rejectUpgrade(socket: Duplex, status: number, text: string): void {
  socket.on("error", () => undefined);
  if (socket.destroyed) return;
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  const timer = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));
}
