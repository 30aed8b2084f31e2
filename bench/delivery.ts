// Benchmark 6: HLS delivery from one node against nginx serving the same files from disk. A real redis-server
// and baton node (production ladder); a publisher pushes the synthetic 720p stream until the media playlist
// lists a full window of segments, then stops. The stream stays live, unchanged, while it waits for its
// publisher (BATON_HLS_RECONNECTWINDOW=600). The media playlist and its segments are downloaded into a temp
// dir laid out as /live/<stream>/<rendition>/..., which Debian's nginx (one process, one worker, no access
// log, sendfile) serves on another loopback port. wrk (one thread, 32 keep-alive connections) measures
// requests/s and bytes/s of the media playlist and of one segment (the newest), each without a session and
// as a viewer's player fetches them (a session from a master playlist request, in the path; the playlist also
// with Accept-Encoding: gzip), against nginx serving the plain files: one run each with --quick, otherwise two
// each in the order baton, nginx, nginx, baton (mean). Figures: baton's, with nginx as the baseline (ratio =
// baton / nginx, higher is better); and the size of a delta-update reload against a full one at a 2-hour
// window (a synthetic 3,600-segment timeline).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { errorMessage } from "../src/core/errors.ts";
import { nginxArgs, nginxConf } from "../tools/nginx.ts";
import type { StreamSnapshot } from "../src/core/model.ts";
import { renderMedia } from "../src/delivery/playlist.ts";
import type { Managed } from "../tools/processes.ts";
import { freePort, waitForPort } from "../tools/processes.ts";
import { parseMedia } from "../tools/chaos/m3u8.ts";
import { compared, type Figure } from "./report.ts";
import { httpGet, removeDir, sleep, spawnTracked, stop, tail, tempDir, waitFor } from "./procs.ts";
import { benchRendition } from "./propagation.ts";
import { HOST, benchPrefix, publish, startBenchNode, startBenchRedis, streamName, type BenchNode, type BenchRedis } from "./stack.ts";

const CONNECTIONS = 32;
const SEGMENTS = 6;

export interface WrkResult {
  requestsPerSec: number;
  bytesPerSec: number;
  requests: number;
  /** 99th percentile latency in ms (wrk --latency), NaN when not printed. */
  p99Ms: number;
  non2xx: number;
  socketErrors: number;
}

const BINARY_UNITS: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
const TIME_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60000, h: 3600000 };

/** Reads wrk's summary: Requests/sec, Transfer/sec (binary KB/MB/GB units), the 99% latency, errors. */
export function parseWrk(text: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)\s*$/m.exec(text);
  const transfer = /^Transfer\/sec:\s+([\d.]+)\s*([KMGT]?B)\s*$/m.exec(text);
  const total = /^\s*(\d+) requests in /m.exec(text);
  if (!rps || !transfer || !total) throw new Error(`unreadable wrk output: ${text.slice(0, 300)}`);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$/m.exec(text);
  const non2xx = /^\s*Non-2xx or 3xx responses:\s+(\d+)/m.exec(text);
  const sockets = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  return {
    requestsPerSec: Number(rps[1]),
    bytesPerSec: Number(transfer[1]) * BINARY_UNITS[transfer[2]!]!,
    requests: Number(total[1]),
    p99Ms: p99 ? Number(p99[1]) * TIME_UNITS[p99[2]!]! : NaN,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: sockets ? sockets.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
  };
}

async function wrk(url: string, seconds: number, headers: string[] = []): Promise<WrkResult> {
  const lines: string[] = [];
  const args = ["-t1", `-c${CONNECTIONS}`, `-d${seconds}s`, "--latency", ...headers.flatMap((h) => ["-H", h]), url];
  const p = spawnTracked("wrk", "wrk", args, { onLine: (line) => lines.push(line) });
  try {
    const exit = await p.exited;
    if (exit.code !== 0) throw new Error(`wrk exited with ${exit.code ?? exit.signal}: ${lines.slice(-4).join(" | ")}`);
  } finally {
    await stop(p, "SIGKILL", 1000);
  }
  const result = parseWrk(lines.join("\n"));
  if (result.non2xx > 0) throw new Error(`${url}: ${result.non2xx} of ${result.requests} answers were not 2xx`);
  return result;
}

function nginxConfig(dir: string, root: string, port: number): string {
  return nginxConf(dir, {
    connections: 1024,
    http: [
      "sendfile on;",
      "tcp_nopush on;",
      "tcp_nodelay on;",
      "keepalive_timeout 65;",
      // baton's server keeps a connection for any number of requests: so does nginx here
      "keepalive_requests 10000000;",
      "types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }",
      "default_type application/octet-stream;",
      "server {",
      `  listen ${HOST}:${port};`,
      `  root ${root};`,
      "}",
    ],
  });
}

async function startNginx(dir: string, root: string): Promise<{ proc: Managed; port: number }> {
  const port = await freePort();
  const t = tail(8);
  const proc = spawnTracked("nginx", "nginx", nginxArgs(dir, nginxConfig(dir, root, port)), { onLine: t.onLine });
  try {
    await waitForPort(HOST, port, 10000, proc);
  } catch (error) {
    await stop(proc, "SIGKILL", 1000);
    throw new Error(`nginx did not start: ${errorMessage(error)} ${t.lines.join(" | ")}`, { cause: error });
  }
  return { proc, port };
}

/** Downloads the playlist and its segments as files under `root`/live/<id>/<rendition>/; the playlist's text. */
async function snapshot(node: BenchNode, id: string, rendition: string, root: string): Promise<{ playlist: string; segments: { uri: string; bytes: number }[] }> {
  const base = `/live/${id}/${rendition}`;
  const r = await httpGet(node.http(`${base}/index.m3u8`), node.agent);
  if (r.status !== 200) throw new Error(`playlist: HTTP ${r.status}`);
  const dir = join(root, "live", id, rendition);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "index.m3u8"), r.text);
  const segments: { uri: string; bytes: number }[] = [];
  for (const s of parseMedia(r.text).segments) {
    const bytes = await download(node.http(`${base}/${s.uri}`));
    writeFileSync(join(dir, s.uri), bytes);
    segments.push({ uri: s.uri, bytes: bytes.length });
  }
  const again = await httpGet(node.http(`${base}/index.m3u8`), node.agent);
  if (again.text !== r.text) throw new Error("the playlist changed while its segments were downloaded: the stream is not at rest");
  return { playlist: r.text, segments };
}

async function download(url: string): Promise<Buffer> {
  const r = await fetch(url, { signal: AbortSignal.timeout(10000) });
  if (r.status !== 200) throw new Error(`${url}: HTTP ${r.status}`);
  return Buffer.from(await r.arrayBuffer());
}

const MIB = 1024 * 1024;
/** A 2-hour DVR window of 2 s segments. */
const DVR_SEGMENTS = 3600;

/** A reload's size with a delta update (_HLS_skip=YES) against a full one, at a 2-hour window (synthetic). */
function deltaFigure(): Figure {
  const t0 = Date.UTC(2026, 0, 1);
  const entries = Array.from({ length: DVR_SEGMENTS }, (_, i) => ({ seq: i, claim: "0123456789ab", pdt: t0 + i * 2000, disc: false, cc: 0, dur: { "720p": 2 } }));
  const stream: StreamSnapshot = {
    id: "dvr", epoch: 1, claim: "0123456789ab", broadcast: "0123456789ab", owner: "n", state: "live", targetDuration: 2, ladder: null,
    nextSeq: DVR_SEGMENTS, createdAt: t0, claimedAt: t0, releasedAt: null, entries,
  };
  const full = Buffer.from(renderMedia(stream, "720p"));
  const delta = Buffer.from(renderMedia(stream, "720p", "", { skip: true }));
  const [fullGz, deltaGz] = [gzipSync(full).length, gzipSync(delta).length];
  return compared("playlist reload at a 2-hour window, delta update", "bytes", delta.length, "full reload", full.length, {
    note: `${DVR_SEGMENTS} segments of 2 s; gzip: ${deltaGz} vs ${fullGz} bytes (full gzip is ${(fullGz / full.length * 100).toFixed(1)}% of full)`,
  });
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

export async function delivery(o: { quick: boolean; log: (line: string) => void }): Promise<Figure[]> {
  const seconds = o.quick ? 4 : 10;
  const rendition = benchRendition();
  let redis: BenchRedis | null = null;
  let node: BenchNode | null = null;
  let publisher: Managed | null = null;
  let nginx: Managed | null = null;
  const work = tempDir("delivery");
  try {
    redis = await startBenchRedis();
    node = await startBenchNode({ redisUrl: redis.url, prefix: benchPrefix(), id: "bench-delivery", env: { BATON_HLS_RECONNECTWINDOW: "600" } });
    const n = node;
    const id = streamName("deliv");
    o.log(`publishing ${id} until its ${rendition} playlist lists ${SEGMENTS} segments`);
    publisher = publish(n.rtmp(id));
    const p = publisher;
    await waitFor(`${SEGMENTS} segments of ${id}`, async () => {
      if (p.child.exitCode !== null) throw new Error(`the publisher exited${n.problems()}`);
      const r = await httpGet(n.http(`/live/${id}/${rendition}/index.m3u8`), n.agent);
      return r.status === 200 && parseMedia(r.text).segments.length >= SEGMENTS ? true : undefined;
    }, 60000, 200);
    await stop(publisher, "SIGTERM", 3000);
    publisher = null;
    // the owner flushes the last segment and releases: from then on the playlist stays as it is
    await waitFor(`${id} to wait for its publisher`, async () => ((await n.streamState(id)) === "reconnecting" ? true : undefined), 30000, 100);
    const root = join(work, "www");
    const files = await snapshot(n, id, rendition, root);
    const segment = files.segments[files.segments.length - 1]!;
    const playlistPath = `/live/${id}/${rendition}/index.m3u8`;
    const segmentPath = `/live/${id}/${rendition}/${segment.uri}`;
    // a viewer's session, as its player uses it: in the path of its media playlist and segments
    const master = await httpGet(n.http(`/live/${id}/index.m3u8`), n.agent);
    const token = /^s\/([^/\s]+)\//m.exec(master.text)?.[1];
    if (!token) throw new Error("the master playlist lists no session");
    const sessionPlaylistPath = `/live/${id}/s/${token}/${rendition}/index.m3u8`;
    const sessionSegmentPath = `/live/${id}/s/${token}/${rendition}/${segment.uri}`;
    o.log(`${files.segments.length} segments downloaded; starting nginx on the copy`);
    const started = await startNginx(work, root);
    nginx = started.proc;
    const nginxUrl = (path: string): string => `http://${HOST}:${started.port}${path}`;
    for (const [path, same] of [[playlistPath, playlistPath], [segmentPath, segmentPath], [sessionPlaylistPath, playlistPath], [sessionSegmentPath, segmentPath]]) {
      const [a, b] = await Promise.all([download(n.http(path!)), download(nginxUrl(same!))]);
      if (!a.equals(b)) throw new Error(`baton's ${path} and nginx's ${same} are different bytes`);
    }

    // full run: two rounds, baton then nginx, then nginx then baton, so neither side always runs second
    const rounds = o.quick ? 1 : 2;
    const playlistBytes = Buffer.byteLength(files.playlist);
    const GZIP = ["Accept-Encoding: gzip"];
    // [label, baton's path, nginx's path, size, request headers to baton]: nginx serves the plain file
    const targets: [string, string, string, number, string[]][] = [
      ["media playlist", playlistPath, playlistPath, playlistBytes, []],
      ["media playlist, session in path", sessionPlaylistPath, playlistPath, playlistBytes, []],
      ["media playlist, session in path, gzip", sessionPlaylistPath, playlistPath, playlistBytes, GZIP],
      ["segment", segmentPath, segmentPath, segment.bytes, []],
      ["segment, session in path", sessionSegmentPath, segmentPath, segment.bytes, []],
    ];
    const figures: Figure[] = [deltaFigure()];
    for (const [label, path, nginxPath, size, headers] of targets) {
      const runs: Record<"baton" | "nginx", WrkResult[]> = { baton: [], nginx: [] };
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? (["baton", "nginx"] as const) : (["nginx", "baton"] as const);
        for (const side of order) {
          o.log(`wrk -t1 -c${CONNECTIONS} -d${seconds}s: ${label} from ${side}${rounds > 1 ? `, round ${round + 1}/${rounds}` : ""}`);
          runs[side].push(side === "baton" ? await wrk(n.http(path), seconds, headers) : await wrk(nginxUrl(nginxPath), seconds));
          await sleep(500);
        }
      }
      const b = runs.baton;
      const x = runs.nginx;
      const sizeText = size >= 10240 ? `${(size / 1024).toFixed(0)} KiB` : `${size} bytes`;
      const latency = `p99 latency ${mean(b.map((r) => r.p99Ms)).toFixed(2)} ms vs ${mean(x.map((r) => r.p99Ms)).toFixed(2)} ms`;
      const socketErrors = (list: WrkResult[]): number => list.reduce((total, r) => total + r.socketErrors, 0);
      const errors = socketErrors(b) + socketErrors(x) > 0 ? `; socket errors ${socketErrors(b)} vs ${socketErrors(x)}` : "";
      const how = `wrk -t1 -c${CONNECTIONS} -d${seconds}s${rounds > 1 ? `, mean of ${rounds} runs each (ABBA)` : ", 1 run each"}`;
      const rps = (r: WrkResult): number => r.requestsPerSec;
      const mibs = (r: WrkResult): number => r.bytesPerSec / MIB;
      figures.push(
        compared(`${label} requests/s`, "req/s", mean(b.map(rps)), "nginx, same file", mean(x.map(rps)), {
          samples: b.map(rps), baselineSamples: x.map(rps), note: `${sizeText}; ${how}; ${latency}${errors}`,
        }),
        compared(`${label} bytes/s`, "MiB/s", mean(b.map(mibs)), "nginx, same file", mean(x.map(mibs)), {
          samples: b.map(mibs), baselineSamples: x.map(mibs), note: "wrk's Transfer/sec: headers and body",
        }),
      );
    }
    return figures;
  } catch (error) {
    throw new Error(`${errorMessage(error)}${node?.problems() ?? ""}`, { cause: error });
  } finally {
    await stop(nginx, "SIGTERM", 3000);
    await stop(publisher, "SIGKILL", 1000);
    if (node) await stop(node.proc, "SIGTERM", 10000);
    node?.agent.destroy();
    if (redis) await stop(redis.proc, "SIGTERM", 5000);
    removeDir(work);
  }
}
