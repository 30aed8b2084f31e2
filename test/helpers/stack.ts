// Real processes for integration tests: redis-server, baton nodes, HAProxy, ffmpeg publishers. Everything
// listens on free loopback ports, gets a fresh key prefix and temp dirs, and is stopped by pid by stopAll().
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { syntheticPushArgs } from "../../tools/chaos/publisher.ts";
import { haproxyConfig } from "../../src/cluster/haproxy.ts";
import { makePublishToken } from "../../src/ingest/token.ts";
import { freePort, isPortFree, nodeCommand, nodeEnv, startProcess, startRedis, stopProcess, waitForPort, type Managed } from "../../tools/processes.ts";

export const HOST = "127.0.0.1";

/** The light ladder that fits three nodes, HAProxy, Redis, ffmpeg and a browser on two cores. */
export const TEST_LADDER = [
  { name: "360p", height: 360, videoBitrate: 500, audioBitrate: 64, maxFrameRate: 30 },
  { name: "240p", height: 240, videoBitrate: 250, audioBitrate: 64, maxFrameRate: 30 },
];

export const SECRET = "test-secret-0123456789abcdef0123456789abcdef";
export const SESSION_SECRET = "test-session-secret-0123456789abcdef01234567";
export const ADMIN_TOKEN = "test-admin-token-0123456789abcdef";

const started: Managed[] = [];
const dirs: string[] = [];

export function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `baton-${name}-`));
  dirs.push(dir);
  return dir;
}

/** Adds a process to those stopAll() stops (for helpers in other files). */
export function track(p: Managed): Managed {
  started.push(p);
  return p;
}

/** Stops every process the helpers started (by pid) and removes their temp dirs. For `after` hooks. */
export async function stopAll(): Promise<void> {
  await Promise.all(started.splice(0).map((p) => stopProcess(p, "SIGKILL", 1000)));
  // a SIGKILLed node's ffmpeg sees its input end and writes its last segment a moment later: retry while a
  // directory is still being written to
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
  segmentDirs.clear();
}

export interface TestRedis {
  port: number;
  url: string;
  proc: Managed;
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startTestRedis(options: { persistent?: boolean; replicaOf?: number } = {}): Promise<TestRedis> {
  const port = await freePort();
  const dir = tempDir("redis");
  const redis: TestRedis = {
    port,
    url: `redis://${HOST}:${port}`,
    proc: undefined as unknown as Managed,
    async start() {
      this.proc = startRedis({ port, dir, persistent: options.persistent ?? false, replicaOf: options.replicaOf });
      started.push(this.proc);
      await waitForPort(HOST, port, 10000, this.proc);
    },
    async stop() {
      await stopProcess(this.proc, "SIGTERM", 5000);
    },
  };
  await redis.start();
  return redis;
}

export interface TestNode {
  id: string;
  rtmpPort: number;
  /** 0 unless started with `rtmps`. */
  rtmpsPort: number;
  /** Started with rtmp.proxyProtocol (BATON_RTMP_PROXYPROTOCOL=true): HAProxy must send it the header. */
  proxyProtocol: boolean;
  httpPort: number;
  agentPort: number;
  proc: Managed;
  lines: string[];
  http(path: string): string;
  rtmp(streamId: string, token?: string): string;
  /** Resolves when a log line matches. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface NodeOptions {
  redisUrl: string;
  prefix: string;
  id?: string;
  env?: Record<string, string>;
  /** An RTMPS listener on a free port with this certificate and key (PEM files). */
  rtmps?: { cert: string; key: string };
}

export function testPrefix(): string {
  return `t${randomBytes(4).toString("hex")}:`;
}

const segmentDirs = new Map<string, string>();

/** The segment store directory of the test cluster whose nodes share this key prefix (one per cluster). */
export function segmentDir(prefix: string): string {
  let dir = segmentDirs.get(prefix);
  if (!dir) segmentDirs.set(prefix, (dir = tempDir("segments")));
  return dir;
}

/**
 * A test node. Its admission counts streams only (transcode.cpuTarget 0): tests share a busy 2-core machine,
 * whose CPU use would otherwise decide whether a test's second stream is admitted (capacity.test.ts sets it).
 */
export async function startTestNode(o: NodeOptions): Promise<TestNode> {
  const [rtmpPort, httpPort, agentPort] = [await freePort(), await freePort(), await freePort()];
  const rtmpsPort = o.rtmps ? await freePort() : 0;
  const id = o.id ?? `n-${randomBytes(3).toString("hex")}`;
  const dir = tempDir(id);
  const env: Record<string, string> = {
    ...nodeEnv(
      {
        id, host: HOST, rtmpPort, httpPort, agentPort, redisUrl: o.redisUrl, spoolDir: join(dir, "spool"),
        publishSecret: SECRET, sessionSecret: SESSION_SECRET, adminToken: ADMIN_TOKEN, storagePath: segmentDir(o.prefix),
      },
      { redis: { prefix: o.prefix }, transcode: { preset: "ultrafast", ladder: TEST_LADDER, cpuTarget: 0 }, hls: { segmentDuration: 1 }, log: { level: "debug" } },
    ),
    BATON_STATE_DIR: join(dir, "state"),
    ...(o.rtmps ? { BATON_RTMPS_PORT: String(rtmpsPort), BATON_RTMPS_CERT: o.rtmps.cert, BATON_RTMPS_KEY: o.rtmps.key } : {}),
    ...o.env,
  };
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const [command, args] = nodeCommand(["node"]);
  const proc = startProcess(id, command, args, {
    env,
    onLine: (line) => {
      lines.push(line);
      if (process.env.TEST_LOGS) process.stderr.write(`${line}\n`);
      for (const w of waiters.splice(0)) {
        if (w.pattern.test(line)) w.resolve(line);
        else waiters.push(w);
      }
    },
  });
  started.push(proc);
  await waitForPort(HOST, httpPort, 20000, proc);
  return {
    id, rtmpPort, rtmpsPort, httpPort, agentPort, proc, lines, proxyProtocol: env.BATON_RTMP_PROXYPROTOCOL === "true",
    http: (path) => `http://${HOST}:${httpPort}${path}`,
    rtmp: (streamId, token = makePublishToken(SECRET, streamId, 3600)) => `rtmp://${HOST}:${rtmpPort}/live/${streamId}?token=${token}`,
    waitForLog(pattern, timeoutMs = 20000) {
      const seen = lines.find((line) => pattern.test(line));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no log line like ${pattern} from ${id} in ${timeoutMs} ms`)), timeoutMs);
        waiters.push({ pattern, resolve: (line) => (clearTimeout(timer), resolve(line)) });
      });
    },
    stop: (signal = "SIGINT") => stopProcess(proc, signal, 15000),
  };
}

export interface PublishOptions {
  /** Seconds of media; omitted: until stopped. */
  seconds?: number;
  width?: number;
  height?: number;
  audio?: boolean;
  /** Seconds between keyframes (default 1). */
  gop?: number;
  /** kbit/s of video, declared in onMetaData (default: x264's rate control, none declared). */
  videoKbps?: number;
  /** Stereo audio (default: mono). */
  stereo?: boolean;
  /** An ffmpeg -force_key_frames expression (`gop` then bounds the interval). */
  keyframes?: string;
}

/** ffmpeg pushing a synthetic stream in real time (test pattern and a tone). */
export function publish(url: string, o: PublishOptions = {}): Managed {
  const args = syntheticPushArgs(url, o);
  const p = startProcess("ffmpeg-publisher", "ffmpeg", args, { onLine: (line) => process.env.TEST_LOGS && process.stderr.write(`publisher: ${line}\n`) });
  started.push(p);
  return p;
}

/** Runs `count` tasks, `width` at a time. */
export async function pool(count: number, width: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < count) await task(next++);
  }));
}

/** Polls `probe` until it returns a value other than undefined; fails with `what` after the timeout. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 20000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Headers for the operators' endpoints (/api/nodes, /api/streams, /metrics): the test nodes' admin token. */
export const ADMIN = { Authorization: `Bearer ${ADMIN_TOKEN}` };

export async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; headers: Headers; bytes: Buffer }> {
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(10000) });
  const bytes = Buffer.from(await response.arrayBuffer());
  return { status: response.status, text: bytes.toString("utf8"), headers: response.headers, bytes };
}

export interface TestHaproxy {
  rtmpPort: number;
  /** 0 unless every node has an RTMPS port. */
  rtmpsPort: number;
  httpPort: number;
  configFile: string;
  /** HAProxy's admin socket (tools/haproxy-stats.ts reads it). */
  statsSocket: string;
  proc: Managed;
  http(path: string): string;
  rtmp(streamId: string): string;
}

/**
 * HAProxy in front of test nodes, with the configuration baton generates: the PROXY protocol to nodes started
 * with rtmp.proxyProtocol (all or none), an RTMPS frontend when every node has an RTMPS port.
 */
export async function startTestHaproxy(nodes: TestNode[]): Promise<TestHaproxy> {
  const proxyProtocol = nodes.every((n) => n.proxyProtocol);
  if (!proxyProtocol && nodes.some((n) => n.proxyProtocol)) throw new Error("some nodes expect the PROXY protocol and some do not");
  const [rtmpPort, httpPort] = [await freePort(), await freePort()];
  const rtmpsPort = nodes.every((n) => n.rtmpsPort > 0) ? await freePort() : 0;
  const dir = tempDir("haproxy");
  const configFile = join(dir, "haproxy.cfg");
  const statsSocket = join(dir, "stats.sock");
  writeFileSync(configFile, haproxyConfig({
    bind: HOST, rtmpPort, httpPort, statsSocket, proxyProtocol, rtmpsPort,
    nodes: nodes.map((n) => ({ id: n.id, host: HOST, rtmpPort: n.rtmpPort, rtmpsPort: n.rtmpsPort, httpPort: n.httpPort, agentPort: n.agentPort })),
  }));
  const proc = startProcess("haproxy", "haproxy", ["-db", "-f", configFile]);
  started.push(proc);
  await waitForPort(HOST, httpPort, 10000, proc);
  return {
    rtmpPort, rtmpsPort, httpPort, configFile, statsSocket, proc,
    http: (path) => `http://${HOST}:${httpPort}${path}`,
    rtmp: (streamId) => `rtmp://${HOST}:${rtmpPort}/live/${streamId}?token=${makePublishToken(SECRET, streamId, 3600)}`,
  };
}

/** A base port whose next `count` ports are free too (the launcher puts node i on base + i). */
export async function freeRange(count: number): Promise<number> {
  for (;;) {
    const base = await freePort();
    if (base + count > 65535) continue;
    let free = true;
    for (let i = 1; i <= count && free; i++) free = await isPortFree(HOST, base + i);
    if (free) return base;
  }
}


/** The environment of a local cluster (`baton start`, `baton chaos`) on free ports with the light ladder. */
export async function localClusterEnv(nodes: number, more: Record<string, string> = {}): Promise<Record<string, string>> {
  const [rtmp, http, agent, redis] = [await freeRange(nodes), await freeRange(nodes), await freeRange(nodes), await freePort()];
  return {
    BATON_STATE_DIR: join(tempDir("local"), "var"),
    BATON_RTMP_PORT: String(rtmp),
    BATON_HTTP_PORT: String(http),
    BATON_AGENT_PORT: String(agent),
    BATON_REDIS_URL: `redis://${HOST}:${redis}`,
    BATON_TRANSCODE_LADDER: JSON.stringify(TEST_LADDER),
    BATON_TRANSCODE_PRESET: "ultrafast",
    BATON_ADMIN_TOKEN: ADMIN_TOKEN,
    ...more,
  };
}

/** A metric of a node's /metrics (admin token), summed over its series whose labels include `label`; 0 when absent. */
export async function nodeMetric(node: Pick<TestNode, "http">, name: string, label = ""): Promise<number> {
  const text = (await get(node.http("/metrics"), ADMIN)).text;
  let sum = 0;
  for (const line of text.split("\n")) {
    if ((line.startsWith(`${name}{`) && line.includes(label)) || (label === "" && line.startsWith(`${name} `))) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}
