// A small reader of media playlists for the chaos harness's simulated viewers and consistency checker
// (which read baton's output as a player would; baton itself only writes playlists).
import { SLATE_TAG } from "../../src/delivery/playlist.ts";

export interface MediaSegment {
  seq: number;
  uri: string;
  duration: number;
  pdt: number | null;
  discontinuity: boolean;
  /** A slate segment (baton's #EXT-BATON-SLATE tag: the stream had no input). */
  slate: boolean;
}

export interface MediaPlaylist {
  targetDuration: number;
  mediaSequence: number;
  discontinuitySequence: number;
  endList: boolean;
  segments: MediaSegment[];
}

export function parseMedia(text: string): MediaPlaylist {
  const playlist: MediaPlaylist = { targetDuration: 0, mediaSequence: 0, discontinuitySequence: 0, endList: false, segments: [] };
  let duration = 0;
  let pdt: number | null = null;
  let discontinuity = false;
  let slate = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("#EXT-X-TARGETDURATION:")) playlist.targetDuration = Number(line.slice(22));
    else if (line.startsWith("#EXT-X-MEDIA-SEQUENCE:")) playlist.mediaSequence = Number(line.slice(22));
    else if (line.startsWith("#EXT-X-DISCONTINUITY-SEQUENCE:")) playlist.discontinuitySequence = Number(line.slice(30));
    else if (line === "#EXT-X-DISCONTINUITY") discontinuity = true;
    else if (line.startsWith("#EXT-X-PROGRAM-DATE-TIME:")) pdt = Date.parse(line.slice(25));
    else if (line.startsWith("#EXTINF:")) duration = Number(line.slice(8).split(",")[0]);
    else if (line === "#EXT-X-ENDLIST") playlist.endList = true;
    else if (line === SLATE_TAG) slate = true;
    else if (line && !line.startsWith("#")) {
      playlist.segments.push({ seq: playlist.mediaSequence + playlist.segments.length, uri: line, duration, pdt, discontinuity, slate });
      pdt = null;
      discontinuity = false;
      slate = false;
    }
  }
  return playlist;
}
