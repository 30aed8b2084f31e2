// Input loss on the real stack (redis-server, three nodes, HAProxy, ffmpeg publishing RTMP, ffprobe): while a
// live stream has no input its timeline goes on with slate segments in real time, between discontinuities;
// the publisher's return on another node replaces the slate with live media; an owner node SIGKILLed is
// replaced by another node's slate before its lease runs out; a slate holder whose lease was taken can append
// nothing; with hls.inputLoss "off" the playlist waits as before.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { disagreements, parseM3u8, slateSeqs, withoutSession, type ParsedPlaylist } from "../helpers/hls.ts";
import {
  ADMIN, get, publish, startTestHaproxy, startTestNode, startTestRedis, stopAll, tempDir, testPrefix, waitFor,
  type TestHaproxy, type TestNode, type TestRedis,
} from "../helpers/stack.ts";
import type { Managed } from "../../tools/processes.ts";

/** The test nodes' segment duration (test/helpers/stack.ts), seconds. */
const D = 1;

interface Listed {
  seq: number;
  uri: string;
  pdt: number;
  duration: number;
  disc: boolean;
  slate: boolean;
  /** When this test first saw it listed (ms). */
  seenAt: number;
}

/**
 * Watches one rendition's playlist every 100 ms and keeps every segment it ever lists with the moment it was
 * first seen, so a test reads the timeline as a player saw it, and when each segment appeared.
 */
class Watch {
  readonly listed = new Map<number, Listed>();
  private timer: NodeJS.Timeout;
  private busy = false;

  constructor(private readonly url: string) {
    this.timer = setInterval(() => void this.poll(), 100);
  }

  private async poll(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const r = await get(this.url);
      if (r.status !== 200) return;
      const p = parseM3u8(r.text);
      const slate = slateSeqs(r.text);
      p.segments.forEach((s, i) => {
        const seq = p.mediaSequence + i;
        if (this.listed.has(seq)) return;
        this.listed.set(seq, {
          seq, uri: s.uri.split("?")[0]!, pdt: Date.parse(s.dateTimeString!), duration: s.duration, disc: s.discontinuity === true,
          slate: slate.has(seq), seenAt: Date.now(),
        });
      });
    } catch {
      // a request that failed is retried at the next poll
    } finally {
      this.busy = false;
    }
  }

  get all(): Listed[] {
    return [...this.listed.values()].sort((a, b) => a.seq - b.seq);
  }

  /** Resolves with the listed segments once `probe` accepts them. */
  until(what: string, probe: (all: Listed[]) => boolean, timeoutMs = 60000): Promise<Listed[]> {
    return waitFor(what, () => (probe(this.all) ? this.all : undefined), timeoutMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

const slateAfter = (all: Listed[], seq: number): Listed[] => all.filter((s) => s.seq > seq && s.slate);
const liveAfter = (all: Listed[], seq: number): Listed[] => all.filter((s) => s.seq > seq && !s.slate);

/** Sequence numbers with no gap and no repeat, date-times that never go back. */
function assertContinuous(all: Listed[]): void {
  all.forEach((s, i) => {
    if (i === 0) return;
    assert.equal(s.seq, all[i - 1]!.seq + 1, `no hole in the sequence before ${s.seq}`);
    const previousEnd = all[i - 1]!.pdt + all[i - 1]!.duration * 1000;
    assert.ok(s.pdt >= previousEnd - 100, `segment ${s.seq} starts ${previousEnd - s.pdt} ms before the previous one ends`);
  });
}

/** ffprobe of one segment: its video size and codecs. */
function probeSegment(bytes: Buffer): { video: string; audio: string; width: number; height: number } {
  const file = join(tempDir("probe"), "segment.ts");
  writeFileSync(file, bytes);
  const out = JSON.parse(execFileSync("ffprobe", ["-v", "error", "-show_streams", "-of", "json", file]).toString()) as {
    streams: { codec_type: string; codec_name: string; width?: number; height?: number }[];
  };
  const video = out.streams.find((s) => s.codec_type === "video")!;
  return { video: video.codec_name, audio: out.streams.find((s) => s.codec_type === "audio")?.codec_name ?? "", width: video.width!, height: video.height! };
}

async function streamInfo(lb: TestHaproxy, id: string): Promise<{ state: string; owner: string; slate: boolean } | undefined> {
  const body = JSON.parse((await get(lb.http("/api/streams"), ADMIN)).text) as { streams: { id: string; state: string; owner: string; slate: boolean }[] };
  return body.streams.find((s) => s.id === id);
}

describe("input loss: the timeline never stops while a stream is live", function () {
  this.timeout(240000);
  let redis: TestRedis;
  let nodes: TestNode[];
  let lb: TestHaproxy;
  const watches: Watch[] = [];
  const watch = (path: string): Watch => {
    const w = new Watch(lb.http(path));
    watches.push(w);
    return w;
  };

  before(async () => {
    redis = await startTestRedis();
    const prefix = testPrefix();
    nodes = [];
    for (const id of ["node-a", "node-b", "node-c"]) nodes.push(await startTestNode({ redisUrl: redis.url, prefix, id }));
    lb = await startTestHaproxy(nodes);
    await waitFor("three nodes registered", async () => {
      const body = JSON.parse((await get(lb.http("/api/nodes"), ADMIN)).text) as { nodes: unknown[] };
      return body.nodes.length === 3 ? true : undefined;
    });
  });
  after(async () => {
    for (const w of watches) w.stop();
    await stopAll();
  });

  it("publisher leaves: slate in real time with the same numbering; its return on another node brings live media back; the old holder is fenced", async () => {
    const [a, b] = [nodes[0]!, nodes[1]!];
    const w = watch("/live/left/360p/index.m3u8");
    let publisher: Managed = publish(a.rtmp("left"));
    const before = await w.until("three live segments", (all) => all.filter((s) => !s.slate).length >= 3);
    publisher.child.kill("SIGKILL");
    const leftAt = Date.now();
    await a.waitForLog(/input lost: showing the slate stream=left/, 30000);
    const withSlate = await w.until("three slate segments", (all) => slateAfter(all, before.at(-1)!.seq).length >= 3);
    const slate = slateAfter(withSlate, before.at(-1)!.seq);
    const last = withSlate.find((s) => s.seq === slate[0]!.seq - 1)!;
    assert.equal(last.slate, false, "the slate continues the sequence right after the last live segment");
    assert.equal(slate[0]!.disc, true, "EXT-X-DISCONTINUITY where the slate starts");
    assert.ok(slate.slice(1).every((s) => !s.disc), "one discontinuity for the whole slate");
    // the slate is listed in real time, at the cadence of live segments: one a segment duration after the other
    // (a busy machine only delays them), its date-times one segment duration apart
    for (let i = 1; i < slate.length; i++) {
      assert.ok(slate[i]!.seenAt - slate[i - 1]!.seenAt >= D * 1000 - 250, `slate segment ${slate[i]!.seq} listed ${slate[i]!.seenAt - slate[i - 1]!.seenAt} ms after the one before`);
      assert.equal(slate[i]!.pdt - slate[i - 1]!.pdt, D * 1000);
    }
    assert.equal(slate[0]!.pdt, last.pdt + last.duration * 1000, "the slate's date-times go on where the live media ended");
    const info = await streamInfo(lb, "left");
    assert.deepEqual([info?.state, info?.owner, info?.slate], ["reconnecting", "node-a", true]);

    // ffprobe-valid, the ladder's own format: the same codecs and size as the live segment before it
    const [liveBytes, slateBytes] = await Promise.all([last, slate[0]!].map(async (s) => (await get(lb.http(`/live/left/360p/${s.uri}`))).bytes));
    const [liveProbe, slateProbe] = [probeSegment(liveBytes!), probeSegment(slateBytes!)];
    assert.deepEqual(slateProbe, liveProbe);
    assert.deepEqual([slateProbe.video, slateProbe.audio, slateProbe.height], ["h264", "aac", 360]);

    // the slate holder freezes; the publisher returns on node-b, whose claim takes the slate's lease at once
    a.proc.child.kill("SIGSTOP");
    let resumed = false;
    try {
      publisher = publish(b.rtmp("left"));
      const back = await w.until("live media after the slate", (all) => liveAfter(all, slate.at(-1)!.seq).length >= 2);
      const firstLive = liveAfter(back, last.seq)[0]!;
      const slateSeen = slateAfter(back, last.seq);
      assert.equal(firstLive.seq, slateSeen.at(-1)!.seq + 1, "live media continues the numbering after the slate");
      assert.equal(firstLive.disc, true, "EXT-X-DISCONTINUITY where live media resumes");
      a.proc.child.kill("SIGCONT");
      resumed = true;
      // node-a wakes up with its slate claim taken: it stops, and nothing it appends is listed
      await a.waitForLog(/slate stopped stream=left reason="(stream taken over|slate lease taken over)"/, 30000);
      const later = await w.until("two more live segments", (all) => liveAfter(all, firstLive.seq).length >= 2);
      assertContinuous(later);
      assert.ok(later.filter((s) => s.seq > firstLive.seq).every((s) => !s.slate), "no slate segment after the publisher's return");
      const texts = await Promise.all(nodes.map(async (n) => withoutSession((await get(n.http("/live/left/360p/index.m3u8"))).text)));
      assert.deepEqual(disagreements(texts.map((t): ParsedPlaylist => parseM3u8(t))), [], "every node lists the same timeline");
      assert.equal((await streamInfo(lb, "left"))?.owner, "node-b");
      console.log(`      publisher left -> first slate listed ${slate[0]!.seenAt - leftAt} ms after the publisher was killed; ` +
        `${slate[0]!.seenAt - last.seenAt} ms after the last live segment was listed (bound for a player 3 segments behind: ${3 * D * 1000} ms)`);
    } finally {
      if (!resumed) a.proc.child.kill("SIGCONT");
      publisher.child.kill("SIGKILL");
    }
  });

  it("owner node SIGKILLed: another node lists the slate before the owner's lease runs out; the publisher's return continues live", async () => {
    const c = nodes[2]!;
    const w = watch("/live/crash/360p/index.m3u8");
    let publisher = publish(c.rtmp("crash"));
    await w.until("three live segments", (all) => all.filter((s) => !s.slate).length >= 3);
    c.proc.child.kill("SIGKILL");
    const killedAt = Date.now();
    publisher.child.kill("SIGKILL");
    const withSlate = await w.until("a slate segment", (all) => all.some((s) => s.slate));
    const first = withSlate.find((s) => s.slate)!;
    const last = withSlate.find((s) => s.seq === first.seq - 1)!;
    assert.equal(last.slate, false, "the slate continues right after the last live segment");
    assert.equal(first.disc, true);
    // the takeover came from knowing node-c dead (its port refuses), not from its 4-s lease running out
    const survivors = [nodes[0]!, nodes[1]!];
    const line = await Promise.any(survivors.map((n) => n.waitForLog(/taking over the slate of a stream without input stream=crash/, 30000)));
    assert.match(line, /from=node-c/);
    console.log(`      node-crash -> first slate listed ${first.seenAt - killedAt} ms after SIGKILL, ${first.seenAt - last.seenAt} ms after the last live segment was listed`);

    publisher = publish(survivors[0]!.rtmp("crash"));
    try {
      const back = await w.until("live media after the slate", (all) => liveAfter(all, first.seq).length >= 2);
      const firstLive = liveAfter(back, first.seq)[0]!;
      assert.equal(firstLive.disc, true);
      assert.equal(back.find((s) => s.seq === firstLive.seq - 1)?.slate, true, "live media follows the slate directly");
      assertContinuous(back.filter((s) => s.seq >= first.seq));
      console.log(`      node-crash -> first live segment after the return listed ${firstLive.seenAt - killedAt} ms after SIGKILL`);
    } finally {
      publisher.child.kill("SIGKILL");
    }
  });

  it("transcoder restarts: the slate fills the gap until the restarted ffmpeg's first segment", async () => {
    const a = nodes[0]!;
    const w = watch("/live/restart/360p/index.m3u8");
    const publisher = publish(a.rtmp("restart"));
    try {
      const line = await a.waitForLog(/ffmpeg started stream=restart run=0 pid=(\d+)/, 60000);
      const before = await w.until("three live segments", (all) => all.filter((s) => !s.slate).length >= 3);
      process.kill(Number(/pid=(\d+)/.exec(line)![1]), "SIGKILL");
      await a.waitForLog(/ffmpeg started stream=restart run=1/, 30000);
      const after = await w.until("live media after the slate", (all) => {
        const first = slateAfter(all, before.at(-1)!.seq)[0];
        return first !== undefined && liveAfter(all, first.seq).length >= 2;
      });
      const slate = slateAfter(after, before.at(-1)!.seq);
      const firstLive = liveAfter(after, slate[0]!.seq)[0]!;
      assert.equal(after.find((s) => s.seq === slate[0]!.seq - 1)?.slate, false, "the slate follows the last segment of the first run");
      assert.equal(slate[0]!.disc, true);
      assert.equal(firstLive.disc, true, "the restarted run's first segment starts a discontinuity after the slate");
      assert.equal(after.find((s) => s.seq === firstLive.seq - 1)?.slate, true);
      assertContinuous(after.filter((s) => s.seq > before.at(-1)!.seq));
      assert.equal((await streamInfo(lb, "restart"))?.owner, "node-a", "a restart keeps the stream's claim");
    } finally {
      publisher.child.kill("SIGKILL");
    }
  });

  it("hls.inputLoss off: the playlist waits without new segments, as before the slate", async () => {
    // a cluster of its own: a node with the slate on would keep the stream's slate for the others
    const prefix = testPrefix();
    const off = await startTestNode({ redisUrl: redis.url, prefix, id: "node-off", env: { BATON_HLS_INPUTLOSS: "off" } });
    const url = off.http("/live/quiet/360p/index.m3u8");
    const publisher = publish(off.rtmp("quiet"));
    await waitFor("three segments", async () => (parseM3u8((await get(url)).text).segments?.length >= 3 ? true : undefined), 60000);
    publisher.child.kill("SIGKILL");
    await off.waitForLog(/publish ended stream=quiet/, 30000);
    const after = (await get(url)).text;
    // for as long as three slate segments would take, nothing is appended: the stream just waits
    const watchUntil = Date.now() + 4 * D * 1000;
    while (Date.now() < watchUntil) {
      const text = (await get(url)).text;
      assert.equal(text, after, "no segment appended while the publisher is away");
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.doesNotMatch(after, /EXT-BATON-SLATE|EXT-X-ENDLIST/);
    const metrics = (await get(off.http("/metrics"), ADMIN)).text;
    assert.match(metrics, /baton_slate_segments_total\{node="node-off"\} 0/);
  });
});
