// Renders HLS playlists from the cluster's timeline (RFC 8216bis). Pure functions of the shared state, so
// every node renders the same bytes for the same state, and a rendition's media playlist is the same text for
// every viewer (the session rides in the URL's path, not in the URIs the playlist lists).
import type { LadderEntry, StreamSnapshot, TimelineEntry } from "../core/model.ts";

/** A query string (`?resume=...`) appended to every URI a playlist carries; "" for none. */
export type UriSuffix = string;

/**
 * `prefix` goes before each rendition's relative URI (`s/<token>/` puts a viewer's session in the path its
 * media playlist and, relative to that, its segments are fetched from).
 */
export function renderMaster(ladder: LadderEntry[], suffix: UriSuffix = "", prefix = ""): string {
  const lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"];
  for (const r of ladder) {
    lines.push(
      `#EXT-X-STREAM-INF:BANDWIDTH=${r.bandwidth},AVERAGE-BANDWIDTH=${r.averageBandwidth},` +
        `RESOLUTION=${r.width}x${r.height},CODECS="${r.codecs}",FRAME-RATE=${r.frameRate.toFixed(3)}`,
      `${prefix}${r.name}/index.m3u8${suffix}`,
    );
  }
  return lines.join("\n") + "\n";
}

/**
 * A segment's URI, relative to its media playlist: the sequence number (for humans) and the id of the claim
 * that wrote it, so a timeline that lost its history and restarted its sequence never reuses a URI.
 */
export function segmentUri(entry: Pick<TimelineEntry, "seq" | "claim">): string {
  return `${entry.seq}.${entry.claim}.ts`;
}

export interface MediaOptions {
  /** Set while a paused viewer's position is inside the window (the sessions issue uses it). */
  startOffset?: number;
  /** A delta update (`_HLS_skip=YES`): the segments before the skip boundary become one EXT-X-SKIP tag. */
  skip?: boolean;
  /**
   * The rendition's entries as rendered before, by `{seq}.{claim}` (an entry never changes once written), so
   * a window of thousands of segments costs one render per new segment, not per segment per render.
   */
  lines?: Map<string, string>;
}

/**
 * The tag before a slate segment (the stream had no input): players ignore a tag they do not know (RFC 8216bis
 * 4.1), and baton's player page shows "waiting for the broadcaster" while it plays one (hls.js keeps it in the
 * fragment's tagList). Not EXT-X-: that prefix is the specification's.
 */
export const SLATE_TAG = "#EXT-BATON-SLATE";

/** One entry's tags and URI for a rendition (ends with a newline). */
function entryLines(entry: TimelineEntry, rendition: string, suffix: UriSuffix): string {
  return (
    (entry.disc ? "#EXT-X-DISCONTINUITY\n" : "") +
    `#EXT-X-PROGRAM-DATE-TIME:${new Date(entry.pdt).toISOString()}\n` +
    (entry.slate ? `${SLATE_TAG}\n` : "") +
    `#EXTINF:${(entry.dur[rendition] ?? 0).toFixed(3)},\n${segmentUri(entry)}${suffix}\n`
  );
}

/** Delta updates may skip what lies this many target durations before the end (RFC 8216bis 6.2.5.1: six at least). */
const SKIP_TARGET_DURATIONS = 6;

/**
 * The playlist's EXT-X-SERVER-CONTROL attributes, or null for none. Every attribute baton writes comes from
 * here (the one place a HOLD-BACK or another attribute joins). CAN-SKIP-UNTIL is offered on a live playlist
 * only once it lists more than the skip boundary, so that a delta update skips something.
 */
export function serverControl(stream: StreamSnapshot, rendition: string): { canSkipUntil: number } | null {
  if (stream.state === "ended") return null;
  const canSkipUntil = SKIP_TARGET_DURATIONS * stream.targetDuration;
  let total = 0;
  for (const entry of stream.entries) total += entry.dur[rendition] ?? 0;
  return total > canSkipUntil ? { canSkipUntil } : null;
}

/** How many leading entries a delta update skips: those that end at or before the skip boundary. */
export function skippedSegments(stream: StreamSnapshot, rendition: string, canSkipUntil: number): number {
  const entries = stream.entries;
  let fromEnd = 0;
  for (let i = entries.length - 1; i >= 0; i--) {
    if (fromEnd >= canSkipUntil) return i + 1;
    fromEnd += entries[i]!.dur[rendition] ?? 0;
  }
  return 0;
}

/**
 * A live media playlist for one rendition. The media sequence is the first listed segment's; the
 * discontinuity sequence is the first segment's discontinuity number less its own tag, so both only grow.
 * A delta update keeps both as the full playlist has them (the skipped segments still count), writes version 9
 * (EXT-X-SKIP needs it), and its first listed segment keeps its own date-time and discontinuity tags.
 * Ends with EXT-X-ENDLIST once the stream ended.
 */
export function renderMedia(stream: StreamSnapshot, rendition: string, suffix: UriSuffix = "", options: MediaOptions = {}): string {
  const entries = stream.entries;
  const first = entries[0];
  const control = serverControl(stream, rendition);
  const skipped = options.skip && control ? skippedSegments(stream, rendition, control.canSkipUntil) : 0;
  const lines = [
    "#EXTM3U",
    `#EXT-X-VERSION:${skipped > 0 ? 9 : 3}`,
    `#EXT-X-TARGETDURATION:${stream.targetDuration}`,
    `#EXT-X-MEDIA-SEQUENCE:${first ? first.seq : stream.nextSeq}`,
    `#EXT-X-DISCONTINUITY-SEQUENCE:${first ? first.cc - (first.disc ? 1 : 0) : 0}`,
    "#EXT-X-INDEPENDENT-SEGMENTS",
  ];
  if (control) lines.push(`#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=${control.canSkipUntil.toFixed(1)}`);
  if (options.startOffset !== undefined) {
    lines.push(`#EXT-X-START:TIME-OFFSET=${options.startOffset.toFixed(3)},PRECISE=YES`);
  }
  if (skipped > 0) lines.push(`#EXT-X-SKIP:SKIPPED-SEGMENTS=${skipped}`);
  const cache = suffix === "" ? options.lines : undefined;
  let body = "";
  for (let i = skipped; i < entries.length; i++) {
    const entry = entries[i]!;
    if (!cache) {
      body += entryLines(entry, rendition, suffix);
      continue;
    }
    const key = `${entry.seq}.${entry.claim}`;
    let text = cache.get(key);
    if (text === undefined) cache.set(key, (text = entryLines(entry, rendition, "")));
    body += text;
  }
  return lines.join("\n") + "\n" + body + (stream.state === "ended" ? "#EXT-X-ENDLIST\n" : "");
}
