// A publisher for the harness: ffmpeg pushing a synthetic stream in real time, wrapped to reconnect the way
// OBS does when its connection ends (a delay, then again), until stopped.
import { startProcess, stopProcess, type Managed } from "../ops/processes.ts";

export interface PublisherOptions {
  url: string;
  width?: number;
  height?: number;
  /** Delay before reconnecting, ms (OBS's default retry delay is a few seconds; 500 keeps tests short). */
  retryDelayMs?: number;
  onLine?: (line: string) => void;
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
    const size = `${this.o.width ?? 640}x${this.o.height ?? 360}`;
    const args = [
      "-hide_banner", "-loglevel", "error", "-re",
      "-f", "lavfi", "-i", `testsrc2=size=${size}:rate=30`,
      "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
      "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p",
      "-c:a", "aac", "-b:a", "64k", "-f", "flv", this.o.url,
    ];
    this.connects.push(Date.now());
    const p = startProcess("publisher", "ffmpeg", args, this.o.onLine ? { onLine: this.o.onLine } : {});
    this.current = p;
    void p.exited.then(() => {
      if (this.current === p) this.current = null;
      if (this.stopped) return;
      this.drops.push(Date.now());
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
