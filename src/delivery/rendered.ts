// Playlist bodies rendered once and served many times: the text of a rendition's media playlist (full, and
// as a delta update) per timeline snapshot, its gzip form made on first demand, and the response headers of
// each form, so a request costs a map lookup and a write, never a render or a compression.
import { gzipSync } from "node:zlib";
import type { StreamSnapshot } from "../core/model.ts";
import type { Answer } from "../http/answer.ts";
import { CORS_HEADERS } from "../http/server.ts";
import { renderMedia } from "./playlist.ts";

const PLAYLIST = "application/vnd.apple.mpegurl";

/** A playlist's text with its gzip form and headers, each made once. */
export class PlaylistBody {
  private gzipped: Buffer | null = null;
  private readonly headers = new Map<number, Answer["headers"]>();

  constructor(readonly text: Buffer, private readonly ended: boolean) {}

  static of(text: string, ended: boolean): PlaylistBody {
    return new PlaylistBody(Buffer.from(text), ended);
  }

  private get gzip(): Buffer {
    // level 6: a 2-hour window's playlist compresses about 10:1 in a few ms, once per timeline change
    return (this.gzipped ??= gzipSync(this.text, { level: 6 }));
  }

  /** The answer of this body; `personal`: the URL carries a session, so no shared cache may keep the answer. */
  answer(acceptEncoding: string | undefined, personal: boolean): Answer {
    const gzip = acceptsGzip(acceptEncoding);
    const body = gzip ? this.gzip : this.text;
    const key = (gzip ? 1 : 0) + (personal ? 2 : 0);
    let headers = this.headers.get(key);
    if (!headers) {
      headers = {
        ...CORS_HEADERS,
        "Content-Type": PLAYLIST,
        "Content-Length": body.length,
        // live playlists change every segment; an ended one never again
        "Cache-Control": `${personal ? "private" : "public"}, max-age=${this.ended ? 3600 : 1}`,
        Vary: "Accept-Encoding",
        ...(gzip ? { "Content-Encoding": "gzip" } : {}),
      };
      this.headers.set(key, headers);
    }
    return { status: 200, headers, body };
  }
}

/** Whether an Accept-Encoding header takes gzip (a `q=0` refuses it). */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  if (typeof header !== "string" || !header.includes("gzip")) return false;
  if (!header.includes("q=")) return true;
  return header.split(",").some((part) => {
    const [coding, ...params] = part.split(";").map((s) => s.trim().toLowerCase());
    if (coding !== "gzip") return false;
    const q = params.find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

interface RenditionBodies {
  full?: PlaylistBody;
  delta?: PlaylistBody;
}

/** Rendered entries per stream and rendition (playlist.ts `lines`), and when a render last used them. */
interface EntryLines {
  lines: Map<string, string>;
  usedAt: number;
}

/** Streams whose rendered entries are kept; past this the least recently used go (prune() drops idle ones too). */
const MAX_STREAMS = 1000;
const IDLE_MS = 120000;

/**
 * Each rendition's media playlist bodies per timeline snapshot: a new snapshot (a change), a new render; a
 * render reuses the entries rendered for the snapshot before, so it costs the new segments and a join.
 */
export class RenderedPlaylists {
  private readonly rendered = new WeakMap<StreamSnapshot, Map<string, RenditionBodies>>();
  private readonly entries = new Map<string, EntryLines>();

  media(stream: StreamSnapshot, rendition: string, delta: boolean): PlaylistBody {
    let renditions = this.rendered.get(stream);
    if (!renditions) this.rendered.set(stream, (renditions = new Map()));
    let bodies = renditions.get(rendition);
    if (!bodies) renditions.set(rendition, (bodies = {}));
    const ended = stream.state === "ended";
    // the rendered entries are looked up (and kept in use) only for a render: a live stream renders at each change
    if (delta) return (bodies.delta ??= PlaylistBody.of(renderMedia(stream, rendition, "", { skip: true, lines: this.linesOf(stream, rendition) }), ended));
    return (bodies.full ??= PlaylistBody.of(renderMedia(stream, rendition, "", { lines: this.linesOf(stream, rendition) }), ended));
  }

  /** The rendition's rendered entries, holding no more than about its current window. */
  private linesOf(stream: StreamSnapshot, rendition: string): Map<string, string> {
    const key = `${stream.id}/${rendition}`;
    let held = this.entries.get(key);
    if (held) this.entries.delete(key);
    else if (this.entries.size >= MAX_STREAMS) this.entries.delete(this.entries.keys().next().value!);
    held ??= { lines: new Map(), usedAt: 0 };
    // entries that left the window go: keep what the snapshot lists
    if (held.lines.size > stream.entries.length * 1.5 + 16) {
      const current = new Map<string, string>();
      for (const e of stream.entries) {
        const id = `${e.seq}.${e.claim}`;
        const text = held.lines.get(id);
        if (text !== undefined) current.set(id, text);
      }
      held.lines = current;
    }
    held.usedAt = Date.now();
    this.entries.set(key, held);
    return held.lines;
  }

  /** Entry caches held (tests). */
  get streams(): number {
    return this.entries.size;
  }

  /** Drops the rendered entries of renditions nobody asked for in a while. */
  prune(now = Date.now()): void {
    for (const [key, held] of this.entries) if (now - held.usedAt > IDLE_MS) this.entries.delete(key);
  }
}
