// Benchmark 12: rolling updates to a release. The local cluster (tools/local-cluster.ts: Redis, two nodes,
// HAProxy; light ladder, 1-s segments, admission by stream count) with one live stream and two simulated
// viewers pinned to each node. The CLI (`baton rolling-update`) is run as an operator runs it, each line of its
// output timestamped as it arrives:
// - a good release (a harmless --config change): its total time, and per node;
// - a bad release (a checkout whose segment requests answer 500): from the moment the canary is back and
//   serving (its first bad answer can come from then on) to the failed gate, and from there to the end of its
//   rollback. Baseline, same run: one node's drain and restart in the good update.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ReconnectingPublisher } from "../tools/chaos/publisher.ts";
import { SimulatedViewer, type ViewerReport } from "../tools/chaos/viewer.ts";
import { LocalCluster } from "../tools/local-cluster.ts";
import { freePort, isPortFree, nodeCommand, startProcess } from "../tools/processes.ts";
import { makeBadRelease } from "../tools/rollout/bad-releases.ts";
import { compared, type Figure } from "./report.ts";
import { httpGet, tempDir, track, waitFor } from "./procs.ts";

const HOST = "127.0.0.1";
const LADDER = [
  { name: "360p", height: 360, videoBitrate: 500, audioBitrate: 64, maxFrameRate: 30 },
  { name: "240p", height: 240, videoBitrate: 250, audioBitrate: 64, maxFrameRate: 30 },
];

/** A base port whose next `count` ports are free too (the launcher puts node i on base + i). */
async function freeRange(count: number): Promise<number> {
  for (;;) {
    const base = await freePort();
    let free = base + count <= 65535;
    for (let i = 1; i <= count && free; i++) free = await isPortFree(HOST, base + i);
    if (free) return base;
  }
}

/** Runs the CLI; resolves with its exit code and each output line with the ms it arrived at. */
function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; lines: { at: number; text: string }[] }> {
  const lines: { at: number; text: string }[] = [];
  const [command, argv] = nodeCommand(args);
  const p = track(startProcess("baton-cli", command, argv, { env, onLine: (text) => lines.push({ at: Date.now(), text }) }));
  return p.exited.then(({ code }) => ({ code, lines }));
}

const at = (lines: { at: number; text: string }[], pattern: RegExp): number => {
  const line = lines.find((l) => pattern.test(l.text));
  if (!line) throw new Error(`no CLI line like ${pattern}:\n${lines.map((l) => l.text).join("\n")}`);
  return line.at;
};

export async function rollout(ctx: { quick: boolean; log: (line: string) => void }): Promise<Figure[]> {
  const soak = ctx.quick ? 10 : 30;
  const env: Record<string, string> = {
    BATON_STATE_DIR: join(tempDir("rollout"), "var"),
    BATON_RTMP_PORT: String(await freeRange(2)),
    BATON_HTTP_PORT: String(await freeRange(2)),
    BATON_AGENT_PORT: String(await freeRange(2)),
    BATON_REDIS_URL: `redis://${HOST}:${await freePort()}`,
    BATON_TRANSCODE_LADDER: JSON.stringify(LADDER),
    BATON_TRANSCODE_PRESET: "ultrafast",
    BATON_TRANSCODE_CPUTARGET: "0",
    BATON_HLS_SEGMENTDURATION: "1",
    BATON_ROLLOUT_CANARYSOAK: String(soak),
    BATON_ROLLOUT_STEPSOAK: String(Math.round(soak / 2)),
    BATON_ROLLOUT_GATEMINREQUESTS: "10",
  };
  // LocalCluster reads its config from this process's environment and its nodes inherit it: set it for the
  // benchmark, then put it back
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  const cluster = new LocalCluster({ nodes: 2, onNotice: ctx.log });
  const stop = new AbortController();
  const viewers: Promise<ViewerReport>[] = [];
  let publisher: ReconnectingPublisher | null = null;
  try {
    ctx.log("starting the local cluster (2 nodes)");
    await cluster.start();
    publisher = new ReconnectingPublisher({ url: cluster.publishUrl("bench"), retryDelayMs: 300 });
    publisher.start();
    await waitFor("the stream", async () => ((await httpGet(`${cluster.httpUrl}/live/bench/360p/index.m3u8`)).status === 200 ? true : undefined), 60000, 500);
    for (const node of cluster.nodes) {
      for (let j = 0; j < 2; j++) viewers.push(new SimulatedViewer({ baseUrl: `http://${HOST}:${node.httpPort}`, streamId: "bench", id: viewers.length, signal: stop.signal }).run());
    }
    const cliEnv = { ...env, BATON_ADMIN_TOKEN: cluster.adminToken };

    ctx.log(`a good release (--config), canary soak ${soak} s`);
    const good = join(tempDir("rollout-config"), "good.json");
    writeFileSync(good, JSON.stringify({ sessions: { startsPerMinute: 600 } }));
    const update = await cli(["rolling-update", "--config", good, "--url", cluster.httpUrl], cliEnv);
    if (update.code !== 0) throw new Error(`the good release failed:\n${update.lines.map((l) => l.text).join("\n")}`);
    const perNode = update.lines
      .map((l) => /back and ready in (\d+\.\d) s/.exec(l.text)?.[1])
      .filter((s): s is string => s !== undefined)
      .map(Number);
    const total = (update.lines[update.lines.length - 1]!.at - update.lines[0]!.at) / 1000;
    const restart = Math.min(...perNode);

    ctx.log("a bad release (segment requests fail)");
    const bad = await cli(["rolling-update", ...makeBadRelease("segments-fail", tempDir("rollout-release")), "--url", cluster.httpUrl], cliEnv);
    if (bad.code === 0) throw new Error(`the bad release went through:\n${bad.lines.map((l) => l.text).join("\n")}`);
    const serving = at(bad.lines, /\[1\/2\] node-\d: back and ready/);
    const caught = at(bad.lines, /^rolling back: gate errors failed/);
    const done = bad.lines[bad.lines.length - 1]!.at;
    return [
      compared("good release: rolling update, per node", "s", total / cluster.nodes.length, "one node's drain and restart", restart, { note: `total ${total.toFixed(1)} s, canary soak ${soak} s` }),
      compared("bad canary: from serving to its failed gate", "s", (caught - serving) / 1000, "one node's drain and restart", restart, { note: "gate errors, checked every 2 s" }),
      compared("bad canary: from its failed gate to rolled back", "s", (done - caught) / 1000, "one node's drain and restart", restart),
    ];
  } finally {
    stop.abort();
    await Promise.all(viewers);
    await publisher?.stop();
    await cluster.stop();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
