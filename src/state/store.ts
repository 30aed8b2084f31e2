// Everything baton keeps in Redis about streams, behind typed methods. Multi-step changes are Lua scripts
// (./scripts/); keys come from keys.ts only.
import { Cluster } from "ioredis";
import { StorageError } from "../core/errors.ts";
import { storageKeys } from "../storage/keys.ts";
import type { SegmentStore } from "../storage/store.ts";
import type { Claim, ClaimRef, InputRole, LadderEntry, SegmentGroup, StreamSnapshot, StreamState, TimelineEntry } from "../core/model.ts";
import { BatonError } from "../core/errors.ts";
import { newClaimId } from "./claim-id.ts";
import { redisClient, closeRedis, type RedisClient, type RedisTarget } from "./client.ts";
import { Keys } from "./keys.ts";
import { SCHEMA_VERSION } from "./schema.ts";
import { defineScripts, mapScriptError, queueScript, runScript, type ScriptArg, type ScriptName } from "./scripts.ts";
import { Broadcasts, type EndedReply } from "./broadcasts.ts";
import { TimelinePages } from "./timeline-pages.ts";

export interface StoreOptions extends RedisTarget {
  prefix: string;
  /** Segments listed in a media playlist (without a DVR window), and at least that many with one. */
  window: number;
  /** The DVR window in ms (`hls.dvrWindow`): media kept and listed; 0: `window` segments, no pages. */
  dvrWindowMs?: number;
  /** Entries in a timeline page (`hls.dvrPageSize`); default DEFAULT_PAGE_SIZE. */
  pageSize?: number;
  reconnectWindowMs: number;
  retentionSec: number;
  /** Milliseconds a Redis call may take before it fails (`redis.commandTimeout`). */
  commandTimeoutMs: number;
  /** Replicas that must acknowledge a claim and a release with WAIT (`redis.waitReplicas`); 0: none. */
  waitReplicas: number;
  /** Where segment bytes go (src/storage): Redis keeps the timeline, never the media. */
  media: SegmentStore;
  /** recording.retention (s) with recording.enabled: every page and segment is kept, an ended broadcast that long. */
  recordingRetentionSec?: number;
  /** How long a segment that left the playlist stays in the store; default trimmedSegmentMs (tests shorten it). */
  trimmedGraceMs?: number;
}

export interface ClaimOptions {
  /** The publisher's input role (primary unless a backup URL: src/stream/standby.ts). */
  role?: InputRole;
  /** A stalled lease holder a hot standby preempts (claim-4.lua). */
  preempt?: string;
  /** Claim to keep the slate of a stream that lost its input (its lease is marked "#slate"). */
  slate?: boolean;
  /** A node known dead (its health check refused): a lease it holds is taken at once. */
  deadNode?: string;
}

/** A stream as input loss sees it (slate-keepers.ts). */
export interface InputLossState {
  state: StreamState | null;
  /** It has a timeline to continue. */
  segments: boolean;
  /** Its lease's value (nodeId/publishId/epoch, perhaps marked), or null: none. */
  holder: string | null;
  /** Its ladder: its slate's format. */
  ladder: LadderEntry[] | null;
  /** The node of its current claim. */
  owner: string;
  /** Its owner let it go (release-2), rather than its lease lapsing while the owner may live. */
  released: boolean;
  /** When its current claim was made (ms, Redis's clock; 0: unknown): a node restarted since holds it no more. */
  claimedAt: number;
}

/** A claim's options as the standby names them. */
export type ClaimInput = ClaimOptions;

/** A stream's active input as a standby sees it; `holder` is the lease (`node/publish/epoch[#handoff]`) or null. */
export interface InputView {
  holder: string | null;
  state: StreamState | null;
  nextSeq: number;
  /** The active input's role ("primary" for a stream claimed before roles existed). */
  role: InputRole;
  ladder: LadderEntry[] | null;
  /** Its owner let it go (release-2): a lease merely gone may be one that lapsed while Redis was away. */
  released?: boolean;
  /** The node that claimed it last ("" before any claim): whether it lives decides a lapsed lease. */
  owner: string;
  /** When that claim was made (ms, Redis's clock; 0 before any): a node restarted since holds it no more. */
  claimedAt: number;
}

/**
 * A timeline entry as its writer knows it before Redis numbers its discontinuities: what append-2.lua is given
 * (the date-time in whole ms, durations rounded to the ms, as the script stores them).
 */
export type OfferedEntry = Omit<TimelineEntry, "cc">;

/**
 * The entry `group` becomes in `claim`'s timeline. Its discontinuity flag is the one append-2.lua records: the
 * group's own, or the claim's first segment when the claim continued a timeline (claim-4.lua's `discNext`).
 */
export function entryOf(claim: Pick<Claim, "id" | "nextSeq">, group: SegmentGroup): OfferedEntry {
  const dur: Record<string, number> = {};
  for (const r of group.renditions) dur[r.name] = Math.round(r.duration * 1000) / 1000;
  const disc = group.disc || (group.seq === claim.nextSeq && claim.nextSeq > 0);
  return { seq: group.seq, claim: claim.id, pdt: Math.round(group.pdt), disc, dur, ...(group.slate ? { slate: true as const } : {}) };
}

export class StreamStore {
  readonly keys: Keys;
  readonly redis: RedisClient;
  /**
   * With `waitReplicas`, claims and releases go through their own connection: WAIT blocks the connection it
   * runs on (up to its timeout when a replica lags), which must not hold up the playlist reads on `redis`.
   */
  private readonly acked: RedisClient | null;
  /** The DVR window's timeline pages, and the deletion of media that left the window. */
  readonly pages: TimelinePages;
  /** Ended broadcasts kept as VOD. */
  readonly broadcasts: Broadcasts;

  constructor(readonly options: StoreOptions, name = "baton") {
    this.keys = new Keys(options.prefix);
    this.redis = redisClient(options, name, options.commandTimeoutMs);
    const [media, recording] = [options.media, options.recordingRetentionSec !== undefined];
    this.pages = new TimelinePages({ ...options, redis: this.redis, keys: this.keys, dvrWindowMs: options.dvrWindowMs ?? 0, keep: recording });
    this.broadcasts = new Broadcasts({ redis: this.redis, keys: this.keys, media, pages: this.pages.cache, recording, pageSize: this.pages.pageSize });
    this.acked = options.waitReplicas > 0 ? redisClient(options, `${name}-acked`, options.commandTimeoutMs) : null;
    for (const client of this.clients) {
      defineScripts(client);
      // errors show up as failed calls; without a listener ioredis would print each reconnect failure
      client.on("error", () => undefined);
    }
  }

  private get clients(): RedisClient[] {
    return this.acked ? [this.redis, this.acked] : [this.redis];
  }

  /** Connects; resolves when connected, rejects if Redis cannot be reached now (retries continue). */
  async connect(): Promise<void> {
    for (const client of this.clients) {
      await client.connect().catch((error: unknown) => {
        if (client.status === "ready") return;
        throw error;
      });
    }
  }

  get ready(): boolean {
    return this.clients.every((client) => client.status === "ready");
  }

  async close(): Promise<void> {
    this.pages.close();
    for (const client of this.clients) closeRedis(client);
  }

  /**
   * Claims the stream at a new epoch. A publish claim takes a lease held for the slate at once; `slate` claims
   * it to keep the slate (input loss, claim-4.lua); `deadNode` names a node known dead, whose lease is taken
   * instead of waited out; `role` is the publisher's input role, and `preempt` the stalled holder a hot
   * standby takes over from.
   */
  async claim(streamId: string, nodeId: string, publishId: string, leaseTtlMs: number, targetDuration: number, o: ClaimOptions = {}): Promise<Claim> {
    const k = this.keys;
    const id = newClaimId();
    const client = this.acked ?? this.redis;
    // The stream joins the set before its state exists, so a claimed stream is always listed for the sweep
    // (a listed id without state is harmless: the sweep drops it). The claim script cannot add it itself,
    // nor can one pipeline carry both: the set's key has no hash tag, and in a Redis Cluster a script runs
    // only on keys of one slot and a pipeline goes to one shard; so the claim waits for the add (a round trip
    // more per publish start). The sweep's removal of a stream it found gone can race a new claim; each
    // renewal adds the stream again (see renew()).
    await client.sadd(k.streams(), streamId);
    const { result, notReplicated } = await this.runAcked(client, "claim", [
      k.meta(streamId), k.lease(streamId), k.timeline(streamId), k.pages(streamId),
      nodeId, publishId, leaseTtlMs, targetDuration, k.timelineChannel(), streamId, id, o.slate ? "slate" : "publish", o.deadNode ?? "", o.role ?? "primary", o.preempt ?? "",
    ]);
    const [epoch, nextSeq, target, ladder, broadcast, endsAt, listedAt, inputLost, endsOnSlate] = result as [number, number, string, string, string, string, string, string, string];
    const claim: Claim = {
      id,
      epoch: Number(epoch),
      nextSeq: Number(nextSeq),
      targetDuration: Number(target),
      ladder: ladder ? (JSON.parse(ladder) as LadderEntry[]) : null,
      holder: `${nodeId}/${publishId}/${epoch}`,
      slate: o.slate === true,
      broadcast,
      endsAt: Number(endsAt),
      listedAt: Number(listedAt),
      inputLost: inputLost === "1",
      endsOnSlate: endsOnSlate === "1",
    };
    if (notReplicated) {
      // the publisher is refused (it retries): leave the stream as a refused claim would have
      await this.releaseOn(client, streamId, claim).catch(() => false);
      throw notReplicated;
    }
    return claim;
  }

  /** What a hot standby watches (src/stream/standby.ts): who holds the lease, how far the timeline got, its ladder. */
  async inputView(streamId: string): Promise<InputView> {
    const k = this.keys;
    const replies = await this.redis.multi().get(k.lease(streamId)).hmget(k.meta(streamId), "state", "nextSeq", "role", "ladder", "released", "owner", "claimedAt").exec();
    if (!replies) throw new Error("redis transaction aborted");
    const [[leaseError, lease], [metaError, meta]] = replies as [[Error | null, string | null], [Error | null, (string | null)[]]];
    if (leaseError || metaError) throw leaseError ?? metaError;
    const [state, nextSeq, role, ladder, released, owner, claimedAt] = meta;
    return {
      holder: lease,
      released: released === "1",
      owner: owner ?? "",
      claimedAt: Number(claimedAt ?? 0),
      state: (state as StreamState | null) ?? null,
      nextSeq: Number(nextSeq ?? 0),
      role: role === "backup" ? "backup" : "primary",
      ladder: ladder ? (JSON.parse(ladder) as LadderEntry[]) : null,
    };
  }

  /**
   * Extends the lease; `handingOver` while the owner flushes after a handoff mark (a slate claim's lease stays
   * marked for the slate). Adds the stream to the stream set again each time (idempotent), so a stream the
   * claim could not list is listed within a second.
   */
  async renew(streamId: string, claim: Pick<Claim, "holder" | "epoch" | "id" | "slate">, leaseTtlMs: number, handingOver = false): Promise<boolean> {
    const k = this.keys;
    // two commands, not one pipeline: the set and the stream's keys may be on different Cluster shards
    const [result] = await Promise.all([
      runScript(this.redis, "renew", [k.lease(streamId), k.meta(streamId), claim.holder, leaseTtlMs, claim.epoch, claim.id, claim.slate ? "slate" : handingOver ? "1" : "0"]),
      this.redis.sadd(k.streams(), streamId).catch(() => 0),
    ]);
    return result === 1;
  }

  /**
   * What a publish token is checked against before a claim: the stream's last revocation (unix seconds), the
   * digest of the token its current broadcast started with, and its state.
   */
  async publishGrant(streamId: string): Promise<{ revokedAt: number | null; grant: string | null; state: StreamState | null }> {
    const k = this.keys;
    const replies = await this.redis.multi().get(k.revoked(streamId)).hmget(k.meta(streamId), "grant", "state").exec();
    if (!replies) throw new Error("redis transaction aborted");
    const [[revokedError, revoked], [metaError, meta]] = replies as [[Error | null, string | null], [Error | null, (string | null)[]]];
    if (revokedError || metaError) throw revokedError ?? metaError;
    return { revokedAt: revoked === null ? null : Number(revoked), grant: meta[0] ?? null, state: (meta[1] as StreamState | null) ?? null };
  }

  /** Records the token a broadcast started with (its digest), so its reconnects may use it after it expires. */
  async setGrant(streamId: string, digest: string): Promise<void> {
    await this.redis.hset(this.keys.meta(streamId), "grant", digest);
  }

  /** Refuses every publish token of the stream issued up to `at` (unix seconds), and forgets the broadcast's grant. */
  async revoke(streamId: string, at: number): Promise<void> {
    const k = this.keys;
    await this.redis.multi().set(k.revoked(streamId), String(at)).hdel(k.meta(streamId), "grant").exec();
  }

  /** Sets the ladder if the stream has none yet; returns the one in force. */
  async setLadder(streamId: string, claim: Claim, ladder: LadderEntry[]): Promise<LadderEntry[]> {
    const k = this.keys;
    const json = (await runScript(this.redis, "ladder", [
      k.meta(streamId), claim.epoch, JSON.stringify(ladder), k.timelineChannel(), streamId, claim.id,
    ])) as string;
    return JSON.parse(json) as LadderEntry[];
  }

  /**
   * Appends one aligned segment of every rendition; throws FencedError when the writer lost the stream or the
   * stream ended. Safe to retry after a timeout: a write Redis ran anyway is answered again.
   */
  async append(streamId: string, claim: Claim, group: SegmentGroup): Promise<TimelineEntry> {
    // the bytes first: a segment the timeline lists is readable from every node (a retry writes them again)
    await this.writeMedia(streamId, claim, group);
    return await this.appendEntry(streamId, claim, entryOf(claim, group));
  }

  /** Writes a group's segments to the segment store (the first half of append). */
  async writeMedia(streamId: string, claim: Claim, group: SegmentGroup): Promise<void> {
    const media = this.options.media;
    await Promise.all(group.renditions.map((r) => media.put(storageKeys.segment(streamId, claim.broadcast, r.name, group.seq, claim.id), r.bytes)));
  }

  /**
   * Appends an entry whose media is in the store (the second half of append): by the owner, or by another
   * node relaying it for an owner that cannot reach Redis (cluster/peers.ts). Fenced like any write: only the
   * claim that is current, only the next sequence number, never after the end.
   */
  async appendEntry(streamId: string, claim: ClaimRef, entry: OfferedEntry): Promise<TimelineEntry> {
    const k = this.keys;
    const [appended, length, ...left] = (await runScript(this.redis, "append", [
      k.meta(streamId), k.timeline(streamId),
      claim.epoch, claim.id, entry.seq, entry.pdt, entry.disc ? "1" : "0", this.pages.on ? 0 : this.options.window, entry.slate ? "1" : "",
      k.timelineChannel(), streamId, JSON.stringify(entry.dur), SCHEMA_VERSION,
    ])) as [string, number, ...string[]];
    await this.pages.appended(streamId, claim, length, left);
    return JSON.parse(appended) as TimelineEntry;
  }

  /**
   * The publisher left and the caller keeps the stream's slate under the same claim (slate-2.lua): returns the
   * claim as a slate claim (its renewals keep the lease marked for the slate) with where the timeline stands
   * now, or null when the stream is no longer the caller's.
   */
  async keepSlate(streamId: string, claim: Claim, leaseTtlMs: number): Promise<Claim | null> {
    const k = this.keys;
    const kept = await runScript(this.redis, "slate", [k.meta(streamId), k.lease(streamId), claim.holder, claim.epoch, claim.id, leaseTtlMs, k.timelineChannel(), streamId]);
    if (!Array.isArray(kept)) return null;
    const [nextSeq, endsAt, listedAt] = (kept as string[]).map(Number) as [number, number, number];
    return { ...claim, slate: true, nextSeq, endsAt, listedAt, inputLost: true };
  }

  /**
   * What decides whether a stream lost its input with nobody keeping its slate (see InputLossState).
   */
  async inputLoss(streamId: string): Promise<InputLossState> {
    const k = this.keys;
    const replies = await this.redis.multi().hmget(k.meta(streamId), "state", "nextSeq", "ladder", "owner", "released", "claimedAt").get(k.lease(streamId)).exec();
    if (!replies) throw new Error("redis transaction aborted");
    const [[metaError, meta], [leaseError, holder]] = replies as [[Error | null, (string | null)[]], [Error | null, string | null]];
    if (metaError || leaseError) throw metaError ?? leaseError;
    const ladder = meta[2] ? (JSON.parse(meta[2]) as LadderEntry[]) : null;
    return { state: (meta[0] as StreamState | null) ?? null, segments: Number(meta[1] ?? 0) > 0, holder, ladder, owner: meta[3] ?? "", released: meta[4] === "1", claimedAt: Number(meta[5] ?? 0) };
  }

  /** Marks the caller's lease as being handed over (a drain); claims elsewhere wait for the release. */
  async markHandoff(streamId: string, claim: Claim): Promise<boolean> {
    return (await runScript(this.redis, "handoff", [this.keys.lease(streamId), claim.holder])) === 1;
  }

  async release(streamId: string, claim: Claim): Promise<boolean> {
    const { result, notReplicated } = await this.runAcked(this.acked ?? this.redis, "release", this.releaseArgs(streamId, claim));
    if (notReplicated) throw notReplicated;
    return result === 1;
  }

  private async releaseOn(client: RedisClient, streamId: string, claim: Claim): Promise<boolean> {
    return (await runScript(client, "release", this.releaseArgs(streamId, claim))) === 1;
  }

  private releaseArgs(streamId: string, claim: Claim): ScriptArg[] {
    const k = this.keys;
    return [k.meta(streamId), k.lease(streamId), claim.holder, claim.epoch, k.timelineChannel(), streamId, claim.id];
  }

  /**
   * Runs a script; on the WAIT connection (with `waitReplicas`), Redis WAIT follows it in the same pipeline,
   * so a failover to a replica that acknowledged keeps the script's writes. In one pipeline, WAIT goes to the
   * shard that ran the script, on the same connection, and counts that shard's replicas (in a Cluster, a WAIT
   * on its own would go to any shard). WAIT's own timeout is half the command timeout, so its answer comes
   * first. Throws the script's error; a WAIT that fell short is returned, the script's result beside it.
   */
  private async runAcked(client: RedisClient, name: ScriptName, args: ScriptArg[]): Promise<{ result: unknown; notReplicated: BatonError | null }> {
    const wanted = client === this.acked ? this.options.waitReplicas : 0;
    const timeoutMs = Math.max(1, Math.floor(this.options.commandTimeoutMs / 2));
    const pipeline = client.pipeline();
    queueScript(pipeline, name, args);
    if (wanted > 0) pipeline.wait(wanted, timeoutMs);
    const replies = await pipeline.exec();
    const aborted: [Error, null] = [new Error("redis pipeline aborted"), null];
    const [error, result] = replies?.[0] ?? aborted;
    if (error) throw mapScriptError(error);
    if (wanted === 0) return { result, notReplicated: null };
    const [waitError, acknowledged] = replies?.[1] ?? aborted;
    if (!waitError && Number(acknowledged) >= wanted) return { result, notReplicated: null };
    const detail = waitError ? `not acknowledged: ${waitError.message}` : `acknowledged by ${Number(acknowledged)} of ${wanted} replicas within ${timeoutMs} ms`;
    return { result, notReplicated: new BatonError("NOT_REPLICATED", `${name} ${detail}`) };
  }

  /**
   * Advances a stream whose owner is gone; its state ("gone" when none is left), and whether this call changed
   * it. A broadcast this call ended is sealed for VOD (state/broadcasts.ts) and scheduled for deletion from the
   * segment store after its retention (recording.retention when recording, else hls.retention).
   */
  async sweep(streamId: string): Promise<{ state: StreamState | "gone"; changed: boolean }> {
    const k = this.keys;
    const [state, changed, ...ended] = (await runScript(this.redis, "sweep", [
      k.meta(streamId), k.lease(streamId), k.timeline(streamId), k.pages(streamId),
      this.options.reconnectWindowMs, this.options.retentionSec, k.timelineChannel(), streamId,
    ])) as [StreamState | "gone", string, ...Partial<EndedReply>];
    if (state === "gone") await this.redis.srem(k.streams(), streamId);
    const broadcast = ended[0];
    if (state === "ended" && changed === "1" && broadcast) {
      const expiresAt = Date.now() + (this.options.recordingRetentionSec ?? this.options.retentionSec) * 1000;
      // into the expiry set first (idempotent), so its media expires even when the seal fails or this node
      // stops halfway through it; a broadcast that could not be sealed is no VOD
      await this.redis.zadd(k.expiring(), expiresAt, `${streamId}/${broadcast}`);
      await this.broadcasts.seal(streamId, ended as EndedReply).catch(() => undefined);
    }
    return { state, changed: changed === "1" };
  }

  /** Deletes the media of every broadcast whose retention ended; returns how many it deleted. */
  async deleteExpired(now = Date.now()): Promise<number> {
    const k = this.keys;
    const due = await this.redis.zrangebyscore(k.expiring(), 0, now, "LIMIT", 0, 100);
    for (const member of due) {
      const [streamId, broadcast] = member.split("/") as [string, string];
      // a member that is no broadcast (another release's) is dropped rather than retried for ever
      await this.options.media.deletePrefix(storageKeys.broadcast(streamId, broadcast)).catch((error: unknown) => {
        if (!(error instanceof StorageError && error.code === "STORAGE_REFUSED")) throw error;
      });
      await this.broadcasts.expired(streamId, broadcast).catch(() => undefined);
      await this.redis.zrem(k.expiring(), member);
    }
    return due.length;
  }

  /** Takes or renews the sweeper's lease: true while this node is the one that sweeps. */
  async lead(nodeId: string, ttlMs: number): Promise<boolean> {
    return (await runScript(this.redis, "lead", [this.keys.sweeper(), nodeId, ttlMs])) === 1;
  }

  async listStreams(): Promise<string[]> {
    return (await this.redis.smembers(this.keys.streams())).sort();
  }

  /**
   * One atomic read of a stream's state and timeline (its pages from the page cache or the segment store,
   * then the tail), cut to the DVR window; null when the stream has no state.
   */
  async read(streamId: string): Promise<StreamSnapshot | null> {
    const k = this.keys;
    const replies = await this.redis.multi().hgetall(k.meta(streamId)).lrange(k.pages(streamId), 0, -1).lrange(k.timeline(streamId), 0, -1).exec();
    if (!replies) throw new Error("redis transaction aborted");
    const [[metaError, meta], [pagesError, refs], [listError, list]] = replies as [[Error | null, Record<string, string>], [Error | null, string[]], [Error | null, string[]]];
    if (metaError || pagesError || listError) throw metaError ?? pagesError ?? listError;
    if (!meta.state || !meta.epoch) return null;
    const entries = await this.pages.entries(refs, list);
    return {
      id: streamId,
      epoch: Number(meta.epoch),
      claim: meta.claim ?? "",
      broadcast: meta.broadcast ?? meta.claim ?? "",
      owner: meta.owner ?? "",
      state: meta.state as StreamState,
      targetDuration: Number(meta.targetDuration),
      ladder: meta.ladder ? (JSON.parse(meta.ladder) as LadderEntry[]) : null,
      nextSeq: Number(meta.nextSeq ?? 0),
      createdAt: Number(meta.createdAt ?? 0),
      claimedAt: Number(meta.claimedAt ?? 0),
      releasedAt: meta.releasedAt ? Number(meta.releasedAt) : null,
      slate: meta.slate === "1",
      entries,
    };
  }

  /** A segment's bytes from the segment store, or null: none of that claim has that sequence number (or it expired). */
  async readSegment(streamId: string, broadcast: string, rendition: string, seq: number, claim: string): Promise<Buffer | null> {
    return this.options.media.get(storageKeys.segment(streamId, broadcast, rendition, seq, claim));
  }

  /** A second connection in subscriber mode; calls the handler of each channel with each message. */
  async subscribe(handlers: Record<string, (message: string) => void>, onReconnect: () => void): Promise<RedisClient> {
    // the command timeout bounds SUBSCRIBE (at start and after reconnects); once subscribed, no command is
    // outstanding, so a frozen Redis leaves the subscription quiet rather than closed
    const sub = redisClient(this.options, "baton-sub", this.options.commandTimeoutMs);
    sub.on("error", () => undefined);
    sub.on("message", (channel: string, message: string) => handlers[channel]?.(message));
    sub.on("ready", onReconnect);
    // a Cluster's subscription is one connection to any shard (PUBLISH reaches every shard's subscribers),
    // which ioredis moves to another shard when that one fails, resubscribing, with no event of its own: a
    // shard that failed, left or joined may have cost messages, so it counts as a reconnect
    if (sub instanceof Cluster) for (const event of ["+node", "-node", "node error"]) sub.on(event, () => onReconnect());
    // enableOfflineQueue is off, so subscribe once connected; ioredis resubscribes after reconnects
    try {
      await sub.connect();
      await sub.subscribe(...Object.keys(handlers));
    } catch (error) {
      // the caller tries again with a new client: this one must not go on reconnecting beside it
      closeRedis(sub);
      throw error;
    }
    return sub;
  }
}
