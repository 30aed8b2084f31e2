// What a node runs: baton's version, the commit of its checkout, and a digest of its config. Nodes register it
// (the registry record's `release`), `baton status` shows it, and a rolling update compares it: two nodes on one
// release run the same code with the same cluster-wide config.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../config/defaults.ts";
import { VERSION } from "./version.ts";

export interface Release {
  version: string;
  /** The checkout's commit (12 hex digits), BATON_COMMIT where there is no checkout (an image), else "unknown". */
  commit: string;
  /** 12 hex digits of SHA-256 over the config a node shares with the cluster (releaseConfig). */
  config: string;
}

const ROOT = join(import.meta.dirname, "..", "..");

/** The commit baton runs from; never throws (no git, no checkout: the answer is "unknown"). */
export function currentCommit(env: NodeJS.ProcessEnv = process.env): string {
  const given = env.BATON_COMMIT ?? "";
  if (/^[0-9a-f]{7,40}$/.test(given)) return given.slice(0, 12);
  if (!existsSync(join(ROOT, ".git"))) return "unknown";
  try {
    const head = execFileSync("git", ["rev-parse", "HEAD"], { cwd: ROOT, stdio: ["ignore", "pipe", "ignore"], timeout: 2000 }).toString().trim();
    return /^[0-9a-f]{40}$/.test(head) ? head.slice(0, 12) : "unknown";
  } catch {
    return "unknown";
  }
}

/**
 * What differs between the nodes of one release (the node's id, address and ports, its spool), and the
 * secrets (a digest of a short secret could be guessed from the status page; a secret rotation is not a
 * release). Everything else in the config makes the release.
 */
const NOT_RELEASE = [
  "node", "agent", "rtmp.port", "rtmps.port", "rtmps.cert", "rtmps.key", "http.port", "transcode.spoolDir",
  "auth.publishSecret", "auth.playbackSecret", "admin.token", "redis.url", "storage.s3AccessKeyId",
  "storage.s3SecretAccessKey", "sessions.secret",
  // how an update is staged and gated (read by the CLI) is not what a node runs
  "rollout",
];

export function releaseConfig(config: Config): Record<string, unknown> {
  const shared = structuredClone(config) as unknown as Record<string, Record<string, unknown>>;
  for (const path of NOT_RELEASE) {
    const [section, key] = path.split(".") as [string, string | undefined];
    if (key === undefined) delete shared[section];
    else if (shared[section]) delete shared[section][key];
  }
  return shared;
}

/** JSON with object keys sorted, so equal configs give equal digests whatever order they were written in. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.entries(value).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

export function configDigest(config: Config): string {
  return createHash("sha256").update(canonical(releaseConfig(config))).digest("hex").slice(0, 12);
}

export function currentRelease(config: Config): Release {
  return { version: VERSION, commit: currentCommit(), config: configDigest(config) };
}

/** How a release reads in one line: `0.1.0 a1b2c3d4e5f6 cfg 0123456789ab`. */
export function describeRelease(r: Release): string {
  return `${r.version} ${r.commit} cfg ${r.config}`;
}
