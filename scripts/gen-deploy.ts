// Writes deploy/docker/haproxy.cfg, the balancer of docker-compose.yml, from the same generator the local
// cluster uses (src/cluster/haproxy.ts). Run it again after a change of nodes, ports or the generator:
//
//   node --import tsx scripts/gen-deploy.ts           write the file
//   node --import tsx scripts/gen-deploy.ts --check   exit 1 if the committed file differs from the generated one
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { haproxyConfig, type BalancedNode } from "../src/cluster/haproxy.ts";
import { DEFAULTS } from "../src/config/defaults.ts";

/** The baton services of docker-compose.yml: node-1 .. node-N. */
export const COMPOSE_NODES = 3;

/** The generated file, and the repository root it is shown relative to. */
export const OUTPUT = fileURLToPath(new URL("../deploy/docker/haproxy.cfg", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));

/**
 * The compose nodes as HAProxy sees them: each on the default ports of its own container, reached by its
 * service name (or by `host`, which the test uses to check the same configuration outside Docker).
 */
export function composeNodes(host?: string): BalancedNode[] {
  return Array.from({ length: COMPOSE_NODES }, (_, i) => {
    const id = `node-${i + 1}`;
    return { id, host: host ?? id, rtmpPort: DEFAULTS.rtmp.port, httpPort: DEFAULTS.http.port, agentPort: DEFAULTS.agent.port };
  });
}

/** deploy/docker/haproxy.cfg as it should be: HAProxy on the public default ports in front of the compose nodes. */
export function composeHaproxyConfig(host?: string): string {
  return haproxyConfig({
    // HAProxy is the compose deployment's only published service: it listens on every address
    bind: "0.0.0.0",
    rtmpPort: DEFAULTS.rtmp.port,
    httpPort: DEFAULTS.http.port,
    nodes: composeNodes(host),
    statsSocket: null,
  });
}

function main(args: string[]): number {
  const check = args[0] === "--check";
  if (args.length > (check ? 1 : 0)) {
    process.stderr.write("usage: node --import tsx scripts/gen-deploy.ts [--check]\n");
    return 2;
  }
  const wanted = composeHaproxyConfig();
  const shown = relative(ROOT, OUTPUT);
  if (check) {
    let current: string | null = null;
    try {
      current = readFileSync(OUTPUT, "utf8");
    } catch {
      // missing: reported below
    }
    if (current === wanted) {
      process.stdout.write(`${shown} is up to date\n`);
      return 0;
    }
    process.stderr.write(
      `gen-deploy: ${shown} ${current === null ? "is missing" : "differs from what the generator makes"}; ` +
        "run: node --import tsx scripts/gen-deploy.ts\n",
    );
    return 1;
  }
  mkdirSync(dirname(OUTPUT), { recursive: true });
  writeFileSync(OUTPUT, wanted);
  process.stdout.write(`wrote ${shown}\n`);
  return 0;
}

// a script when run, a module (composeNodes, composeHaproxyConfig) when imported
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2));
}
