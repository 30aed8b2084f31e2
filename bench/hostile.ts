// Benchmark 9: the most memory one unauthenticated client can make a node and Redis hold. A real redis-server
// and node with a live light stream; one client address (127.0.0.1, which this node does not trust as a
// proxy) throws everything the security issue listed at it, at once and to every limit: sockets that send
// nothing, unknown stream ids, playlists with unique 8 KB user agents, session starts, WebSocket upgrades it
// resets, 64 x 16 MiB RTMP messages, connects whose strict arrays declare 2^32-1 elements, and as many RTMP
// connections as it may hold, each with unfinished messages. Figures: the node's peak RSS during the attack
// and its RSS after, against its RSS before (same node, same run); Redis's used_memory growth against its
// used_memory before. (On the code before the limits: one RTMP connection held +1,026 MB, 20,000 user agents
// 154 MB of heap, 60,000 unknown ids 41 MB, 20,000 session starts 4 MB of Redis; see docs/PERFORMANCE.md.)
import { connect, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { MAX_MESSAGE, TYPE_VIDEO, message, setChunkSize, strictArrayConnect, type0Header, TYPE_AMF0_COMMAND } from "../test/helpers/rtmp-attacks.ts";
import { RtmpTestClient } from "../test/helpers/rtmp-client.ts";
import { compared, type Figure } from "./report.ts";
import { sleep, stop } from "./procs.ts";
import { ADMIN_TOKEN, lightLadderEnv, publishLight, waitForSeq } from "./live.ts";
import { benchPrefix, startBenchNode, startBenchRedis, streamName, type BenchNode } from "./stack.ts";

async function rss(node: BenchNode): Promise<number> {
  const r = await fetch(node.http("/admin/status"), { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(5000) });
  return ((await r.json()) as { held: { rssBytes: number } }).held.rssBytes;
}

/** Keys in Redis other than the live stream's own (its timeline grows with its segments whatever a client does). */
async function otherKeys(redis: Redis, stream: string): Promise<{ count: number; bytes: number }> {
  let cursor = "0";
  let count = 0;
  let bytes = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "COUNT", 1000);
    cursor = next;
    for (const key of keys) {
      // the stream's own keys grow with its segments, and the sweeper's lease comes and goes: neither is the client's
      if (key.includes(`{${stream}}`) || key.endsWith(":sweeper")) continue;
      count += 1;
      bytes += (await redis.memory("USAGE", key)) ?? 0;
    }
  } while (cursor !== "0");
  return { count, bytes };
}

async function pool(count: number, width: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < count) await task(next++).catch(() => undefined);
  }));
}

function silentSockets(port: number, count: number): Socket[] {
  return Array.from({ length: count }, () => {
    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => undefined);
    return socket;
  });
}

/** An upgrade the node refuses (no session), reset by the client at once. */
function resetUpgrade(port: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(`GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      setImmediate(() => socket.resetAndDestroy());
    });
    socket.on("error", () => undefined);
    socket.on("close", () => resolve());
  });
}

/** RTMP: the listed attacks, then as many connections as one address may hold, each with unfinished messages. */
async function rtmpAttack(port: number, quick: boolean): Promise<RtmpTestClient[]> {
  const held: RtmpTestClient[] = [];
  const open = (): Promise<RtmpTestClient | null> => RtmpTestClient.open(port).catch(() => null);
  const big = await open();
  for (let i = 0; i < 64; i++) await big?.send(type0Header(3 + (i % 60), TYPE_VIDEO, MAX_MESSAGE));
  await Promise.all(Array.from({ length: 4 }, async () => (await open())?.send(message(3, TYPE_AMF0_COMMAND, strictArrayConnect(MAX_MESSAGE), { chunkSize: 65536 }))));
  big?.destroy();
  for (let i = 0; i < (quick ? 16 : 32); i++) {
    const client = await open();
    if (!client) continue;
    await client.send(setChunkSize(65536));
    // two messages just under the pre-publish cap, never finished
    for (const csid of [3, 4]) await client.send(Buffer.concat([type0Header(csid, TYPE_AMF0_COMMAND, 65000), randomBytes(64000)]));
    held.push(client);
  }
  return held;
}

export async function hostile(ctx: { quick: boolean; log: (line: string) => void }): Promise<Figure[]> {
  const server = await startBenchRedis();
  const redis = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const node = await startBenchNode({
    redisUrl: server.url, prefix: benchPrefix(), id: "bench-hostile",
    env: { ...lightLadderEnv(), BATON_ADMIN_TOKEN: ADMIN_TOKEN, BATON_HTTP_TRUSTEDPROXIES: '["::1"]' },
  });
  const stream = streamName("hostile");
  const publisher = publishLight(node.rtmp(stream));
  const sockets: Socket[] = [];
  let rtmpClients: RtmpTestClient[] = [];
  try {
    await waitForSeq(node, stream, "240p", 2, publisher);
    await sleep(2000);
    const rssBefore = await rss(node);
    const redisBefore = await otherKeys(redis, stream);
    let peak = rssBefore;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await rss(node).catch(() => peak));
        await sleep(200);
      }
    })();
    const n = ctx.quick ? 6000 : 20000;
    ctx.log(`one client: ${n} unknown ids, ${n} user agents, ${n / 4} session starts, 300 reset upgrades, 150 silent sockets, RTMP`);
    sockets.push(...silentSockets(node.httpPort, 150));
    rtmpClients = await rtmpAttack(node.rtmpPort, ctx.quick);
    await Promise.all([
      pool(n, 20, async (i) => (await fetch(node.http(`/live/nope-${i}-${randomBytes(6).toString("hex")}/index.m3u8`))).arrayBuffer()),
      pool(n, 20, async () => (await fetch(node.http(`/live/${stream}/240p/index.m3u8`), { headers: { "User-Agent": randomBytes(6000).toString("base64") } })).arrayBuffer()),
      pool(n / 4, 5, async () =>
        (await fetch(node.http("/api/sessions"), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ streamId: stream }) })).arrayBuffer(),
      ),
      pool(300, 5, () => resetUpgrade(node.httpPort)),
    ]);
    sampling = false;
    await sampler;
    const redisAfter = await otherKeys(redis, stream);
    for (const s of sockets) s.destroy();
    for (const c of rtmpClients) c.destroy();
    await sleep(3000);
    const rssAfter = await rss(node);
    const mb = (bytes: number): number => Math.round((bytes / 1048576) * 10) / 10;
    return [
      compared("node RSS at the peak of one unauthenticated client's attack", "MB", mb(peak), "the node's RSS before it", mb(rssBefore), {
        note: "before the limits: +1,026 MB from one RTMP connection alone",
      }),
      compared("node RSS 3 s after the attack ended", "MB", mb(rssAfter), "the node's RSS before it", mb(rssBefore)),
      compared("Redis keys besides the stream's own, after the attack", "keys", redisAfter.count, "the same before it", redisBefore.count, {
        note: `${redisAfter.bytes - redisBefore.bytes} bytes more; before: 20,000 session starts wrote 20,000 keys, 4 MB`,
      }),
    ];
  } finally {
    for (const s of sockets) s.destroy();
    for (const c of rtmpClients) c.destroy();
    redis.disconnect();
    await stop(publisher);
    await stop(node.proc);
    await stop(server.proc);
  }
}
