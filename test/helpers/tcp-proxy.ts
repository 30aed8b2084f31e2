// A TCP proxy on loopback that the test can cut: frozen, it keeps every connection open (and accepts new
// ones) but forwards nothing either way, as a network partition does. Put between one node and Redis, it cuts
// that node off from Redis while the others still reach it.
import { connect, createServer, type Server, type Socket } from "node:net";
import { HOST } from "./stack.ts";

export interface TcpProxy {
  port: number;
  url: string;
  freeze(): void;
  thaw(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, scheme = "redis"): Promise<TcpProxy> {
  /** Bytes held while frozen, per direction, delivered in order on thaw (TCP retransmits after a partition). */
  const held = new Map<Socket, Buffer[]>();
  const pairs = new Set<[Socket, Socket]>();
  let frozen = false;
  const forward = (from: Socket, to: Socket): void => {
    held.set(to, []);
    from.on("data", (chunk: Buffer) => {
      if (frozen) held.get(to)?.push(chunk);
      else to.write(chunk);
    });
  };
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, HOST);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    forward(client, upstream);
    forward(upstream, client);
    const end = (): void => {
      pairs.delete(pair);
      held.delete(client);
      held.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    for (const s of pair) s.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: `${scheme}://${HOST}:${port}`,
    freeze() {
      frozen = true;
    },
    thaw() {
      frozen = false;
      for (const [socket, chunks] of held) for (const chunk of chunks.splice(0)) socket.write(chunk);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const pair of pairs) for (const socket of pair) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
