// The player page: GET /watch/{streamId}, with hls.js served by baton itself (no CDN).
import { readFileSync } from "node:fs";
import { STREAM_ID_PATTERN } from "../core/ids.ts";
import { createRequire } from "node:module";
import type { Routes } from "../http/server.ts";

const require = createRequire(import.meta.url);
const PUBLIC = new URL("./public/", import.meta.url);

const SECURITY = {
  "Content-Security-Policy":
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self' ws: wss:",
  "X-Content-Type-Options": "nosniff",
};

export function addPlayer(http: Routes): void {
  const page = readFileSync(new URL("watch.html", PUBLIC), "utf8");
  const assets: Record<string, Buffer> = {
    "hls.min.js": readFileSync(require.resolve("hls.js/dist/hls.min.js")),
    "player.js": readFileSync(new URL("player.js", PUBLIC)),
  };
  // the stream id is validated by the route's pattern (A-Z a-z 0-9 _ -), so it is safe in HTML
  http.addRoute(["GET", "HEAD"], "watch", new RegExp(`^/watch/(${STREAM_ID_PATTERN})$`), ({ params, res, method }) => {
    const html = page.replaceAll("{{STREAM}}", params[0]!);
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache", ...SECURITY });
    res.end(method === "HEAD" ? undefined : html);
  });
  http.addRoute(["GET", "HEAD"], "static", /^\/static\/(hls\.min\.js|player\.js)$/, ({ params, res, method }) => {
    const body = assets[params[0]!]!;
    res.writeHead(200, { "Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "public, max-age=300", "Content-Length": body.length, ...SECURITY });
    res.end(method === "HEAD" ? undefined : body);
  });
}
