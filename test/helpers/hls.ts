// Reading baton's playlists with m3u8-parser, a parser baton does not use itself.
import { Parser } from "m3u8-parser";

export interface ParsedSegment {
  uri: string;
  duration: number;
  discontinuity?: boolean;
  dateTimeString?: string;
}

export interface ParsedPlaylist {
  mediaSequence: number;
  discontinuitySequence?: number;
  endList?: boolean;
  targetDuration: number;
  segments: ParsedSegment[];
  playlists?: { uri: string; attributes: Record<string, unknown> }[];
}

export function parseM3u8(text: string): ParsedPlaylist {
  const parser = new Parser();
  parser.push(text);
  parser.end();
  return parser.manifest as ParsedPlaylist;
}

export function lastSeq(playlist: ParsedPlaylist): number {
  return playlist.mediaSequence + playlist.segments.length - 1;
}

/** What a sequence number maps to: its URI, duration, date-time and discontinuity number. */
export function entries(p: ParsedPlaylist): Map<number, string> {
  const out = new Map<number, string>();
  let cc = p.discontinuitySequence ?? 0;
  p.segments.forEach((s, i) => {
    if (s.discontinuity) cc += 1;
    out.set(p.mediaSequence + i, `${s.uri.split("?")[0]}|${s.duration}|${s.dateTimeString}|${cc}`);
  });
  return out;
}

/** Disagreements between playlists about any sequence number they share (empty when consistent). */
export function disagreements(playlists: ParsedPlaylist[]): string[] {
  const seen = new Map<number, string>();
  const problems: string[] = [];
  for (const p of playlists) {
    for (const [seq, value] of entries(p)) {
      const other = seen.get(seq);
      if (other !== undefined && other !== value) problems.push(`seq ${seq}: ${other} vs ${value}`);
      seen.set(seq, value);
    }
  }
  return problems;
}

/** Holes in time between listed segments (each should start where the previous one ended, within 100 ms). */
export function holes(p: ParsedPlaylist): string[] {
  const times = p.segments.map((s) => Date.parse(s.dateTimeString!));
  const out: string[] = [];
  for (let i = 1; i < p.segments.length; i++) {
    const gap = times[i]! - times[i - 1]! - p.segments[i - 1]!.duration * 1000;
    if (Math.abs(gap) >= 100) out.push(`a hole of ${gap} ms before segment ${p.mediaSequence + i}`);
  }
  return out;
}

/** A playlist's text without the per-viewer sessions (the only allowed difference between nodes' master playlists). */
export function withoutSession(text: string): string {
  return text.replace(/\?session=[A-Za-z0-9._-]+/g, "").replace(/^s\/[A-Za-z0-9._-]+\//gm, "");
}

/** The session token a master playlist's renditions carry in their path (`s/<token>/<rendition>/index.m3u8`). */
export function sessionOf(masterText: string): string {
  const token = /^s\/([^/\s]+)\//m.exec(masterText)?.[1];
  if (!token) throw new Error(`no session in the master playlist:\n${masterText}`);
  return token;
}

/** Sequence numbers of a media playlist's slate segments (baton's #EXT-BATON-SLATE tag before their URI). */
export function slateSeqs(text: string): Set<number> {
  const sequence = Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(text)?.[1] ?? 0);
  const out = new Set<number>();
  let index = 0;
  let slate = false;
  for (const line of text.split("\n")) {
    if (line === "#EXT-BATON-SLATE") slate = true;
    else if (line !== "" && !line.startsWith("#")) {
      if (slate) out.add(sequence + index);
      index += 1;
      slate = false;
    }
  }
  return out;
}

/**
 * Where live media resumed after `after` (a sequence number): the first later segment that starts a
 * discontinuity and is no slate segment, and every segment between `after` and it (the slate shown meanwhile).
 */
export function resumedAfter(text: string, after: number): { seq: number; between: number[]; slate: Set<number> } | undefined {
  const p = parseM3u8(text);
  const slate = slateSeqs(text);
  const i = p.segments.findIndex((s, n) => p.mediaSequence + n > after && s.discontinuity && !slate.has(p.mediaSequence + n));
  if (i < 0) return undefined;
  const seq = p.mediaSequence + i;
  return { seq, between: Array.from({ length: seq - after - 1 }, (_, n) => after + 1 + n), slate };
}
