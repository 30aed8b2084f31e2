// One stream's transcoder: one ffmpeg process at a time, one decode, a split filter feeding every rendition,
// keyframes forced at the segment duration so segment N of every rendition covers the same time, and cut at
// multiples of the segment duration in wall-clock time (wallClockCuts), so two pipelines of one stream (a hot
// standby beside the active input, a transcoder after a restart) cut at the same moments. ffmpeg's
// segment muxer appends a CSV line per finished segment; the job reads each finished segment of every
// rendition and hands the aligned group on. A crashed ffmpeg restarts with backoff and the next group is
// marked as a discontinuity. With passthrough (passthrough.ts) the top rendition copies the source's video, the
// others force their keyframes where the source has them, and the job falls back to the full encode when the
// source's keyframes stop fitting the segment duration.
import { mkdirSync, readFileSync, rmSync, unlinkSync, watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../core/errors.ts";
import { TypedEmitter } from "../core/events.ts";
import { flvHeader, flvTag, isAudioHeader, isKeyframe, isSequenceHeader, isVideoHeader, type AVPacket } from "../ingest/nms.ts";
import type { Logger } from "../core/log.ts";
import { FfmpegProcess, type FfmpegSpec } from "./ffmpeg.ts";
import { SegmentGrouper, type Grouped } from "./grouping.ts";
import { BUFSIZE_SECONDS, MAXRATE_FACTOR, type PlannedRendition } from "./ladder.ts";
import { CopyWatch, SEGMENT_TIME_DELTA, type Misfit } from "./passthrough.ts";

export interface FinishedSegment {
  rendition: string;
  /** Index within this ffmpeg run. */
  index: number;
  /** Start, seconds from the run's start. */
  start: number;
  duration: number;
  bytes: Buffer;
}

export interface SegmentGroupOut {
  run: number;
  /** Wall-clock ms of the group's first frame. */
  pdt: number;
  /** First group after an ffmpeg restart, or after groups were lost. */
  disc: boolean;
  /** When the last rendition's segment was finished (ms), for latency figures. */
  finishedAt: number;
  segments: FinishedSegment[];
}

type JobEvents = {
  group: [SegmentGroupOut];
  progress: [{ speed: number; fps: number }];
  /** ffmpeg crashed more often than allowed: the stream cannot be transcoded. */
  failed: [reason: string];
  /** ffmpeg exited while the publisher is live; it starts again after `delayMs`. */
  restart: [delayMs: number];
  /** Input dropped because ffmpeg fell behind (bytes). */
  dropped: [bytes: number];
};

export interface TranscodeOptions {
  streamId: string;
  publishId: string;
  ffmpegPath: string;
  preset: string;
  segmentDuration: number;
  spoolDir: string;
  maxRestarts: number;
  /** transcode.niceness: added to the node's own for each ffmpeg run. */
  niceness?: number;
  renditions: PlannedRendition[];
  hasAudio: boolean;
  log: Logger;
  /** Bytes of FLV queued for ffmpeg beyond which input is dropped until the next keyframe. */
  maxInputBacklog?: number;
}

/** A run's first segment shorter than this (s) is joined to the next one: never a segment of a frame or two. */
export const MIN_FIRST_SEGMENT = 0.25;

/** Where one run cuts its segments, against its own time (seconds from its first frame). */
export interface RunCuts {
  /**
   * Seconds past the last wall-clock boundary (a multiple of the segment duration since the epoch) at the
   * run's first frame. Added to the run's output timestamps (-output_ts_offset), so ffmpeg's segment muxer,
   * which cuts at multiples of -segment_time in output time, cuts on the wall-clock boundaries.
   */
  offset: number;
  /** The run's first forced keyframe: at the first boundary at least MIN_FIRST_SEGMENT into the run. */
  firstKeyframe: number;
}

/**
 * Segment boundaries locked to the wall clock: a run whose first frame arrived at `startedAtMs` cuts where the
 * program date-time (which starts at that arrival) is a multiple of the segment duration. A hot standby and
 * the active input of one stream are two pipelines fed the same pictures at the same moments; cut this way,
 * their segment N covers the same moments, and the standby's next segment continues the timeline where the
 * active one's last ended (pipeline locking, as AWS MediaLive's standard channels do it). The first segment
 * of a run is shorter (up to the first boundary) or, when that would be under MIN_FIRST_SEGMENT, longer by as
 * much (under HLS's half-a-second leeway over EXT-X-TARGETDURATION).
 */
export function wallClockCuts(startedAtMs: number, segmentDuration: number): RunCuts {
  const dMs = Math.round(segmentDuration * 1000);
  const offsetMs = ((Math.round(startedAtMs) % dMs) + dMs) % dMs;
  let firstMs = (dMs - offsetMs) % dMs;
  if (firstMs > 0 && firstMs < MIN_FIRST_SEGMENT * 1000) firstMs += dMs;
  return { offset: offsetMs / 1000, firstKeyframe: firstMs / 1000 };
}

/** Argument list for one run; kept apart so tests can read exactly what ffmpeg is given. */
export function ffmpegSpec(o: TranscodeOptions, dir: string, cuts: RunCuts = { offset: 0, firstKeyframe: 0 }): FfmpegSpec {
  const encoded = o.renditions.filter((r) => !r.copy);
  const copying = encoded.length < o.renditions.length;
  const split = `[0:v]split=${encoded.length}${encoded.map((_, i) => `[s${i}]`).join("")}`;
  const scales = encoded.map(
    (r, i) => `[s${i}]scale=${r.width}:${r.height}${r.fpsFilter ? `,fps=${r.fpsFilter}` : ""},format=yuv420p[v${i}]`,
  );
  const d = o.segmentDuration;
  return {
    ffmpegPath: o.ffmpegPath,
    niceness: o.niceness ?? 0,
    inputFormat: "flv",
    inputOptions: ["-loglevel", "info", "-analyzeduration", "1000000", "-fflags", "+genpts"],
    filterComplex: encoded.length > 0 ? [split, ...scales].join(";") : "",
    outputs: o.renditions.map((r) => {
      const gop = Math.max(1, Math.round(r.frameRate * d));
      // beside a copied rendition, keyframes go where the source has them (so every rendition cuts at the same
      // frames); otherwise on the frame nearest each boundary (half a frame early at most: a frame's time n/fps
      // may come out a hair under the boundary, and the muxer cuts up to SEGMENT_TIME_DELTA early anyway).
      // Either way x264's own interval is long enough never to put one a frame early, where the muxer would cut too
      const early = Math.min(0.5 / r.frameRate, SEGMENT_TIME_DELTA / 2);
      const keyframes = copying
        ? ["-g", String(2 * gop), "-sc_threshold", "0", "-force_key_frames", "source"]
        : ["-g", String(2 * gop), "-keyint_min", String(gop), "-sc_threshold", "0", "-force_key_frames", `expr:gte(t,${Number((cuts.firstKeyframe - early).toFixed(4))}+n_forced*${d})`];
      const options = r.copy ? ["-map", "0:v:0", "-c:v", "copy"] : [
        "-map", `[v${encoded.indexOf(r)}]`,
        "-c:v", "libx264", "-preset", o.preset, "-profile:v", r.x264Profile, "-level:v", r.x264Level,
        "-b:v", `${r.videoBitrate}k`,
        "-maxrate", `${Math.round(r.videoBitrate * MAXRATE_FACTOR)}k`,
        "-bufsize", `${r.videoBitrate * BUFSIZE_SECONDS}k`,
        ...keyframes,
      ];
      if (o.hasAudio && r.copy && r.copyAudio) options.push("-map", "0:a:0", "-c:a", "copy");
      else if (o.hasAudio) {
        options.push("-map", "0:a:0", "-c:a", "aac", "-b:a", `${r.audioBitrate}k`, "-ac", "2", "-ar", "48000");
      }
      options.push(
        "-output_ts_offset", String(cuts.offset),
        "-f", "segment", "-segment_format", "mpegts", "-segment_time", String(d), "-segment_time_delta", String(SEGMENT_TIME_DELTA),
        "-reset_timestamps", "0", "-break_non_keyframes", "0",
        "-segment_list", join(dir, `${r.name}.csv`), "-segment_list_type", "csv",
      );
      return { path: join(dir, `${r.name}-%d.ts`), options };
    }),
  };
}

interface Run {
  index: number;
  dir: string;
  ffmpeg: FfmpegProcess;
  startedAt: number;
  csvOffsets: Map<string, number>;
  grouper: SegmentGrouper;
  watcher: FSWatcher | null;
  poll: NodeJS.Timeout;
  lastProgress: { at: number; media: number } | null;
  /** Its top rendition copies: the source's keyframes are followed, its segments weighed (passthrough.ts). */
  watch: CopyWatch | null;
  /** Killed in its first segment for a full encode of the same media: nothing of it is emitted. */
  discarded: boolean;
  /** The stream's first run, or the replay of it: its first group is no discontinuity. */
  first: boolean;
  /** Where it cuts (wallClockCuts of its start). */
  cuts: RunCuts;
}

export class TranscodeJob extends TypedEmitter<JobEvents> {
  private run: Run | null = null;
  private runs = 0;
  private restarts = 0;
  private closed = false;
  private dropping = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private audioHeader: AVPacket | null = null;
  private videoHeader: AVPacket | null = null;
  private readonly jobDir: string;
  private readonly maxBacklog: number;
  /** The x264 preset of the next run (degrade.ts moves it); a change starts a new run at the next keyframe. */
  private preset: string;
  private switchAtKeyframe = false;
  /** The run a preset switch is finishing, and the new run's groups held until it exited (kept in order). */
  private finishing: Run | null = null;
  private held: { run: Run; group: Grouped }[] = [];
  /** The top rendition copies the source (until the source stops fitting; then the full encode for good). */
  private copying: boolean;

  constructor(private readonly o: TranscodeOptions) {
    super();
    this.preset = o.preset;
    this.jobDir = join(o.spoolDir, `${o.streamId}-${o.publishId}`);
    this.maxBacklog = o.maxInputBacklog ?? 32 << 20;
    this.copying = o.renditions.some((r) => r.copy);
  }

  /** The pid of the running ffmpeg, if any (tests and status). */
  get pid(): number | null {
    return this.run?.ffmpeg.pid ?? null;
  }

  /**
   * Moves the stream to another x264 preset from the next keyframe: the running ffmpeg finishes its segment in
   * progress (its last groups are emitted as usual) while a new run starts at that keyframe, so no media is
   * lost and the next group is a discontinuity with the sequence continuing.
   */
  switchPreset(preset: string): void {
    if (preset === this.preset) return;
    this.preset = preset;
    this.switchAtKeyframe = this.run !== null;
  }

  /**
   * Feeds one packet from the publisher, which arrived at `arrivedAt` (ms; a packet kept until the transcoder
   * could start arrived earlier than it is fed). ffmpeg starts (or restarts) at the next video keyframe.
   */
  push(packet: AVPacket, arrivedAt = Date.now()): void {
    if (this.closed) return;
    if (isAudioHeader(packet)) this.audioHeader = packet;
    if (isVideoHeader(packet)) this.videoHeader = packet;
    const keyframe = isKeyframe(packet);
    // one switch at a time: the run a switch is finishing must exit before the next one starts finishing
    if (this.run && this.switchAtKeyframe && keyframe && !this.finishing) {
      this.switchAtKeyframe = false;
      // the old run's exit is a requested one: exited() emits what it finished and forgets it
      this.finishing = this.run;
      void this.run.ffmpeg.stop(5000);
      this.run = null;
      this.dropping = false;
    }
    if (!this.run) {
      if (keyframe && this.videoHeader && !this.restartTimer) this.startRun(packet, undefined, arrivedAt);
      return;
    }
    const input = this.run.ffmpeg.input;
    if (this.dropping && !keyframe) {
      this.emit("dropped", packet.size);
      return;
    }
    if (input.writableLength > this.maxBacklog) {
      if (!this.dropping) this.o.log.warn("transcoder falls behind real time; dropping input until a keyframe", { stream: this.o.streamId });
      this.dropping = true;
      this.emit("dropped", packet.size);
      return;
    }
    this.dropping = false;
    if (isSequenceHeader(packet)) return; // headers were sent when the run started
    input.write(flvTag(packet));
    const misfit = this.run.watch?.packet(packet);
    if (misfit) this.misfit(this.run, misfit);
  }

  /**
   * The source stopped fitting a copying run. In the run's first segment nothing was emitted, so the same media
   * is encoded again in full; later, the full encode starts at the next keyframe (like a preset switch).
   */
  private misfit(run: Run, { why, replay }: Misfit): void {
    this.copying = false;
    run.watch = null;
    if (!replay) {
      this.o.log.warn("passthrough off: full encode from the next keyframe", { stream: this.o.streamId, why });
      this.switchAtKeyframe = true;
      return;
    }
    this.o.log.warn("passthrough off: its first segment is encoded again in full", { stream: this.o.streamId, why });
    run.discarded = true;
    void run.ffmpeg.kill();
    this.run = null;
    const [first, ...rest] = replay;
    const again = this.startRun(first!, run);
    for (const p of rest) again?.ffmpeg.input.write(flvTag(p));
  }

  /**
   * Starts a run at a keyframe that arrived at `arrivedAt` (its date-times and boundaries start there);
   * `replayOf`: the discarded run whose media it encodes again (its start kept).
   */
  private startRun(keyframe: AVPacket, replayOf?: Run, arrivedAt = Date.now()): Run | null {
    const index = this.runs++;
    const dir = join(this.jobDir, String(index));
    try {
      mkdirSync(dir, { recursive: true });
    } catch (error) {
      // no spool, no segments: fail this stream now rather than keep it "live" with nothing in it
      this.closed = true;
      this.emit("failed", `the spool directory is unusable: ${errorMessage(error)}`);
      return null;
    }
    const renditions = this.copying ? this.o.renditions : this.o.renditions.map((r) => ({ ...r, copy: false, copyAudio: false }));
    const startedAt = replayOf?.startedAt ?? arrivedAt;
    const cuts = wallClockCuts(startedAt, this.o.segmentDuration);
    const ffmpeg = new FfmpegProcess(ffmpegSpec({ ...this.o, preset: this.preset, renditions }, dir, cuts));
    const run: Run = {
      index, dir, ffmpeg, startedAt, csvOffsets: new Map(), grouper: new SegmentGrouper(this.o.renditions.map((r) => r.name)), watcher: null,
      poll: setInterval(() => this.scan(run), 250), lastProgress: null,
      watch: this.copying ? new CopyWatch(this.o.segmentDuration, renditions[0]!.bandwidth, this.maxBacklog, cuts.offset) : null,
      discarded: false,
      first: replayOf ? replayOf.first : index === 0,
      cuts,
    };
    this.run = run;
    try {
      run.watcher = watch(dir, () => this.scan(run));
      run.watcher.on("error", () => undefined);
    } catch {
      // the 250 ms poll still finds segments
    }
    ffmpeg.reportListenerErrors((event, error) => this.o.log.error("ffmpeg listener failed", { event, error: errorMessage(error) }));
    ffmpeg.on("start", (pid) => {
      const priority = ffmpeg.priority;
      if (priority && "error" in priority) this.o.log.warn("ffmpeg runs at the node's priority", { stream: this.o.streamId, pid, error: priority.error });
      this.o.log.info("ffmpeg started", { stream: this.o.streamId, run: index, pid, ...(priority && "niceness" in priority ? { niceness: priority.niceness } : {}) });
    });
    ffmpeg.on("progress", (p) => this.progress(run, p.mediaSeconds, p.fps));
    ffmpeg.on("exit", (exit) => this.exited(run, exit.requested, exit.message, exit.stderr));
    ffmpeg.start();
    const input = ffmpeg.input;
    input.write(flvHeader(this.audioHeader !== null, true));
    if (this.audioHeader) input.write(flvTag(this.audioHeader));
    if (this.videoHeader) input.write(flvTag(this.videoHeader));
    input.write(flvTag(keyframe));
    const misfit = run.watch?.packet(keyframe);
    if (misfit) this.misfit(run, misfit);
    return run;
  }

  private progress(run: Run, media: number, fps: number): void {
    const now = Date.now();
    if (run.lastProgress && now - run.lastProgress.at >= 2000) {
      const speed = (media - run.lastProgress.media) / ((now - run.lastProgress.at) / 1000);
      this.emit("progress", { speed, fps });
      run.lastProgress = { at: now, media };
    } else if (!run.lastProgress) {
      run.lastProgress = { at: now, media };
    }
  }

  /** Reads new CSV lines of every rendition and emits each complete group, in order. */
  private scan(run: Run): void {
    if (run.discarded) return;
    for (const r of this.o.renditions) {
      const file = join(run.dir, `${r.name}.csv`);
      let text: string;
      try {
        text = readFileSync(file, "utf8");
      } catch {
        continue;
      }
      const offset = run.csvOffsets.get(r.name) ?? 0;
      const end = text.lastIndexOf("\n") + 1;
      if (end <= offset) continue;
      run.csvOffsets.set(r.name, end);
      for (const line of text.slice(offset, end).split("\n")) {
        const [name, start, stop] = line.split(",");
        const match = name ? /-(\d+)\.ts$/.exec(name) : null;
        if (!match || start === undefined || stop === undefined) continue;
        const path = join(run.dir, name!);
        let bytes: Buffer;
        try {
          bytes = readFileSync(path);
          unlinkSync(path);
        } catch (error) {
          this.o.log.warn("segment file unreadable", { stream: this.o.streamId, file: name, error: errorMessage(error) });
          continue;
        }
        const index = Number(match[1]);
        // the list's times are output times (the run's own plus its offset); the first segment is listed from
        // 0, but its media starts at the offset
        const from = index === 0 ? Math.max(Number(start), run.cuts.offset) : Number(start);
        const segment: FinishedSegment = { rendition: r.name, index, start: from - run.cuts.offset, duration: Number(stop) - from, bytes };
        const dropped = run.grouper.dropped;
        const groups = run.grouper.add(segment);
        if (run.grouper.dropped > dropped) {
          this.o.log.warn("renditions out of step; dropped segment groups", { stream: this.o.streamId, dropped: run.grouper.dropped - dropped });
        }
        for (const group of groups) this.emitGroup(run, group);
      }
    }
  }

  private emitGroup(run: Run, grouped: Grouped): void {
    if (this.finishing && run !== this.finishing) {
      this.held.push({ run, group: grouped });
      return;
    }
    const { segments, afterGap } = grouped;
    const first = segments[0]!;
    // the copied rendition is the top one, first in the group
    const heavy = run.watch?.segment(first.bytes.length, first.duration);
    if (heavy) this.misfit(run, heavy);
    this.emit("group", {
      run: run.index,
      pdt: run.startedAt + first.start * 1000,
      disc: (!run.first && first.index === 0) || afterGap,
      finishedAt: Date.now(),
      segments,
    });
  }

  private exited(run: Run, requested: boolean, message: string, stderr: string): void {
    this.scan(run);
    this.teardown(run);
    if (this.run === run) this.run = null;
    if (this.finishing === run) {
      this.finishing = null;
      for (const { run: next, group } of this.held.splice(0)) this.emitGroup(next, group);
    }
    if (requested || this.closed) return;
    this.o.log.warn("ffmpeg exited while the publisher is live", { stream: this.o.streamId, run: run.index, message, stderr });
    if (this.restarts >= this.o.maxRestarts) {
      this.emit("failed", `ffmpeg failed ${this.restarts + 1} times: ${message}`);
      return;
    }
    const delay = Math.min(5000, 250 * 2 ** this.restarts++);
    this.emit("restart", delay);
    // the next run starts at the first keyframe after the backoff
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
    }, delay);
  }

  private teardown(run: Run): void {
    clearInterval(run.poll);
    run.watcher?.close();
    run.watcher = null;
    this.remove(run.dir);
  }

  /** Removes spool files; a failure (a full or broken disk) is logged, never thrown into the stream's path. */
  private remove(dir: string): void {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (error) {
      this.o.log.warn("spool files could not be removed", { stream: this.o.streamId, dir, error: errorMessage(error) });
    }
  }

  /**
   * Ends the input so ffmpeg finishes the segment in progress, emits the last groups, and leaves no
   * process, timer or file behind. `graceMs` bounds the wait before ffmpeg is killed. Safe to call twice.
   */
  async close(graceMs = 5000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const run = this.run;
    if (run) await run.ffmpeg.stop(graceMs);
    if (this.finishing) await this.finishing.ffmpeg.stop(graceMs);
    this.remove(this.jobDir);
    this.removeAllListeners();
  }

  /** Stops at once without waiting for the last segment (the stream was lost to another owner). */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const run = this.run;
    this.removeAllListeners();
    if (run) await run.ffmpeg.kill();
    if (this.finishing) await this.finishing.ffmpeg.kill();
    this.remove(this.jobDir);
  }
}
