// HAProxy's runtime statistics over its admin socket (`show stat`): one row per frontend, backend and server,
// keyed by the CSV's column names (pxname, svname, status, weight, throttle, wretr, wredis...).
import { createConnection } from "node:net";

export type StatRow = Record<string, string>;

export async function showStat(socketPath: string): Promise<StatRow[]> {
  const csv = await new Promise<string>((resolve, reject) => {
    const socket = createConnection(socketPath);
    let text = "";
    socket.setTimeout(5000, () => socket.destroy(new Error(`HAProxy's stats socket ${socketPath} did not answer`)));
    socket.on("connect", () => socket.write("show stat\n"));
    socket.on("data", (d) => (text += d.toString()));
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
  });
  const [header, ...rows] = csv.split("\n").filter((l) => l.trim());
  const columns = (header ?? "").replace(/^# /, "").split(",");
  return rows.map((row) => {
    const cells = row.split(",");
    return Object.fromEntries(columns.map((c, i) => [c, cells[i] ?? ""]));
  });
}

/**
 * Whether a backend is steady: every server UP, none in slowstart, and the weights `before` (an earlier
 * reading) saw unchanged, so the consistent-hash ring is the same as it was then; with `weight`, every server
 * has that weight (an agent answering `up ready 100%` for a node without publishers).
 */
export function steadyBackend(now: StatRow[], before: StatRow[], backend: string, weight?: string): boolean {
  const servers = (rows: StatRow[]): StatRow[] => rows.filter((r) => r.pxname === backend && r.svname !== "BACKEND" && r.svname !== "FRONTEND");
  const [a, b] = [servers(now), servers(before)];
  return a.length > 0 && a.length === b.length &&
    a.every((r, i) => r.status === "UP" && r.throttle === "" && r.weight === b[i]!.weight && (weight === undefined || r.weight === weight));
}
