// Renders HLS playlists from the cluster's timeline (RFC 8216bis). Pure functions of the shared state, so
// every node renders the same bytes for the same state; only the per-viewer query suffix differs.
import type { LadderEntry, StreamSnapshot, TimelineEntry } from "../core/model.ts";

/** A query string (`?session=...`) appended to every URI a playlist carries; "" for none. */
export type UriSuffix = string;

export function renderMaster(ladder: LadderEntry[], suffix: UriSuffix = ""): string {
  const lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"];
  for (const r of ladder) {
    lines.push(
      `#EXT-X-STREAM-INF:BANDWIDTH=${r.bandwidth},AVERAGE-BANDWIDTH=${r.averageBandwidth},` +
        `RESOLUTION=${r.width}x${r.height},CODECS="${r.codecs}",FRAME-RATE=${r.frameRate.toFixed(3)}`,
      `${r.name}/index.m3u8${suffix}`,
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
}

/**
 * A live media playlist for one rendition. The media sequence is the first listed segment's; the
 * discontinuity sequence is the first segment's discontinuity number less its own tag, so both only grow.
 * Ends with EXT-X-ENDLIST once the stream ended.
 */
export function renderMedia(stream: StreamSnapshot, rendition: string, suffix: UriSuffix = "", options: MediaOptions = {}): string {
  const entries = stream.entries;
  const first = entries[0];
  const lines = [
    "#EXTM3U",
    "#EXT-X-VERSION:3",
    `#EXT-X-TARGETDURATION:${stream.targetDuration}`,
    `#EXT-X-MEDIA-SEQUENCE:${first ? first.seq : stream.nextSeq}`,
    `#EXT-X-DISCONTINUITY-SEQUENCE:${first ? first.cc - (first.disc ? 1 : 0) : 0}`,
    "#EXT-X-INDEPENDENT-SEGMENTS",
  ];
  if (options.startOffset !== undefined) {
    lines.push(`#EXT-X-START:TIME-OFFSET=${options.startOffset.toFixed(3)},PRECISE=YES`);
  }
  for (const entry of entries) {
    if (entry.disc) lines.push("#EXT-X-DISCONTINUITY");
    lines.push(
      `#EXT-X-PROGRAM-DATE-TIME:${new Date(entry.pdt).toISOString()}`,
      `#EXTINF:${(entry.dur[rendition] ?? 0).toFixed(3)},`,
      segmentUri(entry) + suffix,
    );
  }
  if (stream.state === "ended") lines.push("#EXT-X-ENDLIST");
  return lines.join("\n") + "\n";
}
