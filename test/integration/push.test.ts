// `baton push`, the newcomer's encoder: it signs its own URL and, when a drain ends its connection, reconnects
// through the balancer the way OBS does, so the stream carries on where plain ffmpeg would have exited.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { nodeCommand, startProcess } from "../../tools/processes.ts";
import { smallMachineWarning } from "../../tools/local-cluster.ts";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { lastSeq, parseM3u8 } from "../helpers/hls.ts";
import {
  ADMIN, ADMIN_TOKEN, HOST, SECRET, get, startTestHaproxy, startTestNode, startTestRedis, stopAll, tempDir, testPrefix, waitFor,
} from "../helpers/stack.ts";

interface StreamInfo {
  id: string;
  owner: string;
  epoch: number;
  slate: boolean;
}

describe("baton push", function () {
  this.timeout(120000);
  after(stopAll);

  it("pushes a file looped, and reconnects through the balancer after a drain of its node", async () => {
    const redis = await startTestRedis();
    const prefix = testPrefix();
    const nodes = [await startTestNode({ redisUrl: redis.url, prefix, id: "p1" }), await startTestNode({ redisUrl: redis.url, prefix, id: "p2" })];
    const lb = await startTestHaproxy(nodes);
    const file = join(tempDir("push"), "clip.mp4");
    execFileSync("ffmpeg", ["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine",
      "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", file]);
    const lines: string[] = [];
    const [command, args] = nodeCommand(["push", file, "--stream", "pushed"]);
    const pusher = startProcess("push", command, args, {
      env: { BATON_AUTH_PUBLISHSECRET: SECRET, BATON_NODE_PUBLICHOST: HOST, BATON_RTMP_PORT: String(lb.rtmpPort) },
      onLine: (line) => lines.push(line),
    });
    const streams = async (): Promise<StreamInfo | undefined> =>
      (JSON.parse((await get(lb.http("/api/streams"), ADMIN)).text) as { streams: StreamInfo[] }).streams.find((s) => s.id === "pushed");
    const newest = async (): Promise<number | undefined> => {
      const r = await get(lb.http("/live/pushed/240p/index.m3u8"));
      if (r.status !== 200) return undefined;
      const playlist = parseM3u8(r.text);
      return playlist.segments.length > 0 ? lastSeq(playlist) : undefined;
    };
    const first = await waitFor("segments of the pushed stream", async () => ((await newest()) ?? -1) >= 2 ? streams() : undefined, 40000);
    assert.ok(lines.some((l) => /pushing .*clip\.mp4 to rtmp:\/\/.*token=\.\.\./.test(l)), `the token is not printed: ${lines.join("\n")}`);
    const owner = nodes.find((n) => n.id === first.owner)!;
    const drained = await fetch(owner.http("/admin/drain"), { method: "POST", headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(drained.status, 202);
    // the encoder back on the other node (live, not the slate a node keeps while it reconnects)
    const moved = await waitFor("the stream live on the other node", async () => {
      const s = await streams();
      return s && s.owner !== first.owner && s.epoch > first.epoch && !s.slate && lines.some((l) => /reconnecting \(attempt 2\)/.test(l)) ? s : undefined;
    }, 40000);
    const at = (await newest())!;
    await waitFor("new segments after the move", async () => ((await newest()) ?? 0) >= at + 2 ? true : undefined, 30000);
    assert.ok(lines.some((l) => /the connection ended .*reconnecting in 2 s/.test(l)) && lines.some((l) => /reconnecting \(attempt 2\)/.test(l)), lines.join("\n"));
    assert.notEqual(moved.owner, first.owner);
    pusher.child.kill("SIGINT");
    await pusher.exited;
  });

  it("the start banner warns on a small machine about the default ladder, and not about a light one", () => {
    assert.match(smallMachineWarning(DEFAULTS, 2) ?? "", /2 CPU cores; the 720p\/480p\/360p ladder at the\s+veryfast preset may not keep up/);
    assert.equal(smallMachineWarning(DEFAULTS, 8), null);
    assert.equal(smallMachineWarning({ ...DEFAULTS, transcode: { ...DEFAULTS.transcode, preset: "ultrafast" } }, 2), null);
  });
});
