// Wires one baton node together; nothing else knows every domain.
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { StreamOwner } from "./stream/owner.ts";
import { AgentServer, agentAnswer } from "./cluster/agent.ts";
import { Drainer, type DrainReport } from "./cluster/drain.ts";
import { HEARTBEAT_MS, Registry, listNodes, type NodeState } from "./cluster/registry.ts";
import { addAdminApi, type AdminCommand } from "./cluster/admin-api.ts";
import { Sweeper } from "./cluster/sweeper.ts";
import { addClusterApi } from "./cluster/api.ts";
import { addPlayer } from "./delivery/player.ts";
import { ViewerSessions } from "./delivery/sessions.ts";
import { addSessionsApi } from "./delivery/sessions-api.ts";
import { ViewerChannel } from "./delivery/ws.ts";
import { SessionStore } from "./state/sessions.ts";
import { VERSION } from "./core/version.ts";
import type { Config } from "./config/defaults.ts";
import { adminToken, playbackSecret, publishSecret, sessionSecret } from "./config/state-dir.ts";
import { addPlaybackTokenApi } from "./delivery/playback-api.ts";
import { DeliveryServer } from "./http/server.ts";
import { ClientAddresses } from "./http/client-address.ts";
import { errorMessage } from "./core/errors.ts";
import { admitPublish } from "./ingest/admission.ts";
import { RtmpIngest, type PublisherConnection } from "./ingest/rtmp-server.ts";
import type { Logger } from "./core/log.ts";
import { Metrics } from "./core/metrics.ts";
import { StreamStore } from "./state/store.ts";
import { warmUp } from "./transcode/ffmpeg.ts";
import type { Redis } from "ioredis";

export class BatonNode {
  readonly id: string;
  readonly store: StreamStore;
  readonly metrics: Metrics;
  readonly ingest: RtmpIngest;
  readonly http: DeliveryServer;
  readonly sessionStore: SessionStore;
  readonly channel: ViewerChannel;
  readonly owners = new Map<string, StreamOwner>();
  private readonly sweeper: Sweeper;
  private readonly registry: Registry;
  readonly drainer: Drainer;
  readonly agent: AgentServer;
  private readonly startedAt = Date.now();
  private subscriber: Redis | null = null;
  private readonly log: Logger;
  private closing: Promise<void> | null = null;

  constructor(readonly config: Config, log: Logger) {
    this.id = config.node.id || `node-${randomBytes(4).toString("hex")}`;
    this.log = log;
    this.metrics = new Metrics({ node: this.id });
    this.store = new StreamStore({
      url: config.redis.url,
      prefix: config.redis.prefix,
      window: config.hls.playlistWindow,
      reconnectWindowMs: config.hls.reconnectWindow * 1000,
      retentionSec: config.hls.retention,
      commandTimeoutMs: config.redis.commandTimeout,
      waitReplicas: config.redis.waitReplicas,
    });
    const secret = config.auth.requirePublishToken ? publishSecret(config) : "";
    this.ingest = new RtmpIngest({
      bind: config.node.bind,
      rtmp: config.rtmp,
      rtmps: config.rtmps,
      trustedProxies: config.http.trustedProxies,
      log: log.child("ingest"),
      limitBroken: (reason) => this.metrics.rtmpRefused.inc({ reason }),
      handler: {
        admit: (request) =>
          admitPublish(request, {
            requireToken: config.auth.requirePublishToken,
            secret,
            // an owner whose publisher already left is still finishing; the returning publisher may take over
            isLive: (id) => this.owners.get(id)?.publisherConnected === true,
            refusing: () => this.closing !== null || this.drainer.state !== "ready",
          }),
        publisher: (connection) => this.publisher(connection),
        refused: (reason, message, request) => {
          this.metrics.refusals.inc({ reason });
          log.warn("publish refused", { reason, detail: message, remote: request.remote, stream: typeof request.name === "string" ? request.name.slice(0, 80) : undefined });
        },
      },
    });
    this.sessionStore = new SessionStore(this.store.redis, this.store.keys, {
      ttlSec: config.sessions.ttl,
      flushIntervalMs: config.sessions.flushInterval,
    });
    const addresses = new ClientAddresses(config.http.trustedProxies);
    const sessions = new ViewerSessions({
      store: this.sessionStore,
      secret: sessionSecret(config),
      nodeId: this.id,
      ttlSec: config.sessions.ttl,
      playback: { required: config.auth.requirePlaybackToken, secret: playbackSecret(config) },
      startsPerMinute: config.sessions.startsPerMinute,
      addresses,
      onStart: () => this.metrics.sessionsCreated.inc(),
      onRefused: (reason) => this.metrics.sessionStartsRefused.inc({ reason }),
    });
    this.http = new DeliveryServer({
      port: config.http.port,
      bind: config.node.bind,
      maxConnections: config.http.maxConnections,
      maxConnectionsPerAddress: config.http.maxConnectionsPerAddress,
      addresses,
      store: this.store,
      segmentCacheBytes: config.hls.segmentCacheBytes,
      log: log.child("http"),
      metrics: this.metrics,
      readiness: { ready: () => this.readiness() },
      sessions,
      opsToken: config.admin.openOps ? null : adminToken(config),
    });
    this.channel = new ViewerChannel(sessions, this.http.timelines, config.sessions.maxReportsPerSecond, this.metrics, log.child("ws"));
    this.http.onUpgrade((req, socket, head) => this.channel.upgrade(req, socket, head));
    addSessionsApi(this.http, sessions);
    addPlaybackTokenApi(this.http, { adminToken: adminToken(config), secret: playbackSecret(config), defaultTtl: config.auth.playbackTokenTtl });
    addPlayer(this.http);
    addClusterApi(this.http, this.store);
    this.sweeper = new Sweeper(this.store, this.id, log.child("sweeper"));
    const host = config.node.publicHost;
    this.registry = new Registry(
      this.store.redis,
      this.store.keys,
      () => ({
        id: this.id,
        state: this.drainer.state,
        httpUrl: `http://${host}:${this.http.port}`,
        rtmpUrl: `rtmp://${host}:${this.ingest.port}/live`,
        version: VERSION,
        startedAt: this.startedAt,
        load: {
          publishers: this.owners.size,
          viewers: this.http.viewers.counts(),
          readyChecks: this.http.readyChecks,
          transcoders: Object.fromEntries([...this.owners].flatMap(([id, o]) => (o.speed === null ? [] : [[id, Math.round(o.speed * 100) / 100]]))),
        },
      }),
      log.child("registry"),
    );
    const owners = this.owners;
    this.drainer = new Drainer({
      publishState: async () => this.registry.beat(),
      http: this.http,
      viewers: this.channel,
      publishers: {
        handoffAll: async () => void (await Promise.all([...this.owners.values()].map((owner) => owner.handoff()))),
        abortAll: async () => void (await Promise.all([...this.owners.values()].map((owner) => owner.abort()))),
        get count() {
          return owners.size;
        },
      },
      log: log.child("drain"),
    });
    this.agent = new AgentServer(config.agent.port, config.node.bind, () =>
      agentAnswer(this.drainer.state, this.owners.size, config.transcode.capacity),
    );
    addAdminApi(this.http, {
      nodeId: this.id,
      token: adminToken(config),
      local: this,
      redis: this.store.redis,
      keys: this.store.keys,
    });
  }

  /** Starts a drain (an admin request, the CLI, SIGTERM); `exit` closes the node once drained. */
  drain(reason: string, options: { exit: boolean } = { exit: false }): Promise<DrainReport> {
    const done = this.drainer.drain(reason, this.config.drain.deadline);
    if (options.exit) this.exitAfterDrain ??= done.then(() => this.close()).then(() => this.onExit());
    return done;
  }

  undrain(): Promise<void> {
    return this.drainer.undrain();
  }

  /** What the node does when a drain asked it to exit (the CLI exits the process). */
  onExit: () => void = () => undefined;
  private exitAfterDrain: Promise<void> | null = null;

  /** Refuses the stream's publish tokens issued until now (unix s) and ends its publish on whichever node has it. */
  async revoke(streamId: string): Promise<number> {
    const at = Math.floor(Date.now() / 1000);
    await this.store.revoke(streamId, at);
    const command: AdminCommand = { node: "*", action: "revoke", stream: streamId, via: this.id };
    await this.store.redis.publish(this.store.keys.adminChannel(), JSON.stringify(command));
    this.log.warn("publish tokens revoked", { stream: streamId, before: new Date(at * 1000).toISOString() });
    return at;
  }

  /** Runs an admin command that arrived for this node through Redis. */
  command(command: AdminCommand): void {
    if (command.node !== this.id && command.node !== "*") return;
    if (command.action === "revoke") {
      const owner = command.stream === undefined ? undefined : this.owners.get(command.stream);
      // the encoder's reconnect then meets the revocation; a new token resumes the same timeline
      if (owner) void owner.close("publish revoked");
      return;
    }
    const failed = (error: unknown): void => this.log.error("admin command failed", { action: command.action, error: errorMessage(error) });
    if (command.action === "drain") this.drain(`admin request through ${command.via}`, { exit: command.exit === true }).catch(failed);
    else if (command.action === "undrain") this.undrain().catch(failed);
  }

  get state(): NodeState {
    return this.drainer.state;
  }

  status(): Record<string, unknown> {
    return {
      node: this.id,
      state: this.drainer.state,
      version: VERSION,
      startedAt: this.startedAt,
      publishers: [...this.owners.values()].map((o) => ({ stream: o.streamId, epoch: o.claim?.epoch ?? null })),
      websockets: this.channel.size,
      rtmp: { connections: this.ingest.counts.open },
      http: { inFlight: this.http.inFlight, openSockets: this.http.openSockets },
      // what requests can make a node hold, each bounded (the hostile-input tests read these)
      held: {
        timelines: this.http.timelines.size,
        viewersTracked: this.http.viewers.size,
        segmentCacheBytes: this.http.segments.bytes,
        heapUsedBytes: process.memoryUsage().heapUsed,
        rssBytes: process.memoryUsage.rss(),
      },
      redis: this.store.ready ? "up" : "down",
      lastDrain: this.drainer.last,
    };
  }

  readiness(): { ok: true } | { ok: false; reason: string } {
    if (this.closing) return { ok: false, reason: "shutting down" };
    if (this.drainer.state !== "ready") return { ok: false, reason: this.drainer.state };
    if (!this.store.ready) return { ok: false, reason: "redis unreachable" };
    return { ok: true };
  }

  async start(): Promise<void> {
    mkdirSync(this.config.transcode.spoolDir, { recursive: true });
    try {
      await this.ingest.start();
      await this.http.start();
      await this.agent.start();
    } catch (error) {
      await this.ingest.close();
      await this.http.close();
      await this.agent.close();
      throw error;
    }
    this.store.redis.on("ready", () => {
      this.metrics.redisUp.set(1);
      void this.registry.beat();
    });
    this.store.redis.on("close", () => this.metrics.redisUp.set(0));
    try {
      await this.store.connect();
      this.metrics.redisUp.set(1);
    } catch (error) {
      this.log.warn("Redis unreachable at start; retrying in the background", { url: this.config.redis.url, error: errorMessage(error) });
    }
    void this.subscribe();
    this.sweeper.start();
    this.registry.start();
    this.sessionStore.start();
    void warmUp(this.config.transcode.ffmpegPath);
    this.log.info("node started", { id: this.id, rtmp: this.ingest.port, rtmps: this.ingest.tlsPort || undefined, http: this.http.port });
  }

  /** Keeps the timeline subscription up: retried until it connects; ioredis resubscribes after that. */
  private async subscribe(): Promise<void> {
    while (!this.closing && !this.subscriber) {
      try {
        const keys = this.store.keys;
        this.subscriber = await this.store.subscribe(
          {
            [keys.timelineChannel()]: (id) => this.http.timelines.changed(id),
            [keys.adminChannel()]: (message) => {
              try {
                this.command(JSON.parse(message) as AdminCommand);
              } catch {
                this.log.warn("unreadable admin command", { message: message.slice(0, 200) });
              }
            },
          },
          () => this.http.timelines.invalidateAll(),
        );
        this.http.timelines.subscribed = true;
        this.subscriber.on("close", () => (this.http.timelines.subscribed = false));
        this.subscriber.on("ready", () => (this.http.timelines.subscribed = true));
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  private publisher(connection: PublisherConnection): void {
    const owner = new StreamOwner({
      connection,
      store: this.store,
      grants: this.store,
      nodeId: this.id,
      config: this.config,
      log: this.log.child("stream"),
      metrics: this.metrics,
      nodeAlive: async (id) => {
        const record = (await listNodes(this.store.redis, this.store.keys)).find((n) => n.id === id);
        return record !== undefined && Date.now() - record.heartbeatAt < 2 * HEARTBEAT_MS;
      },
    });
    owner.reportListenerErrors((event, error) => this.log.error("owner listener failed", { event, error: errorMessage(error) }));
    this.owners.set(connection.streamId, owner);
    this.metrics.publishers.set(this.owners.size);
    const forget = (): void => {
      if (this.owners.get(connection.streamId) === owner) this.owners.delete(connection.streamId);
      this.metrics.publishers.set(this.owners.size);
    };
    owner.on("closed", forget);
    owner
      .start()
      .then((accepted) => {
        if (!accepted) forget();
      })
      .catch((error: unknown) => {
        // one stream's failure ends that stream, never the node
        this.log.error("stream failed to start", { stream: connection.streamId, error: errorMessage(error) });
        this.metrics.streamFailures.inc({ reason: "start_failed" });
        connection.close("stream failed to start");
        void owner.close("stream failed to start").finally(forget);
      });
  }

  /** Stops everything this node started: publishers (flushing their last segments), listeners, Redis. */
  close(): Promise<void> {
    this.closing ??= Promise.resolve().then(() => this.shutdown());
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.sweeper.stop();
    void this.registry.beat();
    await Promise.all([...this.owners.values()].map((owner) => owner.close("node shutting down")));
    await this.ingest.close();
    await this.agent.close();
    this.channel.close();
    await this.http.close();
    await this.sessionStore.close();
    await this.registry.stop(true, this.id);
    this.subscriber?.disconnect();
    await this.store.close();
    this.log.info("node stopped", { id: this.id });
  }
}
