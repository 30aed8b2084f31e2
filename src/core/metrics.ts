// Prometheus metrics of one node (prom-client). Labels stay bounded: route names, status codes, refusal
// reasons, store operations, stream ids of streams live on or watched from this node; never a session id or an address.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { TalliedHistogram } from "./tallied-histogram.ts";

export class Metrics {
  readonly registry = new Registry();
  readonly publishers = new Gauge({ name: "baton_publishers", help: "Publishers connected to this node", registers: [this.registry] });
  readonly refusals = new Counter({
    name: "baton_publish_refusals_total", help: "Publishes refused, by reason", labelNames: ["reason"] as const, registers: [this.registry],
  });
  readonly rtmpRefused = new Counter({
    name: "baton_rtmp_connections_refused_total",
    help: "RTMP connections refused or closed for breaking a limit (caps, deadline, PROXY header, message sizes, AMF), by reason",
    labelNames: ["reason"] as const, registers: [this.registry],
  });
  readonly segmentsPublished = new Counter({
    name: "baton_segments_published_total", help: "Segment groups (all renditions) published to the timeline", registers: [this.registry],
  });
  readonly segmentPublishLatency = new Histogram({
    name: "baton_segment_publish_latency_seconds",
    help: "From ffmpeg finishing a segment group to the group being in the timeline",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly segmentQueue = new Gauge({
    name: "baton_segment_queue", help: "Finished segment groups waiting for Redis", registers: [this.registry],
  });
  readonly segmentsDropped = new Counter({
    name: "baton_segments_dropped_total", help: "Segment groups dropped unlisted: the queue for Redis was full, or Redis stayed unreachable past a closing stream's wait", registers: [this.registry],
  });
  readonly presetChanges = new Counter({
    name: "baton_transcoder_preset_changes_total",
    help: "Streams moved to a faster x264 preset (degrade: behind real time) or back (restore), by direction",
    labelNames: ["direction"] as const, registers: [this.registry],
  });
  readonly capacitySlots = new Gauge({
    name: "baton_capacity_slots", help: "Streams this node may still take now, by its measured capacity (0: it refuses publishers)", registers: [this.registry],
  });
  readonly transcoderSpeed = new Gauge({
    name: "baton_transcoder_speed", help: "Media seconds transcoded per wall-clock second (below 1: falling behind)",
    labelNames: ["stream"] as const, registers: [this.registry],
  });
  readonly transcoderFps = new Gauge({
    name: "baton_transcoder_fps", help: "Frames per second ffmpeg reports", labelNames: ["stream"] as const, registers: [this.registry],
  });
  readonly transcoderKbps = new Gauge({
    name: "baton_transcoder_output_kbps", help: "Bitrate of the last published segment group, all renditions, kbit/s", labelNames: ["stream"] as const, registers: [this.registry],
  });
  readonly transcoderRestarts = new Counter({
    name: "baton_transcoder_restarts_total", help: "ffmpeg processes that exited while their publisher was live", registers: [this.registry],
  });
  readonly transcoderInputDropped = new Counter({
    name: "baton_transcoder_input_dropped_bytes_total", help: "Input bytes dropped because ffmpeg fell behind", registers: [this.registry],
  });
  readonly httpRequests = new Counter({
    name: "baton_http_requests_total", help: "HTTP requests by route and status", labelNames: ["route", "status"] as const, registers: [this.registry],
  });
  // tallied: the lean HTTP front counts its answers' times in plain numbers (src/core/tallied-histogram.ts)
  readonly httpDuration = new TalliedHistogram({
    name: "baton_http_request_duration_seconds",
    help: "Time to answer a viewer's HLS request (routes master, media, segment), from its arrival to the last byte handed to the socket",
    labelNames: ["route"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly httpConnectionsRefused = new Counter({
    name: "baton_http_connections_refused_total", help: "HTTP connections closed by a limit, by reason (per_address, no_request)",
    labelNames: ["reason"] as const, registers: [this.registry],
  });
  readonly segmentCacheBytes = new Gauge({ name: "baton_segment_cache_bytes", help: "Bytes in the segment cache", registers: [this.registry] });
  readonly segmentCacheMisses = new Counter({
    name: "baton_segment_cache_misses_total", help: "Segment requests that went to Redis", registers: [this.registry],
  });
  readonly wsClients = new Gauge({ name: "baton_ws_clients", help: "Viewer WebSocket connections", registers: [this.registry] });
  readonly wsReportsDropped = new Counter({
    name: "baton_ws_reports_dropped_total", help: "Position reports over the rate limit, dropped", registers: [this.registry],
  });
  readonly sessionsCreated = new Counter({ name: "baton_sessions_created_total", help: "Viewer sessions started (tokens issued)", registers: [this.registry] });
  readonly viewersRefused = new Counter({
    name: "baton_viewers_refused_total", help: "New viewers answered 503 at a viewer cap, by cap (stream, node)",
    labelNames: ["reason"] as const, registers: [this.registry],
  });
  readonly sessionStartsRefused = new Counter({
    name: "baton_session_starts_refused_total", help: "Session starts refused, by reason (rate_limited, playback_token)",
    labelNames: ["reason"] as const, registers: [this.registry],
  });
  readonly ready = new Gauge({
    name: "baton_ready", help: "1 while /readyz answers ready (0: draining, closing or Redis unreachable), read at scrape time", registers: [this.registry],
  });
  readonly viewers = new Gauge({
    name: "baton_viewers", help: "Viewers this node served a playlist to in the last 30 s, by stream", labelNames: ["stream"] as const, registers: [this.registry],
  });
  readonly storeErrors = new Counter({
    name: "baton_segment_store_errors_total",
    help: "Segment store calls that failed, by operation and StorageError code (STORAGE_UNAVAILABLE, STORAGE_FAILED, STORAGE_DENIED, ...)",
    labelNames: ["op", "code"] as const, registers: [this.registry],
  });
  readonly peerOffers = new Counter({
    name: "baton_peer_offers_total",
    help: "Timeline entries an owner offered another node directly while its appends did not land (cluster/peers.ts), by the answer: relayed (the node appended them to Redis), shown (listed from memory: it cannot reach Redis either), fenced, none, failed",
    labelNames: ["result"] as const, registers: [this.registry],
  });
  readonly peerRelays = new Counter({
    name: "baton_peer_relayed_entries_total",
    help: "Entries other owners offered this node: relayed (appended to Redis for them), shown (listed from memory while Redis is unreachable), fenced (offers refused)",
    labelNames: ["result"] as const, registers: [this.registry],
  });
  readonly timelineConflicts = new Counter({
    name: "baton_timeline_conflicts_total",
    help: "Times Redis's timeline named other segments than this node had listed from an owner's offer while Redis was away (two writers for one sequence number: should stay 0)",
    registers: [this.registry],
  });
  readonly redisUp = new Gauge({ name: "baton_redis_up", help: "1 while this node reaches Redis", registers: [this.registry] });
  readonly streamFailures = new Counter({
    name: "baton_stream_failures_total", help: "Streams this node stopped because their pipeline failed, by reason",
    labelNames: ["reason"] as const, registers: [this.registry],
  });
  // redundant ingest (src/stream/standby.ts)
  readonly ingestInputs = new Gauge({
    name: "baton_ingest_inputs", help: "Publishers on this node by input role (primary, backup) and state (active: feeds the timeline; standby: hot, unlisted)",
    labelNames: ["role", "state"] as const, registers: [this.registry],
  });
  readonly standbyTakeovers = new Counter({
    name: "baton_standby_takeovers_total", help: "Hot standbys on this node that took over their stream, by reason (released: the active input's lease ended; handoff: it was leaving; stalled: no segment for standby.takeoverAfter; slate: another node kept it on the slate; dead: its node was found dead)",
    labelNames: ["reason"] as const, registers: [this.registry],
  });
  readonly standbyShift = new Histogram({
    name: "baton_standby_shift_seconds",
    help: "At a takeover, the standby's media against the timeline's end: repeated (< 0) or skipped (> 0) at the switch; the date-time runs on",
    buckets: [-2, -1, -0.5, -0.25, -0.1, 0, 0.1, 0.25, 0.5, 1, 2], registers: [this.registry],
  });
  readonly internalErrors = new Counter({
    name: "baton_internal_errors_total",
    help: "Errors that reached the process's last line of defence (a bug: each is logged), by kind",
    labelNames: ["kind"] as const, registers: [this.registry],
  });

  // rollouts (tools/rollout/): the cluster's, read from Redis each second, so every node shows them
  readonly rollouts = new Gauge({
    name: "baton_rollouts_total",
    help: "Rolling updates to a release the cluster ran, by outcome (done, rolled_back, failed): a count kept in Redis",
    labelNames: ["outcome"] as const, registers: [this.registry],
  });
  readonly rolloutInProgress = new Gauge({
    name: "baton_rollout_in_progress", help: "1 while a rolling update runs in the cluster", registers: [this.registry],
  });
  readonly rolloutSteered = new Gauge({
    name: "baton_rollout_steered",
    help: "1 while this node sends new publishers to the nodes a rolling update already updated", registers: [this.registry],
  });

  // what viewers' players report (delivery/cmcd.ts: CMCD and the player page); labels bounded: source, kind
  readonly viewerStalls = new Counter({
    name: "baton_viewer_stalls_total",
    help: "Playback stalls players reported (source cmcd: CMCD buffer starvation; player: the player page)",
    labelNames: ["source"] as const, registers: [this.registry],
  });
  readonly viewerWatchedSeconds = new Counter({
    name: "baton_viewer_watched_seconds_total",
    help: "Viewer-seconds of playback reported (cmcd: segment durations; player: between position reports): stalls per viewer-minute",
    labelNames: ["source"] as const, registers: [this.registry],
  });
  readonly viewerStartup = new Histogram({
    name: "baton_viewer_startup_seconds", help: "From the player page's load to its first frame playing",
    buckets: [0.5, 1, 2, 3, 5, 8, 13, 20], registers: [this.registry],
  });
  readonly viewerBuffer = new Histogram({
    name: "baton_viewer_buffer_seconds", help: "Buffer length players reported with their requests (CMCD bl)",
    buckets: [0.5, 1, 2, 4, 8, 16, 32], registers: [this.registry],
  });
  readonly viewerErrors = new Counter({
    name: "baton_viewer_errors_total", help: "Errors the player page reported, by hls.js's kind (network, media, mux, key, other)",
    labelNames: ["kind"] as const, registers: [this.registry],
  });
  // input loss (slate)
  readonly streamsOnSlate = new Gauge({
    name: "baton_streams_on_slate", help: "Streams this node keeps on the slate (their input is lost; viewers see the slate)", registers: [this.registry],
  });
  readonly slateSegments = new Counter({
    name: "baton_slate_segments_total", help: "Slate segment groups (all renditions) this node appended while streams had no input", registers: [this.registry],
  });

  constructor(labels: { node: string }) {
    this.registry.setDefaultLabels({ node: labels.node });
    collectDefaultMetrics({ register: this.registry });
  }
}
