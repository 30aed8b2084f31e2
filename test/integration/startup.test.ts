// A node refuses to start on a broken config or a taken port, with one clear line and no stack trace, before
// it opens any port.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer, type Server } from "node:net";
import { freePort, nodeCommand } from "../../tools/processes.ts";
import { HOST, stopAll, tempDir } from "../helpers/stack.ts";

function runNode(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const [command, args] = nodeCommand(["node"]);
  return new Promise((resolve) => {
    execFile(command, args, { env: { ...process.env, BATON_STATE_DIR: tempDir("startup"), ...env }, timeout: 20000 }, (error, _stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stderr }),
    );
  });
}

describe("node startup", function () {
  this.timeout(60000);
  after(stopAll);

  it("exits 1 naming the key, the value and what was expected on a bad config", async () => {
    const { code, stderr } = await runNode({ BATON_HTTP_PORT: "70000" });
    assert.equal(code, 1);
    assert.equal(stderr.trim(), "baton: config: http.port = 70000 (from BATON_HTTP_PORT): expected an integer from 1 to 65535");
  });

  it("exits 1 naming the port when a port is taken, and leaves the other ports closed", async () => {
    const taken: Server = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => taken.listen(port, HOST, resolve));
    const httpPort = await freePort();
    try {
      const { code, stderr } = await runNode({
        BATON_NODE_BIND: HOST, BATON_RTMP_PORT: String(port), BATON_HTTP_PORT: String(httpPort), BATON_AGENT_PORT: String(await freePort()),
        BATON_AUTH_PUBLISHSECRET: "startup-test-secret-0123456789abcdef",
      });
      assert.equal(code, 1);
      assert.match(stderr, new RegExp(`RTMP port ${HOST}:${port} is already in use \\(rtmp.port / BATON_RTMP_PORT\\)`));
      assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
    } finally {
      taken.close();
    }
  });
});
