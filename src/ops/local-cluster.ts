// `npm start`: the local cluster. Redis (a child redis-server with its data under var/redis, unless
// REDIS_URL names one), N node processes on their own ports, and HAProxy on the public ports. Prints where
// to push and where to watch. Ctrl-C stops all of it and leaves nothing running.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../config/defaults.ts";
import { loadConfig } from "../config/load.ts";
import { adminToken, publishSecret, sessionSecret, stateDir } from "../config/state-dir.ts";
import { haproxyConfig, type BalancedNode } from "../cluster/haproxy.ts";
import { makePublishToken } from "../ingest/token.ts";
import { isPortFree, nodeCommand, nodeEnv, startHaproxy, startProcess, startRedis, stopProcess, waitForPort, type Managed } from "./processes.ts";

export interface LocalClusterOptions {
  nodes: number;
}

/** Node i (from 1) listens on the configured ports plus i; the configured ports themselves are HAProxy's. */
export function nodePorts(config: Config, i: number): { rtmpPort: number; httpPort: number; agentPort: number } {
  return { rtmpPort: config.rtmp.port + i, httpPort: config.http.port + i, agentPort: config.agent.port + i };
}

const HOST = "127.0.0.1";

function redisPort(url: string): number {
  return Number(new URL(url).port || 6379);
}

export async function runLocalCluster(o: LocalClusterOptions): Promise<void> {
  const config: Config = loadConfig();
  const dir = stateDir();
  // made here, once, so every node signs and checks with the same secrets
  const secret = publishSecret(config);
  const sessionsSecret = sessionSecret(config);
  const admin = adminToken(config);
  const started: Managed[] = [];
  let stopping = false;

  const stopAll = async (): Promise<void> => {
    // nodes first (they flush their last segments into Redis), then the balancer, then Redis
    const nodes = started.filter((p) => p.name.startsWith("node-"));
    await Promise.all(nodes.map((p) => stopProcess(p, "SIGINT", 15000)));
    await Promise.all(started.filter((p) => !nodes.includes(p)).reverse().map((p) => stopProcess(p, "SIGTERM", 5000)));
  };
  const fail = async (message: string): Promise<never> => {
    stopping = true;
    await stopAll();
    throw new Error(message);
  };

  const ports = [config.rtmp.port, config.http.port, ...Array.from({ length: o.nodes }, (_, i) => Object.values(nodePorts(config, i + 1))).flat()];
  for (const port of ports) {
    if (!(await isPortFree(HOST, port))) await fail(`port ${port} is in use: stop whatever holds it (is another baton running?)`);
  }

  let redisUrl = process.env.REDIS_URL ?? "";
  if (!redisUrl) {
    const port = redisPort(config.redis.url);
    if (!(await isPortFree(HOST, port))) {
      await fail(`port ${port} (Redis) is in use: stop that Redis, or use it with REDIS_URL=redis://127.0.0.1:${port} npm start`);
    }
    const redis = startRedis({ port, dir: join(dir, "redis"), persistent: true, logFile: join(dir, "logs", "redis.log") });
    started.push(redis);
    await waitForPort(HOST, port, 10000, redis).catch((error: Error) => fail(`Redis did not start: ${error.message} (see ${join(dir, "logs", "redis.log")})`));
    redisUrl = `redis://${HOST}:${port}`;
  }

  const balanced: BalancedNode[] = [];
  for (let i = 1; i <= o.nodes; i++) {
    const id = `node-${i}`;
    const p = nodePorts(config, i);
    balanced.push({ id, host: HOST, ...p });
    const env = nodeEnv({
      id, host: HOST, ...p, redisUrl, spoolDir: join(dir, "spool", id),
      publishSecret: secret, sessionSecret: sessionsSecret, adminToken: admin,
    });
    // a node that exits while the cluster runs (drained for a rolling update, or crashed) is started again
    let delay = 500;
    const launch = (): void => {
      const [command, args] = nodeCommand(["node"]);
      const node = startProcess(id, command, args, { env, logFile: join(dir, "logs", `${id}.log`), onLine: (line) => process.stderr.write(`${line}\n`) });
      const startedAt = Date.now();
      started.push(node);
      void node.exited.then(({ code, signal }) => {
        started.splice(started.indexOf(node), 1);
        if (stopping) return;
        delay = Date.now() - startedAt > 10000 ? 500 : Math.min(delay * 2, 10000);
        process.stderr.write(`baton: ${id} exited (${signal ?? `status ${code}`}); starting it again in ${delay} ms\n`);
        setTimeout(() => !stopping && launch(), delay);
      });
    };
    launch();
  }
  for (const [i, n] of balanced.entries()) {
    await waitForPort(HOST, n.httpPort, 20000, started.find((p) => p.name === n.id)).catch((error: Error) =>
      fail(`node-${i + 1} did not start: ${error.message} (see ${join(dir, "logs", `node-${i + 1}.log`)})`),
    );
  }

  const haproxyFile = join(dir, "haproxy.cfg");
  writeFileSync(haproxyFile, haproxyConfig({
    bind: HOST, rtmpPort: config.rtmp.port, httpPort: config.http.port, nodes: balanced, statsSocket: join(dir, "haproxy.sock"),
  }));
  const haproxy = startHaproxy(haproxyFile, { logFile: join(dir, "logs", "haproxy.log") });
  started.push(haproxy);
  await waitForPort(HOST, config.http.port, 10000, haproxy).catch((error: Error) => fail(`HAProxy did not start: ${error.message}`));

  const stream = "demo";
  const token = makePublishToken(secret, stream, config.auth.publishTokenTtl);
  const host = config.node.publicHost;
  process.stdout.write(
    [
      "",
      `baton is running: ${o.nodes} node${o.nodes > 1 ? "s" : ""}, Redis at ${redisUrl}, HAProxy in front.`,
      "",
      `  Push (ffmpeg):  rtmp://${host}:${config.rtmp.port}/live/${stream}?token=${token}`,
      `  Push (OBS):     server rtmp://${host}:${config.rtmp.port}/live   stream key ${stream}?token=${token}`,
      `  Watch (HLS):    http://${host}:${config.http.port}/live/${stream}/index.m3u8`,
      "",
      `  Player page:    http://${host}:${config.http.port}/watch/${stream}`,
      `  Another stream: npm run baton -- token <streamId>`,
      `  Operate:        npm run baton -- status | drain <node> | undrain <node> | rolling-update`,
      `  Admin token:    ${admin}`,
      `  Logs:           ${join(dir, "logs")}`,
      "  Stop:           Ctrl-C",
      "",
    ].join("\n") + "\n",
  );

  await new Promise<void>((resolve) => {
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      process.stderr.write("baton: stopping the local cluster\n");
      void stopAll().then(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
