// The rendition ladder for one stream: which renditions to make from a source, and what the master playlist
// says of each (BANDWIDTH, RESOLUTION, CODECS, FRAME-RATE).
import type { Rendition } from "../config/defaults.ts";
import type { SourceInfo } from "../ingest/rtmp-server.ts";
import type { LadderEntry } from "../core/model.ts";

/** Peak video rate allowed over the average (x264 -maxrate), and the VBV buffer in seconds of bitrate. */
export const MAXRATE_FACTOR = 1.1;
export const BUFSIZE_SECONDS = 2;
const DEFAULT_FRAME_RATE = 30;
const DEFAULT_SOURCE = { width: 1280, height: 720 };

/** H.264 level for a picture size and rate (Table A-1 limits on macroblocks per second), as the hex byte of CODECS. */
export function h264Level(width: number, height: number, frameRate: number): { level: string; hex: string } {
  const mbs = Math.ceil(width / 16) * Math.ceil(height / 16);
  const rate = mbs * frameRate;
  const levels: [number, number, string][] = [
    [1620, 40500, "3.0"],
    [3600, 108000, "3.1"],
    [5120, 216000, "3.2"],
    [8192, 245760, "4.0"],
    [8704, 522240, "4.2"],
    [22080, 589824, "5.0"],
    [36864, 983040, "5.1"],
  ];
  const found = levels.find(([maxMbs, maxRate]) => mbs <= maxMbs && rate <= maxRate) ?? levels[levels.length - 1]!;
  const level = found[2];
  const hex = Math.round(Number(level) * 10).toString(16).padStart(2, "0");
  return { level, hex };
}

/** Width for a height at the source's aspect ratio, as ffmpeg's scale=-2:H computes it (nearest even). */
export function scaledWidth(height: number, source: { width: number; height: number }): number {
  return Math.max(2, Math.round((height * source.width) / source.height / 2) * 2);
}

export interface PlannedRendition extends LadderEntry {
  videoBitrate: number;
  audioBitrate: number;
  /** Frame rate to force with the fps filter, or null to keep the source's. */
  fpsFilter: number | null;
  x264Profile: string;
  x264Level: string;
  /** Copies the source's video instead of encoding it (passthrough.ts decides). */
  copy: boolean;
  /** Copies the source's audio too (AAC-LC as the ladder encodes it, at most its bitrate and a margin). */
  copyAudio: boolean;
}

/** H.264 profiles every HLS player decodes, by profile_idc, as x264 names them. */
const X264_PROFILES: Record<number, string> = { 66: "baseline", 77: "main", 100: "high" };

/**
 * x264's profile and level for an RFC 6381 codecs string (`avc1.PPCCLL`), so an encode says what CODECS says;
 * null when it is not H.264 of a profile every player decodes.
 */
export function x264ProfileOf(codecs: string): { profile: string; level: string } | null {
  const match = /avc1\.([0-9a-f]{2})[0-9a-f]{2}([0-9a-f]{2})/i.exec(codecs);
  const profile = match ? X264_PROFILES[parseInt(match[1]!, 16)] : undefined;
  if (!profile) return null;
  return { profile, level: (parseInt(match![2]!, 16) / 10).toFixed(1) };
}

/**
 * Renditions for a source: those not taller than it (at least the smallest, at the source's height), at the
 * source's frame rate capped by each rendition's maxFrameRate.
 */
export function planLadder(ladder: Rendition[], source: SourceInfo): PlannedRendition[] {
  const size = source.width && source.height ? { width: source.width, height: source.height } : DEFAULT_SOURCE;
  const sourceRate = source.frameRate ?? DEFAULT_FRAME_RATE;
  let chosen = ladder.filter((r) => r.height <= size.height);
  if (chosen.length === 0) {
    const smallest = [...ladder].sort((a, b) => a.height - b.height)[0]!;
    chosen = [{ ...smallest, height: size.height - (size.height % 2) }];
  }
  return chosen.map((r) => {
    const capped = r.maxFrameRate > 0 && sourceRate > r.maxFrameRate + 0.01;
    const frameRate = capped ? r.maxFrameRate : sourceRate;
    const width = scaledWidth(r.height, size);
    const level = h264Level(width, r.height, frameRate);
    return {
      name: r.name,
      width,
      height: r.height,
      frameRate: Math.round(frameRate * 1000) / 1000,
      videoBitrate: r.videoBitrate,
      audioBitrate: source.hasAudio ? r.audioBitrate : 0,
      bandwidth: Math.round((r.videoBitrate * MAXRATE_FACTOR + (source.hasAudio ? r.audioBitrate : 0)) * 1000),
      averageBandwidth: (r.videoBitrate + (source.hasAudio ? r.audioBitrate : 0)) * 1000,
      codecs: `avc1.6400${level.hex}` + (source.hasAudio ? ",mp4a.40.2" : ""),
      fpsFilter: capped ? r.maxFrameRate : null,
      x264Profile: "high",
      x264Level: level.level,
      copy: false,
      copyAudio: false,
    };
  });
}

/** Re-plans a stream whose ladder is already fixed in Redis (a later publish): same names, sizes and rates. */
export function replanLadder(fixed: LadderEntry[], ladder: Rendition[], source: SourceInfo): PlannedRendition[] {
  return fixed.map((entry) => {
    const config = ladder.find((r) => r.name === entry.name);
    const sourceRate = source.frameRate ?? DEFAULT_FRAME_RATE;
    return {
      ...entry,
      videoBitrate: config?.videoBitrate ?? Math.round(entry.averageBandwidth / 1000),
      audioBitrate: source.hasAudio ? (config?.audioBitrate ?? 96) : 0,
      fpsFilter: Math.abs(sourceRate - entry.frameRate) > 0.01 ? entry.frameRate : null,
      // an entry recorded from a copied source keeps its profile and level when it is encoded
      x264Profile: x264ProfileOf(entry.codecs)?.profile ?? "high",
      x264Level: x264ProfileOf(entry.codecs)?.level ?? h264Level(entry.width, entry.height, entry.frameRate).level,
      copy: false,
      copyAudio: false,
    };
  });
}

export function ladderEntries(planned: PlannedRendition[]): LadderEntry[] {
  return planned.map(({ name, width, height, bandwidth, averageBandwidth, codecs, frameRate }) => ({
    name, width, height, bandwidth, averageBandwidth, codecs, frameRate,
  }));
}
