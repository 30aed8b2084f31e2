// The local cluster: Redis (a child redis-server with its data under var/redis, unless REDIS_URL names one), N
// node processes on their own ports, and HAProxy on the public ports. `npm start` runs it until Ctrl-C; the
// chaos harness drives it (kills a node, stops Redis, reads HAProxy's stats). A node that exits while the
// cluster runs (drained for a rolling update, or crashed) is started again.
import { readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import type { Config } from "../src/config/defaults.ts";
import { loadConfig } from "../src/config/load.ts";
import { adminToken, publishSecret, sessionSecret, stateDir } from "../src/config/state-dir.ts";
import { haproxyConfig, type BalancedNode } from "../src/cluster/haproxy.ts";
import { makePublishToken } from "../src/ingest/token.ts";
import { showStat } from "./haproxy-stats.ts";
import { PidFile } from "./pid-file.ts";
import { assignedRelease, configKeysEnv } from "./rollout/release.ts";
import { LOCAL_SENTINEL, LocalRedis } from "./local-redis.ts";
import { isPortFree, nodeCommand, nodeEnv, startHaproxy, startProcess, stopProcess, waitForPort, type Managed } from "./processes.ts";

export interface LocalClusterOptions {
  nodes: number;
  /** Print node log lines on stderr (npm start); the chaos harness keeps them in the log files only. */
  echoLogs?: boolean;
  /** Called with a line when a node exits and is started again. */
  onNotice?: (line: string) => void;
  /** More BATON_* settings for every node (the chaos harness's). */
  nodeEnv?: Record<string, string>;
  /** Redis as a primary, a replica and three sentinels (local-redis.ts), the nodes knowing only the sentinels. */
  sentinel?: boolean;
}

/** Node i (from 1) listens on the configured ports plus i; the configured ports themselves are HAProxy's. */
export function nodePorts(config: Config, i: number): { rtmpPort: number; httpPort: number; agentPort: number; rtmpsPort?: number } {
  return {
    rtmpPort: config.rtmp.port + i, httpPort: config.http.port + i, agentPort: config.agent.port + i,
    ...(config.rtmps.port ? { rtmpsPort: config.rtmps.port + i } : {}),
  };
}

const HOST = "127.0.0.1";

export class LocalCluster {
  readonly config: Config = loadConfig();
  readonly dir = stateDir();
  // made here, once, so every node signs and checks with the same secrets
  readonly secret = publishSecret(this.config);
  readonly sessionsSecret = sessionSecret(this.config);
  readonly adminToken = adminToken(this.config);
  readonly haproxySocket = join(this.dir, "haproxy.sock");
  /** Every process this launcher started, so a launcher that dies leaves nothing the next start cannot stop. */
  readonly pids = new PidFile(join(this.dir, "local-cluster.pids"));
  readonly nodes: BalancedNode[] = [];
  redisUrl = process.env.REDIS_URL ?? "";
  /** The cluster's own Redis; null when REDIS_URL names one. */
  private redis: LocalRedis | null = null;
  private haproxy: Managed | null = null;
  private readonly running = new Map<string, Managed>();
  private stopping = false;

  constructor(private readonly o: LocalClusterOptions) {}

  get httpUrl(): string {
    return `http://${HOST}:${this.config.http.port}`;
  }

  publishUrl(streamId: string, host = HOST): string {
    return `rtmp://${host}:${this.config.rtmp.port}/live/${streamId}?token=${makePublishToken(this.secret, streamId, this.config.auth.publishTokenTtl)}`;
  }

  /** Starts Redis, the nodes and HAProxy; on any failure stops what it started and throws a clear message. */
  async start(): Promise<void> {
    const leftovers = await PidFile.stopLeftovers(this.pids.path);
    if (leftovers.length > 0) this.o.onNotice?.(`stopped what a previous run left running: ${leftovers.join(", ")}`);
    try {
      await this.startAll();
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  private async startAll(): Promise<void> {
    const { config, dir } = this;
    const ports = [config.rtmp.port, config.http.port, ...(config.rtmps.port ? [config.rtmps.port] : []), ...Array.from({ length: this.o.nodes }, (_, i) => Object.values(nodePorts(config, i + 1))).flat()];
    for (const port of ports) {
      if (!(await isPortFree(HOST, port))) throw new Error(`port ${port} is in use: stop whatever holds it (is another baton running?)`);
    }
    if (!this.redisUrl) {
      const port = Number(new URL(config.redis.url).port || 6379);
      if (!(await isPortFree(HOST, port))) {
        throw new Error(`port ${port} (Redis) is in use: stop that Redis, or use it with REDIS_URL=redis://127.0.0.1:${port} npm start`);
      }
      this.redis = new LocalRedis({ port, dir, pids: this.pids, sentinel: this.o.sentinel === true });
      this.redisUrl = this.redis.url;
      await this.redis.start();
    } else if (this.o.sentinel) {
      throw new Error("Sentinel runs with the local cluster's own Redis only: unset REDIS_URL");
    }
    for (let i = 1; i <= this.o.nodes; i++) {
      const node = { id: `node-${i}`, host: HOST, ...nodePorts(config, i) };
      this.nodes.push(node);
      this.launch(node, 500);
    }
    for (const n of this.nodes) {
      await waitForPort(HOST, n.httpPort, 20000, this.running.get(n.id)).catch((error: Error) => {
        throw new Error(`${n.id} did not start: ${error.message} (see ${join(dir, "logs", `${n.id}.log`)})`);
      });
    }
    const haproxyFile = join(dir, "haproxy.cfg");
    writeFileSync(haproxyFile, haproxyConfig({
      bind: HOST, rtmpPort: config.rtmp.port, httpPort: config.http.port, nodes: this.nodes, statsSocket: this.haproxySocket,
      proxyProtocol: true, rtmpsPort: config.rtmps.port,
    }));
    this.haproxy = startHaproxy(haproxyFile, { logFile: join(dir, "logs", "haproxy.log"), ownGroup: true });
    this.pids.add("haproxy", this.haproxy.child.pid);
    await waitForPort(HOST, config.http.port, 10000, this.haproxy).catch((error: Error) => {
      throw new Error(`HAProxy did not start: ${error.message} (see ${join(dir, "logs", "haproxy.log")})`);
    });
  }

  private launch(node: BalancedNode, delay: number): void {
    const own = nodeEnv(
      {
        ...node, redisUrl: this.redisUrl, spoolDir: join(this.dir, "spool", node.id),
        publishSecret: this.secret, sessionSecret: this.sessionsSecret, adminToken: this.adminToken,
        storagePath: join(this.dir, "segments"),
      },
      // HAProxy names each publisher in a PROXY header, so the nodes' connection caps count publishers, not it
      {
        rtmp: { proxyProtocol: true }, rtmps: { port: node.rtmpsPort ?? 0 },
        ...(this.redis?.sentinelAddresses.length ? { redis: { sentinels: this.redis.sentinelAddresses, sentinelName: LOCAL_SENTINEL.name } } : {}),
      },
    );
    const env = { ...own, ...this.o.nodeEnv };
    // the release a rolling update assigned it (tools/rollout/release.ts), else the checkout the cluster runs
    const release = assignedRelease(this.dir, node.id);
    const [command, args] = nodeCommand(release.config ? ["node", "--config", release.config] : ["node"], release.root);
    const p = startProcess(node.id, command, args, {
      env,
      // the node's identity, ports and shared secrets stay the supervisor's whatever the file says
      unset: release.config ? configKeysEnv(release.config).filter((key) => !Object.hasOwn(own, key)) : [],
      logFile: join(this.dir, "logs", `${node.id}.log`),
      ownGroup: true,
      ...(this.o.echoLogs ? { onLine: (line: string) => process.stderr.write(`${line}\n`) } : {}),
    });
    const startedAt = Date.now();
    this.running.set(node.id, p);
    this.pids.add(node.id, p.child.pid);
    void p.exited.then(({ code, signal }) => {
      if (this.running.get(node.id) === p) this.running.delete(node.id);
      if (this.stopping) return;
      const next = Date.now() - startedAt > 10000 ? 500 : Math.min(delay * 2, 10000);
      this.o.onNotice?.(`${node.id} exited (${signal ?? `status ${code}`}); starting it again in ${next} ms`);
      setTimeout(() => !this.stopping && this.launch(node, next), next);
    });
  }

  /**
   * Every node's log lines that match `pattern` and were written at `since` (ms) or later, in each node's order
   * (its log file, appended by every run and restart; each line starts with its ISO time).
   */
  logLines(pattern: RegExp, since = 0): string[] {
    return this.nodes.flatMap((node) => {
      try {
        return readFileSync(join(this.dir, "logs", `${node.id}.log`), "utf8").split("\n")
          .filter((line) => pattern.test(line) && (Date.parse(line.slice(0, line.indexOf(" "))) || 0) >= since);
      } catch {
        return [];
      }
    });
  }

  /** The pid of a node's current process. */
  pid(nodeId: string): number | null {
    return this.running.get(nodeId)?.child.pid ?? null;
  }

  /** A crash: SIGKILL the node's process (it is started again like any node that exits). */
  kill(nodeId: string): void {
    this.running.get(nodeId)?.child.kill("SIGKILL");
  }

  /** How a client outside the nodes reaches the cluster's Redis (with Sentinel, through the sentinels). */
  get redisConfig(): Config["redis"] {
    const sentinels = this.redis?.sentinelAddresses ?? [];
    return { ...this.config.redis, url: this.redisUrl, ...(sentinels.length ? { sentinels, sentinelName: LOCAL_SENTINEL.name } : {}) };
  }

  /** Starts the cluster's own Redis again after stopRedis (with Sentinel, in the roles the sentinels name). */
  async startRedis(): Promise<void> {
    await this.redis?.startServers();
  }

  /** Stops the cluster's own Redis (it saves its append-only file); false when Redis is not the cluster's. */
  async stopRedis(): Promise<boolean> {
    if (!this.redis) return false;
    await this.redis.stopServers();
    return true;
  }

  /** Freezes (SIGSTOP) or thaws (SIGCONT) the cluster's own Redis: its sockets stay open, it answers nothing. */
  signalRedis(signal: "SIGSTOP" | "SIGCONT"): boolean {
    if (!this.redis) return false;
    this.redis.signal(signal);
    return true;
  }

  /** A Sentinel failover: the primary SIGKILLed, the replica promoted, the old primary back as its replica. */
  async failoverRedis(): Promise<{ from: number; to: number }> {
    if (!this.redis) throw new Error("a failover needs the local cluster's own Redis (unset REDIS_URL)");
    return this.redis.failover();
  }

  /** HAProxy's runtime counters, summed over the HTTP backend: retries and redispatches. */
  async haproxyStats(): Promise<{ retries: number; redispatches: number }> {
    let retries = 0;
    let redispatches = 0;
    for (const row of await showStat(this.haproxySocket)) {
      if (row.svname !== "BACKEND") continue;
      retries += Number(row.wretr || 0);
      redispatches += Number(row.wredis || 0);
    }
    return { retries, redispatches };
  }

  /** Stops everything it started: nodes first (they flush their last segments), then HAProxy, then Redis. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.running.values()].map((p) => stopProcess(p, "SIGINT", 15000)));
    if (this.haproxy) await stopProcess(this.haproxy, "SIGTERM", 5000);
    await this.redis?.stop();
    this.pids.clear();
  }
}

/**
 * A warning for a machine too small for the default ladder, or null. Measured on 2 cores: the default
 * 720p/480p/360p veryfast ladder beside a 720p encoder ran at 0.31 to 0.84 of real time.
 */
export function smallMachineWarning(config: Config, cores: number): string | null {
  const heavy = config.transcode.ladder.some((r) => r.height >= 720) && !["ultrafast", "superfast"].includes(config.transcode.preset);
  if (cores >= 4 || !heavy) return null;
  return [
    `  Warning: this machine has ${cores} CPU core${cores === 1 ? "" : "s"}; the ${config.transcode.ladder.map((r) => r.name).join("/")} ladder at the`,
    `  ${config.transcode.preset} preset may not keep up with real time beside an encoder on the same machine (npm run baton`,
    "  -- status shows each transcoder's speed). Lighter: BATON_TRANSCODE_PRESET=ultrafast npm start",
  ].join("\n");
}

/** `npm start`: runs the local cluster and prints where to push and watch, until Ctrl-C. */
export async function runLocalCluster(o: LocalClusterOptions): Promise<void> {
  // a closed terminal takes stdout and stderr with it: writing there must not end the launcher mid-stop
  process.stdout.on("error", () => undefined);
  process.stderr.on("error", () => undefined);
  const cluster = new LocalCluster({ ...o, echoLogs: true, onNotice: (line) => process.stderr.write(`baton: ${line}\n`) });
  const stopped = new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      process.stderr.write("baton: stopping the local cluster\n");
      void cluster.stop().then(resolve);
    };
    // Ctrl-C, a service manager's stop, and a closed terminal (an SSH session that drops) all stop everything
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    process.on("SIGHUP", stop);
  });
  // a launcher that ends any other way (a crash) still tells its children to stop; one killed outright leaves
  // them to the next start, which finds them in the pid file
  process.on("exit", () => {
    for (const child of cluster.pids.running()) {
      try {
        process.kill(child.pid, "SIGTERM");
      } catch {
        // already gone
      }
    }
  });
  await cluster.start();
  const { config } = cluster;
  const small = smallMachineWarning(config, cpus().length);
  const stream = "demo";
  const host = config.node.publicHost;
  const push = cluster.publishUrl(stream, host);
  const key = push.slice(push.indexOf("/live/") + 6);
  process.stdout.write(
    [
      "",
      `baton is running: ${o.nodes} node${o.nodes > 1 ? "s" : ""}, Redis at ${cluster.redisUrl}, HAProxy in front.`,
      "",
      `  Push (ffmpeg):  ${push}`,
      `  Push (OBS):     server rtmp://${host}:${config.rtmp.port}/live   stream key ${key}`,
      ...(config.rtmps.port ? [`  Push (RTMPS):   ${push.replace(`rtmp://${host}:${config.rtmp.port}/`, `rtmps://${host}:${config.rtmps.port}/`)}`] : []),
      `  Push (a test):  npm run baton -- push --stream ${stream}   (reconnects after a drain, as OBS does)`,
      `  Watch (HLS):    http://${host}:${config.http.port}/live/${stream}/index.m3u8`,
      "",
      `  Player page:    http://${host}:${config.http.port}/watch/${stream}`,
      `  Another stream: npm run baton -- token <streamId>`,
      `  Operate:        npm run baton -- status | drain <node> | undrain <node> | rolling-update`,
      `  Admin token:    ${cluster.adminToken}`,
      `  Logs:           ${join(cluster.dir, "logs")}`,
      "  Stop:           Ctrl-C",
      "",
      ...(small ? [small, ""] : []),
    ].join("\n") + "\n",
  );
  await stopped;
}
