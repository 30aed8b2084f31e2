// A real Redis Cluster for tests: redis-server processes with cluster-enabled on free loopback ports (each with
// its own bus port), joined by `redis-cli --cluster create`, tracked for stopAll() (which also removes their
// temp dirs). Resolves once every node says cluster_state:ok and every replica is in sync.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { freePort, startProcess, stopProcess, waitForPort, type Managed } from "../../tools/processes.ts";
import { HOST, tempDir, track, waitFor } from "./stack.ts";

const run = promisify(execFile);

export interface Shard {
  /** Port of the shard's master now. */
  master: number;
  replicas: number[];
  /** Slot ranges, inclusive. */
  ranges: [number, number][];
}

export interface TestCluster {
  /** `host:port` of every node, as redis.cluster takes them. */
  seeds: string[];
  /** The shards as the cluster has them now (CLUSTER SLOTS asked of any node that answers). */
  shards(): Promise<Shard[]>;
  /** Ports of the nodes not killed. */
  alive(): number[];
  /** A connection to one node (closed by close()). */
  node(port: number): Promise<Redis>;
  /** SIGKILLs one node (its shard fails over when it was a master); later calls leave it out. */
  kill(port: number): Promise<void>;
  /** Closes the test's connections (the processes stop with stopAll()). */
  close(): void;
}

/** The shard whose ranges hold the slot. */
export function shardOf(shards: Shard[], slot: number): Shard {
  const shard = shards.find((s) => s.ranges.some(([from, to]) => slot >= from && slot <= to));
  if (!shard) throw new Error(`no shard serves slot ${slot}`);
  return shard;
}

type SlotsReply = [number, number, [string, number, ...unknown[]], ...[string, number, ...unknown[]][]][];

export async function startTestCluster(o: { masters: number; replicasPerMaster: number }): Promise<TestCluster> {
  const ports: number[] = [];
  const procs = new Map<number, Managed>();
  const taken = new Set<number>();
  // a port the OS handed out may come again while nothing listens on it yet
  const fresh = async (): Promise<number> => {
    for (;;) {
      const port = await freePort();
      if (!taken.has(port)) return (taken.add(port), port);
    }
  };
  const count = o.masters * (1 + o.replicasPerMaster);
  for (let i = 0; i < count; i++) {
    const [port, bus] = [await fresh(), await fresh()];
    const dir = tempDir(`redis-cluster-${i}`);
    const args = [
      "--port", String(port), "--cluster-port", String(bus), "--bind", HOST, "--dir", dir, "--daemonize", "no",
      "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
      "--save", "", "--appendonly", "no",
    ];
    const proc = track(startProcess(`redis-cluster:${port}`, "redis-server", args));
    await waitForPort(HOST, port, 10000, proc);
    ports.push(port);
    procs.set(port, proc);
  }
  // redis-cli makes the first `masters` nodes masters and the rest their replicas
  await run("redis-cli", [
    "--cluster", "create", ...ports.map((p) => `${HOST}:${p}`), "--cluster-replicas", String(o.replicasPerMaster), "--cluster-yes",
  ], { timeout: 30000 });
  const clients = new Map<number, Redis>();
  const node = async (port: number): Promise<Redis> => {
    let client = clients.get(port);
    if (!client) {
      // no offline queue: a call to a node that went away fails at once rather than wait for it
      client = new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
      client.on("error", () => undefined);
      clients.set(port, client);
      await client.connect();
    }
    return client;
  };
  const shards = async (): Promise<Shard[]> => {
    let lastError: unknown;
    for (const port of ports) {
      try {
        const reply = (await (await node(port)).call("CLUSTER", "SLOTS")) as SlotsReply;
        const byMaster = new Map<number, Shard>();
        for (const [from, to, master, ...replicas] of reply) {
          const shard = byMaster.get(master[1]) ?? { master: master[1], replicas: replicas.map((r) => r[1]), ranges: [] };
          shard.ranges.push([from, to]);
          byMaster.set(master[1], shard);
        }
        return [...byMaster.values()].sort((a, b) => a.master - b.master);
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  };
  await waitFor("the Redis Cluster to be ok on every node, with its replicas in sync", async () => {
    for (const port of ports) {
      if (!/cluster_state:ok/.test((await (await node(port)).call("CLUSTER", "INFO")) as string)) return undefined;
    }
    const known = await shards();
    if (known.length !== o.masters || known.some((s) => s.replicas.length !== o.replicasPerMaster)) return undefined;
    for (const port of known.flatMap((s) => s.replicas)) {
      if (!/master_link_status:up/.test(await (await node(port)).info("replication"))) return undefined;
    }
    return true;
  }, 30000, 200);
  return {
    seeds: ports.map((p) => `${HOST}:${p}`),
    shards,
    node,
    alive: () => [...ports],
    async kill(port) {
      ports.splice(ports.indexOf(port), 1);
      clients.get(port)?.disconnect();
      clients.delete(port);
      await stopProcess(procs.get(port)!, "SIGKILL", 1000);
    },
    close() {
      for (const client of clients.values()) client.disconnect();
    },
  };
}
