// Passthrough: when the source's video already fits the top rendition, that rendition copies it (`-c:v copy`)
// instead of decoding, scaling and re-encoding it; the other renditions are still scaled from the one decode.
// What can be known at the first keyframe (codec, profile, size, frame rate, declared bitrate) is decided here
// by passthroughPlan(); the keyframe interval only shows as the media arrives, so KeyframeCadence follows the
// source's keyframes as ffmpeg's segment muxer cuts on them, and the job falls back to the full encode once a
// segment would come out longer than the segment duration (see job.ts); BitrateWatch does the same when the
// copied segments come out heavier than the bitrate the source declared (and the master playlist says).
import type { Config } from "../config/defaults.ts";
import { isKeyframe, type AVPacket } from "../ingest/nms.ts";
import type { SourceInfo } from "../ingest/rtmp-server.ts";
import { MAXRATE_FACTOR, x264ProfileOf, type PlannedRendition } from "./ladder.ts";

export type PassthroughMode = Config["transcode"]["passthrough"];

/** How far over the rendition's video bitrate a copied source may declare itself. */
export const PASSTHROUGH_BITRATE_MARGIN = 1.25;
/**
 * Seconds a copied segment may run past the segment duration (a keyframe a frame or two late). HLS allows a
 * segment up to half a second over EXT-X-TARGETDURATION; this stays well inside it.
 */
export const CADENCE_TOLERANCE = 0.2;
/** ffmpeg's segment muxer cuts at a keyframe this early before a boundary (job.ts: -segment_time_delta). */
export const SEGMENT_TIME_DELTA = 0.05;

export interface PassthroughPlan {
  renditions: PlannedRendition[];
  /** Whether the top rendition copies the source. */
  copy: boolean;
  /** Why it does not (for the log); empty when it does. */
  why: string;
}

/**
 * Whether the copied rendition copies the source's audio as well: AAC-LC at 48 kHz in stereo, as the ladder
 * encodes it (so every rendition's audio has the same format), its declared bitrate within the margin.
 */
function audioFits(source: SourceInfo, top: PlannedRendition): boolean {
  const aac = source.aac;
  return source.hasAudio && !!aac && aac.objectType === 2 && aac.sampleRate === 48000 && aac.channels === 2 &&
    !!source.audioKbps && source.audioKbps <= top.audioBitrate * PASSTHROUGH_BITRATE_MARGIN;
}

/** Why the source's video cannot be copied into `top`, or null when it fits. */
function misfit(mode: PassthroughMode, source: SourceInfo, top: PlannedRendition, recorded: boolean): string | null {
  if (!source.videoCodecs) return "the source's video is not H.264";
  if (recorded && (top.codecs.split(",")[0] !== source.videoCodecs || top.width !== source.width || top.height !== source.height)) {
    return `the stream's ${top.name} rendition was recorded as ${top.width}x${top.height} ${top.codecs}, not the source's`;
  }
  if (mode === "always") return null;
  if (!x264ProfileOf(source.videoCodecs)) return `the source's H.264 profile (${source.videoCodecs}) is not one every player decodes (Baseline, Main, High)`;
  if (!source.width || !source.height) return "the source's picture size is unknown";
  if (source.width > top.width || source.height > top.height) {
    return `the source (${source.width}x${source.height}) is larger than the ${top.name} rendition (${top.width}x${top.height})`;
  }
  if (top.fpsFilter !== null) return `the source's ${source.frameRate ?? "?"} fps is above the ${top.name} rendition's ${top.fpsFilter}`;
  if (!source.videoKbps) return "the source does not declare its video bitrate (onMetaData videodatarate)";
  if (source.videoKbps > top.videoBitrate * PASSTHROUGH_BITRATE_MARGIN) {
    return `the source's ${Math.round(source.videoKbps)} kbit/s is over ${top.name}'s ${top.videoBitrate} kbit/s by more than ${Math.round((PASSTHROUGH_BITRATE_MARGIN - 1) * 100)}%`;
  }
  return null;
}

/**
 * The ladder with its top rendition copying the source, when the mode allows and the source fits; the copied
 * rendition says what the source is (RESOLUTION, CODECS, BANDWIDTH), and if the job falls back to encoding it,
 * the encode keeps to the same size, profile, level and at most the same bitrate, so the master playlist stays
 * true. `recorded`: the ladder was fixed by an earlier publish (replanLadder), so only a source identical to the
 * recorded rendition is copied.
 */
export function passthroughPlan(mode: PassthroughMode, planned: PlannedRendition[], source: SourceInfo, recorded: boolean): PassthroughPlan {
  const top = planned[0];
  if (!top || mode === "never") return { renditions: planned, copy: false, why: "transcode.passthrough is never" };
  const why = misfit(mode, source, top, recorded);
  if (why) return { renditions: planned, copy: false, why };
  const codecs = source.videoCodecs!;
  const profile = x264ProfileOf(codecs) ?? { profile: top.x264Profile, level: top.x264Level };
  const kbps = Math.min(top.videoBitrate, Math.round(source.videoKbps ?? top.videoBitrate));
  const copyAudio = audioFits(source, top);
  const audioKbps = copyAudio ? source.audioKbps! : top.audioBitrate;
  const copied: PlannedRendition = recorded
    ? { ...top, copy: true, copyAudio, x264Profile: profile.profile, x264Level: profile.level }
    : {
      ...top,
      width: source.width ?? top.width,
      height: source.height ?? top.height,
      frameRate: source.frameRate ? Math.round(source.frameRate * 1000) / 1000 : top.frameRate,
      fpsFilter: null,
      videoBitrate: kbps,
      // a fallback encode keeps to the copied audio's bitrate as to the video's
      audioBitrate: Math.min(top.audioBitrate, Math.round(audioKbps)),
      bandwidth: Math.round(((source.videoKbps ?? top.videoBitrate) * MAXRATE_FACTOR + audioKbps) * 1000),
      averageBandwidth: Math.round(((source.videoKbps ?? top.videoBitrate) + audioKbps) * 1000),
      codecs: codecs + (source.hasAudio ? ",mp4a.40.2" : ""),
      x264Profile: profile.profile,
      x264Level: profile.level,
      copy: true,
      copyAudio,
    };
  return { renditions: [copied, ...planned.slice(1)], copy: true, why: "" };
}

/**
 * Follows a copied source's keyframes as ffmpeg's segment muxer cuts on them (at the first keyframe at or after
 * each multiple of the segment duration in output time: the run's own plus `offset`, job.ts wallClockCuts) and
 * says when a segment would run longer than the segment duration allows: the source's keyframe interval does
 * not divide it, or its keyframes stopped.
 */
export class KeyframeCadence {
  private startMs: number | null = null;
  private lastCut = 0;
  /** Segments cut so far. */
  cuts = 0;

  constructor(private readonly segmentDuration: number, private readonly offset = 0) {}

  /** One video packet (its timestamp in ms); returns why the source does not fit, or null while it does. */
  video(ms: number, keyframe: boolean): string | null {
    if (this.startMs === null) {
      if (!keyframe) return null;
      this.startMs = ms;
      return null;
    }
    const t = (ms - this.startMs) / 1000;
    const d = this.segmentDuration;
    const longest = d + CADENCE_TOLERANCE;
    if (t - this.lastCut > longest) {
      return `no source keyframe within ${longest.toFixed(2)} s of the last segment boundary: its keyframe interval does not divide the ${d}-s segment duration`;
    }
    if (keyframe && t + this.offset >= (this.cuts + 1) * d - SEGMENT_TIME_DELTA) {
      this.cuts += 1;
      this.lastCut = t;
    }
    return null;
  }
}

/** Copied segments in a row over the margin before the job falls back: one heavy scene is no reason. */
export const HEAVY_SEGMENTS = 3;

/**
 * Watches the copied rendition's segments against its BANDWIDTH (HLS's peak segment bitrate, container
 * included): a source that sends more than it declared would make the master playlist lie, so once
 * HEAVY_SEGMENTS segments in a row are over it by more than PASSTHROUGH_BITRATE_MARGIN, it says why.
 */
export class BitrateWatch {
  private heavy = 0;

  constructor(private readonly bandwidth: number) {}

  /** One copied segment; returns why the source does not fit any more, or null. */
  segment(bytes: number, duration: number): string | null {
    if (duration <= 0 || this.bandwidth <= 0) return null;
    const bitrate = (bytes * 8) / duration;
    this.heavy = bitrate > this.bandwidth * PASSTHROUGH_BITRATE_MARGIN ? this.heavy + 1 : 0;
    if (this.heavy < HEAVY_SEGMENTS) return null;
    return `${HEAVY_SEGMENTS} copied segments in a row over ${Math.round(PASSTHROUGH_BITRATE_MARGIN * 100)}% of the declared ${Math.round(this.bandwidth / 1000)} kbit/s (the last: ${Math.round(bitrate / 1000)} kbit/s)`;
  }
}

export interface Misfit {
  why: string;
  /**
   * The packets the run was fed, when it is still in its first segment (nothing of it emitted: no rendition can
   * cut before the source's next keyframe): the job encodes them again in full. Null later.
   */
  replay: AVPacket[] | null;
}

/** One copying run's watch over its source: its keyframes, its first segment's packets, its copied segments' weight. */
export class CopyWatch {
  private readonly cadence: KeyframeCadence;
  private readonly weight: BitrateWatch;
  private probe: { packets: AVPacket[]; bytes: number } | null = { packets: [], bytes: 0 };
  private over = false;

  /** `bandwidth`: the copied rendition's BANDWIDTH; `maxProbeBytes`: the most a first segment may hold; `offset`: the run's (KeyframeCadence). */
  constructor(segmentDuration: number, bandwidth: number, private readonly maxProbeBytes: number, offset = 0) {
    this.cadence = new KeyframeCadence(segmentDuration, offset);
    this.weight = new BitrateWatch(bandwidth);
  }

  /** Every packet the run is fed (the keyframe it starts at first); a misfit once, then null. */
  packet(packet: AVPacket): Misfit | null {
    if (this.over) return null;
    if (this.probe) {
      this.probe.packets.push(packet);
      this.probe.bytes += packet.size;
      // checked for every packet: a publisher sending one keyframe, then only audio, must not be kept forever
      if (this.probe.bytes > this.maxProbeBytes) return this.misfit(`the source sent over ${this.maxProbeBytes} bytes in its first segment`);
    }
    if (packet.codec_type !== 9) return null;
    const why = this.cadence.video(packet.dts, isKeyframe(packet));
    if (this.probe && this.cadence.cuts > 0) this.probe = null;
    if (why) return this.misfit(why);
    return null;
  }

  /** Every copied segment the run emits; a misfit once, then null. */
  segment(bytes: number, duration: number): Misfit | null {
    if (this.over) return null;
    this.probe = null; // a segment was emitted: the first is cut
    const why = this.weight.segment(bytes, duration);
    return why ? this.misfit(why) : null;
  }

  private misfit(why: string): Misfit {
    this.over = true;
    const replay = this.probe?.packets ?? null;
    this.probe = null;
    return { why, replay };
  }
}
