// A CDN-style shared cache for the tests: Debian's nginx with proxy_cache in front of one baton node. It keeps
// what the node's Cache-Control lets a shared cache keep (and a variant per Vary), and says what it did in
// X-Cache (HIT, MISS, EXPIRED, BYPASS...). Stopped by stopAll().
import { join } from "node:path";
import { nginxArgs, nginxConf } from "../../tools/nginx.ts";
import { freePort, startProcess, waitForPort } from "../../tools/processes.ts";
import { HOST, tempDir, track } from "./stack.ts";

export interface TestCache {
  http(path: string): string;
}

export async function startTestCache(originPort: number): Promise<TestCache> {
  const dir = tempDir("nginx");
  const port = await freePort();
  const conf = nginxConf(dir, {
    connections: 256,
    http: [
      `proxy_cache_path ${join(dir, "cache")} levels=1:2 keys_zone=edge:1m max_size=64m inactive=10m use_temp_path=off;`,
      "server {",
      `  listen ${HOST}:${port};`,
      "  location / {",
      `    proxy_pass http://${HOST}:${originPort};`,
      "    proxy_http_version 1.1;",
      '    proxy_set_header Connection "";',
      "    proxy_cache edge;",
      "    proxy_cache_lock on;",
      "    add_header X-Cache $upstream_cache_status always;",
      "  }",
      "}",
    ],
  });
  const proc = track(startProcess("nginx", "nginx", nginxArgs(dir, conf)));
  await waitForPort(HOST, port, 10000, proc);
  return { http: (path) => `http://${HOST}:${port}${path}` };
}
