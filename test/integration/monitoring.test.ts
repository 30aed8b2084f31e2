// A real Prometheus (the Debian package's binary) scrapes two real baton nodes with the admin token while
// ffmpeg pushes a stream and viewers fetch playlists and segments: the alert rules load and evaluate without
// error on real series, and every query of the Grafana dashboard returns data once its template variables are
// expanded to a node and a stream that exist.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { freePort, startProcess, waitForPort } from "../../tools/processes.ts";
import { parseM3u8 } from "../helpers/hls.ts";
import { PROMETHEUS_DIR, dashboardQueries, expand, variableQueries } from "../helpers/monitoring.ts";
import { ADMIN_TOKEN, HOST, get, publish, startTestNode, startTestRedis, stopAll, tempDir, testPrefix, track, waitFor, type TestNode } from "../helpers/stack.ts";

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** Viewers: each node's media playlist and its newest segment, over and over, until stopped. */
function watch(nodes: TestNode[], streamId: string): { stop(): Promise<void> } {
  let stopped = false;
  const media = new Map<string, string>();
  const loop = (async () => {
    while (!stopped) {
      for (const node of nodes) {
        try {
          // one session per node: a master playlist without one starts a session, at the address's rate
          let url = media.get(node.id);
          if (!url) {
            const master = await get(node.http(`/live/${streamId}/index.m3u8`));
            const first = master.status === 200 ? parseM3u8(master.text).playlists?.[0]?.uri : undefined;
            if (!first) continue;
            url = new URL(first, node.http(`/live/${streamId}/`)).href;
            media.set(node.id, url);
          }
          const playlist = await get(url);
          const last = parseM3u8(playlist.text).segments.at(-1);
          if (last) await get(new URL(last.uri, url).href);
        } catch {
          // not live yet, or a node busy: the next round asks again
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

describe("monitoring: a real Prometheus scrapes real nodes", function () {
  this.timeout(60000);
  let nodes: TestNode[];
  let viewers: { stop(): Promise<void> } | null = null;
  let api = "";
  const streamId = "monitored";

  /** An instant query's samples. */
  async function query(expr: string): Promise<Sample[]> {
    const r = await get(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = JSON.parse(r.text) as { status: string; error?: string; data?: { resultType: string; result: Sample[] } };
    assert.equal(body.status, "success", `${expr}: ${body.error ?? r.text}`);
    return body.data?.resultType === "scalar" ? [{ metric: {}, value: body.data.result as unknown as [number, string] }] : (body.data?.result ?? []);
  }

  before(async function () {
    const redis = await startTestRedis();
    const prefix = testPrefix();
    nodes = await Promise.all(["mon-1", "mon-2"].map((id) => startTestNode({ redisUrl: redis.url, prefix, id })));
    publish(nodes[0]!.rtmp(streamId));
    // a refused publish, so the refusal series exist as they do in any cluster that has met an encoder
    publish(nodes[1]!.rtmp("refused", "123.bad"), { seconds: 1 });
    viewers = watch(nodes, streamId);

    const port = await freePort();
    const dir = tempDir("prometheus");
    const config = join(dir, "prometheus.yml");
    writeFileSync(config, stringify({
      global: { scrape_interval: "1s", evaluation_interval: "1s" },
      rule_files: [join(PROMETHEUS_DIR, "alerts.yml")],
      scrape_configs: [{
        job_name: "baton",
        authorization: { type: "Bearer", credentials: ADMIN_TOKEN },
        static_configs: [{ targets: nodes.map((n) => `${HOST}:${n.httpPort}`) }],
      }],
    }));
    const proc = track(startProcess("prometheus", "prometheus", [
      `--config.file=${config}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=${HOST}:${port}`, "--log.level=warn",
    ], { onLine: (line) => process.env.TEST_LOGS && process.stderr.write(`prometheus: ${line}\n`) }));
    await waitForPort(HOST, port, 20000, proc);
    api = `http://${HOST}:${port}`;
    await waitFor("Prometheus ready", async () => ((await get(`${api}/-/ready`)).status === 200 ? true : undefined));
  });

  after(async () => {
    await viewers?.stop();
    await stopAll();
  });

  it("scrapes both nodes' /metrics with the admin token", async () => {
    const up = await waitFor("both targets up", async () => {
      const samples = await query('up{job="baton"}');
      return samples.length === 2 && samples.every((s) => s.value[1] === "1") ? samples : undefined;
    });
    assert.deepEqual(up.map((s) => s.metric.instance).sort(), nodes.map((n) => `${HOST}:${n.httpPort}`).sort());
    const ready = await query("baton_ready");
    assert.deepEqual(ready.map((s) => s.metric.node).sort(), ["mon-1", "mon-2"]);
  });

  it("loads every alert rule and evaluates each on the real series without error", async () => {
    const groups = await waitFor("the rules evaluated", async () => {
      const body = JSON.parse((await get(`${api}/api/v1/rules`)).text) as { data: { groups: { rules: { name: string; health: string; lastError?: string; lastEvaluation: string }[] }[] } };
      const rules = body.data.groups.flatMap((g) => g.rules);
      return rules.length > 0 && rules.every((r) => !r.lastEvaluation.startsWith("0001")) ? rules : undefined;
    });
    assert.ok(groups.length >= 10, `${groups.length} rules loaded`);
    for (const rule of groups) assert.equal(rule.health, "ok", `${rule.name}: ${rule.lastError ?? ""}`);
  });

  it("every dashboard query returns data for a node and a stream that exist", async () => {
    const variables = variableQueries();
    const nodeMatch = /^label_values\((.+), (\w+)\)$/.exec(variables.get("node") ?? "");
    assert.ok(nodeMatch, `the node variable's query: ${variables.get("node")}`);
    const nodeIds = await waitFor("the node variable's values", async () => {
      const r = JSON.parse((await get(`${api}/api/v1/label/${nodeMatch[2]}/values?match[]=${encodeURIComponent(nodeMatch[1] ?? "")}`)).text) as { data: string[] };
      return r.data.length === 2 ? r.data : undefined;
    });
    assert.deepEqual(nodeIds.sort(), ["mon-1", "mon-2"]);
    const values = { node: "mon-1", stream: streamId };
    const streamMatch = /^label_values\((.+), (\w+)\)$/.exec(expand(variables.get("stream") ?? "", { node: values.node }));
    assert.ok(streamMatch, `the stream variable's query: ${variables.get("stream")}`);
    await waitFor("the stream variable's values", async () => {
      const r = JSON.parse((await get(`${api}/api/v1/label/${streamMatch[2]}/values?match[]=${encodeURIComponent(streamMatch[1] ?? "")}`)).text) as { data: string[] };
      return r.data.includes(streamId) ? true : undefined;
    }, 25000);

    const queries = dashboardQueries();
    let empty: string[] = [];
    await waitFor("every dashboard query to return data", async () => {
      empty = [];
      for (const q of queries) {
        const samples = await query(expand(q.expr, values));
        if (!samples.some((s) => Number.isFinite(Number(s.value[1])))) empty.push(`${q.panel} ${q.refId}: ${q.expr}`);
      }
      return empty.length === 0 ? true : undefined;
    }, 30000, 1000).catch((error: Error) => assert.fail(`${error.message}; no data:\n${empty.join("\n")}`));
  });
});
