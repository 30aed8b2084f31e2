// Child processes of the local cluster (and of the integration tests): Redis, nodes, HAProxy. Each is started
// with an argument list (never a shell), waited for on its port, and stopped by pid with a grace period.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Config } from "../src/config/defaults.ts";
import { configEnv, type DeepPartial } from "../src/config/load.ts";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

export interface Managed {
  name: string;
  child: ChildProcess;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  /** Append the process's stdout and stderr to this file. */
  logFile?: string;
  /** Called with each output line (the local cluster prints node logs). */
  onLine?: (line: string) => void;
  /**
   * Run in a process group of its own, so a Ctrl-C in the terminal reaches only the parent, which then
   * stops its children in order (nodes before the Redis they flush into).
   */
  ownGroup?: boolean;
  /** Variables of this process's environment the child does not inherit (a release's config file wins over them). */
  unset?: string[];
}

function withoutKeys(env: NodeJS.ProcessEnv, keys: string[]): NodeJS.ProcessEnv {
  for (const key of keys) delete env[key];
  return env;
}

export function startProcess(name: string, command: string, args: string[], options: SpawnOptions = {}): Managed {
  const child = spawn(command, args, {
    cwd: ROOT,
    env: withoutKeys({ ...process.env, ...options.env }, options.unset ?? []),
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.ownGroup === true,
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", () => resolve({ code: null, signal: null }));
  });
  if (options.logFile) {
    mkdirSync(dirname(options.logFile), { recursive: true });
    const log = createWriteStream(options.logFile, { flags: "a" });
    log.on("error", () => undefined);
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    // "close" comes after the child's output streams have ended ("exit" may come before their last bytes)
    child.once("close", () => log.end());
  }
  if (options.onLine) {
    const onLine = options.onLine;
    for (const stream of [child.stdout, child.stderr]) {
      let rest = "";
      stream?.on("data", (chunk: Buffer) => {
        const lines = (rest + chunk.toString("utf8")).split("\n");
        rest = lines.pop() ?? "";
        for (const line of lines) if (line) onLine(line);
      });
    }
  }
  if (!options.logFile && !options.onLine) {
    child.stdout?.resume();
    child.stderr?.resume();
  }
  return { name, child, exited };
}

/** Sends `signal`, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stopProcess(p: Managed, signal: NodeJS.Signals = "SIGTERM", graceMs = 10000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill(signal);
  const timer = setTimeout(() => p.child.kill("SIGKILL"), graceMs);
  await p.exited;
  clearTimeout(timer);
}

export function isPortFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** A port the OS reports free on the host (for tests). */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on the port; rejects after `timeoutMs` or if `p` exits. */
export async function waitForPort(host: string, port: number, timeoutMs: number, p?: Managed): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  void p?.exited.then(() => (gone = true));
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host, port });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (gone) throw new Error(`${p?.name ?? "process"} exited before it listened on ${host}:${port}`);
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export interface RedisServerOptions {
  port: number;
  dir: string;
  /** Append-only file, fsync every second: a restart keeps what was written. */
  persistent: boolean;
  /** The port of a primary on 127.0.0.1 this one replicates (a replica for failover tests). */
  replicaOf?: number;
  logFile?: string;
  ownGroup?: boolean;
}

export function startRedis(o: RedisServerOptions): Managed {
  mkdirSync(o.dir, { recursive: true });
  const args = [
    "--port", String(o.port), "--bind", "127.0.0.1", "--dir", o.dir, "--daemonize", "no",
    "--save", "", "--appendonly", o.persistent ? "yes" : "no", "--appendfsync", "everysec",
    ...(o.replicaOf ? ["--replicaof", "127.0.0.1", String(o.replicaOf)] : []),
  ];
  return startProcess(`redis-server:${o.port}`, "redis-server", args, { logFile: o.logFile, ownGroup: o.ownGroup });
}

/** The command that runs a baton node process: tsx loads the TypeScript sources (of the checkout at `root`) directly. */
export function nodeCommand(args: string[], root = ROOT): [string, string[]] {
  return [process.execPath, ["--import", "tsx", join(root, "src", "bin", "baton.ts"), ...args]];
}

export function startHaproxy(configFile: string, options: SpawnOptions = {}): Managed {
  return startProcess("haproxy", "haproxy", ["-db", "-f", configFile], options);
}

/** Where one node process listens and what it shares with the rest of its cluster. */
export interface NodeProcess {
  id: string;
  host: string;
  rtmpPort: number;
  httpPort: number;
  agentPort: number;
  redisUrl: string;
  spoolDir: string;
  publishSecret: string;
  sessionSecret?: string;
  adminToken?: string;
  /** The segment store's directory (storage.path), shared by every node of the cluster. */
  storagePath?: string;
}

/** The environment of a node process: its identity and ports, the shared secrets, and any other settings. */
export function nodeEnv(n: NodeProcess, more: DeepPartial<Config> = {}): Record<string, string> {
  return configEnv({
    ...more,
    node: { id: n.id, bind: n.host, ...more.node },
    rtmp: { port: n.rtmpPort, ...more.rtmp },
    http: { port: n.httpPort, ...more.http },
    agent: { port: n.agentPort, ...more.agent },
    redis: { url: n.redisUrl, ...more.redis },
    transcode: { spoolDir: n.spoolDir, ...more.transcode },
    auth: { publishSecret: n.publishSecret, ...more.auth },
    sessions: { ...(n.sessionSecret ? { secret: n.sessionSecret } : {}), ...more.sessions },
    admin: { ...(n.adminToken ? { token: n.adminToken } : {}), ...more.admin },
    storage: { ...(n.storagePath ? { path: n.storagePath } : {}), ...more.storage },
  });
}

/** Resolves once `probe` says true (a probe that throws says false), polling every `everyMs`; throws after `timeoutMs`. */
export async function waitUntil(what: string, probe: () => Promise<boolean>, timeoutMs: number, everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
