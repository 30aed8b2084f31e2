// Debian's nginx as the tests and benchmarks run it: one process in the foreground, everything it writes
// (pid, error log, temp files) in one directory of its own, and the `http` block the caller gives.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The whole nginx.conf: the one-process frame around the caller's lines inside `http { }`. */
export function nginxConf(dir: string, o: { connections: number; http: string[] }): string {
  return [
    // `daemon off;` comes from the command line (nginxArgs)
    "master_process off;",
    "worker_processes 1;",
    `pid ${join(dir, "nginx.pid")};`,
    `error_log ${join(dir, "error.log")} warn;`,
    `events { worker_connections ${o.connections}; }`,
    "http {",
    "  access_log off;",
    ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `  ${t}_temp_path ${join(dir, "temp", t)};`),
    ...o.http.map((line) => `  ${line}`),
    "}",
    "",
  ].join("\n");
}

/** Writes the config into `dir`; the arguments that run nginx on it in the foreground. */
export function nginxArgs(dir: string, conf: string): string[] {
  mkdirSync(join(dir, "temp"), { recursive: true });
  const file = join(dir, "nginx.conf");
  writeFileSync(file, conf);
  return ["-p", `${dir}/`, "-e", join(dir, "error.log"), "-c", file, "-g", "daemon off;"];
}
