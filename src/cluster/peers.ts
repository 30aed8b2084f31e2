// The owner's direct line to the other nodes, so that Redis is never the live edge's heartbeat. An owner whose
// append does not land promptly (Redis stopped, frozen, failing over, or cut off from this node alone) offers
// the entries it has queued to every other node it knew from the registry, signed with the cluster's key:
// - a node that reaches Redis appends them for the owner (the same fenced script, with the owner's epoch and
//   claim id: a relayed write is exactly the owner's write) and renews the owner's lease, so an owner cut off
//   from Redis but not from the nodes keeps its stream, and every node lists its segments through Redis;
// - a node that does not reach Redis either lists them from memory (delivery/timeline-cache.ts offer()), next to
//   the timeline it last read, so viewers keep playing while nobody can write; when Redis returns, the owner's
//   queued appends land in order, with exactly those entries, and every node reads Redis's timeline again.
// The entries' media is in the segment store before any is offered, as before any append. What stays
// exact: a node takes no stream without Redis (claims still need it), every write to Redis is fenced, and an
// entry is listed from memory only by a node that cannot read Redis, for a claim whose timeline it already
// holds, contiguous with it.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { FencedError, errorMessage } from "../core/errors.ts";
import { isBroadcastId, isClaimId, isNodeId, isRendition, isStreamId } from "../core/ids.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { ClaimRef } from "../core/model.ts";
import { readBody, parseJson } from "../http/body.ts";
import { HttpError, type Routes } from "../http/server.ts";
import type { OfferedEntry, StreamStore } from "../state/store.ts";

export const PEER_PATH = "/internal/timeline";
const SIGNATURE_HEADER = "x-baton-peer";
/** Entries one offer may carry: an owner's whole queue (owner.ts MAX_QUEUE) and some. */
export const MAX_OFFERED = 120;
const MAX_BODY = 64 * 1024;
/**
 * An offer older or newer than this (clock skew included) is refused, and within it each offer's nonce is
 * taken once: a captured offer cannot be replayed.
 */
const MAX_SKEW_MS = 60000;
/** Nonces remembered at most (offers within MAX_SKEW_MS); past it the oldest go, and older offers are refused. */
const MAX_NONCES = 100000;
const OFFER_TIMEOUT_MS = 1500;

/** The owner's claim as an offer names it: enough to write for it, and its lease value for the renewal. */
export type OfferedClaim = ClaimRef & { holder: string };

export interface Offer {
  v: 1;
  /** 16 random bytes, hex: each offer is taken once. */
  nonce: string;
  /** The owner's node id. */
  from: string;
  /** When the owner sent it (ms since the epoch). */
  at: number;
  stream: string;
  claim: OfferedClaim;
  /** In sequence order, contiguous; media in the segment store. */
  entries: OfferedEntry[];
  /** Renew the owner's lease for this long (ms), or null. */
  renew: { leaseMs: number; handingOver: boolean } | null;
}

export interface OfferReply {
  /** Of the entries, how many Redis holds now (appended by this node for the owner, or already there). */
  committed: number;
  /** Of the entries, how many this node lists from memory because it cannot reach Redis either. */
  shown: number;
  /** Why Redis refused the owner's writes: another claim holds the stream, or it ended. */
  fenced: string | null;
  /** Whether the owner's lease was renewed; null when not asked, or Redis did not answer. */
  renewed: boolean | null;
}

/** The key that signs offers: derived from the sessions secret, which every node of a cluster shares. */
export function peerKey(sessionSecret: string): Buffer {
  return createHmac("sha256", sessionSecret).update("baton peer link").digest();
}

function sign(key: Buffer, body: Buffer | string): string {
  return createHmac("sha256", key).update(body).digest("hex");
}

/** Whether `signature` (hex, as sent) is the key's HMAC of `body`, compared in constant time. */
function signedBy(key: Buffer, body: Buffer, signature: string | string[] | null | undefined): boolean {
  if (typeof signature !== "string" || !/^[0-9a-f]{64}$/.test(signature)) return false;
  return timingSafeEqual(Buffer.from(signature, "hex"), Buffer.from(sign(key, body), "hex"));
}

/** Sends offers to the other nodes. */
export class PeerLink {
  constructor(
    private readonly o: {
      key: Buffer;
      /** The other nodes' HTTP base URLs, as last read from the registry (kept while Redis is away). */
      peers: () => string[];
      /** The owner's own node: it lists the entries from memory too when it cannot read Redis. */
      local?: (offer: Offer) => void;
      log: Logger;
      metrics: Metrics;
    },
  ) {}

  /** Offers to every peer at once; the replies of those that answered. */
  async offer(offer: Offer): Promise<OfferReply[]> {
    this.o.local?.(offer);
    const body = JSON.stringify(offer);
    const signature = sign(this.o.key, body);
    const replies = await Promise.all(
      this.o.peers().map(async (base): Promise<OfferReply | null> => {
        try {
          const response = await fetch(base + PEER_PATH, {
            method: "POST",
            headers: { "Content-Type": "application/json", [SIGNATURE_HEADER]: signature },
            body,
            signal: AbortSignal.timeout(OFFER_TIMEOUT_MS),
          });
          const text = await response.text();
          if (!response.ok) throw new Error(`HTTP ${response.status}: ${text.slice(0, 200)}`);
          // the answer is signed too, bound to this offer's nonce: an answer that says "committed" makes the
          // owner skip its own appends
          if (!signedBy(this.o.key, Buffer.from(`${offer.nonce}\n${text}`), response.headers.get(SIGNATURE_HEADER))) throw new Error("an answer not signed with the cluster's key for this offer");
          const reply = readReply(parseJson(Buffer.from(text)), offer.entries.length);
          this.o.metrics.peerOffers.inc({ result: reply.fenced ? "fenced" : reply.committed > 0 ? "relayed" : reply.shown > 0 ? "shown" : "none" });
          return reply;
        } catch (error) {
          this.o.metrics.peerOffers.inc({ result: "failed" });
          this.o.log.debug("offer not delivered", { peer: base, stream: offer.stream, error: errorMessage(error) });
          return null;
        }
      }),
    );
    return replies.filter((r): r is OfferReply => r !== null);
  }
}

function readReply(value: unknown, offered: number): OfferReply {
  const r = value as Partial<OfferReply> | null;
  if (!r || typeof r !== "object" || !isInt(r.committed, 0, offered) || !isInt(r.shown, 0, offered)) throw new Error("an unreadable reply");
  return {
    committed: r.committed,
    shown: r.shown,
    fenced: typeof r.fenced === "string" ? r.fenced.slice(0, 200) : null,
    renewed: typeof r.renewed === "boolean" ? r.renewed : null,
  };
}

/** What a node does with an offer. */
export interface OfferTarget {
  store: Pick<StreamStore, "appendEntry" | "renew">;
  /** Whether this node reaches Redis now (state/health.ts). */
  reachable(): boolean;
  /** Lists entries from memory (a node without Redis); how many were added. */
  show(streamId: string, claim: ClaimRef, entries: OfferedEntry[]): number;
}

/** Offers' nonces seen within MAX_SKEW_MS: each taken once (bounded: the oldest go first). */
export class Nonces {
  private readonly seen = new Map<string, number>();

  take(nonce: string, now: number): boolean {
    if (this.seen.has(nonce)) return false;
    for (const [old, at] of this.seen) {
      if (now - at <= 2 * MAX_SKEW_MS && this.seen.size < MAX_NONCES) break;
      this.seen.delete(old);
    }
    this.seen.set(nonce, now);
    return true;
  }
}

/** A fresh nonce for an offer. */
export function newNonce(): string {
  return randomBytes(16).toString("hex");
}

/** The receiving side: POST /internal/timeline, signed with the cluster's key. */
export function addPeerRoutes(http: Routes, o: OfferTarget & { key: Buffer; nodeId: string; log: Logger; metrics: Metrics }): void {
  const nonces = new Nonces();
  http.addRoute(["POST"], "peer_offer", /^\/internal\/timeline$/, async ({ req, res }) => {
    const body = await readBody(req, MAX_BODY);
    if (!signedBy(o.key, body, req.headers[SIGNATURE_HEADER])) throw new HttpError(403, "FORBIDDEN", "not signed with the cluster's key");
    const now = Date.now();
    const offer = checkOffer(parseJson(body), now);
    if (offer.from === o.nodeId) throw new HttpError(400, "BAD_OFFER", "an offer from this node itself");
    if (!nonces.take(offer.nonce, now)) throw new HttpError(409, "REPLAYED", "this offer was taken already");
    const answer = JSON.stringify(await receive(offer, o));
    res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store", [SIGNATURE_HEADER]: sign(o.key, `${offer.nonce}\n${answer}`) });
    res.end(answer);
  });
}

/** Relays the offer to Redis when this node reaches it; lists it from memory when it does not. */
export async function receive(offer: Offer, o: OfferTarget & { log: Logger; metrics: Metrics }): Promise<OfferReply> {
  const reply: OfferReply = { committed: 0, shown: 0, fenced: null, renewed: null };
  let left = offer.entries;
  if (o.reachable()) {
    try {
      for (const entry of offer.entries) {
        try {
          await o.store.appendEntry(offer.stream, offer.claim, entry);
        } catch (error) {
          // an entry the owner (or another node for it) appended already: only this claim writes its entries
          if (!(error instanceof FencedError && error.code === "SEQ_MISMATCH" && error.expectedSeq !== null && entry.seq < error.expectedSeq)) throw error;
        }
        reply.committed += 1;
        left = left.slice(1);
      }
      if (offer.renew) reply.renewed = await o.store.renew(offer.stream, offer.claim, offer.renew.leaseMs, offer.renew.handingOver);
      if (reply.renewed === false) reply.fenced = "the publish lease is another claim's";
      o.metrics.peerRelays.inc({ result: "relayed" }, reply.committed);
      return reply;
    } catch (error) {
      if (error instanceof FencedError) {
        // SEQ_MISMATCH here is a gap: Redis lacks entries before these (it lost writes in a failover); the
        // owner learns it from its own next append. Anything else refuses the claim itself.
        if (error.code !== "SEQ_MISMATCH") {
          reply.fenced = error.message;
          o.metrics.peerRelays.inc({ result: "fenced" });
          o.log.info("an owner's offer was refused by Redis", { stream: offer.stream, from: offer.from, error: error.message });
        }
        return reply;
      }
      o.log.debug("relay failed; listing from memory", { stream: offer.stream, error: errorMessage(error) });
    }
  }
  reply.shown = left.length > 0 ? o.show(offer.stream, offer.claim, left) : 0;
  if (reply.shown > 0) o.metrics.peerRelays.inc({ result: "shown" }, reply.shown);
  return reply;
}

const bad = (why: string): HttpError => new HttpError(400, "BAD_OFFER", why);
const isInt = (v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;

/** An offer as sent, or a 400: every field checked, nothing unbounded kept. */
export function checkOffer(value: unknown, now: number): Offer {
  const v = value as Partial<Offer> | null;
  if (!v || typeof v !== "object" || v.v !== 1) throw bad("not an offer of version 1");
  if (typeof v.nonce !== "string" || !/^[0-9a-f]{32}$/.test(v.nonce)) throw bad("nonce: 16 bytes, hex");
  if (typeof v.from !== "string" || !isNodeId(v.from)) throw bad("from: a node id");
  if (!isInt(v.at, 0) || Math.abs(now - v.at) > MAX_SKEW_MS) throw bad("at: a time within a minute of this node's");
  if (typeof v.stream !== "string" || !isStreamId(v.stream)) throw bad("stream: a stream id");
  const c = v.claim as Partial<OfferedClaim> | undefined;
  if (!c || typeof c !== "object" || typeof c.id !== "string" || !isClaimId(c.id) || !isInt(c.epoch, 1)) throw bad("claim: id and epoch");
  if (typeof c.broadcast !== "string" || !isBroadcastId(c.broadcast) || !isInt(c.targetDuration, 1, 60)) throw bad("claim: broadcast and target duration");
  if (typeof c.holder !== "string" || c.holder.length > 200 || !c.holder.startsWith(`${v.from}/`)) throw bad("claim: the holder, on the sending node");
  if (!Array.isArray(v.entries) || v.entries.length > MAX_OFFERED) throw bad(`entries: at most ${MAX_OFFERED}`);
  const entries = v.entries.map((e: unknown, i: number): OfferedEntry => {
    const x = e as Partial<OfferedEntry> | null;
    if (!x || typeof x !== "object" || !isInt(x.seq, 0) || x.claim !== c.id || !isInt(x.pdt, 0) || typeof x.disc !== "boolean") throw bad(`entries[${i}]: seq, claim, pdt, disc`);
    const dur = x.dur as Record<string, unknown> | undefined;
    const names = dur && typeof dur === "object" ? Object.keys(dur) : [];
    if (names.length === 0 || names.length > 16) throw bad(`entries[${i}].dur: 1 to 16 renditions`);
    for (const name of names) {
      const d = dur![name];
      if (!isRendition(name) || typeof d !== "number" || !(d > 0 && d <= 60)) throw bad(`entries[${i}].dur: rendition names and durations in seconds`);
    }
    if (i > 0 && x.seq !== (v.entries![i - 1] as OfferedEntry).seq + 1) throw bad("entries: contiguous sequence numbers");
    if (x.slate !== undefined && x.slate !== true) throw bad(`entries[${i}].slate: true or absent`);
    const entry: OfferedEntry = { seq: x.seq, claim: c.id!, pdt: x.pdt, disc: x.disc, dur: Object.fromEntries(names.map((n) => [n, dur![n] as number])) };
    return x.slate ? { ...entry, slate: true } : entry;
  });
  const r = v.renew;
  if (r !== null && (typeof r !== "object" || !isInt(r?.leaseMs, 100, 60000) || typeof r?.handingOver !== "boolean")) throw bad("renew: null, or a lease in ms");
  return {
    v: 1, nonce: v.nonce, from: v.from, at: v.at, stream: v.stream,
    claim: { id: c.id, epoch: c.epoch, broadcast: c.broadcast, targetDuration: c.targetDuration, holder: c.holder },
    entries, renew: r ? { leaseMs: r.leaseMs, handingOver: r.handingOver } : null,
  };
}
