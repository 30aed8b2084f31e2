// The one table of defaults. config/default.json ships the same values (a test proves it).
// Each line says who reads the option.

export interface Rendition {
  /** Name in URLs (`/live/{stream}/{name}/index.m3u8`): `^[a-z0-9_-]{1,32}$`. */
  name: string;
  /** Output height in pixels (even); width follows the source's aspect ratio. */
  height: number;
  /** Video bitrate in kbit/s. */
  videoBitrate: number;
  /** Audio bitrate in kbit/s (AAC). */
  audioBitrate: number;
  /** Optional frame-rate cap in frames per second; 0 keeps the source rate. */
  maxFrameRate: number;
}

export interface Config {
  node: {
    /** Stable node id; empty: generated at start (`node-` + 8 hex digits). Used by: cluster registry. */
    id: string;
    /**
     * Address every listener binds to: the one the balancer reaches the node on. Loopback by default, so a node
     * is never reachable around the balancer's timeouts and limits by accident; containers set 0.0.0.0.
     * Used by: ingest, delivery, cluster agent.
     */
    bind: string;
    /** Host name put in the URLs baton prints and registers (publish, watch). Used by: CLI, registry. */
    publicHost: string;
  };
  rtmp: {
    /** RTMP ingest port. Used by: ingest. */
    port: number;
    /** Seconds without a byte from a publisher before its connection is closed as dead. Used by: ingest. */
    idleTimeout: number;
    /**
     * Seconds from accepting a connection to its admitted publish (PROXY header, handshake, connect, publish);
     * a client still short of it is dropped. Used by: ingest.
     */
    handshakeTimeout: number;
    /** RTMP and RTMPS connections a node holds at once, publishing or not; more are refused. Used by: ingest. */
    maxConnections: number;
    /**
     * Connections from one client address (the PROXY header's source with rtmp.proxyProtocol). A trusted
     * proxy's own address (http.trustedProxies) is many clients and counts only in the total. Used by: ingest.
     */
    maxConnectionsPerAddress: number;
    /**
     * Bytes of the largest audio/video message of an admitted publisher: 8 MiB is several times the largest
     * keyframe of a 50 Mbit/s 4K source. Before a publish every message is at most 64 KiB. Used by: ingest.
     */
    maxMessageSize: number;
    /**
     * Every RTMP/RTMPS connection starts with a PROXY protocol header (HAProxy's send-proxy-v2), believed only
     * from http.trustedProxies; a connection without one is refused. Used by: ingest, cluster/haproxy.
     */
    proxyProtocol: boolean;
  };
  rtmps: {
    /** RTMPS (RTMP over TLS) port; 0: no RTMPS listener. Used by: ingest, cluster/haproxy. */
    port: number;
    /** PEM certificate (chain) file of the RTMPS listener; required when rtmps.port is set. Used by: ingest. */
    cert: string;
    /** PEM private key file of the RTMPS listener; required when rtmps.port is set. Used by: ingest. */
    key: string;
  };
  http: {
    /** HTTP port: HLS, APIs, health, metrics. Used by: delivery. */
    port: number;
    /**
     * Peers whose X-Forwarded-For is believed (the balancer; HAProxy sets the header, replacing the client's):
     * addresses, or ["*"] where nodes are reachable only through the balancer. Used by: delivery (viewer count,
     * per-address limits), ingest (whose PROXY protocol header is believed, with rtmp.proxyProtocol).
     */
    trustedProxies: string[];
    /** Sockets a node holds open at once; more are refused when accepted. Used by: delivery. */
    maxConnections: number;
    /** Sockets one address (other than a trusted proxy) holds open at once. Used by: delivery. */
    maxConnectionsPerAddress: number;
  };
  agent: {
    /** TCP port answering HAProxy's agent-check. Used by: cluster agent. */
    port: number;
  };
  redis: {
    /**
     * Redis connection URL. `REDIS_URL` in the environment also sets it. With redis.sentinels, only its
     * password, database and scheme (rediss: TLS to the primary) apply: the sentinels name the host. Used by: state.
     */
    url: string;
    /**
     * Redis Sentinel addresses (`host:port`, IPv6 as `[addr]:port`); empty: connect to redis.url directly. Set:
     * every connection asks them for the primary of redis.sentinelName, and again after each disconnect, so
     * it follows a failover. Used by: state (every connection).
     */
    sentinels: string[];
    /** The Sentinel master group name (`sentinel monitor NAME ...`); used only with redis.sentinels. Used by: state. */
    sentinelName: string;
    /**
     * Seed nodes of a Redis Cluster (`host:port`, IPv6 as `[addr]:port`; a few are enough, the rest are
     * discovered); empty: not a cluster. Set: every connection is an ioredis Cluster client that follows the
     * slot map and failovers; redis.url then gives only the user, password and scheme (rediss: TLS to every
     * shard). Not with redis.sentinels. Used by: state (every connection).
     */
    cluster: string[];
    /** Prefix of every key baton writes. Used by: state/keys.ts. */
    prefix: string;
    /**
     * Milliseconds a Redis command may take before it fails; a connection that brought no reply for as long
     * is closed and reconnected. Bounds every Redis call while Redis is frozen or unreachable: playlists and
     * segments in memory are still served, other requests get 503. Used by: state (every connection).
     */
    commandTimeout: number;
    /**
     * Replicas that must acknowledge a claim and a release (Redis WAIT, within half of commandTimeout)
     * before a publisher is accepted; 0: none. Keeps ownership across a failover to a replica. Used by: state.
     */
    waitReplicas: number;
  };
  hls: {
    /** Segment length in seconds; also the keyframe interval. Used by: transcode, playlists. */
    segmentDuration: number;
    /**
     * Segments listed in a live media playlist when hls.dvrWindow is 0, and at least as many with it. Used
     * by: state (timeline trim), playlists.
     */
    playlistWindow: number;
    /**
     * Seconds of media every live stream keeps and its media playlists list (a sliding window viewers seek
     * and resume in); 0: playlistWindow segments only. Used by: state (timeline pages, deletion), playlists.
     */
    dvrWindow: number;
    /**
     * Timeline entries per page archived from Redis into the segment store with a DVR window (Redis keeps
     * under two pages, plus a small ref per page). Used by: state (timeline pages); tests shorten it.
     */
    dvrPageSize: number;
    /** Seconds a stream stays live (no EXT-X-ENDLIST) after its publisher leaves, waiting for it to return. */
    reconnectWindow: number;
    /** Seconds an ended stream's playlists (in Redis) and segments (in the segment store) stay. Used by: state, sweeper. */
    retention: number;
    /** Bytes of segments each node keeps in memory. Used by: delivery/segment-cache. */
    segmentCacheBytes: number;
  };
  storage: {
    /**
     * Where segment bytes are kept: "fs", a directory every node of a one-machine cluster shares; "s3", any
     * S3-compatible store (AWS S3, MinIO, Ceph RGW, R2). Used by: state (writes before each append), delivery (reads),
     * the sweeper (expiry).
     */
    backend: "fs" | "s3";
    /** Directory of the fs backend, created as needed. Used by: storage/fs.ts. */
    path: string;
    /** S3 endpoint URL (http:// or https://); empty: AWS S3 of s3Region. Used by: storage/s3.ts. */
    s3Endpoint: string;
    /** Bucket of the s3 backend; required with backend "s3". Used by: storage/s3.ts. */
    s3Bucket: string;
    /** Region the s3 backend signs requests for (MinIO and Ceph accept us-east-1). Used by: storage/s3.ts. */
    s3Region: string;
    /** Prefix of every object name in the bucket: empty, or path segments ending in "/". Used by: storage/s3.ts. */
    s3Prefix: string;
    /** Path-style URLs (`endpoint/bucket/key`), which MinIO and Ceph RGW need. Used by: storage/s3.ts. */
    s3ForcePathStyle: boolean;
    /**
     * Access key id; empty (with s3SecretAccessKey empty): the SDK's default credential chain (AWS_* variables,
     * profile, instance role). BATON_STORAGE_S3_ACCESSKEYID also sets it. Used by: storage/s3.ts.
     */
    s3AccessKeyId: string;
    /** Secret access key, never printed. BATON_STORAGE_S3_SECRETACCESSKEY also sets it. Used by: storage/s3.ts. */
    s3SecretAccessKey: string;
    /**
     * Milliseconds one s3 call may take, retries included; then it fails with STORAGE_UNAVAILABLE, so an
     * unreachable store never holds up a caller. Used by: storage/s3.ts.
     */
    s3Timeout: number;
  };
  transcode: {
    /** ffmpeg binary. Used by: transcode. */
    ffmpegPath: string;
    /** x264 preset. Used by: transcode. */
    preset: "ultrafast" | "superfast" | "veryfast" | "faster" | "fast" | "medium" | "slow";
    /** The rendition ladder, tallest first. Renditions taller than the source are skipped. */
    ladder: Rendition[];
    /** Directory for ffmpeg's segment files before they are published to Redis. Used by: transcode. */
    spoolDir: string;
    /** Restarts of a crashed ffmpeg allowed per publish before the publisher is dropped. Used by: transcode. */
    maxRestarts: number;
    /**
     * Live streams a node transcodes at most: the operator's bound. Its agent-check weight falls as it fills, and
     * a full node refuses publishers (`at_capacity`, or `cluster_full` when no node has room). Used by: ingest
     * admission, cluster agent.
     */
    capacity: number;
    /**
     * Share of the machine's CPU (0 to 1) the node fills with streams: one more is admitted only while the CPU
     * its transcoders are measured to take fits under it, and none while a transcoder runs below real time.
     * 0: count streams only (transcode.capacity). Used by: ingest admission, cluster agent (cluster/capacity.ts).
     */
    cpuTarget: number;
    /**
     * Scheduling niceness (0 to 19) of the transcoders' ffmpeg processes, above the node's own: on a machine
     * whose CPU the transcoders fill, the node still runs the moment it has work (a finished segment to
     * publish, a lease to renew, a playlist to answer), and ffmpeg takes the rest. 5 gives ffmpeg a third of the
     * share of a process at the node's priority when both want the CPU: more starves transcoders beside other
     * work on the machine. 0: the node's own priority.
     * Used by: transcode.
     */
    niceness: number;
  };
  auth: {
    /** Require a signed token on every publish. Used by: ingest admission. */
    requirePublishToken: boolean;
    /** HMAC secret for publish tokens; empty: `var/secret`, created on first use. Used by: ingest, CLI. */
    publishSecret: string;
    /**
     * Seconds a token made by `baton token` can start a broadcast. The broadcast it starts keeps taking its
     * reconnects after that, until it ends or the stream is revoked. Used by: CLI.
     */
    publishTokenTtl: number;
    /**
     * Require a signed playback token to start a viewer session (a master playlist request without a session,
     * POST /api/sessions); sessions already started keep working. Used by: delivery/sessions.
     */
    requirePlaybackToken: boolean;
    /** HMAC secret for playback tokens; empty: derived from the sessions secret. Used by: delivery, CLI, admin API. */
    playbackSecret: string;
    /** Lifetime in seconds of a playback token made by `baton token --play` or the admin API without a ttl. */
    playbackTokenTtl: number;
  };
  admin: {
    /** Bearer token of the admin API; empty: `var/admin-token`, created on first use. BATON_ADMIN_TOKEN sets it. */
    token: string;
    /** Command (argv, `{node}` replaced by the node id) that restarts a node in a rolling update outside the local cluster. */
    restartCommand: string[];
    /**
     * Serve the operators' read-only endpoints (/api/nodes, /api/streams, /metrics) without the admin token,
     * for a node whose HTTP port only an internal network reaches. Used by: cluster API, metrics.
     */
    openOps: boolean;
  };
  recording: {
    /**
     * Keep every segment of every broadcast, not only the DVR window (the live playlist still lists the
     * window), and play each ended broadcast as VOD for `retention`. Used by: state (pages, expiry), delivery/vod.
     */
    enabled: boolean;
    /** Seconds an ended broadcast's recording stays in the segment store, with `enabled`. Used by: state (expiry). */
    retention: number;
  };
  drain: {
    /** Seconds a drain may take; then it finishes anyway. Used by: cluster drain. */
    deadline: number;
    /** Drain on SIGTERM (then exit 0), rather than stop at once. */
    onSigterm: boolean;
  };
  sessions: {
    /** Seconds a viewer session outlives its last activity (it must outlive a pause). Used by: state/sessions. */
    ttl: number;
    /** HMAC secret for session tokens; empty: `var/session-secret`, created on first use. Used by: delivery. */
    secret: string;
    /** Position reports accepted per second on one WebSocket; more are dropped. Used by: delivery/ws. */
    maxReportsPerSecond: number;
    /** Milliseconds session writes are gathered before one pipelined write to Redis. Used by: state/sessions. */
    flushInterval: number;
    /**
     * Sessions one client address (an IPv6 client: its /64) may start per minute, in a burst of as many; more
     * are answered 429. Viewers behind one NAT share it. Used by: delivery/sessions.
     */
    startsPerMinute: number;
  };
  delivery: {
    /**
     * CDN mode: no playlist URI carries a viewer's session, so a CDN caches every playlist and segment for all
     * viewers (`public`); players that report over the WebSocket or the API keep their position, cookie-less
     * ones are counted by address. Used by: delivery/hls.
     */
    cdn: boolean;
    /**
     * Viewers one stream may have across the cluster (this node's count plus what the other nodes' registry
     * records say); beyond it a new viewer's session start is answered 503 with Retry-After, never an existing
     * viewer's request. 0: no limit. Used by: delivery.
     */
    maxViewersPerStream: number;
    /** Viewers this node serves at most, all streams together, the same way; 0: no limit. Used by: delivery. */
    maxViewersPerNode: number;
  };
  log: {
    /** Least severe level printed. */
    level: "debug" | "info" | "warn" | "error";
  };
}

export const DEFAULTS: Config = {
  node: {
    id: "",
    bind: "127.0.0.1",
    publicHost: "localhost",
  },
  rtmp: {
    port: 1935,
    idleTimeout: 10,
    handshakeTimeout: 10,
    maxConnections: 500,
    maxConnectionsPerAddress: 16,
    maxMessageSize: 8388608,
    proxyProtocol: false,
  },
  rtmps: {
    port: 0,
    cert: "",
    key: "",
  },
  http: {
    port: 8080,
    trustedProxies: ["127.0.0.1", "::1"],
    maxConnections: 10000,
    maxConnectionsPerAddress: 200,
  },
  agent: {
    port: 9999,
  },
  redis: {
    url: "redis://127.0.0.1:6379",
    sentinels: [],
    sentinelName: "mymaster",
    cluster: [],
    prefix: "baton:",
    commandTimeout: 1000,
    waitReplicas: 0,
  },
  hls: {
    segmentDuration: 2,
    playlistWindow: 6,
    dvrWindow: 7200,
    dvrPageSize: 60,
    reconnectWindow: 30,
    retention: 3600,
    segmentCacheBytes: 67108864,
  },
  storage: {
    backend: "fs",
    path: "var/segments",
    s3Endpoint: "",
    s3Bucket: "",
    s3Region: "us-east-1",
    s3Prefix: "",
    s3ForcePathStyle: false,
    s3AccessKeyId: "",
    s3SecretAccessKey: "",
    s3Timeout: 5000,
  },
  transcode: {
    ffmpegPath: "ffmpeg",
    preset: "veryfast",
    ladder: [
      { name: "720p", height: 720, videoBitrate: 2800, audioBitrate: 128, maxFrameRate: 30 },
      { name: "480p", height: 480, videoBitrate: 1400, audioBitrate: 96, maxFrameRate: 30 },
      { name: "360p", height: 360, videoBitrate: 800, audioBitrate: 96, maxFrameRate: 30 },
    ],
    spoolDir: "var/spool",
    maxRestarts: 5,
    capacity: 4,
    cpuTarget: 0.85,
    niceness: 5,
  },
  auth: {
    requirePublishToken: true,
    publishSecret: "",
    publishTokenTtl: 21600,
    requirePlaybackToken: false,
    playbackSecret: "",
    playbackTokenTtl: 86400,
  },
  admin: {
    token: "",
    restartCommand: [],
    openOps: false,
  },
  recording: {
    enabled: false,
    retention: 604800,
  },
  drain: {
    deadline: 30,
    onSigterm: true,
  },
  sessions: {
    ttl: 86400,
    secret: "",
    maxReportsPerSecond: 4,
    flushInterval: 200,
    startsPerMinute: 60,
  },
  delivery: {
    cdn: false,
    maxViewersPerStream: 0,
    maxViewersPerNode: 0,
  },
  log: {
    level: "info",
  },
};
