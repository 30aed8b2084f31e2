// A publisher for the harness: ffmpeg pushing a synthetic stream in real time, wrapped to reconnect the way
// OBS does when its connection ends (a delay, then again), until stopped.
import { startProcess, stopProcess, type Managed } from "../processes.ts";

/** The synthetic source: ffmpeg's test pattern at 30 fps and a 440-Hz tone, as lavfi inputs. */
export function syntheticInputs(width = 1280, height = 720, audio = true): string[] {
  return [
    "-f", "lavfi", "-i", `testsrc2=size=${width}x${height}:rate=30`,
    ...(audio ? ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"] : []),
  ];
}

export interface SyntheticPush {
  width?: number;
  height?: number;
  /** kbit/s of video (capped so) and audio; omitted: x264's default rate control. */
  videoKbps?: number;
  audioKbps?: number;
  audio?: boolean;
  /** Stop after this many seconds of media; omitted: until killed. */
  seconds?: number;
  /** Seconds between keyframes; omitted: 1. */
  gop?: number;
  /** Stereo audio (as most encoders send); omitted: the tone in mono. */
  stereo?: boolean;
  /** An ffmpeg -force_key_frames expression (with `gop` as the longest interval); omitted: every `gop`. */
  keyframes?: string;
}

/** ffmpeg's arguments to push the synthetic source to `url` in real time, as a camera encoder would. */
export function syntheticPushArgs(url: string, o: SyntheticPush = {}): string[] {
  const audio = o.audio !== false;
  return [
    "-hide_banner", "-nostdin", "-loglevel", "error", "-re", ...syntheticInputs(o.width ?? 640, o.height ?? 360, audio),
    "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", String(Math.round((o.gop ?? 1) * 30)), ...(o.keyframes ? ["-force_key_frames", o.keyframes] : []), "-pix_fmt", "yuv420p",
    ...(o.videoKbps ? ["-b:v", `${o.videoKbps}k`, "-maxrate", `${o.videoKbps}k`, "-bufsize", `${o.videoKbps}k`] : []),
    ...(audio ? ["-c:a", "aac", "-b:a", `${o.audioKbps ?? 64}k`, ...(o.stereo ? ["-ac", "2"] : [])] : []),
    ...(o.seconds ? ["-t", String(o.seconds)] : []),
    "-f", "flv", url,
  ];
}

export interface PublisherOptions {
  url: string;
  /** ffmpeg's whole argument list for a connection to `url`; omitted: the synthetic source (syntheticPushArgs). */
  args?: (url: string) => string[];
  width?: number;
  height?: number;
  /** Delay before reconnecting, ms (OBS's default retry delay is a few seconds; 500 keeps tests short). */
  retryDelayMs?: number;
  onLine?: (line: string) => void;
  /** Told when a connection attempt starts and when one ends. */
  onConnect?: (attempt: number) => void;
  onDrop?: (attempt: number, exit: { code: number | null; signal: NodeJS.Signals | null }) => void;
}

export class ReconnectingPublisher {
  private current: Managed | null = null;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  /** Wall-clock ms of each (re)connection attempt. */
  readonly connects: number[] = [];
  /** Wall-clock ms of each time the connection ended while not stopped. */
  readonly drops: number[] = [];

  constructor(private readonly o: PublisherOptions) {}

  /** Where the next (re)connection goes: an encoder pointed at another server. */
  retarget(url: string): void {
    this.o.url = url;
  }

  start(): void {
    if (this.stopped) return;
    const args = this.o.args?.(this.o.url) ?? syntheticPushArgs(this.o.url, { width: this.o.width, height: this.o.height });
    this.connects.push(Date.now());
    const attempt = this.connects.length;
    this.o.onConnect?.(attempt);
    const p = startProcess("publisher", "ffmpeg", args, this.o.onLine ? { onLine: this.o.onLine } : {});
    this.current = p;
    void p.exited.then((exit) => {
      if (this.current === p) this.current = null;
      if (this.stopped) return;
      this.drops.push(Date.now());
      this.o.onDrop?.(attempt, exit);
      this.timer = setTimeout(() => this.start(), this.o.retryDelayMs ?? 500);
    });
  }

  /** The pid of the ffmpeg running now, if any. */
  get pid(): number | null {
    return this.current?.child.pid ?? null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.current) await stopProcess(this.current, "SIGKILL", 1000);
  }
}
