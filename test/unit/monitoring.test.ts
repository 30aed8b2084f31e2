// The monitoring files agree with promtool, with each other and with the code: the alert rules load and pass
// their unit tests (deploy/prometheus/alerts.test.yml), every alert is tested firing, the scrape configs reach
// the nodes of docker-compose.yml and of the local cluster with the admin token, Grafana is provisioned with
// the datasource the dashboard names, and every baton metric a rule or a panel reads is one a node exports.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { adminToken, stateDir } from "../../src/config/state-dir.ts";
import { Metrics } from "../../src/core/metrics.ts";
import { nodePorts } from "../../tools/local-cluster.ts";
import { ROOT, PROMETHEUS_DIR, batonMetricNames, dashboardQueries, readDashboard, variableQueries } from "../helpers/monitoring.ts";

type Obj = Record<string, unknown>;
const read = (path: string): string => readFileSync(join(ROOT, path), "utf8");
const yaml = (path: string): Obj => parse(read(path), { merge: true }) as Obj;

function promtool(...args: string[]): string {
  const result = spawnSync("promtool", args, { cwd: PROMETHEUS_DIR, encoding: "utf8" });
  assert.ifError(result.error);
  assert.equal(result.status, 0, `promtool ${args.join(" ")}:\n${result.stdout}${result.stderr}`);
  return result.stdout;
}

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleTest {
  name: string;
  alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[];
}

const rules = (yaml("deploy/prometheus/alerts.yml").groups as { rules: Rule[] }[]).flatMap((g) => g.rules);
const ruleTests = yaml("deploy/prometheus/alerts.test.yml").tests as RuleTest[];
const compose = yaml("docker-compose.yml");
const services = compose.services as Record<string, Obj>;

/** The names of the metrics a node exports, with a histogram's series (_bucket, _sum, _count). */
async function exported(): Promise<Set<string>> {
  const metrics = await new Metrics({ node: "test" }).registry.getMetricsAsJSON();
  return new Set(metrics.flatMap((m) => (String(m.type) === "histogram" ? ["_bucket", "_sum", "_count"].map((s) => m.name + s) : [m.name])));
}

describe("monitoring files", () => {
  describe("deploy/prometheus/alerts.yml", () => {
    it("promtool check rules accepts it", () => {
      assert.match(promtool("check", "rules", "alerts.yml"), new RegExp(`SUCCESS: ${rules.length} rules found`));
    });

    it("passes its unit tests (promtool test rules alerts.test.yml)", () => {
      promtool("test", "rules", "alerts.test.yml");
    });

    it("every alert waits (for:), has a severity, a summary and a description", () => {
      assert.ok(rules.length >= 10);
      for (const rule of rules) {
        assert.match(rule.for ?? "", /^\d+[smh]$/, `${rule.alert}: no for:`);
        assert.ok(["critical", "warning"].includes(rule.labels?.severity ?? ""), `${rule.alert}: severity ${rule.labels?.severity}`);
        assert.ok((rule.annotations?.summary ?? "").length > 10, `${rule.alert}: no summary`);
        assert.ok((rule.annotations?.description ?? "").length > 80, `${rule.alert}: no description that says what to do`);
      }
    });

    it("every alert has a unit test that sees it fire and one that sees it quiet", () => {
      const cases = ruleTests.flatMap((t) => t.alert_rule_test ?? []);
      for (const { alert } of rules) {
        assert.ok(cases.some((c) => c.alertname === alert && c.exp_alerts.length > 0), `no test sees ${alert} fire`);
        assert.ok(cases.some((c) => c.alertname === alert && c.exp_alerts.length === 0), `no test sees ${alert} stay quiet`);
      }
    });

    it("reads only metrics a node exports", async () => {
      const names = await exported();
      for (const name of batonMetricNames(read("deploy/prometheus/alerts.yml"))) assert.ok(names.has(name), `alerts.yml reads ${name}, which no node exports`);
    });
  });

  describe("scrape configs", () => {
    it("promtool accepts prometheus.yml and local.yml", () => {
      promtool("check", "config", "--syntax-only", "prometheus.yml", "local.yml");
    });

    for (const [file, targets, tokenFile] of [
      ["prometheus.yml", Object.keys(services).filter((n) => /^node-\d+$/.test(n)).sort().map((n) => `${n}:${DEFAULTS.http.port}`), "/run/secrets/baton_admin_token"],
      ["local.yml", [1, 2, 3].map((i) => `127.0.0.1:${nodePorts(DEFAULTS, i).httpPort}`), "../../var/admin-token"],
    ] as const) {
      it(`${file} scrapes each node's own HTTP port with the admin token and loads alerts.yml`, () => {
        const config = yaml(`deploy/prometheus/${file}`);
        assert.deepEqual(config.rule_files, ["alerts.yml"]);
        const jobs = config.scrape_configs as { job_name: string; authorization: { type: string; credentials_file: string }; static_configs: { targets: string[] }[] }[];
        const job = jobs.find((j) => j.job_name === "baton");
        assert.ok(job, "no job baton (the rules select job=\"baton\")");
        assert.deepEqual(job.authorization, { type: "Bearer", credentials_file: tokenFile });
        assert.deepEqual(job.static_configs.flatMap((s) => s.targets), [...targets]);
      });
    }

    it("local.yml's token file is the admin token `npm start` makes in the checkout's state dir", () => {
      const dir = mkdtempSync(join(tmpdir(), "baton-monitoring-"));
      try {
        const token = adminToken({ ...DEFAULTS, admin: { ...DEFAULTS.admin, token: "" } }, { BATON_STATE_DIR: dir });
        assert.equal(readFileSync(join(dir, "admin-token"), "utf8").trim(), token);
        assert.equal(join(PROMETHEUS_DIR, "../../var"), stateDir({}), "npm start runs in the checkout: its state dir is var/");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe("docker-compose.yml: Prometheus and Grafana", () => {
    it("Prometheus mounts deploy/prometheus and gets BATON_ADMIN_TOKEN as the secret its config reads", () => {
      const prometheus = services.prometheus as Obj;
      assert.ok(String(prometheus.image).startsWith("prom/prometheus:"));
      assert.ok((prometheus.volumes as string[]).includes("./deploy/prometheus:/etc/prometheus:ro"));
      assert.ok((prometheus.command as string[]).includes("--config.file=/etc/prometheus/prometheus.yml"));
      assert.deepEqual(prometheus.secrets, ["baton_admin_token"]);
      assert.deepEqual((compose.secrets as Obj).baton_admin_token, { environment: "BATON_ADMIN_TOKEN" });
    });

    it("Grafana mounts the provisioning files and the dashboards where the provider looks", () => {
      const grafana = services.grafana as Obj;
      assert.ok(String(grafana.image).startsWith("grafana/grafana:"));
      const volumes = grafana.volumes as string[];
      assert.ok(volumes.includes("./deploy/grafana/provisioning:/etc/grafana/provisioning:ro"));
      const provider = (yaml("deploy/grafana/provisioning/dashboards/baton.yml").providers as { options: { path: string } }[])[0];
      assert.ok(volumes.includes(`./deploy/grafana/dashboards:${provider?.options.path}:ro`));
      assert.match(String((grafana.environment as Obj).GF_SECURITY_ADMIN_PASSWORD), /^\$\{GRAFANA_ADMIN_PASSWORD:\?/);
    });

    it("their UIs listen on this machine only (neither has a login in front of it but Grafana's)", () => {
      for (const name of ["prometheus", "grafana"]) {
        for (const port of (services[name] as Obj).ports as string[]) assert.match(port, /^127\.0\.0\.1:/, `${name} publishes ${port}`);
      }
    });
  });

  describe("deploy/grafana/dashboards/baton.json", () => {
    const dashboard = readDashboard();
    const datasources = yaml("deploy/grafana/provisioning/datasources/prometheus.yml").datasources as { uid: string; type: string; url: string }[];

    it("every panel queries the provisioned Prometheus datasource", () => {
      assert.equal(datasources.length, 1);
      assert.equal(datasources[0]?.url, "http://prometheus:9090");
      for (const panel of dashboard.panels.filter((p) => p.type !== "row")) {
        assert.equal(panel.datasource?.uid, datasources[0]?.uid, `${panel.title}: another datasource`);
        assert.ok((panel.targets ?? []).length > 0, `${panel.title}: no query`);
      }
    });

    it("shows publishers, viewers, transcoder speed, latencies, error ratio, Redis, the store, capacity and refusals", () => {
      const all = dashboardQueries().map((q) => q.expr).join("\n");
      for (const name of ["baton_publishers", "baton_viewers", "baton_transcoder_speed", "baton_segment_publish_latency_seconds_bucket",
        "baton_http_request_duration_seconds_bucket", "baton_http_requests_total", "baton_redis_up", "baton_segment_store_errors_total",
        "baton_capacity_slots", "baton_publish_refusals_total"]) {
        assert.ok(all.includes(name), `no panel reads ${name}`);
      }
    });

    it("reads only metrics a node exports, and only the variables it defines", async () => {
      const names = await exported();
      const variables = [...variableQueries().keys()];
      assert.deepEqual(variables, ["node", "stream"]);
      for (const { panel, expr } of dashboardQueries()) {
        for (const name of batonMetricNames(expr)) assert.ok(names.has(name), `${panel} reads ${name}, which no node exports`);
        for (const [, used] of expr.matchAll(/\$(\w+)/g)) assert.ok(used?.startsWith("__") || variables.includes(used ?? ""), `${panel}: $${used} is not defined`);
      }
    });
  });
});
