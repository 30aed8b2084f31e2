// What the delivery, viewers and drain benchmarks share: the admin token and extra node settings, a light
// publisher (for benchmarks that leave the CPU to something else), and waits on a stream's state and segments.
import { randomBytes } from "node:crypto";
import type { Managed } from "../tools/processes.ts";
import { parseMedia, type MediaPlaylist } from "../tools/chaos/m3u8.ts";
import { httpGet, waitFor } from "./procs.ts";
import { publish, type BenchNode } from "./stack.ts";

/** The admin API's bearer token of every node these benchmarks start (BATON_ADMIN_TOKEN, 16+ characters). */
export const ADMIN_TOKEN = `bench-admin-${randomBytes(12).toString("hex")}`;

/** The tests' light ladder: leaves the CPU to the viewers. */
export const LIGHT_LADDER = [
  { name: "360p", height: 360, videoBitrate: 500, audioBitrate: 64, maxFrameRate: 30 },
  { name: "240p", height: 240, videoBitrate: 250, audioBitrate: 64, maxFrameRate: 30 },
];

export function lightLadderEnv(): Record<string, string> {
  return { BATON_TRANSCODE_LADDER: JSON.stringify(LIGHT_LADDER), BATON_TRANSCODE_PRESET: "ultrafast" };
}

/** A lighter publisher than stack.ts's 720p one: 640x360 at 1 Mbit/s. */
export function publishLight(url: string): Managed {
  return publish(url, { width: 640, height: 360, videoKbps: 1000, audioKbps: 64 });
}

export interface StreamRow {
  id: string;
  state: string;
  owner: string;
  epoch: number;
  nextSeq: number;
}

/** The stream's row in a node's /api/streams (read from Redis), or undefined when not listed. */
export async function streamRow(node: BenchNode, id: string): Promise<StreamRow | undefined> {
  const r = await httpGet(node.http("/api/streams"), node.agent);
  if (r.status !== 200) return undefined;
  return (JSON.parse(r.text) as { streams: StreamRow[] }).streams.find((s) => s.id === id);
}

/** The rendition's media playlist as a node serves it (no session), or null when not 200. */
export async function mediaPlaylist(node: BenchNode, id: string, rendition: string): Promise<MediaPlaylist | null> {
  const r = await httpGet(node.http(`/live/${id}/${rendition}/index.m3u8`), node.agent);
  return r.status === 200 ? parseMedia(r.text) : null;
}

/** Waits until the playlist lists a segment numbered `seq` or higher; fails early when the publisher exits. */
export async function waitForSeq(node: BenchNode, id: string, rendition: string, seq: number, publisher: Managed | null, timeoutMs = 40000): Promise<number> {
  return waitFor(`segment ${seq} of ${id} on ${node.id}`, async () => {
    if (publisher && publisher.child.exitCode !== null) throw new Error(`the publisher of ${id} exited`);
    const last = await node.lastSeq(id, rendition);
    return last >= seq ? last : undefined;
  }, timeoutMs, 100);
}

/** One admin API request with the bearer token; the JSON answer (an empty object when unreadable). */
export async function admin(node: BenchNode, method: "GET" | "POST", path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(node.http(path), { method, headers: { Authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(5000) });
  const text = await r.text();
  try {
    return { status: r.status, body: JSON.parse(text) as Record<string, unknown> };
  } catch {
    return { status: r.status, body: {} };
  }
}
