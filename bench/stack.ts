// Real processes for the latency benchmarks: redis-server, baton nodes configured through BATON_* variables
// (production defaults unless told otherwise), and ffmpeg publishers pushing a synthetic 720p stream.
// Adapted from test/helpers/stack.ts, which bench code does not import.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Agent } from "node:http";
import { syntheticPushArgs, type SyntheticPush } from "../tools/chaos/publisher.ts";
import { makePublishToken } from "../src/ingest/token.ts";
import { freePort, nodeCommand, nodeEnv, startRedis, waitForPort, type Managed } from "../tools/processes.ts";
import { httpGet, keepAlive, lastListedSeq, spawnTracked, stop, tail, tempDir, track } from "./procs.ts";

export const HOST = "127.0.0.1";
const SECRET = `bench-${randomBytes(16).toString("hex")}`;
/** One sessions secret for every node of a run: session tokens and the nodes' signed offers (cluster/peers.ts) need it. */
const SESSION_SECRET = `bench-sessions-${randomBytes(16).toString("hex")}`;

export interface BenchRedis {
  url: string;
  proc: Managed;
}

export async function startBenchRedis(): Promise<BenchRedis> {
  const port = await freePort();
  const proc = track(startRedis({ port, dir: tempDir("redis"), persistent: false }));
  await waitForPort(HOST, port, 10000, proc);
  return { url: `redis://${HOST}:${port}`, proc };
}

export interface BenchNode {
  id: string;
  rtmpPort: number;
  httpPort: number;
  proc: Managed;
  /** transcode.spoolDir: where its ffmpeg writes each stream's segments and their CSV lists. */
  spoolDir: string;
  /** Keep-alive connection for this node's polls. */
  agent: Agent;
  http(path: string): string;
  rtmp(streamId: string): string;
  /** Resolves with the Date.now() time a log line matching `pattern` was written (its own timestamp). */
  logTime(pattern: RegExp, timeoutMs?: number): Promise<number>;
  /** The stream's state in /api/streams, or undefined when not listed. */
  streamState(streamId: string): Promise<string | undefined>;
  /** Highest sequence number listed in the rendition's media playlist, -1 when none (or not there yet). */
  lastSeq(streamId: string, rendition: string): Promise<number>;
  /** The node's last warning and error lines, to explain a failed wait. */
  problems(): string;
}

export interface NodeOptions {
  redisUrl: string;
  prefix: string;
  id: string;
  /** Extra BATON_* variables (for example the test ladder). */
  env?: Record<string, string>;
}

const segmentDirs = new Map<string, string>();

/** The segment store directory shared by the bench nodes of one key prefix (one cluster). */
function segmentDir(prefix: string): string {
  let dir = segmentDirs.get(prefix);
  if (!dir) segmentDirs.set(prefix, (dir = tempDir("segments")));
  return dir;
}

export function benchPrefix(): string {
  return `bench${randomBytes(4).toString("hex")}:`;
}

export function streamName(label: string): string {
  return `${label}-${randomBytes(3).toString("hex")}`;
}

export async function startBenchNode(o: NodeOptions): Promise<BenchNode> {
  const [rtmpPort, httpPort, agentPort] = [await freePort(), await freePort(), await freePort()];
  const dir = tempDir(o.id);
  const spoolDir = join(dir, "spool");
  const env: Record<string, string> = {
    ...nodeEnv(
      { id: o.id, host: HOST, rtmpPort, httpPort, agentPort, redisUrl: o.redisUrl, spoolDir, publishSecret: SECRET, sessionSecret: SESSION_SECRET, storagePath: segmentDir(o.prefix) },
      // the benchmarks read /api/streams and /metrics of their own loopback nodes
      { redis: { prefix: o.prefix }, log: { level: "info" }, admin: { openOps: true } },
    ),
    BATON_STATE_DIR: join(dir, "state"),
    ...o.env,
  };
  const waiters: { pattern: RegExp; resolve: (at: number) => void }[] = [];
  const seen: string[] = [];
  const last = tail(30);
  const bad = tail(4);
  const [command, args] = nodeCommand(["node"]);
  const proc = spawnTracked(o.id, command, args, {
    env,
    onLine: (line) => {
      last.onLine(line);
      if (/ (WARN|ERROR) |^baton: /.test(line)) bad.onLine(line);
      if (process.env.BENCH_NODE_LOGS) process.stderr.write(`${line}\n`);
      seen.push(line);
      if (seen.length > 2000) seen.splice(0, 1000);
      for (const w of waiters.splice(0)) {
        if (w.pattern.test(line)) w.resolve(lineTime(line));
        else waiters.push(w);
      }
    },
  });
  try {
    await waitForPort(HOST, httpPort, 30000, proc);
  } catch (error) {
    throw new Error(`${String(error)}: ${last.lines.slice(-4).join(" | ")}`, { cause: error });
  }
  const agent = keepAlive();
  const http = (path: string): string => `http://${HOST}:${httpPort}${path}`;
  return {
    id: o.id, rtmpPort, httpPort, proc, spoolDir, agent, http,
    rtmp: (streamId) => `rtmp://${HOST}:${rtmpPort}/live/${streamId}?token=${makePublishToken(SECRET, streamId, 3600)}`,
    logTime(pattern, timeoutMs = 30000) {
      const line = seen.find((l) => pattern.test(l));
      if (line) return Promise.resolve(lineTime(line));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no log line like ${pattern} from ${o.id} in ${timeoutMs} ms`)), timeoutMs);
        waiters.push({ pattern, resolve: (at) => (clearTimeout(timer), resolve(at)) });
      });
    },
    async streamState(streamId) {
      const r = await httpGet(http("/api/streams"), agent);
      if (r.status !== 200) return undefined;
      const body = JSON.parse(r.text) as { streams: { id: string; state: string }[] };
      return body.streams.find((s) => s.id === streamId)?.state;
    },
    async lastSeq(streamId, rendition) {
      const r = await httpGet(http(`/live/${streamId}/${rendition}/index.m3u8`), agent);
      return r.status === 200 ? lastListedSeq(r.text) : -1;
    },
    problems: () => (bad.lines.length ? `; ${o.id} logged: ${bad.lines.join(" | ")}` : ""),
  };
}

/** The logger's leading ISO timestamp (when the node wrote the line); now if it has none. */
function lineTime(line: string): number {
  const at = Date.parse(line.slice(0, 24));
  return Number.isFinite(at) ? at : Date.now();
}


/** The bench's synthetic push: 720p at 3 Mbit/s. */
export const PUSH = { width: 1280, height: 720, videoKbps: 3000, audioKbps: 128 } satisfies SyntheticPush;

/** ffmpeg pushing the synthetic stream in real time (-re) until stopped; PUSH unless told otherwise. */
export function publish(url: string, push: SyntheticPush = PUSH): Managed {
  const args = syntheticPushArgs(url, push);
  const last = tail(6);
  return spawnTracked("ffmpeg-publisher", "ffmpeg", args, { onLine: last.onLine });
}

export interface Cluster {
  redis: BenchRedis;
  prefix: string;
  nodes: BenchNode[];
}

/** One redis-server and `size` nodes sharing a fresh key prefix (and `env`, BATON_* settings of every node). */
export async function startCluster(size = 3, env: Record<string, string> = {}): Promise<Cluster> {
  const redis = await startBenchRedis();
  const prefix = benchPrefix();
  const nodes: BenchNode[] = [];
  for (let i = 1; i <= size; i++) nodes.push(await startBenchNode({ redisUrl: redis.url, prefix, id: `bench-node-${i}`, env }));
  return { redis, prefix, nodes };
}

export async function stopCluster(c: Cluster): Promise<void> {
  await Promise.all(c.nodes.map((n) => stop(n.proc, "SIGTERM", 10000)));
  for (const n of c.nodes) n.agent.destroy();
  await stop(c.redis.proc, "SIGTERM", 5000);
}
