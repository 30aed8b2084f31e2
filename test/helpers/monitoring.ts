// The monitoring files (deploy/prometheus, deploy/grafana) as data, for the unit and integration tests.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const PROMETHEUS_DIR = join(ROOT, "deploy/prometheus");
export const DASHBOARD_FILE = join(ROOT, "deploy/grafana/dashboards/baton.json");

export interface DashboardQuery {
  panel: string;
  refId: string;
  expr: string;
}

interface Dashboard {
  templating: { list: { name: string; query: { query: string } | string }[] };
  panels: { title: string; type: string; datasource?: { uid: string }; targets?: { refId: string; expr: string }[] }[];
}

export function readDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")) as Dashboard;
}

/** Every query of the dashboard's panels. */
export function dashboardQueries(dashboard = readDashboard()): DashboardQuery[] {
  return dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, refId: t.refId, expr: t.expr })));
}

/** The template variables' queries (`label_values(...)`), by variable name. */
export function variableQueries(dashboard = readDashboard()): Map<string, string> {
  return new Map(dashboard.templating.list.map((v) => [v.name, typeof v.query === "string" ? v.query : v.query.query]));
}

/**
 * A query as Grafana would send it: template variables replaced by concrete values (a regex match on one value
 * stays a valid regex) and Grafana's range variables by fixed windows that fit the scrape interval.
 */
export function expand(expr: string, values: Record<string, string>, rateInterval = "10s"): string {
  let out = expr.replaceAll("$__rate_interval", rateInterval).replaceAll("$__range", "1m").replaceAll("$__interval", rateInterval);
  for (const [name, value] of Object.entries(values)) out = out.replaceAll(`$${name}`, value);
  return out;
}

/** The baton metric names an expression or a rules file reads. */
export function batonMetricNames(text: string): string[] {
  return [...new Set([...text.matchAll(/\bbaton_[a-z_]+\b/g)].map((m) => m[0]))];
}
