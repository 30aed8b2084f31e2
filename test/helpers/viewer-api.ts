// The viewer API as a test client calls it: sessions made, read and written over HTTP, with assertions on the
// status of each answer.
import assert from "node:assert/strict";
import { loadConfig } from "../../src/config/load.ts";
import { playbackSecret } from "../../src/config/state-dir.ts";
import type { SessionView } from "../../src/delivery/sessions-api.ts";
import { SESSION_SECRET, type TestNode } from "./stack.ts";

/** The playback-token secret the test nodes derive from their sessions secret. */
export const PLAYBACK_SECRET = playbackSecret(loadConfig({ env: { BATON_SESSIONS_SECRET: SESSION_SECRET } }));

export type View = SessionView & { token?: string };

export async function call(url: string, init: RequestInit = {}): Promise<{ status: number; body: unknown; text: string; headers: Headers }> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(10000) });
  const text = await r.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  return { status: r.status, body, text, headers: r.headers };
}

export const json = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: "POST", headers: { "Content-Type": "application/json", ...headers }, body: JSON.stringify(body),
});
export const auth = (token: string): Record<string, string> => ({ Authorization: `Bearer ${token}` });

export async function createSession(node: TestNode, streamId: string, body: Record<string, unknown> = {}): Promise<View & { token: string }> {
  const r = await call(node.http("/api/sessions"), json({ streamId, ...body }));
  assert.equal(r.status, 201, r.text);
  return r.body as View & { token: string };
}

export async function putPosition(node: TestNode, s: { id: string; token: string }, position: number, paused: boolean, status = 200): Promise<View> {
  const r = await call(node.http(`/api/sessions/${s.id}/position`), {
    method: "PUT", headers: { ...auth(s.token), "Content-Type": "application/json" }, body: JSON.stringify({ position, paused }),
  });
  assert.equal(r.status, status, r.text);
  return r.body as View;
}

export async function getSession(node: TestNode, s: { id: string; token: string }): Promise<View> {
  const r = await call(node.http(`/api/sessions/${s.id}`), { headers: auth(s.token) });
  assert.equal(r.status, 200, r.text);
  return r.body as View;
}
