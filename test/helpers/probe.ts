// Looking at a node from outside while it is attacked: its Prometheus metrics, its admin status, and raw
// connections that send bytes and report whether (and why) the node closed them.
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { openSocket, RtmpTestClient, type OpenOptions } from "./rtmp-client.ts";
import { ADMIN, get, waitFor, type TestNode } from "./stack.ts";

/** A sample's value from /metrics: the first series of `name` whose labels include every `labels` pair. */
export async function metric(node: TestNode, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const response = await get(node.http("/metrics"), ADMIN);
  assert.equal(response.status, 200);
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = response.text.split("\n").find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && wanted.every((w) => l.includes(w)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** baton_rtmp_connections_refused_total for one reason (0 before the first). */
export async function refused(node: TestNode, reason: string): Promise<number> {
  return (await metric(node, "baton_rtmp_connections_refused_total", { reason })) ?? 0;
}

export interface NodeStatus {
  node: string;
  startedAt: number;
  rtmp: { connections: number };
}

export async function adminStatus(node: TestNode): Promise<NodeStatus> {
  const response = await fetch(node.http("/admin/status"), { headers: ADMIN, signal: AbortSignal.timeout(10000) });
  assert.equal(response.status, 200);
  return (await response.json()) as NodeStatus;
}

/** RSS and V8 heap in use, from the node's default process metrics. */
export async function memory(node: TestNode): Promise<{ rss: number; heap: number }> {
  const rss = await metric(node, "process_resident_memory_bytes");
  const heap = await metric(node, "nodejs_heap_size_used_bytes");
  assert.ok(rss !== undefined && heap !== undefined, "no process metrics");
  return { rss, heap };
}

/**
 * Sends `bytes` on a fresh connection and waits up to `waitMs` for the node to close it; true when it did. The
 * socket is destroyed either way.
 */
export async function sendAndWatch(port: number, bytes: Buffer, waitMs: number, options: OpenOptions = {}): Promise<boolean> {
  let socket: Socket;
  try {
    socket = await openSocket(port, options);
  } catch {
    return true;
  }
  socket.on("error", () => undefined);
  socket.resume();
  const closed = new Promise<boolean>((resolve) => {
    socket.once("close", () => resolve(true));
    setTimeout(() => resolve(false), waitMs).unref();
  });
  socket.write(bytes);
  const result = await closed;
  socket.destroy();
  return result;
}

/** Opens handshaken clients one after another; stops at the first the node refuses (returns those opened). */
export async function openUntilRefused(port: number, max: number, options: OpenOptions = {}): Promise<{ open: RtmpTestClient[]; refusedAt: number | null }> {
  const open: RtmpTestClient[] = [];
  for (let i = 0; i < max; i++) {
    try {
      open.push(await RtmpTestClient.open(port, options.host, 5000, options));
    } catch {
      return { open, refusedAt: i };
    }
  }
  return { open, refusedAt: null };
}

/** Runs `task` over `items` with at most `width` at a time. */
export async function inParallel<T>(items: T[], width: number, task: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(Array.from({ length: width }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await task(item);
  }));
}

/** Waits until the stream's first rendition lists a segment: admitted, transcoded, published. */
export async function playing(node: TestNode, id: string, timeoutMs = 40000): Promise<void> {
  await waitFor(`a segment of ${id}`, async () => {
    const master = await get(node.http(`/live/${id}/index.m3u8`));
    // the first media playlist URI the master lists (with the viewer's session in its path: s/{token}/...)
    const rendition = master.status === 200 ? master.text.split("\n").find((l) => /^(s\/[^/]+\/)?[a-z0-9_-]+\/index\.m3u8/.test(l)) : undefined;
    return rendition && (await get(node.http(`/live/${id}/${rendition}`))).text.includes("#EXTINF") ? true : undefined;
  }, timeoutMs, 200);
}
