// The quick start: `baton start` (what `npm start` runs) brings up Redis, nodes and HAProxy, prints working
// push and watch URLs, `baton token` signs with the same secret, and Ctrl-C leaves nothing running.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { ReconnectingPublisher } from "../../tools/chaos/publisher.ts";
import { SimulatedViewer } from "../../tools/chaos/viewer.ts";
import { makePublishToken } from "../../src/ingest/token.ts";
import { join } from "node:path";
import { isPortFree, nodeCommand, startProcess, type Managed } from "../../tools/processes.ts";
import { parseM3u8 } from "../helpers/hls.ts";
import { HOST, get, localClusterEnv, publish, stopAll, waitFor, ADMIN } from "../helpers/stack.ts";

function descendants(pid: number): number[] {
  let out: string;
  try {
    out = execFileSync("pgrep", ["-P", String(pid)], { encoding: "utf8" });
  } catch {
    return [];
  }
  const children = out.split("\n").filter(Boolean).map(Number);
  return children.flatMap((c) => [c, ...descendants(c)]);
}

/** The publish secret the local cluster made in its state dir. */
function secretOf(env: NodeJS.ProcessEnv): string {
  return readFileSync(join(env.BATON_STATE_DIR!, "secret"), "utf8").trim();
}

/** Whether a process still runs (a zombie waiting for its reaper does not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

describe("local cluster: npm start", function () {
  this.timeout(120000);
  let launcher: Managed;
  const output: string[] = [];
  let env: NodeJS.ProcessEnv;

  after(stopAll);

  it("starts Redis, two nodes and HAProxy, and prints push and watch URLs that work", async () => {
    env = await localClusterEnv(2, { BATON_HLS_SEGMENTDURATION: "1" });
    const [rtmp, http] = [env.BATON_RTMP_PORT, env.BATON_HTTP_PORT];
    const [command, args] = nodeCommand(["start", "--nodes", "2"]);
    launcher = startProcess("launcher", command, args, { env, onLine: (line) => output.push(line) });
    const push = await waitFor("the push URL", () => output.map((l) => /Push \(ffmpeg\):\s+(\S+)/.exec(l)?.[1]).find(Boolean), 60000);
    const watch = output.map((l) => /Watch \(HLS\):\s+(\S+)/.exec(l)?.[1]).find(Boolean)!;
    assert.match(push, new RegExp(`^rtmp://localhost:${rtmp}/live/demo\\?token=`));
    assert.equal(watch, `http://localhost:${http}/live/demo/index.m3u8`);

    const publisher = publish(push.replace("localhost", HOST));
    const master = await waitFor("the stream through HAProxy", async () => {
      const r = await get(watch.replace("localhost", HOST));
      return r.status === 200 ? parseM3u8(r.text) : undefined;
    });
    assert.deepEqual(master.playlists?.map((p) => p.uri.replace(/^s\/[^/]+\//, "")), ["360p/index.m3u8", "240p/index.m3u8"]);
    publisher.child.kill("SIGKILL");

    const nodes = JSON.parse((await get(`http://${HOST}:${http}/api/nodes`, ADMIN)).text) as { nodes: { id: string }[] };
    assert.deepEqual(nodes.nodes.map((n) => n.id), ["node-1", "node-2"]);
  });

  it("`baton token` prints a publish URL signed with the running cluster's secret", async () => {
    const [command, args] = nodeCommand(["token", "second"]);
    const text = execFileSync(command, args, { env: { ...process.env, ...env }, encoding: "utf8" });
    const url = text.trim().split("\n").pop()!;
    assert.match(url, /^rtmp:\/\/localhost:\d+\/live\/second\?token=\d+\.\d+\.[A-Za-z0-9_-]{43}$/);
    const publisher = publish(url.replace("localhost", HOST));
    await waitFor("the second stream", async () => {
      const r = await get(`http://${HOST}:${env.BATON_HTTP_PORT}/live/second/index.m3u8`);
      return r.status === 200 ? true : undefined;
    });
    publisher.child.kill("SIGKILL");
  });

  it("`baton status` shows the nodes and streams; `baton rolling-update` restarts every node with no viewer error", async () => {
    const http = `http://${HOST}:${env.BATON_HTTP_PORT}`;
    const publisher = new ReconnectingPublisher({ url: `rtmp://${HOST}:${env.BATON_RTMP_PORT}/live/rolling?token=${makePublishToken(secretOf(env), "rolling", 600)}`, retryDelayMs: 300 });
    publisher.start();
    const stop = new AbortController();
    try {
      await waitFor("the stream", async () => {
        const r = await get(`${http}/live/rolling/360p/index.m3u8`);
        return r.status === 200 && parseM3u8(r.text).segments.length >= 4 ? true : undefined;
      }, 30000);
      const [command, args] = nodeCommand(["status", "--url", http]);
      // the owner reports its transcoder's speed once ffmpeg measured it (every 2 s)
      const table = await waitFor("the transcoder's speed in baton status", () => {
        const text = execFileSync(command, args, { env: { ...process.env, ...env }, encoding: "utf8" });
        return /rolling\s+live\s+node-\d.*\s\d+\.\d\dx/.test(text) ? text : undefined;
      }, 20000, 1000);
      assert.match(table, /TRANSCODER/);
      assert.match(table, /NODE\s+STATE/);
      assert.match(table, /node-1\s+ready/);
      assert.match(table, /node-2\s+ready/);
      assert.match(table, /rolling\s+live\s+node-\d/);

      const viewers = Array.from({ length: 5 }, (_, id) => new SimulatedViewer({ baseUrl: http, streamId: "rolling", id, signal: stop.signal }));
      const running = viewers.map((v) => v.run());
      await waitFor("viewers playing", () => (viewers.every((v) => v.report.segments >= 1) ? true : undefined), 20000);
      const before = JSON.parse((await get(`${http}/api/nodes`, ADMIN)).text) as { nodes: { id: string; startedAt: number }[] };
      const [rcommand, rargs] = nodeCommand(["rolling-update", "--url", http]);
      const out = await new Promise<string>((resolve, reject) =>
        execFile(rcommand, rargs, { env: { ...process.env, ...env }, encoding: "utf8", timeout: 120000 }, (error, stdout, stderr) =>
          error ? reject(new Error(`${error.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
        ),
      );
      assert.match(out, /\[1\/2\] node-\d: back and ready/);
      assert.match(out, /\[2\/2\] node-\d: back and ready/);
      assert.match(out, /rolling update done/);
      const after = JSON.parse((await get(`${http}/api/nodes`, ADMIN)).text) as { nodes: { id: string; startedAt: number; state: string }[] };
      for (const n of before.nodes) {
        const now = after.nodes.find((m) => m.id === n.id)!;
        assert.ok(now.startedAt > n.startedAt, `${n.id} was restarted`);
        assert.equal(now.state, "ready");
      }
      const seen = viewers[0]!.report.segments;
      await waitFor("viewers still getting segments", () => (viewers[0]!.report.segments >= seen + 2 ? true : undefined), 20000);
      stop.abort();
      const reports = await Promise.all(running);
      assert.deepEqual(reports.flatMap((r) => Object.entries(r.errors)), [], "no viewer saw an error");
      assert.equal(reports.reduce((n, r) => n + r.sequenceRegressions + r.uriChanges + r.endlists, 0), 0);
    } finally {
      stop.abort();
      await publisher.stop();
    }
  });

  it("stops everything it started on Ctrl-C", async () => {
    const pids = descendants(launcher.child.pid!);
    assert.ok(pids.length >= 4, `redis, two nodes and haproxy are running: ${pids.join(",")}`);
    launcher.child.kill("SIGINT");
    const exit = await launcher.exited;
    assert.equal(exit.code, 0);
    const left = pids.filter(alive).map((pid) => `${pid} ${readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").slice(0, 100)}`);
    assert.deepEqual(left, [], "no process of the local cluster is left");
    assert.ok(await isPortFree(HOST, Number(env.BATON_HTTP_PORT)));
  });
});

describe("local cluster: a closed terminal or a killed launcher leaves nothing behind", function () {
  this.timeout(120000);
  after(stopAll);

  const startLauncher = async (env: NodeJS.ProcessEnv, output: string[]): Promise<Managed> => {
    const [command, args] = nodeCommand(["start", "--nodes", "1"]);
    const launcher = startProcess("launcher", command, args, { env, onLine: (line) => output.push(line) });
    await waitFor("the cluster to be up", () => {
      if (launcher.child.exitCode !== null) throw new Error(`the launcher exited ${launcher.child.exitCode}: ${output.slice(-5).join("\n")}`);
      return output.some((l) => /Push \(ffmpeg\):/.test(l)) ? true : undefined;
    }, 60000);
    return launcher;
  };

  it("SIGHUP (the terminal closed) stops Redis, the nodes and HAProxy, as Ctrl-C does", async () => {
    const env = await localClusterEnv(1);
    const output: string[] = [];
    const launcher = await startLauncher(env, output);
    const pids = descendants(launcher.child.pid!);
    assert.ok(pids.length >= 3, `redis, a node and haproxy are running: ${pids.join(",")}`);
    launcher.child.kill("SIGHUP");
    assert.equal((await launcher.exited).code, 0);
    assert.deepEqual(pids.filter(alive), [], "no process of the local cluster is left");
    assert.ok(await isPortFree(HOST, Number(env.BATON_HTTP_PORT)));
    assert.ok(await isPortFree(HOST, Number(env.BATON_RTMP_PORT)));
  });

  it("after a launcher killed outright, the next start stops what it left and starts", async () => {
    const env = await localClusterEnv(1);
    const first: string[] = [];
    const launcher = await startLauncher(env, first);
    const pids = descendants(launcher.child.pid!);
    launcher.child.kill("SIGKILL");
    await launcher.exited;
    assert.ok(pids.some(alive), "a killed launcher cannot stop its children itself");
    const second: string[] = [];
    const next = await startLauncher(env, second);
    assert.ok(second.some((l) => /stopped what a previous run left running: .*redis-server/.test(l)), second.join("\n"));
    assert.deepEqual(pids.filter(alive), [], "what the first launcher left is gone");
    next.child.kill("SIGINT");
    assert.equal((await next.exited).code, 0);
  });
});
