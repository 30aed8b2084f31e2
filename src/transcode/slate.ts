// Slate segments: what viewers see while a live stream has no input. For each rendition of a stream's ladder,
// one segment of the ladder's own format (H.264 at the rendition's size, frame rate, profile and level; AAC
// stereo 48 kHz silence when the ladder has audio; MPEG-TS; one keyframe; the segment duration) showing the
// slate image. It is encoded once per ladder and segment duration (a few hundred ms of one ffmpeg), then each
// slate segment of a gap is that encoding moved in time (ts-retime.ts), so a gap of any length costs no
// encoding at all.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BatonError, errorMessage } from "../core/errors.ts";
import type { LadderEntry } from "../core/model.ts";
import { TsRetimer } from "./ts-retime.ts";

/** The default slate: a plain card that says the stream waits for its broadcaster (assets/slate.png). */
export const DEFAULT_SLATE = join(import.meta.dirname, "..", "..", "assets", "slate.png");

export interface SlateOptions {
  ffmpegPath: string;
  /** The image shown (any size: scaled to fit each rendition, letterboxed). */
  image: string;
  /** Seconds per slate segment: the stream's segment duration. */
  segmentDuration: number;
  /** Where ffmpeg writes the segments before they are read (removed after). */
  workDir: string;
  timeoutMs?: number;
}

/** x264's level from a ladder entry's RFC 6381 codecs string (`avc1.PPCCLL`: LL is ten times the level). */
export function avcLevel(codecs: string): string {
  const match = /avc1\.[0-9a-f]{4}([0-9a-f]{2})/i.exec(codecs);
  if (!match) throw new BatonError("BAD_LADDER", `no H.264 level in codecs ${JSON.stringify(codecs)}`);
  return (parseInt(match[1]!, 16) / 10).toFixed(1);
}

const hasAudio = (ladder: LadderEntry[]): boolean => ladder.some((r) => r.codecs.includes("mp4a"));

/** ffmpeg's arguments: the image and silence in, one MPEG-TS file per rendition out. Nothing reaches a shell. */
export function slateArgs(ladder: LadderEntry[], o: Pick<SlateOptions, "ffmpegPath" | "image" | "segmentDuration">, dir: string): string[] {
  const audio = hasAudio(ladder);
  const args = ["-hide_banner", "-loglevel", "error", "-loop", "1", "-i", o.image];
  if (audio) args.push("-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo");
  const d = o.segmentDuration;
  ladder.forEach((r, i) => {
    const frames = Math.max(1, Math.round(r.frameRate * d));
    const fit = `scale=${r.width}:${r.height}:force_original_aspect_ratio=decrease,pad=${r.width}:${r.height}:(ow-iw)/2:(oh-ih)/2,setsar=1`;
    args.push(
      "-map", "0:v", "-vf", `fps=${r.frameRate},${fit},format=yuv420p`, "-frames:v", String(frames),
      "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-level:v", avcLevel(r.codecs),
      "-b:v", "200k", "-maxrate", "400k", "-bufsize", "800k", "-g", String(frames), "-keyint_min", String(frames), "-sc_threshold", "0",
    );
    if (audio) args.push("-map", "1:a", "-c:a", "aac", "-b:a", "64k", "-ac", "2", "-ar", "48000", "-t", String(d));
    args.push("-f", "mpegts", "-y", join(dir, `${i}.ts`));
  });
  return args;
}

/** Encodes one slate segment per rendition; resolves to each rendition's bytes by name. */
export async function encodeSlate(ladder: LadderEntry[], o: SlateOptions): Promise<Map<string, Buffer>> {
  const dir = mkdtempSync(join(o.workDir, "slate-"));
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(o.ffmpegPath, slateArgs(ladder, o, dir), { timeout: o.timeoutMs ?? 30000, maxBuffer: 1 << 20 }, (error, _stdout, stderr) => {
        if (error) reject(new BatonError("SLATE_FAILED", `ffmpeg could not encode the slate: ${String(stderr).trim().split("\n").slice(-3).join(" ") || errorMessage(error)}`));
        else resolve();
      });
    });
    return new Map(ladder.map((r, i) => [r.name, readFileSync(join(dir, `${i}.ts`))]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** 90 kHz ticks per second, MPEG-TS's clock. */
const TICKS = 90000;

/** The slate segments of one ladder, shared by every stream with that ladder. */
export class Slate {
  constructor(private readonly segments: Map<string, Buffer>, readonly segmentDuration: number) {}

  /** Rendition names the slate has. */
  get renditions(): string[] {
    return [...this.segments.keys()];
  }

  /** One gap of one stream: its own continuity counters, so streams in a gap at once never mix theirs. */
  gap(): SlateGap {
    return new SlateGap(this.segments, this.segmentDuration);
  }
}

/** The slate segments of one gap of one stream: the k-th is the encoding moved k durations on. */
export class SlateGap {
  private readonly retimers = new Map<string, TsRetimer>();

  constructor(private readonly segments: Map<string, Buffer>, private readonly segmentDuration: number) {}

  /** The `index`-th slate segment (0 first) of the gap, for one rendition. */
  segment(rendition: string, index: number): Buffer {
    const template = this.segments.get(rendition);
    if (!template) throw new BatonError("NO_SLATE", `the slate has no rendition ${rendition}`);
    let retimer = this.retimers.get(rendition);
    if (!retimer) this.retimers.set(rendition, (retimer = new TsRetimer()));
    return retimer.shift(template, Math.round(index * this.segmentDuration * TICKS));
  }
}

/** Ladders whose slate a node keeps (a few hundred KB each); the least recently made go first. */
const MAX_SLATES = 32;

/** Slates by ladder, each encoded once (concurrent asks share one encoding); a failed encoding is tried again. */
export class Slates {
  private readonly made = new Map<string, Promise<Slate>>();

  constructor(private readonly o: SlateOptions) {}

  get(ladder: LadderEntry[]): Promise<Slate> {
    const key = JSON.stringify(ladder.map((r) => [r.name, r.width, r.height, r.frameRate, r.codecs]));
    let slate = this.made.get(key);
    if (!slate) {
      if (this.made.size >= MAX_SLATES) this.made.delete(this.made.keys().next().value!);
      slate = encodeSlate(ladder, this.o).then((segments) => new Slate(segments, this.o.segmentDuration));
      slate.catch(() => this.made.delete(key));
      this.made.set(key, slate);
    }
    return slate;
  }
}
