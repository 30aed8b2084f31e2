// Starting a listener, the same way for every port a node opens (HTTP, RTMP, RTMPS, the agent): a port
// that is taken or cannot be bound is an error that names the port and the config key that sets it.
import type { Server } from "node:net";

export function listen(server: Server, o: { port: number; bind: string; what: string; key: string }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const failed = (error: NodeJS.ErrnoException): void =>
      reject(
        new Error(
          error.code === "EADDRINUSE"
            ? `${o.what} port ${o.bind}:${o.port} is already in use (${o.key})`
            : `${o.what} listener on ${o.bind}:${o.port} failed: ${error.message}`,
        ),
      );
    server.once("error", failed);
    server.listen(o.port, o.bind, () => {
      server.off("error", failed);
      resolve();
    });
  });
}
