// Where a local install keeps what it makes for itself (the publish secret, Redis data, spool, logs):
// BATON_STATE_DIR, else var/ in the working directory.
import { createHmac, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Config } from "./defaults.ts";

export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.BATON_STATE_DIR ?? "var");
}

/** A secret kept in the state dir, created on first use (mode 0600), so every local process shares it. */
export function localSecret(name: "secret" | "session-secret" | "admin-token", env: NodeJS.ProcessEnv = process.env): string {
  const dir = stateDir(env);
  const file = join(dir, name);
  try {
    const text = readFileSync(file, "utf8").trim();
    if (text.length >= 32) return text;
  } catch {
    // not made yet
  }
  mkdirSync(dir, { recursive: true });
  const secret = randomBytes(32).toString("base64url");
  writeFileSync(file, secret + "\n", { mode: 0o600 });
  return secret;
}

/** The publish secret in force: the configured one, or the local one. */
export function publishSecret(config: Config, env: NodeJS.ProcessEnv = process.env): string {
  return config.auth.publishSecret || localSecret("secret", env);
}

/** The session-token secret in force: the configured one, or the local one. */
export function sessionSecret(config: Config, env: NodeJS.ProcessEnv = process.env): string {
  return config.sessions.secret || localSecret("session-secret", env);
}

/**
 * The playback-token secret in force: the configured one, or one derived from the sessions secret (so a
 * deployment needs no fourth secret), never equal to it nor to the publish secret.
 */
export function playbackSecret(config: Config, env: NodeJS.ProcessEnv = process.env): string {
  return config.auth.playbackSecret || createHmac("sha256", sessionSecret(config, env)).update("baton playback tokens").digest("base64url");
}

/** The admin API token in force: the configured one (BATON_ADMIN_TOKEN), or the local one. */
export function adminToken(config: Config, env: NodeJS.ProcessEnv = process.env): string {
  return config.admin.token || localSecret("admin-token", env);
}
