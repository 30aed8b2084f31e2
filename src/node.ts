// Wires one baton node together: constructs the parts, connects them, and orders their start and close.
// Nothing else knows every domain, and nothing here decides anything: each rule lives in its domain.
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { AgentServer, agentAnswer } from "./cluster/agent.ts";
import { Capacity, ladderCost, roomElsewhere } from "./cluster/capacity.ts";
import { addAdminApi, runAdminCommand, type AdminCommand } from "./cluster/admin-api.ts";
import { addClusterApi } from "./cluster/api.ts";
import { Drainer, readiness, type DrainReport } from "./cluster/drain.ts";
import { HEARTBEAT_MS, NODE_TTL_MS, Registry } from "./cluster/registry.ts";
import { PeerLink, addPeerRoutes, peerKey } from "./cluster/peers.ts";
import { Sweeper } from "./cluster/sweeper.ts";
import type { Config } from "./config/defaults.ts";
import { adminToken, playbackSecret, publishSecret, sessionSecret } from "./config/state-dir.ts";
import { errorMessage } from "./core/errors.ts";
import type { Logger } from "./core/log.ts";
import { Metrics } from "./core/metrics.ts";
import type { NodeRecord, NodeState } from "./core/model.ts";
import { currentRelease, type Release } from "./core/release.ts";
import { VERSION } from "./core/version.ts";
import { HlsDelivery } from "./delivery/hls.ts";
import { addPlaybackTokenApi } from "./delivery/playback-api.ts";
import { addPlayer } from "./delivery/player.ts";
import { ViewerSessions } from "./delivery/sessions.ts";
import { ViewerLimits, viewersElsewhere } from "./delivery/viewer-limits.ts";
import { addSessionsApi } from "./delivery/sessions-api.ts";
import { VodDelivery } from "./delivery/vod.ts";
import { ViewerChannel } from "./delivery/ws.ts";
import { ClientAddresses } from "./http/client-address.ts";
import { HttpServer } from "./http/server.ts";
import { admitPublish, recordRefusal } from "./ingest/admission.ts";
import { steeredAway } from "./cluster/steering.ts";
import { RolloutStore } from "./state/rollouts.ts";
import { SCHEMA_VERSION, checkSchema } from "./state/schema.ts";
import { RtmpIngest } from "./ingest/rtmp-server.ts";
import { Feed } from "./state/feed.ts";
import { RedisHealth } from "./state/health.ts";
import { NodeRecords } from "./state/nodes.ts";
import { SessionStore } from "./state/sessions.ts";
import { StreamStore } from "./state/store.ts";
import { createSegmentStore } from "./storage/create.ts";
import { countStoreErrors } from "./storage/counted.ts";
import type { SegmentStore } from "./storage/store.ts";
import { NodeLiveness } from "./cluster/liveness.ts";
import { StreamOwners } from "./stream/owners.ts";
import { LEASE_TTL_MS, RENEW_EVERY_MS } from "./stream/owner.ts";
import { SlateKeepers } from "./stream/slate-keepers.ts";
import { readyStandbyElsewhere } from "./stream/standby.ts";
import { DEFAULT_SLATE, Slates } from "./transcode/slate.ts";
import { warmUp } from "./transcode/ffmpeg.ts";

export class BatonNode {
  readonly id: string;
  readonly store: StreamStore;
  /** Where segment bytes live: the directory or bucket every node of the cluster shares. */
  readonly media: SegmentStore;
  readonly metrics: Metrics;
  readonly ingest: RtmpIngest;
  readonly http: HttpServer;
  readonly hls: HlsDelivery;
  readonly sessionStore: SessionStore;
  readonly channel: ViewerChannel;
  readonly owners: StreamOwners;
  /** The slates this node keeps for streams without input; null with hls.inputLoss "off". */
  readonly slates: SlateKeepers | null;
  private slateTimer: NodeJS.Timeout | null = null;
  readonly drainer: Drainer;
  readonly agent: AgentServer;
  readonly capacity: Capacity;
  private capacityTimer: NodeJS.Timeout | null = null;
  /** Another ready node had room for a stream at the last look (a second ago at most). */
  private roomElsewhere = false;
  /** Viewers per stream on the other nodes, by their last registry records (delivery.maxViewersPerStream). */
  private viewersElsewhere = new Map<string, number>();
  /** Why a rolling update sends new publishers elsewhere now (cluster/steering.ts), or null. */
  private steered: string | null = null;
  private readonly rollouts: RolloutStore;
  /** Why this node may not use the cluster's data (state/schema.ts); until first read, it does not. */
  private schemaRefused: string | null = "the cluster's schema version is not read yet";
  private readonly nodes: NodeRecords;
  /** Which nodes are known dead, sooner than their leases say (slate keepers, standbys). */
  private readonly liveness: NodeLiveness;
  /** Whether this node reaches Redis now (answers, not the connection's status). */
  readonly health: RedisHealth;
  /** The other nodes' HTTP URLs at the last registry read (kept while Redis is away): where offers go. */
  private peerUrls: string[] = [];
  /** The registry at the last look (a second ago at most). */
  private records: NodeRecord[] = [];
  private readonly feed: Feed;
  private readonly sweeper: Sweeper;
  private readonly registry: Registry;
  private readonly startedAt = Date.now();
  /** What this node runs, as it registers it. */
  readonly release: Release;
  private closing: Promise<void> | null = null;
  /** What the node does when a drain asked it to exit (the CLI exits the process). */
  onExit: () => void = () => undefined;
  private exitAfterDrain: Promise<void> | null = null;

  constructor(readonly config: Config, private readonly log: Logger) {
    this.id = config.node.id || `node-${randomBytes(4).toString("hex")}`;
    this.release = currentRelease(config);
    this.metrics = new Metrics({ node: this.id });
    this.media = countStoreErrors(createSegmentStore(config.storage), (op, code) => this.metrics.storeErrors.inc({ op, code }));
    this.store = new StreamStore({
      url: config.redis.url,
      sentinels: config.redis.sentinels,
      sentinelName: config.redis.sentinelName,
      cluster: config.redis.cluster,
      prefix: config.redis.prefix,
      window: config.hls.playlistWindow,
      dvrWindowMs: config.hls.dvrWindow * 1000,
      pageSize: config.hls.dvrPageSize,
      ...(config.recording.enabled ? { recordingRetentionSec: config.recording.retention } : {}),
      reconnectWindowMs: config.hls.inputLossWindow * 1000,
      retentionSec: config.hls.retention,
      commandTimeoutMs: config.redis.commandTimeout,
      waitReplicas: config.redis.waitReplicas,
      media: this.media,
    });
    this.nodes = new NodeRecords(this.store.redis, this.store.keys);
    this.health = new RedisHealth(() => this.store.redis.ping());
    const linkKey = peerKey(sessionSecret(config));
    const peers = new PeerLink({
      key: linkKey, peers: () => this.peerUrls, log: log.child("peers"), metrics: this.metrics,
      local: (offer) => {
        if (!this.health.reachable()) this.hls.timelines.show(offer.stream, offer.claim, offer.entries);
      },
    });
    this.feed = new Feed(this.store);
    this.rollouts = new RolloutStore(this.store.redis, this.store.keys);
    // a window of 0 ends a stream as its input is lost: no slate to show
    this.liveness = new NodeLiveness(this.nodes, this.id);
    this.slates = config.hls.inputLoss === "slate" && config.hls.inputLossWindow > 0 ? this.slateKeepers(config, log) : null;
    this.owners = new StreamOwners({
      ...(this.slates ? { slates: this.slates } : {}),
      store: this.store,
      nodeId: this.id,
      config,
      log,
      metrics: this.metrics,
      peers,
      nodeAlive: async (id) => {
        const record = (await this.nodes.list()).find((n) => n.id === id);
        return record !== undefined && Date.now() - record.heartbeatAt < 2 * HEARTBEAT_MS;
      },
      ownerGone: (id, claimedAt) => this.liveness.gone(id, claimedAt),
      // read fresh: a standby that became ready within the last heartbeat counts
      standbyElsewhere: async (id) => readyStandbyElsewhere(await this.nodes.list().catch(() => this.records), this.id, id, Date.now(), NODE_TTL_MS),
      activeOffset: (id, nodeId) => this.records.find((r) => r.id === nodeId && r.id !== this.id)?.load.inputs?.[id]?.offsetMs,
    });
    this.capacity = new Capacity({ limit: config.transcode.capacity, cpuTarget: config.transcode.cpuTarget, prior: ladderCost(config.transcode) });
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
            isLive: (id) => this.owners.isLive(id),
            liveRole: (id) => this.owners.liveRole(id),
            refusing: () => this.closing !== null || this.drainer.state !== "ready",
            full: () => {
              const room = this.capacity.room(this.owners.transcoders());
              return room.slots > 0 ? null : { why: room.why, elsewhere: this.roomElsewhere };
            },
            steered: () => this.steered,
            unusable: () => this.schemaRefused,
          }),
        publisher: (connection) => this.owners.publisher(connection),
        refused: (reason, message, request) => recordRefusal({ metrics: this.metrics, log }, reason, message, { remote: request.remote, stream: request.name }),
      },
    });
    this.sessionStore = new SessionStore(this.store.redis, this.store.keys, { ttlSec: config.sessions.ttl, flushIntervalMs: config.sessions.flushInterval });
    const addresses = new ClientAddresses(config.http.trustedProxies);
    const limits = new ViewerLimits({
      perStream: config.delivery.maxViewersPerStream,
      perNode: config.delivery.maxViewersPerNode,
      local: () => this.hls.viewers.counts(),
      elsewhere: (id) => this.viewersElsewhere.get(id) ?? 0,
      refused: (reason) => this.metrics.viewersRefused.inc({ reason }),
    });
    const admitViewer = (id: string): void => limits.admit(id);
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
      admitViewer,
    });
    this.http = new HttpServer({
      port: config.http.port,
      bind: config.node.bind,
      maxConnections: config.http.maxConnections,
      maxConnectionsPerAddress: config.http.maxConnectionsPerAddress,
      addresses,
      log: log.child("http"),
      metrics: this.metrics,
      readiness: { ready: () => this.readiness() },
      opsToken: config.admin.openOps ? null : adminToken(config),
      beforeScrape: () => {
        this.metrics.segmentCacheBytes.set(this.hls.segments.bytes);
        this.metrics.capacitySlots.set(this.slots);
        this.metrics.ready.set(this.readiness().ok ? 1 : 0);
        this.metrics.ingestInputs.reset();
        for (const input of Object.values(this.owners.inputs())) this.metrics.ingestInputs.inc({ role: input.role, state: input.state });
        this.metrics.viewers.reset();
        for (const [stream, count] of Object.entries(this.hls.viewers.counts())) this.metrics.viewers.set({ stream }, count);
      },
    });
    this.hls = new HlsDelivery(this.http, { store: this.store, segmentCacheBytes: config.hls.segmentCacheBytes, metrics: this.metrics, sessions, addresses, cdn: config.delivery.cdn, admitViewer,
      timelineOptions: {
        reachable: () => this.health.reachable(),
        trim: (entries) => this.store.pages.trim(entries),
        conflict: (id) => {
          this.metrics.timelineConflicts.inc();
          log.error("Redis's timeline differs from entries listed from an owner's offer", { stream: id });
        },
      },
    });
    addPeerRoutes(this.http, {
      key: linkKey, nodeId: this.id, store: this.store, reachable: () => this.health.reachable(),
      show: (id, claim, entries) => this.hls.timelines.show(id, claim, entries), log: log.child("peers"), metrics: this.metrics,
    });
    this.channel = new ViewerChannel(sessions, this.hls.timelines, config.sessions.maxReportsPerSecond, this.metrics, log.child("ws"));
    this.http.onUpgrade((req, socket, head) => this.channel.upgrade(req, socket, head));
    addSessionsApi(this.http, this.hls.timelines, sessions);
    addPlaybackTokenApi(this.http, { adminToken: adminToken(config), secret: playbackSecret(config), defaultTtl: config.auth.playbackTokenTtl });
    addPlayer(this.http);
    addClusterApi(this.http, this.store, this.nodes);
    const keptMs = (config.recording.enabled ? config.recording.retention : config.hls.retention) * 1000;
    new VodDelivery(this.http, { store: this.store, timelines: this.hls.timelines, sessions, retentionMs: keptMs });
    this.sweeper = new Sweeper(this.store, this.id, log.child("sweeper"));
    const host = config.node.publicHost;
    this.registry = new Registry(
      this.nodes,
      () => ({
        id: this.id,
        state: this.drainer.state,
        httpUrl: `http://${host}:${this.http.port}`,
        rtmpUrl: `rtmp://${host}:${this.ingest.port}/live`,
        version: VERSION,
        release: this.release,
        schema: SCHEMA_VERSION,
        startedAt: this.startedAt,
        load: { publishers: this.owners.size, viewers: this.hls.viewers.counts(), readyChecks: this.http.readyChecks, transcoders: this.owners.speeds(), slots: this.slots, steered: this.steered !== null, inputs: this.owners.inputs() },
      }),
      log.child("registry"),
      () => this.schemaRefused !== null,
    );
    this.drainer = new Drainer({
      publishState: () => this.registry.beat(), http: this.http, viewers: this.channel, publishers: this.owners, log: log.child("drain"),
      // HAProxy's viewers' backend asks the agent every 500 ms; two answers out of rotation there, and two
      // failed readiness checks, and it sends the node no more requests
      balancerSaw: () => this.agent.httpOutOfRotation >= 2 && this.http.notReadyChecks >= 2,
    });
    this.agent = new AgentServer(config.agent.port, config.node.bind, (backend) =>
      agentAnswer(this.drainer.state, { publishers: this.owners.size, capacity: config.transcode.capacity, slots: this.slots, steered: this.steered !== null }, backend),
    );
    addAdminApi(this.http, { nodeId: this.id, token: adminToken(config), local: this, nodes: this.nodes, feed: this.feed });
  }

  /** Input loss: the slates this node keeps, and how it learns that another node died. */
  private slateKeepers(config: Config, log: Logger): SlateKeepers {
    const slates = new Slates({
      ffmpegPath: config.transcode.ffmpegPath,
      image: config.hls.slateImage || DEFAULT_SLATE,
      segmentDuration: config.hls.segmentDuration,
      workDir: config.transcode.spoolDir,
    });
    return new SlateKeepers({
      store: this.store,
      nodeId: this.id,
      config,
      slates,
      lease: { ttlMs: LEASE_TTL_MS, renewEveryMs: RENEW_EVERY_MS },
      deadNodes: (ids) => this.liveness.dead(ids),
      restarted: (id, at) => this.liveness.restarted(id, at),
      accepting: () => this.closing === null && this.drainer.state === "ready" && this.store.ready,
      standbyOf: (id) => (this.owners.standbyHere(id) ? "here" : this.standbyElsewhere(id) ? "elsewhere" : null),
      takeOverDead: (id, holder) => this.owners.activeDied(id, holder),
      log: log.child("slate"),
      metrics: this.metrics,
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

  /** Refuses the stream's publish tokens issued until now (unix s) and ends its publish on whichever node has it. */
  async revoke(streamId: string): Promise<number> {
    const at = Math.floor(Date.now() / 1000);
    await this.store.revoke(streamId, at);
    const command: AdminCommand = { node: "*", action: "revoke", stream: streamId, via: this.id };
    await this.feed.publishAdmin(command);
    this.log.warn("publish tokens revoked", { stream: streamId, before: new Date(at * 1000).toISOString() });
    return at;
  }

  private get slots(): number {
    return this.capacity.room(this.owners.transcoders()).slots;
  }

  /**
   * Whether another live node runs a hot standby of the stream that could take over (its media fresh; a
   * record of a release that does not say counts as ready), by the registry records read last. A standby
   * still warming up neither holds a dead owner's stream off the slate nor has an owner's tail left to it.
   */
  private standbyElsewhere(streamId: string): boolean {
    return readyStandbyElsewhere(this.records, this.id, streamId, Date.now(), NODE_TTL_MS);
  }

  /** What /readyz answers (and baton_ready says). */
  private readiness(): ReturnType<typeof readiness> {
    return readiness({ closing: this.closing !== null, state: this.drainer.state, redisReachable: this.store.ready, schema: this.schemaRefused });
  }

  /** Once a second: what the machine and the transcoders use, and whether any other node has room. */
  private measure(): void {
    this.capacity.tick(this.owners.transcoders());
    this.readSchema().catch(() => undefined);
    Promise.all([this.nodes.list(), this.rollouts.active(), this.rollouts.counts()])
      .then(([records, active, counts]) => {
        this.roomElsewhere = roomElsewhere(records, this.id, Date.now(), NODE_TTL_MS);
        this.peerUrls = records.filter((r) => r.id !== this.id && Date.now() - r.heartbeatAt < NODE_TTL_MS).map((r) => r.httpUrl);
        this.records = records;
        this.viewersElsewhere = viewersElsewhere(records, this.id, Date.now(), NODE_TTL_MS);
        this.steered = steeredAway(active, records, this.id, Date.now(), NODE_TTL_MS);
        this.metrics.rolloutInProgress.set(active ? 1 : 0);
        this.metrics.rolloutSteered.set(this.steered ? 1 : 0);
        for (const [outcome, count] of Object.entries(counts)) this.metrics.rollouts.set({ outcome }, count);
      })
      .catch(() => undefined);
  }

  /** Whether this release can read the cluster's data (state/schema.ts); said once in the log when it cannot. */
  private async readSchema(): Promise<void> {
    const refused = await checkSchema(this.store.redis, this.store.keys);
    if (refused && refused !== this.schemaRefused) this.log.error("refusing work: this release cannot read the cluster's data", { reason: refused });
    this.schemaRefused = refused;
  }

  get state(): NodeState {
    return this.drainer.state;
  }

  status(): Record<string, unknown> {
    return {
      node: this.id,
      state: this.drainer.state,
      version: VERSION,
      release: this.release,
      startedAt: this.startedAt,
      publishers: this.owners.list(),
      slates: this.slates?.list() ?? [],
      websockets: this.channel.size,
      rtmp: { connections: this.ingest.counts.open },
      http: { inFlight: this.http.inFlight, openSockets: this.http.openSockets },
      // what requests can make a node hold, each bounded (the hostile-input tests read these)
      held: {
        timelines: this.hls.timelines.size,
        viewersTracked: this.hls.viewers.size,
        segmentCacheBytes: this.hls.segments.bytes,
        heapUsedBytes: process.memoryUsage().heapUsed,
        rssBytes: process.memoryUsage.rss(),
      },
      redis: this.store.ready ? "up" : "down",
      lastDrain: this.drainer.last,
    };
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
    this.hls.start();
    this.store.redis.on("ready", () => {
      this.metrics.redisUp.set(1);
      void this.registry.beat();
    });
    this.store.redis.on("close", () => this.metrics.redisUp.set(0));
    try {
      await this.store.connect();
      this.metrics.redisUp.set(1);
      // before the first heartbeat: a node that cannot read the cluster's data never registers
      await this.readSchema();
    } catch (error) {
      this.log.warn("Redis unreachable at start; retrying in the background", { url: this.config.redis.url.replace(/\/\/[^@/]*@/, "//***@"), error: errorMessage(error) });
    }
    const timelines = this.hls.timelines;
    this.feed.start({
      timeline: (id) => timelines.changed(id),
      admin: (command) => runAdminCommand(command, { id: this.id, drain: (r, o) => this.drain(r, o), undrain: () => this.undrain(), endPublish: (s, r) => this.owners.end(s, r) }, this.log),
      unreadable: (message) => this.log.warn("unreadable admin command", { message }),
      subscribed: (up) => {
        // while the subscription is down changes may be missed: cached timelines are trusted only briefly
        timelines.subscribed = up;
        if (up) timelines.invalidateAll();
      },
    });
    this.sweeper.start();
    const slates = this.slates;
    if (slates) {
      let looking = false;
      // each second: streams whose input is lost with nobody keeping their slate (their owner died)
      this.slateTimer ??= setInterval(() => {
        if (looking) return;
        looking = true;
        slates.round().catch((error: unknown) => this.log.debug("slate round failed", { error: errorMessage(error) })).finally(() => (looking = false));
      }, HEARTBEAT_MS);
    }
    this.health.start();
    this.capacityTimer ??= setInterval(() => this.measure(), HEARTBEAT_MS);
    this.measure();
    this.registry.start();
    this.sessionStore.start();
    void warmUp(this.config.transcode.ffmpegPath);
    this.log.info("node started", { id: this.id, rtmp: this.ingest.port, rtmps: this.ingest.tlsPort || undefined, http: this.http.port });
  }

  /** Stops everything this node started: publishers (flushing their last segments), listeners, Redis. */
  close(): Promise<void> {
    this.closing ??= Promise.resolve().then(() => this.shutdown());
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.sweeper.stop();
    this.health.stop();
    if (this.capacityTimer) clearInterval(this.capacityTimer);
    if (this.slateTimer) clearInterval(this.slateTimer);
    void this.registry.beat();
    await this.owners.closeAll("node shutting down");
    await this.ingest.close();
    await this.agent.close();
    this.channel.close();
    this.hls.close();
    await this.http.close();
    await this.sessionStore.close();
    await this.registry.stop(true, this.id);
    this.feed.close();
    await this.store.close();
    await this.media.close();
    this.log.info("node stopped", { id: this.id });
  }
}
