// A CDN-style shared cache for the tests: Debian's nginx with proxy_cache in front of one baton node. It keeps
// what the node's Cache-Control lets a shared cache keep (and a variant per Vary), and says what it did in
// X-Cache (HIT, MISS, EXPIRED, BYPASS...). Stopped by stopAll().
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, startProcess, waitForPort } from "../../tools/processes.ts";
import { HOST, tempDir, track } from "./stack.ts";

export interface TestCache {
  http(path: string): string;
}

export async function startTestCache(originPort: number): Promise<TestCache> {
  const dir = tempDir("nginx");
  const port = await freePort();
  mkdirSync(join(dir, "temp"), { recursive: true });
  const conf = join(dir, "nginx.conf");
  writeFileSync(conf, [
    "master_process off;",
    "worker_processes 1;",
    `pid ${join(dir, "nginx.pid")};`,
    `error_log ${join(dir, "error.log")} warn;`,
    "events { worker_connections 256; }",
    "http {",
    "  access_log off;",
    ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `  ${t}_temp_path ${join(dir, "temp", t)};`),
    `  proxy_cache_path ${join(dir, "cache")} levels=1:2 keys_zone=edge:1m max_size=64m inactive=10m use_temp_path=off;`,
    "  server {",
    `    listen ${HOST}:${port};`,
    "    location / {",
    `      proxy_pass http://${HOST}:${originPort};`,
    "      proxy_http_version 1.1;",
    '      proxy_set_header Connection "";',
    "      proxy_cache edge;",
    "      proxy_cache_lock on;",
    "      add_header X-Cache $upstream_cache_status always;",
    "    }",
    "  }",
    "}",
    "",
  ].join("\n"));
  const proc = track(startProcess("nginx", "nginx", ["-p", `${dir}/`, "-e", join(dir, "error.log"), "-c", conf, "-g", "daemon off;"]));
  await waitForPort(HOST, port, 10000, proc);
  return { http: (path) => `http://${HOST}:${port}${path}` };
}
