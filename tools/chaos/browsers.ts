// Real players for the harness: hls.js in headless Chromium (Debian's chromium, driven by playwright-core) on
// baton's player page, which records hls.js ERROR events (fatal or not, by detail) and stalls.
import { chromium, type Browser, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run",
  "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
];

export interface BrowserReport {
  errors: { type: string; details: string; fatal: boolean; at: number }[];
  stalls: number;
  stalledMs: number;
  stallLog: { at: number; ms: number }[];
  wsConnects: number;
  handoffs: number;
  playedSeconds: number;
}

/** hls.js details that describe a stall (counted as stalls, not as errors a viewer sees). */
export const STALL_DETAILS = new Set(["bufferStalledError", "bufferNudgeOnStall", "bufferSeekOverHole"]);

export class BrowserViewers {
  private browser: Browser | null = null;
  private readonly pages: Page[] = [];

  async start(url: string, count: number): Promise<void> {
    if (count === 0) return;
    this.browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30000 });
    for (let i = 0; i < count; i++) {
      const page = await this.browser.newPage();
      await page.goto(url);
      this.pages.push(page);
    }
    // playing: the video's clock moves
    for (const page of this.pages) {
      await page.waitForFunction(() => document.querySelector("video")!.currentTime > 1, null, { timeout: 60000 });
    }
  }

  async reports(): Promise<BrowserReport[]> {
    return Promise.all(
      this.pages.map((page) =>
        page.evaluate(() => {
          const s = (window as unknown as { batonPlayer: Omit<BrowserReport, "playedSeconds"> }).batonPlayer;
          return {
            errors: s.errors, stalls: s.stalls, stalledMs: s.stalledMs, stallLog: s.stallLog, wsConnects: s.wsConnects, handoffs: s.handoffs,
            playedSeconds: document.querySelector("video")!.currentTime,
          };
        }),
      ),
    );
  }

  async close(): Promise<void> {
    await this.browser?.close().catch(() => undefined);
    this.browser = null;
  }
}
