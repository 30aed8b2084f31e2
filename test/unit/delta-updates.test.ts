// Delta updates (RFC 8216bis 6.2.5.1, 4.4.5.2), the render-once cache with its gzip form, and the request
// log line, at a 2-hour window (3,600 segments of 2 s). Read back with parsers baton does not use.
import assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import type { M3u8Manifest } from "m3u8-parser";
import type { TimelineEntry } from "../../src/core/model.ts";
import { renderMedia, serverControl } from "../../src/delivery/playlist.ts";
import { RenderedPlaylists, acceptsGzip } from "../../src/delivery/rendered.ts";
import { loggedPath } from "../../src/http/server.ts";
import { entry, hlsMedia, m3u8, snapshot, strictParsers, tags } from "../helpers/playlists.ts";

const TWO_HOURS = 3600;

function window(count: number, first = 1000, disc: (seq: number) => boolean = () => false): TimelineEntry[] {
  let cc = 0;
  return Array.from({ length: count }, (_, i) => {
    const seq = first + i;
    if (disc(seq)) cc += 1;
    return entry(seq, cc, disc(seq));
  });
}

/** m3u8-parser's reading of the delta-update tags (its published types leave them out). */
const lowLatency = (manifest: M3u8Manifest): { serverControl?: { canSkipUntil?: number }; skip?: { skippedSegments?: number } } => manifest as never;

describe("delta updates and render-once playlists", () => {
  strictParsers();

  it("offers CAN-SKIP-UNTIL of six target durations only on a live playlist longer than that", () => {
    const long = snapshot(window(20));
    assert.deepEqual(serverControl(long, "720p"), { canSkipUntil: 12 });
    assert.deepEqual(tags(renderMedia(long, "720p"), "EXT-X-SERVER-CONTROL"), ["#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=12.0"]);
    assert.equal(lowLatency(m3u8(renderMedia(long, "720p"))).serverControl?.canSkipUntil, 12);
    const short = snapshot(window(6));
    assert.equal(serverControl(short, "720p"), null, "12 s listed: nothing a delta update could skip");
    assert.equal(renderMedia(short, "720p", "", { skip: true }), renderMedia(short, "720p"), "_HLS_skip on a short playlist: the full one");
    const ended = snapshot(window(20), { state: "ended" });
    assert.equal(serverControl(ended, "720p"), null, "an ended playlist is not reloaded");
    assert.equal(renderMedia(ended, "720p", "", { skip: true }), renderMedia(ended, "720p"));
  });

  it("answers _HLS_skip=YES at a 2-hour window with EXT-X-SKIP and the segments after the skip boundary", () => {
    const stream = snapshot(window(TWO_HOURS));
    const full = renderMedia(stream, "720p");
    const delta = renderMedia(stream, "720p", "", { skip: true });
    const a = m3u8(delta);
    const b = hlsMedia(delta);
    assert.deepEqual(tags(delta, "EXT-X-VERSION"), ["#EXT-X-VERSION:9"], "EXT-X-SKIP needs version 9");
    const skipped = Number(/^#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)$/m.exec(delta)?.[1]);
    assert.equal(lowLatency(a).skip?.skippedSegments, skipped);
    assert.equal(b.skip, skipped);
    // what is listed reaches back at least CAN-SKIP-UNTIL (12 s), and no segment more than that needs
    const listed = TWO_HOURS - skipped;
    assert.equal(b.segments.length, listed);
    assert.ok(listed * 2 >= 12 && (listed - 1) * 2 < 12, `${listed} segments listed`);
    assert.equal(b.mediaSequenceBase, 1000, "the media sequence counts the skipped segments");
    assert.deepEqual(tags(delta, "EXT-X-MEDIA-SEQUENCE"), tags(full, "EXT-X-MEDIA-SEQUENCE"));
    assert.deepEqual(tags(delta, "EXT-X-SERVER-CONTROL"), tags(full, "EXT-X-SERVER-CONTROL"));
    // the listed segments are the full playlist's last ones, each with its date-time
    const fullUris = hlsMedia(full).segments.map((s) => s.uri);
    assert.deepEqual(b.segments.map((s) => s.uri), fullUris.slice(skipped));
    assert.ok(b.segments.every((s) => s.programDateTime instanceof Date));
    assert.ok(Buffer.byteLength(delta) * 100 < Buffer.byteLength(full), `${Buffer.byteLength(delta)} vs ${Buffer.byteLength(full)} bytes`);
  });

  it("keeps the discontinuity sequence of the full playlist and the first listed segment's own discontinuity tag", () => {
    // a discontinuity in the skipped part, and one on the first segment the delta lists
    const entries = window(TWO_HOURS, 1000, (seq) => seq === 1500 || seq === 1000 + TWO_HOURS - 6);
    const stream = snapshot(entries);
    const delta = renderMedia(stream, "720p", "", { skip: true });
    const full = renderMedia(stream, "720p");
    // the header names the first segment of the whole playlist, skipped ones included (a client takes the
    // skipped segments' numbers from its last reload)
    assert.deepEqual(tags(delta, "EXT-X-DISCONTINUITY-SEQUENCE"), tags(full, "EXT-X-DISCONTINUITY-SEQUENCE"));
    const b = hlsMedia(delta);
    assert.equal(b.segments[0]!.discontinuity, true, "the first listed segment starts a discontinuity");
    assert.equal(tags(delta, "EXT-X-DISCONTINUITY").length, 1, "the skipped discontinuity is not listed");
  });

  it("renders each rendition's playlist once per timeline snapshot, compresses it once, and serves gzip only when accepted", () => {
    const cache = new RenderedPlaylists();
    const stream = snapshot(window(TWO_HOURS));
    const body = cache.media(stream, "720p", false);
    assert.equal(cache.media(stream, "720p", false), body, "the same snapshot: the same render");
    assert.notEqual(cache.media(stream, "480p", false), body);
    assert.notEqual(cache.media(snapshot(window(TWO_HOURS)), "720p", false), body, "a new snapshot: a new render");
    assert.equal(body.text.toString(), renderMedia(stream, "720p"));

    const plain = body.answer(undefined, false);
    assert.equal(plain.headers["Content-Encoding"], undefined);
    assert.equal(plain.headers["Cache-Control"], "public, max-age=1");
    assert.equal(plain.headers.Vary, "Accept-Encoding");
    assert.equal(plain.body, body.text);
    const zipped = body.answer("gzip, deflate, br", true);
    assert.equal(zipped.headers["Content-Encoding"], "gzip");
    assert.equal(zipped.headers["Cache-Control"], "private, max-age=1", "a URL with a session");
    assert.equal(zipped.headers["Content-Length"], zipped.body!.length);
    assert.deepEqual(gunzipSync(zipped.body!), body.text);
    assert.ok(zipped.body!.length * 5 < body.text.length, `gzip ${zipped.body!.length} of ${body.text.length} bytes`);
    const again = body.answer("gzip", true);
    assert.equal(again.body, zipped.body, "compressed once");
    assert.equal(again.headers, zipped.headers, "one head object per kind of answer");
  });

  it("renders a slid 2-hour window by rendering only its new segment, to the same text as a render from scratch", () => {
    const cache = new RenderedPlaylists();
    // a discontinuity that enters as the window slides
    const all = window(TWO_HOURS + 3, 1000, (seq) => seq === 1000 + TWO_HOURS + 1);
    // each rendered entry formats one date: counting the calls counts the entries rendered
    const original = Date.prototype.toISOString;
    let calls = 0;
    const counting = function (this: Date): string {
      calls += 1;
      return original.call(this);
    };
    try {
      for (let step = 0; step <= 3; step++) {
        const stream = snapshot(all.slice(step, step + TWO_HOURS));
        Date.prototype.toISOString = counting;
        calls = 0;
        const full = cache.media(stream, "720p", false).text.toString();
        const delta = cache.media(stream, "720p", true).text.toString();
        Date.prototype.toISOString = original;
        assert.equal(calls, step === 0 ? TWO_HOURS : 1, `step ${step}: entries rendered`);
        assert.equal(full, renderMedia(stream, "720p"), `step ${step}`);
        assert.equal(delta, renderMedia(stream, "720p", "", { skip: true }), `step ${step}`);
      }
    } finally {
      Date.prototype.toISOString = original;
    }
    assert.equal(cache.streams, 1);
    cache.prune(Date.now() + 10 * 60000);
    assert.equal(cache.streams, 0, "an idle rendition's entries are dropped");
  });

  it("reads Accept-Encoding: gzip unless refused with q=0", () => {
    for (const yes of ["gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.8", "GZIP".toLowerCase()]) assert.equal(acceptsGzip(yes), true, yes);
    for (const no of [undefined, "", "br", "identity", "gzip;q=0", "br, gzip; q=0.0", "x-gzipped;q=0.5"]) assert.equal(acceptsGzip(no), false, String(no));
  });

  it("logs a request's path without its query or a session token in the path", () => {
    const token = `${"a".repeat(32)}.show.${"b".repeat(43)}`;
    assert.equal(loggedPath(`/live/show/s/${token}/360p/12.abcdefabcdef.ts?x=1`), "/live/show/s/-/360p/12.abcdefabcdef.ts");
    assert.equal(loggedPath(`/live/show/360p/index.m3u8?session=${token}&resume=1`), "/live/show/360p/index.m3u8");
    assert.equal(loggedPath(`/ws?session=${token}`), "/ws");
    assert.equal(loggedPath(undefined), "");
  });
});
