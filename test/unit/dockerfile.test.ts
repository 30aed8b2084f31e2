// The container image: a node in exec form, as a non-root user, the default ports, and what its CMD needs.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { DEFAULTS } from "../../src/config/defaults.ts";

const read = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");

describe("Dockerfile", () => {
  const dockerfile = read("Dockerfile");

  it("runs a node in exec form, as a non-root user, exposing the default ports", () => {
    assert.match(dockerfile, /^FROM node:20-bookworm-slim$/m);
    assert.match(dockerfile, /^CMD \["node", "--import", "tsx", "src\/bin\/baton\.ts", "node"\]$/m);
    assert.match(dockerfile, /^USER (?!root)\S+$/m);
    assert.match(dockerfile, /^STOPSIGNAL SIGTERM$/m);
    const expose = /^EXPOSE (.+)$/m.exec(dockerfile)?.[1]?.split(/\s+/).map(Number) ?? [];
    assert.deepEqual(expose, [DEFAULTS.rtmp.port, DEFAULTS.http.port, DEFAULTS.agent.port]);
    assert.ok(dockerfile.includes(`http://127.0.0.1:${DEFAULTS.http.port}/healthz`));
  });

  it("copies what a node and its commands load: src/, tools/, config/, scripts/", () => {
    for (const dir of ["src", "tools", "config", "scripts"]) assert.match(dockerfile, new RegExp(`^COPY ${dir}/ ${dir}/$`, "m"));
  });

  it("npm ci --omit=dev keeps tsx, which the CMD needs", () => {
    assert.match(dockerfile, /npm ci --omit=dev/);
    const pkg = JSON.parse(read("package.json")) as { dependencies: Record<string, string> };
    assert.ok("tsx" in pkg.dependencies, "tsx must be a runtime dependency");
  });
});
