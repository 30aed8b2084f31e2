// renderMaster/renderMedia checked against RFC 8216bis (6.2) by reading the output with two HLS parsers that
// baton does not use: videojs's m3u8-parser and hls-parser (in strict mode, so a spec violation throws).
import assert from "node:assert/strict";
import { renderMaster, renderMedia } from "../../src/delivery/playlist.ts";
import { LADDER, T0, entry, hlsMaster, hlsMedia, m3u8, snapshot, strictParsers, tags, uri } from "../helpers/playlists.ts";

describe("playlists (RFC 8216bis)", () => {
  strictParsers();

  describe("renderMaster", () => {
    it("lists each rendition with BANDWIDTH, AVERAGE-BANDWIDTH, RESOLUTION, CODECS and FRAME-RATE", () => {
      const text = renderMaster(LADDER);
      assert.ok(text.startsWith("#EXTM3U\n"), "the first line is EXTM3U");
      assert.ok(text.endsWith("\n"));
      assert.equal(tags(text, "EXT-X-TARGETDURATION").length, 0, "no media playlist tags in a master playlist");

      const a = m3u8(text);
      const playlists = a.playlists ?? [];
      assert.equal(playlists.length, LADDER.length);
      const b = hlsMaster(text);
      assert.equal(b.variants.length, LADDER.length);

      LADDER.forEach((r, i) => {
        const pa = playlists[i]!;
        assert.equal(pa.uri, `${r.name}/index.m3u8`);
        assert.equal(pa.attributes.BANDWIDTH, r.bandwidth);
        assert.equal(Number(pa.attributes["AVERAGE-BANDWIDTH"]), r.averageBandwidth);
        assert.deepEqual(pa.attributes.RESOLUTION, { width: r.width, height: r.height });
        assert.equal(pa.attributes.CODECS, r.codecs);
        assert.equal(pa.attributes["FRAME-RATE"], r.frameRate);

        const vb = b.variants[i]!;
        assert.equal(vb.uri, `${r.name}/index.m3u8`);
        assert.equal(vb.bandwidth, r.bandwidth);
        assert.equal(vb.averageBandwidth, r.averageBandwidth);
        assert.deepEqual(vb.resolution, { width: r.width, height: r.height });
        assert.equal(vb.codecs, r.codecs);
        assert.equal(vb.frameRate, r.frameRate);
        assert.ok(r.averageBandwidth <= r.bandwidth, "peak is at least the average");
      });
    });

    it("writes FRAME-RATE with three decimals", () => {
      const text = renderMaster(LADDER);
      assert.deepEqual(
        tags(text, "EXT-X-STREAM-INF").map((line) => /FRAME-RATE=([^,]*)$/.exec(line)?.[1]),
        ["30.000", "29.970", "25.000"],
      );
    });

    it("appends the ?session=... suffix to every URI when given", () => {
      const suffix = "?session=s-0123abcd";
      const text = renderMaster(LADDER, suffix);
      const a = m3u8(text);
      assert.deepEqual(
        (a.playlists ?? []).map((p) => p.uri),
        LADDER.map((r) => `${r.name}/index.m3u8${suffix}`),
      );
      assert.deepEqual(
        hlsMaster(text).variants.map((v) => v.uri),
        LADDER.map((r) => `${r.name}/index.m3u8${suffix}`),
      );
    });

    it("declares independent segments", () => {
      assert.equal(m3u8(renderMaster(LADDER)).independentSegments, true);
      assert.equal(hlsMaster(renderMaster(LADDER)).independentSegments, true);
    });
  });

  describe("renderMedia", () => {
    it("gives TARGETDURATION and MEDIA-SEQUENCE as the first entry's seq", () => {
      const entries = [entry(40, 0, false), entry(41, 0, false), entry(42, 0, false)];
      const stream = snapshot(entries, { targetDuration: 4 });
      const text = renderMedia(stream, "720p");
      const a = m3u8(text);
      const b = hlsMedia(text);
      assert.equal(a.targetDuration, 4);
      assert.equal(b.targetDuration, 4);
      assert.equal(a.mediaSequence, 40);
      assert.equal(b.mediaSequenceBase, 40);
      assert.deepEqual(
        b.segments.map((s) => s.mediaSequenceNumber),
        [40, 41, 42],
      );
      assert.deepEqual(
        a.segments.map((s) => s.uri),
        entries.map(uri),
      );
      assert.match(a.segments[0]!.uri, /^40\.[0-9a-f]{12}\.ts$/, "the sequence number stays readable, then the claim id");
    });

    it("DISCONTINUITY-SEQUENCE is the first entry's cc when it has no discontinuity tag", () => {
      const text = renderMedia(snapshot([entry(10, 3, false), entry(11, 3, false)]), "720p");
      assert.equal(m3u8(text).discontinuitySequence, 3);
      assert.equal(hlsMedia(text).discontinuitySequenceBase, 3);
    });

    it("DISCONTINUITY-SEQUENCE is the first entry's cc minus 1 when the first entry is a discontinuity", () => {
      const text = renderMedia(snapshot([entry(10, 3, true), entry(11, 3, false)]), "720p");
      const a = m3u8(text);
      const b = hlsMedia(text);
      assert.equal(a.discontinuitySequence, 2);
      assert.equal(b.discontinuitySequenceBase, 2);
      // and the first segment itself still carries discontinuity number 3
      assert.equal(a.segments[0]!.timeline, 3);
      assert.equal(b.segments[0]!.discontinuitySequence, 3);
    });

    it("places EXT-X-DISCONTINUITY before (only) the entries that start a discontinuity", () => {
      const entries = [entry(5, 1, false), entry(6, 2, true), entry(7, 2, false), entry(8, 3, true)];
      const text = renderMedia(snapshot(entries), "720p");
      const lines = text.split("\n");
      assert.equal(tags(text, "EXT-X-DISCONTINUITY").length, 2);
      for (const e of entries) {
        const at = lines.indexOf(uri(e));
        const previous = entries.find((p) => p.seq === e.seq - 1);
        const previousAt = previous ? lines.indexOf(uri(previous)) : lines.indexOf("#EXT-X-INDEPENDENT-SEGMENTS");
        assert.ok(at > previousAt && previousAt >= 0);
        const between = lines.slice(previousAt + 1, at);
        assert.equal(between.includes("#EXT-X-DISCONTINUITY"), e.disc, `segment ${e.seq}`);
      }
      const a = m3u8(text);
      assert.deepEqual(
        a.segments.map((s) => s.discontinuity === true),
        entries.map((e) => e.disc),
      );
      assert.deepEqual(
        a.segments.map((s) => s.timeline),
        entries.map((e) => e.cc),
      );
      const b = hlsMedia(text);
      assert.deepEqual(
        b.segments.map((s) => s.discontinuity === true),
        entries.map((e) => e.disc),
      );
      assert.deepEqual(
        b.segments.map((s) => s.discontinuitySequence),
        entries.map((e) => e.cc),
      );
    });

    it("gives every segment its PROGRAM-DATE-TIME in ISO 8601 with milliseconds", () => {
      const entries = [entry(0, 0, false), { ...entry(1, 0, false), pdt: T0 + 2013 }, { ...entry(2, 1, true), pdt: T0 + 9999 }];
      const text = renderMedia(snapshot(entries), "720p");
      const pdts = tags(text, "EXT-X-PROGRAM-DATE-TIME").map((line) => line.slice("#EXT-X-PROGRAM-DATE-TIME:".length));
      assert.equal(pdts.length, entries.length);
      for (const value of pdts) assert.match(value, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.deepEqual(
        m3u8(text).segments.map((s) => s.programDateTime),
        entries.map((e) => e.pdt),
      );
      assert.deepEqual(
        hlsMedia(text).segments.map((s) => s.programDateTime?.getTime()),
        entries.map((e) => e.pdt),
      );
    });

    it("gives EXTINF from the requested rendition's duration", () => {
      const entries = [
        entry(0, 0, false, { "720p": 2.002, "480p": 1.968, "360p": 2.04 }),
        entry(1, 0, false, { "720p": 1.5, "480p": 1.534, "360p": 1.4 }),
      ];
      const stream = snapshot(entries);
      for (const r of ["720p", "480p", "360p"]) {
        const text = renderMedia(stream, r);
        const expected = entries.map((e) => e.dur[r]!);
        assert.deepEqual(
          m3u8(text).segments.map((s) => s.duration),
          expected,
          r,
        );
        assert.deepEqual(
          hlsMedia(text).segments.map((s) => s.duration),
          expected,
          r,
        );
        for (const line of tags(text, "EXTINF")) assert.match(line, /^#EXTINF:\d+\.\d{3},$/);
      }
    });

    it("every EXTINF rounded to an integer is at most TARGETDURATION", () => {
      const entries = [
        entry(0, 0, false, { "720p": 2.49, "480p": 2.4, "360p": 2.0 }),
        entry(1, 0, false, { "720p": 0.2, "480p": 1.0, "360p": 1.999 }),
        entry(2, 1, true, { "720p": 2.1, "480p": 2.2, "360p": 2.3 }),
      ];
      for (const r of ["720p", "480p", "360p"]) {
        const text = renderMedia(snapshot(entries), r);
        const a = m3u8(text);
        for (const s of a.segments) assert.ok(Math.round(s.duration) <= a.targetDuration!, `${r} ${s.uri} ${s.duration}`);
        const b = hlsMedia(text);
        for (const s of b.segments) assert.ok(Math.round(s.duration) <= b.targetDuration, `${r} ${s.uri} ${s.duration}`);
      }
    });

    it("adds EXT-X-ENDLIST only when the stream has ended", () => {
      const entries = [entry(0, 0, false), entry(1, 0, false)];
      for (const state of ["live", "reconnecting"] as const) {
        const text = renderMedia(snapshot(entries, { state }), "720p");
        assert.equal(tags(text, "EXT-X-ENDLIST").length, 0, state);
        assert.notEqual(m3u8(text).endList, true, state);
        assert.equal(hlsMedia(text).endlist, false, state);
      }
      const ended = renderMedia(snapshot(entries, { state: "ended" }), "720p");
      assert.ok(ended.endsWith("#EXT-X-ENDLIST\n"), "ENDLIST is the last line");
      assert.equal(m3u8(ended).endList, true);
      assert.equal(hlsMedia(ended).endlist, true);
    });

    it("adds EXT-X-START with TIME-OFFSET only when a start offset is given", () => {
      const stream = snapshot([entry(0, 0, false), entry(1, 0, false), entry(2, 0, false)]);
      const plain = renderMedia(stream, "720p");
      assert.equal(tags(plain, "EXT-X-START").length, 0);
      assert.equal(m3u8(plain).start, undefined);
      assert.equal(hlsMedia(plain).start, undefined);

      for (const offset of [-4.5, 0, 2]) {
        const text = renderMedia(stream, "720p", "", { startOffset: offset });
        assert.equal(tags(text, "EXT-X-START").length, 1);
        assert.deepEqual(m3u8(text).start, { timeOffset: offset, precise: true });
        assert.deepEqual(hlsMedia(text).start, { offset, precise: true });
      }
    });

    it("appends the ?session=... suffix to every segment URI when given", () => {
      const suffix = "?session=abc123";
      const entries = [entry(3, 0, false), entry(4, 1, true)];
      const text = renderMedia(snapshot(entries), "480p", suffix);
      assert.deepEqual(
        m3u8(text).segments.map((s) => s.uri),
        entries.map((e) => `${uri(e)}?session=abc123`),
      );
      assert.deepEqual(
        hlsMedia(text).segments.map((s) => s.uri),
        entries.map((e) => `${uri(e)}?session=abc123`),
      );
    });

    it("an empty timeline has no segments and MEDIA-SEQUENCE = nextSeq", () => {
      for (const nextSeq of [0, 17]) {
        const text = renderMedia(snapshot([], { nextSeq }), "720p");
        const a = m3u8(text);
        assert.equal(a.mediaSequence, nextSeq);
        assert.equal(a.segments.length, 0);
        const b = hlsMedia(text);
        assert.equal(b.mediaSequenceBase, nextSeq);
        assert.equal(b.segments.length, 0);
        assert.equal(tags(text, "EXTINF").length, 0);
      }
    });

    it("puts the playlist-wide tags before the first segment and uses version 3", () => {
      const text = renderMedia(snapshot([entry(0, 0, false), entry(1, 1, true)]), "720p", "", { startOffset: -2 });
      const lines = text.split("\n");
      assert.equal(lines[0], "#EXTM3U");
      const firstSegmentTag = lines.findIndex((l) => l.startsWith("#EXTINF") || l.startsWith("#EXT-X-PROGRAM-DATE-TIME") || l === "#EXT-X-DISCONTINUITY");
      for (const tag of ["EXT-X-VERSION", "EXT-X-TARGETDURATION", "EXT-X-MEDIA-SEQUENCE", "EXT-X-DISCONTINUITY-SEQUENCE", "EXT-X-START"]) {
        const at = lines.findIndex((l) => l.startsWith(`#${tag}:`));
        assert.ok(at > 0 && at < firstSegmentTag, tag);
        assert.equal(tags(text, tag).length, 1, `${tag} appears once`);
      }
      assert.equal(m3u8(text).version, 3);
      assert.equal(hlsMedia(text).version, 3);
    });
  });
});
