// Helpers for the playlist tests: a ladder, timeline entries and snapshots, and two HLS parsers that baton does
// not use (videojs's m3u8-parser, and hls-parser in strict mode, so a spec violation throws).
import assert from "node:assert/strict";
// a namespace import: under mocha the file loads as CommonJS, where hls-parser has no default export
import * as HLS from "hls-parser";
import { Parser, type M3u8Manifest } from "m3u8-parser";
import type { LadderEntry, StreamSnapshot, TimelineEntry } from "../../src/core/model.ts";

export type HlsMedia = InstanceType<typeof HLS.types.MediaPlaylist>;
export type HlsMaster = InstanceType<typeof HLS.types.MasterPlaylist>;

export const T0 = Date.UTC(2024, 4, 1, 12, 0, 0, 0);

export const LADDER: LadderEntry[] = [
  { name: "720p", width: 1280, height: 720, bandwidth: 3208000, averageBandwidth: 2928000, codecs: "avc1.64001f,mp4a.40.2", frameRate: 30 },
  { name: "480p", width: 854, height: 480, bandwidth: 1636000, averageBandwidth: 1496000, codecs: "avc1.64001e,mp4a.40.2", frameRate: 29.97 },
  { name: "360p", width: 640, height: 360, bandwidth: 880000, averageBandwidth: 800000, codecs: "avc1.64001e", frameRate: 25 },
];

/** The claim that wrote an entry: a new one with each discontinuity number, as a new owner brings. */
export function claimOf(cc: number): string {
  return (0xc1a1000000 + cc).toString(16).padStart(12, "0");
}

export function entry(seq: number, cc: number, disc: boolean, dur: Record<string, number> = { "720p": 2, "480p": 2, "360p": 2 }): TimelineEntry {
  return { seq, claim: claimOf(cc), pdt: T0 + seq * 2000, disc, cc, dur };
}

/** The URI a playlist gives an entry: its sequence number and its claim. */
export function uri(e: Pick<TimelineEntry, "seq" | "claim">): string {
  return `${e.seq}.${e.claim}.ts`;
}

export function snapshot(entries: TimelineEntry[], overrides: Partial<StreamSnapshot> = {}): StreamSnapshot {
  const last = entries[entries.length - 1];
  return {
    id: "cam1",
    epoch: 1,
    claim: last?.claim ?? "",
    broadcast: entries[0]?.claim ?? "",
    owner: "node-a",
    state: "live",
    targetDuration: 2,
    ladder: LADDER,
    nextSeq: last ? last.seq + 1 : 0,
    createdAt: T0,
    claimedAt: T0,
    releasedAt: null,
    entries,
    ...overrides,
  };
}

/** Parses with m3u8-parser; any warning it raises fails the test. */
export function m3u8(text: string): M3u8Manifest {
  const parser = new Parser();
  const warnings: string[] = [];
  parser.on("warn", (event) => warnings.push(event.message));
  parser.push(text);
  parser.end();
  assert.deepEqual(warnings, [], "m3u8-parser warnings");
  return parser.manifest;
}

/**
 * Parses with hls-parser. Its strict mode wants CAN-BLOCK-RELOAD in any EXT-X-SERVER-CONTROL, which RFC 8216bis
 * (4.4.3.8) makes optional and hls.js and Safari do not need for delta updates: that one line is left out of
 * what it reads (m3u8-parser and the delta-update tests read it), the rest is held to its strict rules.
 */
export function hlsMedia(text: string): HlsMedia {
  const playlist = HLS.parse(text.replace(/^#EXT-X-SERVER-CONTROL:.*\n/m, ""));
  assert.equal(playlist.isMasterPlaylist, false);
  return playlist as HlsMedia;
}

export function hlsMaster(text: string): HlsMaster {
  const playlist = HLS.parse(text);
  assert.equal(playlist.isMasterPlaylist, true);
  return playlist as HlsMaster;
}

/** Every tag line of the playlist (lines starting with #EXT). */
export function tags(text: string, name: string): string[] {
  return text.split("\n").filter((line) => line === `#${name}` || line.startsWith(`#${name}:`));
}


/** Mocha hooks: hls-parser in strict mode for the describe block. */
export function strictParsers(): void {
  let saved: ReturnType<typeof HLS.getOptions>;
  before(() => {
    saved = { ...HLS.getOptions() };
    HLS.setOptions({ strictMode: true, silent: true });
  });
  after(() => {
    HLS.setOptions(saved);
  });
}
