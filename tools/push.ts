// `baton push`: an encoder for newcomers that behaves like OBS. It signs its own publish URL with the
// cluster's secret, pushes the test pattern (or a file, looped) in real time with 2-s keyframes, and when
// the connection ends (a drain, a rolling update, a node lost) reconnects after a short delay, as OBS's
// "Automatically Reconnect" does. Plain ffmpeg exits instead, and its stream ends after the reconnect window.
import { existsSync } from "node:fs";
import { ReconnectingPublisher, syntheticInputs } from "./chaos/publisher.ts";

export interface PushOptions {
  url: string;
  /** A media file to loop; null: ffmpeg's test pattern and a tone. */
  file: string | null;
  /** Delay before reconnecting, ms (OBS's default is 2 s). */
  retryDelayMs: number;
  say: (line: string) => void;
}

/** ffmpeg's arguments: the source in real time, H.264 with a keyframe every 2 s, AAC, FLV to `url`. */
export function pushArgs(url: string, file: string | null): string[] {
  const input = file === null ? ["-re", ...syntheticInputs(1280, 720, true)] : ["-re", "-stream_loop", "-1", "-i", file];
  return [
    "-hide_banner", "-nostdin", "-loglevel", "error", ...input,
    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-force_key_frames", "expr:gte(t,n_forced*2)",
    "-b:v", "3000k", "-maxrate", "3000k", "-bufsize", "6000k",
    "-c:a", "aac", "-b:a", "128k", "-ar", "48000",
    "-f", "flv", url,
  ];
}

/** Pushes until `signal` aborts; resolves once the encoder stopped. */
export async function push(o: PushOptions, signal: AbortSignal): Promise<void> {
  if (o.file !== null && !existsSync(o.file)) throw new Error(`no such file: ${o.file}`);
  const shown = o.url.replace(/token=[^&]+/, "token=...");
  const publisher = new ReconnectingPublisher({
    url: o.url,
    args: (url) => pushArgs(url, o.file),
    retryDelayMs: o.retryDelayMs,
    onLine: (line) => o.say(`ffmpeg: ${line}`),
    onConnect: (attempt) => o.say(attempt === 1 ? `pushing ${o.file ?? "the test pattern"} to ${shown} (Ctrl-C stops)` : `reconnecting (attempt ${attempt})`),
    onDrop: (_attempt, exit) =>
      o.say(`the connection ended (ffmpeg ${exit.signal ?? `exited with status ${exit.code}`}); reconnecting in ${o.retryDelayMs / 1000} s`),
  });
  publisher.start();
  await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
  await publisher.stop();
}
