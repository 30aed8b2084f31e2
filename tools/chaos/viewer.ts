// A simulated HLS viewer: a model of a player that loads the master playlist (starting a session), picks a
// rendition, reloads the media playlist at the pace RFC 8216 sets (the target duration, half of it when
// nothing changed), downloads each new segment, and plays from a buffer that drains in real time, starting
// three segments behind live like hls.js. It counts what a viewer would notice: errors by status, stalls,
// media sequence regressions, a URI that changed for a sequence number, EXT-X-ENDLIST while live; and it
// reports its position to its session so a harness can check the position survives.
import { setMaxListeners } from "node:events";
import { parseMedia, type MediaPlaylist } from "./m3u8.ts";

export interface ViewerReport {
  id: number;
  sessionId: string | null;
  requests: number;
  /** Failed requests by HTTP status ("0": no answer at all), and by kind. */
  errors: Record<string, number>;
  stalls: number;
  stalledMs: number;
  sequenceRegressions: number;
  uriChanges: number;
  endlists: number;
  /** Segments skipped because they left the window before the viewer got them. */
  skipped: number;
  segments: number;
  /** The last position reported to the session (seconds), and what the session held at the end. */
  lastReported: number | null;
}

export interface ViewerOptions {
  /** Base URL of the cluster (the balancer), e.g. http://127.0.0.1:8080. */
  baseUrl: string;
  streamId: string;
  id: number;
  /** Report the position to the session this often (ms); 0: never. */
  reportEveryMs?: number;
  /** Pick the lowest-bandwidth rendition (light on the machine; the default) or, with false, the highest. */
  lowest?: boolean;
  signal: AbortSignal;
  /** Called with each failed request (for timelines and logs). */
  onError?: (status: number, url: string) => void;
  onStall?: (startedAt: number) => void;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });

export class SimulatedViewer {
  readonly report: ViewerReport;
  private token: string | null = null;
  private streamStartedAt: number | null = null;

  constructor(private readonly o: ViewerOptions) {
    // many viewers wait on one stop signal at once
    setMaxListeners(10000, o.signal);
    this.report = {
      id: o.id, sessionId: null, requests: 0, errors: {}, stalls: 0, stalledMs: 0, sequenceRegressions: 0, uriChanges: 0,
      endlists: 0, skipped: 0, segments: 0, lastReported: null,
    };
  }

  private async get(url: string): Promise<{ status: number; text: string; bytes: number }> {
    this.report.requests += 1;
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(10000) });
      const body = Buffer.from(await response.arrayBuffer());
      if (response.status !== 200) this.fail(response.status, url);
      return { status: response.status, text: response.status === 200 ? body.toString("utf8") : "", bytes: body.length };
    } catch {
      if (!this.o.signal.aborted) this.fail(0, url);
      return { status: 0, text: "", bytes: 0 };
    }
  }

  private fail(status: number, url: string): void {
    this.report.errors[String(status)] = (this.report.errors[String(status)] ?? 0) + 1;
    this.o.onError?.(status, url);
  }

  /** Runs until the signal aborts; resolves with the report. */
  async run(): Promise<ViewerReport> {
    const { baseUrl, streamId, signal } = this.o;
    let masterText = "";
    while (!signal.aborted && !masterText) {
      const r = await this.get(`${baseUrl}/live/${streamId}/index.m3u8`);
      if (r.status === 200) masterText = r.text;
      else await sleep(500, signal);
    }
    if (signal.aborted) return this.report;
    const variants = [...masterText.matchAll(/#EXT-X-STREAM-INF:.*BANDWIDTH=(\d+).*\n(\S+)/g)].map((m) => ({ bandwidth: Number(m[1]), uri: m[2]! }));
    variants.sort((a, b) => (this.o.lowest === false ? b.bandwidth - a.bandwidth : a.bandwidth - b.bandwidth));
    const variant = variants[0]!;
    // the session rides in the variant's path (s/<token>/...), or an earlier release's ?session= query
    this.token = /(?:^s\/|session=)([^\s&/?]+)/.exec(variant.uri)?.[1] ?? null;
    this.report.sessionId = this.token?.split(".")[0] ?? null;
    const mediaUrl = `${baseUrl}/live/${streamId}/${variant.uri}`;
    await this.learnClock();

    const uris = new Map<number, string>();
    let lastMediaSequence = -1;
    let next: number | null = null;
    let buffer = 0;
    let playedPdt: number | null = null;
    let stalledSince: number | null = null;
    let playing = false;
    let lastTick = Date.now();
    let lastReport = 0;
    const pending: { seq: number; uri: string; duration: number; pdt: number | null }[] = [];

    const tick = (): void => {
      const now = Date.now();
      const elapsed = (now - lastTick) / 1000;
      lastTick = now;
      if (stalledSince !== null) {
        if (buffer >= 1) {
          this.report.stalledMs += now - stalledSince;
          stalledSince = null;
        }
        return;
      }
      if (!playing) return;
      buffer -= elapsed;
      if (playedPdt !== null) playedPdt += elapsed * 1000;
      if (buffer <= 0) {
        buffer = 0;
        stalledSince = now;
        this.report.stalls += 1;
        this.o.onStall?.(now);
      }
    };

    while (!signal.aborted) {
      const r = await this.get(mediaUrl);
      tick();
      let changed = false;
      let playlist: MediaPlaylist | null = null;
      if (r.status === 200) {
        playlist = parseMedia(r.text);
        if (playlist.mediaSequence < lastMediaSequence) this.report.sequenceRegressions += 1;
        lastMediaSequence = Math.max(lastMediaSequence, playlist.mediaSequence);
        if (playlist.endList) this.report.endlists += 1;
        for (const s of playlist.segments) {
          const known = uris.get(s.seq);
          const key = `${s.uri.split("?")[0]}|${s.duration}|${s.pdt}`;
          if (known !== undefined && known !== key) this.report.uriChanges += 1;
          if (known === undefined) changed = true;
          uris.set(s.seq, key);
        }
        if (next === null && playlist.segments.length > 0) next = playlist.segments[Math.max(0, playlist.segments.length - 3)]!.seq;
        if (next !== null && playlist.segments.length > 0 && next < playlist.segments[0]!.seq) {
          this.report.skipped += playlist.segments[0]!.seq - next;
          next = playlist.segments[0]!.seq;
        }
        for (const s of playlist.segments) if (next !== null && s.seq >= next && !pending.some((p) => p.seq === s.seq)) pending.push(s);
      }
      // download what is new, in order; a failed segment is tried again on the next round
      while (pending.length > 0 && !signal.aborted) {
        const s = pending[0]!;
        const got = await this.get(new URL(s.uri, mediaUrl).href);
        tick();
        if (got.status !== 200) break;
        pending.shift();
        buffer += s.duration;
        playedPdt ??= s.pdt;
        next = s.seq + 1;
        this.report.segments += 1;
      }
      // like hls.js, playback starts once what was three segments behind live is buffered
      if (!playing && next !== null && pending.length === 0 && buffer > 0) {
        playing = true;
        lastTick = Date.now();
      }
      if (this.o.reportEveryMs && Date.now() - lastReport > this.o.reportEveryMs && playedPdt !== null) {
        lastReport = Date.now();
        await this.reportPosition(playedPdt, stalledSince !== null);
      }
      const target = playlist?.targetDuration ?? 2;
      await sleep((changed ? target : target / 2) * 1000, signal);
      tick();
    }
    if (stalledSince !== null) this.report.stalledMs += Date.now() - stalledSince;
    return this.report;
  }

  private async learnClock(): Promise<void> {
    if (!this.token || !this.report.sessionId) return;
    try {
      const r = await fetch(`${this.o.baseUrl}/api/sessions/${this.report.sessionId}`, {
        headers: { Authorization: `Bearer ${this.token}` }, signal: AbortSignal.timeout(5000),
      });
      this.streamStartedAt = ((await r.json()) as { streamStartedAt: number | null }).streamStartedAt;
    } catch {
      this.streamStartedAt = null;
    }
  }

  private async reportPosition(pdt: number, paused: boolean): Promise<void> {
    if (!this.token || !this.report.sessionId || this.streamStartedAt === null) return;
    const position = Math.max(0, Math.round(pdt - this.streamStartedAt) / 1000);
    this.report.requests += 1;
    try {
      const r = await fetch(`${this.o.baseUrl}/api/sessions/${this.report.sessionId}/position`, {
        method: "PUT",
        headers: { Authorization: `Bearer ${this.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ position, paused }),
        signal: AbortSignal.timeout(5000),
      });
      await r.arrayBuffer();
      // 202: accepted while Redis is away, written when it returns
      if (r.status === 200 || r.status === 202) this.report.lastReported = position;
      else this.fail(r.status, "position");
    } catch {
      if (!this.o.signal.aborted) this.fail(0, "position");
    }
  }

  /** The session's position as Redis holds it now (after the run), for the harness to compare. */
  async sessionPosition(): Promise<number | null | "lost"> {
    if (!this.token || !this.report.sessionId) return null;
    const r = await fetch(`${this.o.baseUrl}/api/sessions/${this.report.sessionId}`, {
      headers: { Authorization: `Bearer ${this.token}` }, signal: AbortSignal.timeout(5000),
    }).catch(() => null);
    if (!r || r.status !== 200) return "lost";
    return ((await r.json()) as { position: number | null }).position;
  }
}
