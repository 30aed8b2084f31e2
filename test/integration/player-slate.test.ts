// The player page in a real browser (Debian's chromium, hls.js) through HAProxy while the stream loses its
// input and gets it back on another node: it plays on across live -> slate -> live with no error of any kind
// and no stall, says "waiting for the broadcaster" while the slate plays and stops saying it when live media
// is back.
import assert from "node:assert/strict";
import { chromium, type Browser, type Page } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "../../tools/chaos/browsers.ts";
import { get, publish, startTestHaproxy, startTestNode, startTestRedis, stopAll, testPrefix, waitFor, type TestHaproxy, type TestNode } from "../helpers/stack.ts";
import type { Managed } from "../../tools/processes.ts";

interface SlatePlayerState {
  onSlate: boolean;
  slateSeen: number;
  stalls: number;
  errors: { type: string; details: string; fatal: boolean }[];
  status: string;
  time: number;
}

const state = (page: Page): Promise<SlatePlayerState> =>
  page.evaluate(() => {
    const s = (window as unknown as { batonPlayer: Omit<SlatePlayerState, "status" | "time"> }).batonPlayer;
    return {
      onSlate: s.onSlate, slateSeen: s.slateSeen, stalls: s.stalls, errors: s.errors,
      status: document.querySelector("#status")!.textContent ?? "", time: document.querySelector("video")!.currentTime,
    };
  });

describe("player page across an input loss", function () {
  this.timeout(180000);
  let lb: TestHaproxy;
  let nodes: TestNode[];
  let browser: Browser | null = null;

  before(async () => {
    const redis = await startTestRedis();
    const prefix = testPrefix();
    nodes = [await startTestNode({ redisUrl: redis.url, prefix }), await startTestNode({ redisUrl: redis.url, prefix })];
    lb = await startTestHaproxy(nodes);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30000 });
  });
  after(async () => {
    await browser?.close();
    await stopAll();
  });

  it("plays live -> slate -> live without any error or stall, and says when it waits for the broadcaster", async () => {
    let publisher: Managed = publish(nodes[0]!.rtmp("tv"));
    await waitFor("the stream", async () => {
      const r = await get(lb.http("/live/tv/360p/index.m3u8"));
      return r.status === 200 && (r.text.match(/#EXTINF/g) ?? []).length >= 4 ? true : undefined;
    }, 60000);
    const page = await browser!.newPage();
    try {
      await page.goto(lb.http("/watch/tv"));
      await page.waitForFunction(() => document.querySelector("video")!.currentTime > 3, null, { timeout: 60000 });
      assert.match((await state(page)).status, /Playing/);

      publisher.child.kill("SIGKILL");
      await page.waitForFunction(() => (window as unknown as { batonPlayer: { onSlate: boolean } }).batonPlayer.onSlate, null, { timeout: 60000 });
      const onSlate = await state(page);
      assert.match(onSlate.status, /Waiting for the broadcaster/);
      // the slate plays: the video's clock moves on through it
      await page.waitForFunction((t) => document.querySelector("video")!.currentTime > t + 3, onSlate.time, { timeout: 30000 });
      assert.equal((await state(page)).onSlate, true);

      publisher = publish(nodes[1]!.rtmp("tv"));
      await page.waitForFunction(() => !(window as unknown as { batonPlayer: { onSlate: boolean } }).batonPlayer.onSlate, null, { timeout: 60000 });
      const back = await state(page);
      assert.doesNotMatch(back.status, /Waiting for the broadcaster/);
      await page.waitForFunction((t) => document.querySelector("video")!.currentTime > t + 3, back.time, { timeout: 30000 });
      const end = await state(page);
      assert.deepEqual(end.errors, [], "hls.js reported no error of any kind");
      assert.equal(end.stalls, 0, "the video never waited for data");
      assert.equal(end.slateSeen, 1);
      assert.equal(end.onSlate, false);
    } finally {
      await page.close();
      publisher.child.kill("SIGKILL");
    }
  });
});
