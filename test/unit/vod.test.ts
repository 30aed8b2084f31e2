// VOD delivery on a real HTTP server with a recording in memory: a required playback token opens the master
// and rides in every URI it leads to, where it is checked again; caches keep a recording no longer than its
// retention; one viewer's token URIs are private; many viewers opening a recording at once read it once.
import assert from "node:assert/strict";
import type { LadderEntry, TimelineEntry } from "../../src/core/model.ts";
import { createLogger } from "../../src/core/log.ts";
import { Metrics } from "../../src/core/metrics.ts";
import { VodDelivery } from "../../src/delivery/vod.ts";
import { ClientAddresses } from "../../src/http/client-address.ts";
import { HttpError } from "../../src/http/errors.ts";
import { HttpServer } from "../../src/http/server.ts";
import type { Recording } from "../../src/state/broadcasts.ts";
import { freePort } from "../../tools/processes.ts";

const LADDER: LadderEntry[] = [{ name: "240p", width: 426, height: 240, bandwidth: 500000, averageBandwidth: 450000, codecs: "avc1.640015,mp4a.40.2", frameRate: 30 }];
const BROADCAST = "abcd1234abcd";
/** A recording that ended ten seconds before it is read (the suite loads this file minutes before it runs). */
function recording(): Recording {
  const ended = Date.now() - 10_000;
  const entries: TimelineEntry[] = [0, 1, 2].map((seq) => ({ seq, claim: BROADCAST, pdt: ended - 3000 + seq * 1000, disc: false, cc: 0, dur: { "240p": 1 } }));
  return { record: { id: BROADCAST, started: ended - 3000, ended, duration: 3, renditions: ["240p"] }, targetDuration: 1, ladder: LADDER, entries };
}
const GOOD = "good.token";

describe("VOD delivery", () => {
  let http: HttpServer;
  let port: number;
  let reads = 0;

  before(async () => {
    port = await freePort();
    http = new HttpServer({
      port, bind: "127.0.0.1", maxConnections: 100, maxConnectionsPerAddress: 100, addresses: new ClientAddresses(["127.0.0.1"]),
      log: createLogger({ level: "error" }), metrics: new Metrics({ node: "t" }), readiness: { ready: () => ({ ok: true }) }, opsToken: null,
    });
    new VodDelivery(http, {
      store: {
        broadcasts: {
          list: async () => [recording().record],
          recording: async () => {
            reads += 1;
            await new Promise((resolve) => setTimeout(resolve, 50));
            return recording();
          },
        } as never,
        readSegment: async () => Buffer.alloc(188, 0x47),
      },
      timelines: { get: async () => ({ snapshot: null, stale: false }) },
      // tokens required: only GOOD opens anything
      sessions: { authorize: (_stream: string, token: string | null) => {
        if (token !== GOOD) throw new HttpError(401, "PLAYBACK_TOKEN_REQUIRED", "a playback token is required");
      } },
      retentionMs: 60_000,
    });
    await http.start();
  });
  after(() => http.close());

  const url = (path: string): string => `http://127.0.0.1:${port}${path}`;

  it("carries the token from the master into the media playlists and segments, and checks it there", async () => {
    const master = await fetch(url(`/vod/rec/${BROADCAST}/index.m3u8?token=${GOOD}`));
    assert.equal(master.status, 200);
    const text = await master.text();
    assert.match(text, new RegExp(`^240p/index\\.m3u8\\?token=${GOOD.replace(".", "\\.")}$`, "m"));
    const media = await fetch(url(`/vod/rec/${BROADCAST}/240p/index.m3u8?token=${GOOD}`));
    assert.equal(media.status, 200);
    const segment = (await media.text()).split("\n").find((l) => l.endsWith(`?token=${GOOD}`) && l.includes(".ts"))!;
    assert.ok(segment, "segment URIs do not carry the token");
    assert.equal((await fetch(url(`/vod/rec/${BROADCAST}/240p/${segment}`))).status, 200);
    // without the token neither the media playlist nor a segment opens
    assert.equal((await fetch(url(`/vod/rec/${BROADCAST}/240p/index.m3u8`))).status, 401);
    assert.equal((await fetch(url(`/vod/rec/${BROADCAST}/240p/0.${BROADCAST}.ts`))).status, 401);
  });

  it("is private with a token, and no cache keeps it past its retention", async () => {
    const r = await fetch(url(`/vod/rec/${BROADCAST}/240p/index.m3u8?token=${GOOD}`));
    const cc = r.headers.get("cache-control")!;
    assert.match(cc, /^private, max-age=\d+$/);
    const maxAge = Number(/max-age=(\d+)/.exec(cc)![1]);
    // ended 10 s before it was read, kept 60 s: at most 50 s left, and some
    assert.ok(maxAge <= 50 && maxAge > 0, cc);
    const segment = await fetch(url(`/vod/rec/${BROADCAST}/240p/0.${BROADCAST}.ts?token=${GOOD}`));
    const segmentAge = Number(/^private, max-age=(\d+), immutable$/.exec(segment.headers.get("cache-control")!)?.[1]);
    assert.ok(segmentAge <= 50 && segmentAge > 0, segment.headers.get("cache-control")!);
  });

  it("reads a recording once however many viewers open it at the same moment", async () => {
    reads = 0;
    await new Promise((resolve) => setTimeout(resolve, 0));
    const before = reads;
    // another broadcast id: not held yet
    const other = "ef0123456789ef01";
    const answers = await Promise.all(Array.from({ length: 20 }, () => fetch(url(`/vod/rec/${other}/index.m3u8?token=${GOOD}`))));
    assert.ok(answers.every((a) => a.status === 200));
    assert.equal(reads - before, 1);
  });
});
