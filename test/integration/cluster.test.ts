// Three node processes, one redis-server, HAProxy in front: any node answers any request identically, a
// stream that moves continues its sequence, a frozen owner cannot write after losing the stream, a Redis
// restart loses no segment.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { disagreements, holes, lastSeq, parseM3u8, resumedAfter, slateSeqs, withoutSession } from "../helpers/hls.ts";
import {
  get, nodeMetric, publish, startTestHaproxy, startTestNode, startTestRedis, stopAll, testPrefix, waitFor,
  type TestHaproxy, type TestNode, type TestRedis, ADMIN,
} from "../helpers/stack.ts";
import { showStat, steadyBackend } from "../../tools/haproxy-stats.ts";

const run = promisify(execFile);

async function playlistText(url: string): Promise<string> {
  const r = await get(url);
  assert.equal(r.status, 200, `${url}: ${r.status} ${r.text}`);
  return r.text;
}

/** The playlist from every node directly, without session query strings. */
async function fromEvery(nodes: TestNode[], path: string): Promise<string[]> {
  return Promise.all(nodes.map(async (n) => withoutSession(await playlistText(n.http(path)))));
}

function metric(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(name));
  return line ? Number(line.split(" ").pop()) : 0;
}

interface StreamsBody {
  streams: { id: string; owner: string; epoch: number; state: string; renditions: { name: string }[]; viewers: number }[];
}

describe("cluster: the cluster owns the HLS timeline", function () {
  this.timeout(180000);
  let redis: TestRedis;
  let nodes: TestNode[];
  let lb: TestHaproxy;

  before(async () => {
    redis = await startTestRedis({ persistent: true });
    const prefix = testPrefix();
    nodes = [];
    for (const id of ["node-a", "node-b", "node-c"]) nodes.push(await startTestNode({ redisUrl: redis.url, prefix, id }));
    lb = await startTestHaproxy(nodes);
  });
  after(stopAll);

  it("generates a HAProxy configuration that haproxy -c accepts", async () => {
    const { stdout, stderr } = await run("haproxy", ["-c", "-f", lb.configFile]);
    assert.match(stdout + stderr, /Configuration file is valid/);
  });

  it("lists every node with its state, URLs, version and heartbeat", async () => {
    const body = await waitFor("three nodes registered", async () => {
      const b = JSON.parse((await get(lb.http("/api/nodes"), ADMIN)).text) as { nodes: { id: string; state: string; httpUrl: string; rtmpUrl: string; version: string; heartbeatAt: number; load: unknown }[] };
      return b.nodes.length === 3 ? b : undefined;
    });
    assert.deepEqual(body.nodes.map((n) => n.id), ["node-a", "node-b", "node-c"]);
    for (const n of body.nodes) {
      assert.equal(n.state, "ready");
      assert.match(n.httpUrl, /^http:\/\//);
      assert.match(n.rtmpUrl, /^rtmp:\/\/.*\/live$/);
      assert.ok(Date.now() - n.heartbeatAt < 5000);
      assert.ok(n.load);
    }
  });

  it("serves byte-identical playlists and the newest segment from every node", async () => {
    const publisher = publish(lb.rtmp("shared"));
    await waitFor("three segments", async () => {
      const text = await playlistText(nodes[0]!.http("/live/shared/360p/index.m3u8")).catch(() => "");
      return text && parseM3u8(text).segments.length >= 3 ? true : undefined;
    });
    for (const path of ["/live/shared/index.m3u8", "/live/shared/360p/index.m3u8", "/live/shared/240p/index.m3u8"]) {
      // a segment may land between two fetches: wait for a moment all three agree, and never disagree on a seq
      await waitFor(`identical ${path} on every node`, async () => {
        const texts = await fromEvery(nodes, path);
        assert.deepEqual(disagreements(texts.filter((t) => t.includes("#EXTINF")).map(parseM3u8)), []);
        return texts.every((t) => t === texts[0]) ? true : undefined;
      });
    }
    const playlist = parseM3u8(await playlistText(nodes[1]!.http("/live/shared/360p/index.m3u8")));
    const newest = playlist.segments[playlist.segments.length - 1]!.uri;
    const bodies = await Promise.all(nodes.map(async (n) => (await get(n.http(`/live/shared/360p/${newest}`))).bytes));
    assert.ok(bodies[0]!.length > 1000);
    for (const b of bodies) assert.ok(b.equals(bodies[0]!), "every node serves the same bytes for a segment");

    const streams = JSON.parse((await get(lb.http("/api/streams"), ADMIN)).text) as StreamsBody;
    const info = streams.streams.find((s) => s.id === "shared");
    assert.ok(info);
    assert.ok(["node-a", "node-b", "node-c"].includes(info.owner));
    assert.equal(info.state, "live");
    assert.deepEqual(info.renditions.map((r) => r.name), ["360p", "240p"]);
    assert.ok(info.viewers >= 1);

    // a second publisher for the live stream is refused on any node, not only its owner
    const other = nodes.find((n) => n.id !== info.owner)!;
    const duplicate = publish(other.rtmp("shared"));
    const exit = await duplicate.exited;
    assert.notEqual(exit.code, 0, "the duplicate publisher was refused");
    assert.match((await get(other.http("/metrics"), ADMIN)).text, /baton_publish_refusals_total\{reason="already_live",node="[^"]+"\} [1-9]/);
    assert.equal((JSON.parse((await get(lb.http("/api/streams"), ADMIN)).text) as StreamsBody).streams.find((s) => s.id === "shared")?.owner, info.owner);
    publisher.child.kill("SIGKILL");
  });

  /**
   * HAProxy's HTTP backend has every server up, none in slowstart, and weights as a second ago: a fixed ring.
   * The agents weigh nodes by their publishers, so `weight` 100 waits for streams of earlier tests to be gone.
   */
  const steadyRing = async (weight?: string): Promise<void> => {
    let before = await showStat(lb.statsSocket);
    await waitFor("HAProxy's HTTP servers steady", async () => {
      const now = await showStat(lb.statsSocket);
      const steady = steadyBackend(now, before, "http_nodes", weight);
      before = now;
      return steady ? true : undefined;
    }, 30000, 1000);
  };

  /** Per node, how many HLS requests (master, media playlist, segment) it answered with `status`. */
  const hlsRequests = (status: string): Promise<number[]> =>
    Promise.all(nodes.map(async (n) => {
      let sum = 0;
      for (const route of ["master", "media", "segment"]) sum += await nodeMetric(n, "baton_http_requests_total", `route="${route}",status="${status}"`);
      return sum;
    }));

  /** GETs through HAProxy, each on a connection of its own (round robin would spread them over every node). */
  const fetchApart = async (path: string, times: number, status: number): Promise<void> => {
    for (let i = 0; i < times; i++) {
      const r = await fetch(lb.http(path), { headers: { Connection: "close" } });
      assert.equal(r.status, status, path);
      await r.arrayBuffer();
      // the bounded-load hash counts each node's open sessions: with so few, one still closing would move the
      // next request to another node, so each request waits until HAProxy has closed the last one's
      await waitFor("HAProxy's sessions to the nodes closed", async () => {
        const servers = (await showStat(lb.statsSocket)).filter((row) => row.pxname === "http_nodes" && row.svname !== "BACKEND" && row.svname !== "FRONTEND");
        return servers.every((row) => Number(row.scur) === 0) ? true : undefined;
      }, 10000, 20);
    }
  };

  it("HAProxy sends one stream's playlists and segments to one node while the cluster is steady (hashed on /live/{id})", async () => {
    const publisher = publish(lb.rtmp("hashed"));
    const playlist = await waitFor("the stream", async () => {
      const r = await get(lb.http("/live/hashed/240p/index.m3u8"));
      return r.status === 200 && parseM3u8(r.text).segments.length >= 1 ? parseM3u8(r.text) : undefined;
    }, 30000);
    await steadyRing();
    const before = await hlsRequests("200");
    await fetchApart("/live/hashed/index.m3u8", 4, 200);
    await fetchApart("/live/hashed/240p/index.m3u8", 4, 200);
    await fetchApart(`/live/hashed/240p/${playlist.segments[0]!.uri.split("?")[0]}`, 4, 200);
    const served = (await hlsRequests("200")).map((n, i) => n - before[i]!);
    assert.deepEqual(served.filter((n) => n > 0), [12], `one node answered all 12: ${served.join(", ")}`);
    publisher.child.kill("SIGKILL");
  });

  it("HAProxy spreads different streams over the nodes, each stream on one node", async () => {
    await steadyRing("100");
    const homes = new Set<number>();
    for (let i = 0; i < 12; i++) {
      // unknown streams: each node answers 404 and counts it like any media request
      const before = await hlsRequests("404");
      await fetchApart(`/live/spread${i}/240p/index.m3u8`, 3, 404);
      const served = (await hlsRequests("404")).map((n, j) => n - before[j]!);
      assert.deepEqual(served.filter((n) => n > 0), [3], `spread${i}: one node answered all 3: ${served.join(", ")}`);
      homes.add(served.findIndex((n) => n > 0));
    }
    assert.ok(homes.size >= 2, `12 streams landed on ${homes.size} node(s)`);
  });

  it("continues the sequence after a discontinuity when the publisher returns through HAProxy", async () => {
    const stream = "returns";
    let publisher = publish(lb.rtmp(stream), { seconds: 3 });
    await publisher.exited;
    // the owner flushes the last segment, then releases the stream into its reconnect window
    const epochBefore = await waitFor("the stream to wait for its publisher", async () => {
      const info = (JSON.parse((await get(lb.http("/api/streams"), ADMIN)).text) as StreamsBody).streams.find((s) => s.id === stream);
      return info?.state === "reconnecting" ? info.epoch : undefined;
    });
    const firstText = await playlistText(lb.http(`/live/${stream}/360p/index.m3u8`));
    const first = parseM3u8(firstText);
    assert.ok(first.segments.length >= 2);
    // the last segment of the first publish (the slate may follow it already: hls.inputLoss)
    const slateBefore = slateSeqs(firstText);
    let lastLive = lastSeq(first);
    while (slateBefore.has(lastLive)) lastLive -= 1;
    publisher = publish(lb.rtmp(stream), { seconds: 3 });
    const resumed = await waitFor("the returning publisher's segments", async () => resumedAfter(await playlistText(lb.http(`/live/${stream}/360p/index.m3u8`)), lastLive));
    // no restart of the media sequence: it goes on after the last segment, with only the slate in between
    assert.ok(resumed.seq > lastLive);
    for (const seq of resumed.between) assert.ok(resumed.slate.has(seq), `segment ${seq}, between the publishes, is slate`);
    const after = (JSON.parse((await get(lb.http("/api/streams"), ADMIN)).text) as StreamsBody).streams.find((s) => s.id === stream)!;
    assert.ok(after.epoch > epochBefore, "the returning publisher took the stream at a higher epoch");
    for (const path of [`/live/${stream}/360p/index.m3u8`, `/live/${stream}/240p/index.m3u8`]) {
      assert.deepEqual(disagreements((await fromEvery(nodes, path)).map(parseM3u8)), []);
    }
    await publisher.exited;
  });

  it("fences a frozen owner: after another node takes the stream, its late segments never reach the playlist", async () => {
    const stream = "fenced";
    const [a, b] = [nodes[0]!, nodes[1]!];
    const first = publish(a.rtmp(stream));
    await waitFor("segments from node-a", async () => {
      const p = parseM3u8(await playlistText(b.http(`/live/${stream}/360p/index.m3u8`)).catch(() => "#EXTM3U"));
      return p.segments.length >= 2 ? true : undefined;
    });
    const publishedBefore = metric((await get(a.http("/metrics"), ADMIN)).text, "baton_segments_published_total");
    a.proc.child.kill("SIGSTOP");
    let second = null as ReturnType<typeof publish> | null;
    try {
      // node-a cannot renew its lease while frozen: after it lapses, a publisher on node-b takes the stream
      // refused while node-a's lease holds, the encoder retries, as OBS does, until node-b accepts it
      await waitFor("node-b to take the stream", async () => {
        if (!second || second.child.exitCode !== null || second.child.signalCode !== null) second = publish(b.rtmp(stream));
        return b.lines.some((l) => /publish accepted stream=fenced/.test(l)) ? true : undefined;
      }, 30000, 500);
      await waitFor("segments from node-b", async () => {
        const p = parseM3u8(await playlistText(b.http(`/live/${stream}/360p/index.m3u8`)));
        return p.segments.some((s) => s.discontinuity) ? true : undefined;
      });
    } finally {
      a.proc.child.kill("SIGCONT");
    }
    await a.waitForLog(/stream lost to another owner; stopping stream=fenced/, 20000);
    const publishedAfter = metric((await get(a.http("/metrics"), ADMIN)).text, "baton_segments_published_total");
    assert.ok(publishedAfter - publishedBefore <= 1, `node-a appended ${publishedAfter - publishedBefore} segments after it was frozen`);
    const playlists = (await fromEvery(nodes, `/live/${stream}/360p/index.m3u8`)).map(parseM3u8);
    assert.deepEqual(disagreements(playlists), []);
    const streams = JSON.parse((await get(b.http("/api/streams"), ADMIN)).text) as StreamsBody;
    assert.equal(streams.streams.find((s) => s.id === stream)?.owner, "node-b");
    first.child.kill("SIGKILL");
    second?.child.kill("SIGKILL");
  });

  it("loses no segment over a Redis restart: the owner queues them and publishes them in order", async () => {
    const stream = "outage";
    const owner = nodes[2]!;
    const publisher = publish(owner.rtmp(stream));
    const before = await waitFor("segments before the outage", async () => {
      const p = parseM3u8(await playlistText(owner.http(`/live/${stream}/360p/index.m3u8`)));
      return p.segments.length >= 2 ? p : undefined;
    });
    await redis.stop();
    // the node stays up, says why it is not ready, and keeps serving the last known playlist
    await waitFor("readyz to report the outage", async () => ((await get(owner.http("/readyz"))).status === 503 ? true : undefined), 5000);
    assert.match((await get(owner.http("/readyz"))).text, /redis/);
    assert.equal((await get(owner.http(`/live/${stream}/360p/index.m3u8`))).status, 200);
    await owner.waitForLog(/segment not published yet; retrying stream=outage/);
    await redis.start();
    const after = await waitFor("the queued segments published", async () => {
      const p = parseM3u8(await playlistText(owner.http(`/live/${stream}/360p/index.m3u8`)));
      return lastSeq(p) >= lastSeq(before) + 4 && (await get(owner.http("/readyz"))).status === 200 ? p : undefined;
    }, 30000);
    assert.ok(!after.segments.some((s) => s.discontinuity), "an outage of Redis is not a discontinuity");
    // contiguous in time: each segment starts where the previous one ended
    assert.deepEqual(holes(after), []);
    publisher.child.kill("SIGKILL");
  });

  it("drops a node that stops heartbeating from the registry within its TTL", async () => {
    const victim = nodes[2]!;
    victim.proc.child.kill("SIGKILL");
    await victim.proc.exited;
    const killedAt = Date.now();
    const remaining = await waitFor("node-c to leave the registry", async () => {
      const b = JSON.parse((await get(lb.http("/api/nodes"), ADMIN)).text) as { nodes: { id: string }[] };
      return b.nodes.some((n) => n.id === victim.id) ? undefined : b.nodes.map((n) => n.id);
    }, 10000);
    assert.ok(Date.now() - killedAt < 6000, "the registry TTL is seconds, not minutes");
    assert.deepEqual(remaining, ["node-a", "node-b"]);
  });
});
