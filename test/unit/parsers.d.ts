// The parts of m3u8-parser (videojs) the playlist tests read; the package ships no types.
declare module "m3u8-parser" {
  export interface M3u8Segment {
    uri: string;
    duration: number;
    timeline: number;
    discontinuity?: boolean;
    dateTimeString?: string;
    programDateTime?: number;
  }

  export interface M3u8Variant {
    uri: string;
    attributes: {
      BANDWIDTH?: number;
      "AVERAGE-BANDWIDTH"?: string | number;
      RESOLUTION?: { width: number; height: number };
      CODECS?: string;
      "FRAME-RATE"?: number;
    };
  }

  export interface M3u8Manifest {
    version?: number;
    targetDuration?: number;
    mediaSequence?: number;
    discontinuitySequence?: number;
    discontinuityStarts: number[];
    independentSegments?: boolean;
    endList?: boolean;
    start?: { timeOffset: number; precise: boolean };
    segments: M3u8Segment[];
    playlists?: M3u8Variant[];
  }

  export class Parser {
    constructor(options?: { uri?: string });
    manifest: M3u8Manifest;
    push(chunk: string): void;
    end(): void;
    on(event: "warn" | "info", listener: (event: { message: string }) => void): void;
  }
}
