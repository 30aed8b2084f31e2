// Everything baton keeps in Redis about streams, behind typed methods. Multi-step changes are Lua scripts
// (./scripts/); keys come from keys.ts only.
import { Redis } from "ioredis";
import { Keys } from "./keys.ts";
import { defineScripts, runScript } from "./scripts.ts";

export interface LadderEntry {
  name: string;
  width: number;
  height: number;
  /** Peak bits per second (video maxrate plus audio), for BANDWIDTH. */
  bandwidth: number;
  /** Average bits per second, for AVERAGE-BANDWIDTH. */
  averageBandwidth: number;
  /** RFC 6381 codecs string, for CODECS. */
  codecs: string;
  frameRate: number;
}

export interface TimelineEntry {
  seq: number;
  /** Program date-time of the segment's first frame, ms since the epoch. */
  pdt: number;
  /** The segment starts a discontinuity (new owner, returning publisher, restarted ffmpeg). */
  disc: boolean;
  /** Discontinuity sequence number of this segment. */
  cc: number;
  /** Duration in seconds per rendition. */
  dur: Record<string, number>;
}

export type StreamState = "live" | "reconnecting" | "ended";

export interface StreamSnapshot {
  id: string;
  epoch: number;
  owner: string;
  state: StreamState;
  targetDuration: number;
  ladder: LadderEntry[] | null;
  nextSeq: number;
  createdAt: number;
  claimedAt: number;
  releasedAt: number | null;
  entries: TimelineEntry[];
}

export interface Claim {
  epoch: number;
  nextSeq: number;
  targetDuration: number;
  ladder: LadderEntry[] | null;
  /** The lease value: nodeId/publishId/epoch. */
  holder: string;
}

export interface SegmentGroup {
  seq: number;
  pdt: number;
  disc: boolean;
  /** Per rendition, in ladder order. */
  renditions: { name: string; duration: number; bytes: Buffer }[];
}

export interface StoreOptions {
  url: string;
  prefix: string;
  /** Segments listed in a media playlist. */
  window: number;
  reconnectWindowMs: number;
  retentionSec: number;
}

/** What stays in Redis as playlists are rendered: see the TTL arguments of append-n.lua. */
function segmentTtls(options: StoreOptions, targetDuration: number): { trimmedMs: number; liveMs: number } {
  const playlistMs = options.window * targetDuration * 1000;
  return {
    // a segment that left the playlist stays for its duration plus the playlist's, doubled for slow players
    trimmedMs: 2 * (playlistMs + targetDuration * 1000) + 5000,
    liveMs: options.retentionSec * 1000 + options.reconnectWindowMs + playlistMs,
  };
}

export function redisClient(url: string, name: string): Redis {
  return new Redis(url, {
    connectionName: name,
    // fail fast while Redis is away: callers queue or answer from cache rather than hang a request
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(100 * times, 1000),
    lazyConnect: true,
  });
}

export class StreamStore {
  readonly keys: Keys;
  readonly redis: Redis;

  constructor(readonly options: StoreOptions, name = "baton") {
    this.keys = new Keys(options.prefix);
    this.redis = redisClient(options.url, name);
    defineScripts(this.redis);
    // errors show up as failed calls; without a listener ioredis would print each reconnect failure
    this.redis.on("error", () => undefined);
  }

  /** Connects; resolves when connected, rejects if Redis cannot be reached now (retries continue). */
  async connect(): Promise<void> {
    await this.redis.connect().catch((error: unknown) => {
      if (this.redis.status === "ready") return;
      throw error;
    });
  }

  get ready(): boolean {
    return this.redis.status === "ready";
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }

  async claim(streamId: string, nodeId: string, publishId: string, leaseTtlMs: number, targetDuration: number): Promise<Claim> {
    const k = this.keys;
    const result = (await runScript(this.redis, "claim", [
      k.meta(streamId), k.lease(streamId), k.timeline(streamId),
      nodeId, publishId, leaseTtlMs, targetDuration, k.timelineChannel(), streamId,
    ])) as [number, number, string, string];
    await this.redis.sadd(k.streams(), streamId);
    const [epoch, nextSeq, target, ladder] = result;
    return {
      epoch: Number(epoch),
      nextSeq: Number(nextSeq),
      targetDuration: Number(target),
      ladder: ladder ? (JSON.parse(ladder) as LadderEntry[]) : null,
      holder: `${nodeId}/${publishId}/${epoch}`,
    };
  }

  async renew(streamId: string, holder: string, leaseTtlMs: number, epoch: number): Promise<boolean> {
    return (await runScript(this.redis, "renew", [this.keys.lease(streamId), this.keys.meta(streamId), holder, leaseTtlMs, epoch])) === 1;
  }

  /** Sets the ladder if the stream has none yet; returns the one in force. */
  async setLadder(streamId: string, epoch: number, ladder: LadderEntry[]): Promise<LadderEntry[]> {
    const k = this.keys;
    const json = (await runScript(this.redis, "ladder", [
      k.meta(streamId), epoch, JSON.stringify(ladder), k.timelineChannel(), streamId,
    ])) as string;
    return JSON.parse(json) as LadderEntry[];
  }

  /** Appends one aligned segment of every rendition; throws FencedError when the writer lost the stream. */
  async append(streamId: string, epoch: number, targetDuration: number, group: SegmentGroup): Promise<TimelineEntry> {
    const k = this.keys;
    const { trimmedMs, liveMs } = segmentTtls(this.options, targetDuration);
    const leaving = group.seq - this.options.window;
    const keys = [
      k.meta(streamId),
      k.timeline(streamId),
      ...group.renditions.map((r) => k.segment(streamId, r.name, group.seq)),
      ...(leaving >= 0 ? group.renditions.map((r) => k.segment(streamId, r.name, leaving)) : []),
    ];
    const durations: Record<string, number> = {};
    for (const r of group.renditions) durations[r.name] = Math.round(r.duration * 1000) / 1000;
    const entry = (await runScript(this.redis, "append", [
      keys.length, ...keys,
      epoch, group.seq, Math.round(group.pdt), group.disc ? "1" : "0", this.options.window, trimmedMs, liveMs,
      k.timelineChannel(), streamId, JSON.stringify(durations), group.renditions.length,
      ...group.renditions.map((r) => r.bytes),
    ])) as string;
    return JSON.parse(entry) as TimelineEntry;
  }

  /** Marks the caller's lease as being handed over (a drain); claims elsewhere wait for the release. */
  async markHandoff(streamId: string, holder: string): Promise<boolean> {
    return (await runScript(this.redis, "handoff", [this.keys.lease(streamId), holder])) === 1;
  }

  async release(streamId: string, holder: string, epoch: number): Promise<boolean> {
    const k = this.keys;
    const result = await runScript(this.redis, "release", [
      k.meta(streamId), k.lease(streamId), holder, epoch, k.timelineChannel(), streamId,
    ]);
    return result === 1;
  }

  /** Advances a stream whose owner is gone; returns its state, or "gone". */
  async sweep(streamId: string): Promise<StreamState | "gone"> {
    const k = this.keys;
    const state = (await runScript(this.redis, "sweep", [
      k.meta(streamId), k.lease(streamId), k.timeline(streamId),
      this.options.reconnectWindowMs, this.options.retentionSec, k.timelineChannel(), streamId,
    ])) as StreamState | "gone";
    if (state === "gone") await this.redis.srem(k.streams(), streamId);
    return state;
  }

  async listStreams(): Promise<string[]> {
    return (await this.redis.smembers(this.keys.streams())).sort();
  }

  /** One atomic read of a stream's state and timeline; null when the stream has no state. */
  async read(streamId: string): Promise<StreamSnapshot | null> {
    const k = this.keys;
    const replies = await this.redis.multi().hgetall(k.meta(streamId)).lrange(k.timeline(streamId), 0, -1).exec();
    if (!replies) throw new Error("redis transaction aborted");
    const [[metaError, meta], [listError, list]] = replies as [[Error | null, Record<string, string>], [Error | null, string[]]];
    if (metaError || listError) throw metaError ?? listError;
    if (!meta.state || !meta.epoch) return null;
    return {
      id: streamId,
      epoch: Number(meta.epoch),
      owner: meta.owner ?? "",
      state: meta.state as StreamState,
      targetDuration: Number(meta.targetDuration),
      ladder: meta.ladder ? (JSON.parse(meta.ladder) as LadderEntry[]) : null,
      nextSeq: Number(meta.nextSeq ?? 0),
      createdAt: Number(meta.createdAt ?? 0),
      claimedAt: Number(meta.claimedAt ?? 0),
      releasedAt: meta.releasedAt ? Number(meta.releasedAt) : null,
      entries: list.map((line) => JSON.parse(line) as TimelineEntry),
    };
  }

  async readSegment(streamId: string, rendition: string, seq: number): Promise<Buffer | null> {
    return this.redis.getBuffer(this.keys.segment(streamId, rendition, seq));
  }

  /** A second connection in subscriber mode; calls the handler of each channel with each message. */
  async subscribe(handlers: Record<string, (message: string) => void>, onReconnect: () => void): Promise<Redis> {
    const sub = redisClient(this.options.url, "baton-sub");
    sub.on("error", () => undefined);
    sub.on("message", (channel: string, message: string) => handlers[channel]?.(message));
    sub.on("ready", onReconnect);
    // enableOfflineQueue is off, so subscribe once connected; ioredis resubscribes after reconnects
    await sub.connect();
    await sub.subscribe(...Object.keys(handlers));
    return sub;
  }
}
