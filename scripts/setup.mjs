#!/usr/bin/env node
// Installs what baton needs before `npm start`, `npm test`, `npm run bench` and `npm run baton` run.
// Plain JavaScript with no dependencies: it runs before node_modules exists.
//
//   node scripts/setup.mjs start|test|bench|npm|quiet
//
// npm packages are installed with `npm ci` when node_modules is missing or older than package-lock.json.
// System programs come from Debian's packages: installed with apt-get when running as root, otherwise the
// exact command is printed and the script exits 1. It never prints a stack trace.
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Programs each mode needs, with the Debian package that provides each. */
const PROGRAMS = {
  ffmpeg: "ffmpeg",
  ffprobe: "ffmpeg",
  "redis-server": "redis-server",
  haproxy: "haproxy",
  chromium: "chromium",
  nginx: "nginx",
  wrk: "wrk",
  prometheus: "prometheus",
  promtool: "prometheus",
};
const NEEDS = {
  start: ["ffmpeg", "redis-server", "haproxy"],
  test: ["ffmpeg", "ffprobe", "redis-server", "haproxy", "chromium", "prometheus", "promtool", "nginx"],
  bench: ["ffmpeg", "redis-server", "nginx", "wrk"],
  chaos: ["ffmpeg", "redis-server", "haproxy", "chromium"],
  npm: [],
  quiet: [],
};

const mode = process.argv[2] ?? "start";
const quiet = mode === "quiet";

function say(message) {
  if (!quiet) console.log(`baton setup: ${message}`);
}

function fail(message) {
  console.error(`baton setup: ${message}`);
  process.exit(1);
}

function onPath(program) {
  const dirs = (process.env.PATH ?? "").split(delimiter).concat(["/usr/sbin", "/usr/bin", "/sbin"]);
  return dirs.some((dir) => dir && existsSync(join(dir, program)));
}

function run(command, args, env = {}) {
  const result = spawnSync(command, args, {
    cwd: root,
    stdio: quiet ? ["ignore", "ignore", "inherit"] : "inherit",
    env: { ...process.env, ...env },
  });
  if (result.error) return `${command} could not run: ${result.error.message}`;
  if (result.status !== 0) return `${command} ${args.join(" ")} exited with status ${result.status}`;
  return null;
}

function npmPackages() {
  const stamp = join(root, "node_modules", ".package-lock.json");
  const lock = join(root, "package-lock.json");
  const fresh = existsSync(stamp) && (!existsSync(lock) || statSync(stamp).mtimeMs >= statSync(lock).mtimeMs);
  if (fresh) return;
  say("installing npm packages (npm ci)");
  const error = run("npm", existsSync(lock) ? ["ci", "--no-audit", "--no-fund"] : ["install", "--no-audit", "--no-fund"]);
  if (error) fail(`${error}. Run 'npm ci' in ${root} and look at its messages.`);
}

function systemPrograms() {
  const missing = NEEDS[mode].filter((program) => !onPath(program));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((program) => PROGRAMS[program]))];
  const command = `apt-get update && apt-get install -y ${packages.join(" ")}`;
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (!isRoot) {
    fail(`missing ${missing.join(", ")}. Install with:\n\n    sudo sh -c '${command}'\n\nthen run this command again.`);
  }
  if (!onPath("apt-get")) {
    fail(`missing ${missing.join(", ")} and no apt-get here: install the packages ${packages.join(", ")} with your system's package manager.`);
  }
  say(`installing ${packages.join(", ")} from the system's packages (${command})`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const error = run("apt-get", ["update", "-qq"], env) ?? run("apt-get", ["install", "-y", "-qq", ...packages], env);
  if (error) fail(`${error}. Run '${command}' by hand and look at its messages.`);
  const still = missing.filter((program) => !onPath(program));
  if (still.length > 0) fail(`${still.join(", ")} still missing after installing ${packages.join(", ")}.`);
}

try {
  if (!(mode in NEEDS)) fail(`unknown mode '${mode}': expected one of ${Object.keys(NEEDS).join(", ")}`);
  const [major] = process.versions.node.split(".").map(Number);
  if (major < 20) fail(`Node.js ${process.versions.node} is too old: baton needs Node.js 20 or newer.`);
  npmPackages();
  systemPrograms();
} catch (error) {
  fail(error instanceof Error ? error.message : String(error));
}
