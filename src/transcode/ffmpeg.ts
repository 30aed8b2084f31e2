// The one module that uses fluent-ffmpeg (archived at 2.1.3): nothing else in baton depends on it.
// Its pitfalls, handled here:
// - inputOptions/outputOptions([...]) split an element holding one space into two arguments: options are
//   always passed as separate arguments (the variadic form, which does not split);
// - kill() defaults to SIGKILL: stop() ends ffmpeg's input first so it finishes its segments, then SIGINT,
//   then SIGKILL only after a grace period;
// - a signal stop surfaces as an `error` event: exits are reported as one `exit` event whatever the cause;
// - an ffmpeg blocked on an idle input needs a second SIGINT: baton feeds ffmpeg through stdin, so ending
//   stdin ends the input, and the second SIGINT is sent anyway before SIGKILL.
import { getPriority, setPriority } from "node:os";
import { PassThrough } from "node:stream";
import ffmpeg from "fluent-ffmpeg";
import { errorMessage } from "../core/errors.ts";
import { TypedEmitter } from "../core/events.ts";

export interface FfmpegSpec {
  ffmpegPath: string;
  inputFormat: string;
  inputOptions: string[];
  filterComplex: string;
  outputs: { path: string; options: string[] }[];
  /** Added to the node's own scheduling niceness for this process (capped at 19); 0 or absent: none. */
  niceness?: number;
}

export interface FfmpegProgress {
  /** Media seconds written so far. */
  mediaSeconds: number;
  frames: number;
  fps: number;
}

export interface FfmpegExit {
  /** Whether stop() asked for it. */
  requested: boolean;
  message: string;
  /** The last lines ffmpeg wrote on stderr. */
  stderr: string;
}

type FfmpegEvents = {
  start: [pid: number, commandLine: string];
  progress: [FfmpegProgress];
  exit: [FfmpegExit];
};

function seconds(timemark: string): number {
  const match = /^(-?)(\d+):(\d+):(\d+(?:\.\d+)?)$/.exec(timemark);
  if (!match) return 0;
  const value = Number(match[2]) * 3600 + Number(match[3]) * 60 + Number(match[4]);
  return match[1] ? -value : value;
}

/** Gives `pid` `by` more niceness than this process has (the most is 19); never throws. */
export function lowerPriority(pid: number, by: number): { niceness: number } | { error: string } {
  try {
    const niceness = Math.min(19, getPriority() + by);
    setPriority(pid, niceness);
    return { niceness };
  } catch (error) {
    return { error: errorMessage(error) };
  }
}

/** One ffmpeg process reading FLV from `input` (write to it, end it to finish). */
export class FfmpegProcess extends TypedEmitter<FfmpegEvents> {
  readonly input = new PassThrough({ highWaterMark: 1 << 20 });
  private readonly command: ffmpeg.FfmpegCommand;
  private exited = false;
  private stopRequested = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private exitWaiters: (() => void)[] = [];
  /** The niceness the process was given, or why it could not be: set once it started. */
  priority: { niceness: number } | { error: string } | null = null;

  constructor(spec: FfmpegSpec) {
    super();
    // stdoutLines/stderrLines exist in fluent-ffmpeg but not in its types: the ring of stderr lines kept
    const options = { stdoutLines: 0, stderrLines: 20 } as ffmpeg.FfmpegCommandOptions;
    const command = ffmpeg(options)
      .setFfmpegPath(spec.ffmpegPath)
      .input(this.input)
      .inputFormat(spec.inputFormat)
      .inputOptions(...spec.inputOptions, "-hide_banner");
    // no filter graph when every output copies its stream
    if (spec.filterComplex) command.complexFilter(spec.filterComplex);
    for (const output of spec.outputs) {
      command.output(output.path).outputOptions(...output.options, "-y");
    }
    command.on("start", (commandLine: string) => {
      const pid = (command as unknown as { ffmpegProc?: { pid?: number } }).ffmpegProc?.pid ?? 0;
      if (pid > 0 && spec.niceness) this.priority = lowerPriority(pid, spec.niceness);
      this.emit("start", pid, commandLine);
    });
    command.on("progress", (progress: { frames?: number; currentFps?: number; timemark?: string }) => {
      this.emit("progress", {
        mediaSeconds: seconds(progress.timemark ?? ""),
        frames: progress.frames ?? 0,
        fps: progress.currentFps ?? 0,
      });
    });
    command.on("end", (_stdout: string | null, stderr: string | null) => this.finish("exited", stderr ?? ""));
    command.on("error", (error: Error, _stdout: string | null, stderr: string | null) => this.finish(error.message, stderr ?? ""));
    this.command = command;
  }

  start(): void {
    this.command.run();
  }

  get pid(): number | null {
    return (this.command as unknown as { ffmpegProc?: { pid?: number } }).ffmpegProc?.pid ?? null;
  }

  get running(): boolean {
    return !this.exited;
  }

  /** Ends the input so ffmpeg writes its last segments and exits; escalates to SIGINT, then SIGKILL. */
  stop(graceMs = 5000): Promise<void> {
    if (this.exited) return Promise.resolve();
    this.stopRequested = true;
    this.input.end();
    this.after(graceMs, () => this.signal("SIGINT"));
    this.after(graceMs + 1000, () => this.signal("SIGINT"));
    this.after(graceMs + 2000, () => this.signal("SIGKILL"));
    return new Promise((resolve) => this.exitWaiters.push(resolve));
  }

  /** Kills at once (a crash test, or a stream lost to another owner). */
  kill(): Promise<void> {
    if (this.exited) return Promise.resolve();
    this.stopRequested = true;
    this.signal("SIGKILL");
    return new Promise((resolve) => this.exitWaiters.push(resolve));
  }

  private signal(signal: NodeJS.Signals): void {
    if (!this.exited) this.command.kill(signal);
  }

  private after(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }

  private finish(message: string, stderr: string): void {
    if (this.exited) return;
    this.exited = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.input.destroy();
    this.emit("exit", { requested: this.stopRequested, message, stderr: stderr.split("\n").slice(-8).join("\n") });
    for (const resolve of this.exitWaiters.splice(0)) resolve();
  }
}

/** Runs fluent-ffmpeg's capability probe once, so the first stream does not wait for it. */
export function warmUp(ffmpegPath: string): Promise<void> {
  return new Promise((resolve) => {
    ffmpeg.setFfmpegPath(ffmpegPath);
    ffmpeg.getAvailableFormats(() => resolve());
  });
}
