// The sliding window of a live media playlist (RFC 8216bis 6.2.2): it only appends and drops from the front, and
// its media and discontinuity sequence numbers only grow; read back with parsers baton does not use.
import assert from "node:assert/strict";
import type { TimelineEntry } from "../../src/core/model.ts";
import { renderMedia } from "../../src/delivery/playlist.ts";
import { T0, claimOf, hlsMedia, m3u8, snapshot, strictParsers, uri } from "../helpers/playlists.ts";

describe("playlists (RFC 8216bis)", () => {
  strictParsers();

  describe("sliding window", () => {
    /** A small deterministic generator, so a failure replays the same way. */
    function random(seed: number): () => number {
      let state = seed >>> 0;
      return () => {
        state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
        return state / 2 ** 32;
      };
    }

    interface Seen {
      uri: string;
      duration: number;
      pdt: number;
    }

    it("media and discontinuity sequences only grow, and each segment keeps its URI, duration, date and discontinuity number", () => {
      const WINDOW = 6;
      const STEPS = 80;
      const renditions = ["720p", "360p"];
      const suffix = "?session=viewer1";
      for (const seed of [1, 2, 3, 4, 5]) {
        const next = random(seed);
        const timeline: TimelineEntry[] = [];
        let seq = 0;
        let cc = 0;
        let pdt = T0;
        // the very first render of a stream: nothing appended yet
        const previous = new Map<string, { media: number; disc: number }>();
        const seen = new Map<string, Seen>();
        for (let step = 0; step <= STEPS; step++) {
          if (step > 0) {
            // a discontinuity now and then (restarted ffmpeg, returning publisher), sometimes twice in a row
            const disc = seq > 0 && next() < 0.25;
            if (disc) cc += 1;
            const dur: Record<string, number> = {};
            const short = disc && next() < 0.5;
            for (const r of renditions) dur[r] = Math.round((short ? 0.4 + next() : 1.9 + next() * 0.2) * 1000) / 1000;
            timeline.push({ seq, claim: claimOf(cc), pdt, disc, cc, dur });
            pdt += Math.round(dur["720p"]! * 1000) + (disc ? 5000 : 0);
            seq += 1;
            while (timeline.length > WINDOW) timeline.shift();
          }
          const stream = snapshot([...timeline], { nextSeq: seq, state: step === STEPS ? "ended" : "live" });
          for (const r of renditions) {
            const text = renderMedia(stream, r, suffix);
            const a = m3u8(text);
            const b = hlsMedia(text);
            const media = a.mediaSequence!;
            const disc = a.discontinuitySequence ?? 0;
            assert.equal(b.mediaSequenceBase ?? 0, media);
            assert.equal(b.discontinuitySequenceBase ?? 0, disc);
            assert.equal(a.segments.length, timeline.length);
            assert.equal(b.segments.length, timeline.length);

            const before = previous.get(r);
            if (before) {
              assert.ok(media >= before.media, `seed ${seed} step ${step}: media sequence ${before.media} -> ${media}`);
              assert.ok(disc >= before.disc, `seed ${seed} step ${step}: discontinuity sequence ${before.disc} -> ${disc}`);
            }
            previous.set(r, { media, disc });

            let tagsSoFar = 0;
            a.segments.forEach((s, i) => {
              const n = media + i;
              const source = timeline[i]!;
              assert.equal(n, source.seq);
              if (s.discontinuity) tagsSoFar += 1;
              assert.equal(disc + tagsSoFar, source.cc, `seed ${seed} step ${step}: discontinuity number of segment ${n}`);
              assert.equal(s.timeline, source.cc);
              assert.equal(b.segments[i]!.discontinuitySequence, source.cc);
              assert.equal(b.segments[i]!.mediaSequenceNumber, n);
              assert.ok(Math.round(s.duration) <= a.targetDuration!, `segment ${n} EXTINF ${s.duration}`);

              const now: Seen = { uri: s.uri, duration: s.duration, pdt: s.programDateTime! };
              assert.equal(b.segments[i]!.uri, now.uri);
              assert.equal(b.segments[i]!.duration, now.duration);
              assert.equal(b.segments[i]!.programDateTime?.getTime(), now.pdt);
              const key = `${r}/${n}`;
              const first = seen.get(key);
              if (first) assert.deepEqual(now, first, `seed ${seed} step ${step}: segment ${key} changed`);
              else seen.set(key, now);
              assert.equal(now.uri, `${uri(source)}${suffix}`);
            });
          }
        }
        assert.ok(cc >= 5, `seed ${seed} made discontinuities (${cc})`);
      }
    });
  });
});
