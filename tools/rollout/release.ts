// Preparing a release for the local cluster before anything is touched: a git ref becomes a worktree under
// <state dir>/releases/<commit> with its npm packages; a directory must hold a baton checkout; a config file
// is validated and copied (the file the operator edits next is not the one the nodes run).
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Config } from "../../src/config/defaults.ts";
import { envName, loadConfig } from "../../src/config/load.ts";
import { errorMessage } from "../../src/core/errors.ts";
import { isNodeId } from "../../src/core/ids.ts";
import type { ReleaseTarget } from "../../src/state/rollouts.ts";
import { ROOT } from "../processes.ts";

/** A git ref as the CLI accepts it: no option (`-...`), no revision syntax beyond `~N` and `^N`. */
const REF = /^(?!-)[A-Za-z0-9._/@{}~^-]{1,200}$/;

function run(command: string, args: string[], cwd: string, timeoutMs: number): Promise<string> {
  return new Promise((resolvePromise, reject) =>
    execFile(command, args, { cwd, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${command} ${args.join(" ")}: ${stderr.trim().split("\n").slice(-3).join(" ") || errorMessage(error)}`)) : resolvePromise(stdout.trim()),
    ),
  );
}

const isCheckout = (dir: string): boolean => existsSync(join(dir, "src", "bin", "baton.ts")) && existsSync(join(dir, "package.json"));

/**
 * The checkout's npm packages: shared with this checkout's when their lockfiles are the same (no second
 * install of the same tree), else `npm ci` there.
 */
async function ensurePackages(root: string, say: (line: string) => void): Promise<void> {
  if (existsSync(join(root, "node_modules"))) return;
  const lock = (dir: string): string => (existsSync(join(dir, "package-lock.json")) ? readFileSync(join(dir, "package-lock.json"), "utf8") : "");
  if (lock(root) !== "" && lock(root) === lock(ROOT)) {
    symlinkSync(join(ROOT, "node_modules"), join(root, "node_modules"), "dir");
    return;
  }
  say(`release ${root}: npm ci (its package-lock.json differs from this checkout's)`);
  await run("npm", ["ci", "--no-audit", "--no-fund"], root, 600000);
}

/** A git ref of `repo` as a worktree under `<dir>/releases/<commit>`, made once. */
async function worktreeOf(ref: string, repo: string, dir: string, say: (line: string) => void): Promise<{ root: string; commit: string }> {
  if (!REF.test(ref)) throw new Error(`release ${JSON.stringify(ref)}: expected a directory holding a baton checkout, or a git ref`);
  const commit = await run("git", ["rev-parse", "--verify", "--quiet", `${ref}^{commit}`], repo, 10000).catch(() => {
    throw new Error(`release ${JSON.stringify(ref)}: no such directory, and no such git ref in ${repo}`);
  });
  const root = join(dir, "releases", commit.slice(0, 12));
  if (!isCheckout(root)) {
    mkdirSync(join(dir, "releases"), { recursive: true });
    say(`release ${ref}: git worktree add ${root} (${commit.slice(0, 12)})`);
    await run("git", ["worktree", "add", "--detach", root, commit], repo, 120000);
  }
  if (!isCheckout(root)) throw new Error(`release ${ref}: commit ${commit.slice(0, 12)} holds no baton checkout (src/bin/baton.ts)`);
  return { root, commit };
}

export interface ReleaseRequest {
  /** `--to`: a directory holding a baton checkout, or a git ref of `repo`; absent: the code `base` runs. */
  to?: string;
  /** `--config`: a config file; absent: the config `base` runs. */
  config?: string;
  /** The release the cluster runs now (what an absent --to or --config keeps). */
  base: ReleaseTarget;
  /** The git repository refs are read from (default: this checkout's). */
  repo?: string;
  /** The local cluster's state dir (releases are kept under it). */
  stateDir: string;
  say: (line: string) => void;
}

/** Resolves, checks and prepares a release; throws a clear message, before any node is touched, when it cannot. */
export async function prepareRelease(r: ReleaseRequest): Promise<ReleaseTarget> {
  let root = r.base.root;
  let label = r.base.label;
  if (r.to !== undefined) {
    const asDir = resolve(r.to);
    if (existsSync(asDir) && statSync(asDir).isDirectory()) {
      if (!isCheckout(asDir)) throw new Error(`release ${r.to}: the directory holds no baton checkout (src/bin/baton.ts, package.json)`);
      root = realpathSync(asDir);
      label = root;
    } else {
      const tree = await worktreeOf(r.to, r.repo ?? ROOT, r.stateDir, r.say);
      root = tree.root;
      label = `${r.to} (${tree.commit.slice(0, 12)})`;
    }
    await ensurePackages(root, r.say);
  }
  let config = r.base.config;
  if (r.config !== undefined) {
    const file = resolve(r.config);
    // what a node would refuse at start is refused here, before any node drains
    loadReleaseConfig(file);
    const text = readFileSync(file);
    const digest = createHash("sha256").update(text).digest("hex").slice(0, 12);
    mkdirSync(join(r.stateDir, "releases", "configs"), { recursive: true });
    config = join(r.stateDir, "releases", "configs", `${digest}.json`);
    copyFileSync(file, config);
    label = `${label} + config ${r.config} (${digest})`;
  }
  return { label, root, config };
}

/** What the cluster runs when no update ever ran: the checkout it started from, with no config file. */
export function startingRelease(): ReleaseTarget {
  return { label: "current", root: ROOT, config: null };
}

/** Where the local cluster's supervisor finds the release a node is to start on (one JSON file per node). */
export function assignmentFile(dir: string, nodeId: string): string {
  return join(dir, "releases", "nodes", `${nodeId}.json`);
}

/** Records the release a node starts on next (its supervisor reads it at each start). */
export function assignRelease(dir: string, nodeId: string, target: ReleaseTarget): void {
  if (!isNodeId(nodeId)) throw new Error(`invalid node id ${JSON.stringify(nodeId)}`);
  mkdirSync(join(dir, "releases", "nodes"), { recursive: true });
  writeFileSync(assignmentFile(dir, nodeId), JSON.stringify(target));
}

/** The release a node is to start on; the starting release when none was assigned (or the file is unreadable). */
export function assignedRelease(dir: string, nodeId: string): ReleaseTarget {
  if (!isNodeId(nodeId)) return startingRelease();
  try {
    const value = JSON.parse(readFileSync(assignmentFile(dir, nodeId), "utf8")) as Partial<ReleaseTarget>;
    if (typeof value.root === "string" && typeof value.label === "string" && isCheckout(value.root)) {
      return { label: value.label, root: value.root, config: typeof value.config === "string" ? value.config : null };
    }
  } catch {
    // none assigned
  }
  return startingRelease();
}

/**
 * The BATON_* variables for the keys a release's config file sets: the supervisor does not pass its own on
 * for those (the release's config is what the operator asked for; the node's ports and identity stay the
 * supervisor's, as the file cannot set them per node).
 */
export function configKeysEnv(file: string): string[] {
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as Record<string, Record<string, unknown>>;
    return Object.entries(parsed).flatMap(([section, keys]) => Object.keys(keys ?? {}).map((key) => envName(section, key)));
  } catch {
    return [];
  }
}

/** The config a node of the release runs: the file, over this environment less the variables the file overrides. */
export function loadReleaseConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const own = { ...env };
  for (const key of configKeysEnv(file)) delete own[key];
  return loadConfig({ file, env: own });
}
