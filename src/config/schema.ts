// What each config key accepts. A value that fails gets a ConfigError naming the key, the value, where it
// came from and what was expected.
import { ConfigError } from "../core/errors.ts";
import { NODE_ID_PATTERN, RENDITION } from "../core/ids.ts";
import type { Config, Rendition } from "./defaults.ts";

type Rule =
  | { kind: "int"; min: number; max: number }
  | { kind: "number"; min: number; max: number }
  | { kind: "string"; pattern?: RegExp; expected?: string; secret?: boolean }
  | { kind: "enum"; values: readonly string[] }
  | { kind: "bool" }
  | { kind: "ladder" }
  | { kind: "argv" }
  | { kind: "list"; pattern: RegExp; expected: string };

const PORT: Rule = { kind: "int", min: 1, max: 65535 };
/** `host:port`: a host name, an IPv4 address or a bracketed IPv6 address, and a port from 1 to 65535. */
const HOST_PORT = /^([A-Za-z0-9.-]{1,253}|\[[0-9a-fA-F:.]{2,45}\]):(6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})$/;
/** An HMAC secret: a short one can be guessed offline from one token (`openssl rand -hex 32` makes a good one). */
const SECRET: Rule = {
  kind: "string", secret: true, pattern: /^([\x21-\x7e]{32,1024})?$/, expected: "empty (one is generated), or 32 to 1024 printable characters without spaces",
};

export const SCHEMA: { [S in keyof Config]: { [K in keyof Config[S]]: Rule } } = {
  node: {
    id: { kind: "string", pattern: new RegExp(`^(${NODE_ID_PATTERN})?$`), expected: "empty or 1 to 63 of a-z, 0-9, '-'" },
    bind: { kind: "string", pattern: /^[0-9a-fA-F.:]+$|^localhost$/, expected: "an IP address" },
    publicHost: { kind: "string", pattern: /^[A-Za-z0-9.:[\]-]{1,253}$/, expected: "a host name or address" },
  },
  rtmp: {
    port: PORT,
    idleTimeout: { kind: "number", min: 1, max: 600 },
    handshakeTimeout: { kind: "number", min: 1, max: 120 },
    maxConnections: { kind: "int", min: 1, max: 100000 },
    maxConnectionsPerAddress: { kind: "int", min: 1, max: 100000 },
    // up to the largest message RTMP can carry (a 24-bit length)
    maxMessageSize: { kind: "int", min: 1048576, max: 16777215 },
    proxyProtocol: { kind: "bool" },
  },
  rtmps: {
    port: { kind: "int", min: 0, max: 65535 },
    cert: { kind: "string", pattern: /^[^\0]*$/, expected: "a file path, or empty" },
    key: { kind: "string", pattern: /^[^\0]*$/, expected: "a file path, or empty" },
  },
  http: {
    port: PORT,
    trustedProxies: { kind: "list", pattern: /^(\*|[0-9a-fA-F.:]{2,45})$/, expected: "a list of IP addresses, or [\"*\"]" },
    maxConnections: { kind: "int", min: 1, max: 1000000 },
    maxConnectionsPerAddress: { kind: "int", min: 1, max: 1000000 },
  },
  agent: { port: PORT },
  redis: {
    url: { kind: "string", pattern: /^rediss?:\/\/\S+$/, expected: "a redis:// or rediss:// URL" },
    sentinels: { kind: "list", pattern: HOST_PORT, expected: "a list of host:port addresses (IPv6 as [address]:port)" },
    sentinelName: { kind: "string", pattern: /^[A-Za-z0-9._-]{1,64}$/, expected: "1 to 64 of A-Z, a-z, 0-9, '.', '_', '-'" },
    cluster: { kind: "list", pattern: HOST_PORT, expected: "a list of host:port addresses of Redis Cluster nodes (IPv6 as [address]:port)" },
    prefix: { kind: "string", pattern: /^[A-Za-z0-9_:.-]{1,32}$/, expected: "1 to 32 of A-Z, a-z, 0-9, '_', ':', '.', '-'" },
    commandTimeout: { kind: "int", min: 100, max: 60000 },
    waitReplicas: { kind: "int", min: 0, max: 16 },
  },
  hls: {
    segmentDuration: { kind: "int", min: 1, max: 10 },
    playlistWindow: { kind: "int", min: 3, max: 100 },
    dvrWindow: { kind: "int", min: 0, max: 14 * 86400 },
    dvrPageSize: { kind: "int", min: 2, max: 1000 },
    reconnectWindow: { kind: "number", min: 0, max: 3600 },
    retention: { kind: "int", min: 10, max: 7 * 86400 },
    segmentCacheBytes: { kind: "int", min: 1048576, max: 17179869184 },
    // input loss (slate); the image is read and checked in input-loss.ts
    inputLoss: { kind: "enum", values: ["slate", "off"] },
    inputLossWindow: { kind: "number", min: 0, max: 3600 },
    slateImage: { kind: "string", pattern: /^[^\0]*$/, expected: "a PNG or JPEG file path, or empty" },
  },
  storage: {
    backend: { kind: "enum", values: ["fs", "s3"] },
    path: { kind: "string", pattern: /^[^\0]+$/, expected: "a directory path" },
    s3Endpoint: { kind: "string", pattern: /^(https?:\/\/[^\s/?#]+(\/[^\s?#]*)?)?$/, expected: "empty, or an http:// or https:// URL" },
    // S3's bucket naming rules (3 to 63 of a-z, 0-9, '.', '-'), which every compatible store accepts
    s3Bucket: { kind: "string", pattern: /^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?$/, expected: "empty, or 3 to 63 of a-z, 0-9, '.', '-'" },
    s3Region: { kind: "string", pattern: /^[a-z0-9-]{1,32}$/, expected: "a region name (1 to 32 of a-z, 0-9, '-')" },
    s3Prefix: { kind: "string", pattern: /^((?!\.\.?\/)[A-Za-z0-9_.-]{1,64}\/){0,8}$/, expected: "empty, or path segments of A-Z, a-z, 0-9, '_', '.', '-' each ending in '/'" },
    s3ForcePathStyle: { kind: "bool" },
    s3AccessKeyId: { kind: "string", secret: true, pattern: /^[\x21-\x7e]{0,128}$/, expected: "empty, or up to 128 printable characters without spaces" },
    s3SecretAccessKey: { kind: "string", secret: true, pattern: /^[\x21-\x7e]{0,256}$/, expected: "empty, or up to 256 printable characters without spaces" },
    s3Timeout: { kind: "int", min: 100, max: 600000 },
  },
  transcode: {
    ffmpegPath: { kind: "string", pattern: /^[^\0]+$/, expected: "a path" },
    preset: { kind: "enum", values: ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] },
    ladder: { kind: "ladder" },
    spoolDir: { kind: "string", pattern: /^[^\0]+$/, expected: "a directory path" },
    maxRestarts: { kind: "int", min: 0, max: 100 },
    capacity: { kind: "int", min: 1, max: 1000 },
    cpuTarget: { kind: "number", min: 0, max: 1 },
    niceness: { kind: "int", min: 0, max: 19 },
    // passthrough (issue 14)
    passthrough: { kind: "enum", values: ["auto", "never", "always"] },
  },
  admin: {
    token: { kind: "string", pattern: /^([\x21-\x7e]{16,256})?$/, expected: "empty, or 16 to 256 printable characters without spaces" },
    restartCommand: { kind: "argv" },
    openOps: { kind: "bool" },
  },
  recording: {
    enabled: { kind: "bool" },
    retention: { kind: "int", min: 60, max: 366 * 86400 },
  },
  drain: {
    deadline: { kind: "number", min: 1, max: 3600 },
    onSigterm: { kind: "bool" },
  },
  auth: {
    requirePublishToken: { kind: "bool" },
    publishSecret: SECRET,
    publishTokenTtl: { kind: "int", min: 60, max: 10 * 365 * 86400 },
    requirePlaybackToken: { kind: "bool" },
    playbackSecret: SECRET,
    playbackTokenTtl: { kind: "int", min: 60, max: 365 * 86400 },
  },
  sessions: {
    ttl: { kind: "int", min: 1, max: 365 * 86400 },
    secret: SECRET,
    maxReportsPerSecond: { kind: "int", min: 1, max: 100 },
    flushInterval: { kind: "int", min: 10, max: 5000 },
    startsPerMinute: { kind: "int", min: 1, max: 1000000 },
  },
  delivery: {
    cdn: { kind: "bool" },
    maxViewersPerStream: { kind: "int", min: 0, max: 100000000 },
    maxViewersPerNode: { kind: "int", min: 0, max: 100000000 },
  },
  standby: {
    takeoverAfter: { kind: "number", min: 1, max: 60 },
  },
  log: { level: { kind: "enum", values: ["debug", "info", "warn", "error"] } },
  rollout: {
    canarySoak: { kind: "number", min: 0, max: 86400 },
    stepSoak: { kind: "number", min: 0, max: 86400 },
    steps: { kind: "list", pattern: /^([1-9]\d{0,3}|([1-9]\d?|100)%)$/, expected: "a list of node counts (\"2\") or shares (\"50%\")" },
    readyTimeout: { kind: "number", min: 5, max: 3600 },
    gateErrorRatio: { kind: "number", min: 0, max: 1 },
    gateMinRequests: { kind: "int", min: 0, max: 1000000 },
    gateLatencyFactor: { kind: "number", min: 1, max: 1000 },
    gateLatencyFloor: { kind: "number", min: 0, max: 60 },
    gatePublishLatencyFloor: { kind: "number", min: 0, max: 60 },
    gateMinSpeed: { kind: "number", min: 0, max: 10 },
    gateStallsPerMinute: { kind: "number", min: 0, max: 1000 },
  },
};

function show(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
}

function describe(rule: Rule): string {
  switch (rule.kind) {
    case "int":
      return `an integer from ${rule.min} to ${rule.max}`;
    case "number":
      return `a number from ${rule.min} to ${rule.max}`;
    case "string":
      return rule.expected ?? "a string";
    case "enum":
      return `one of ${rule.values.join(", ")}`;
    case "bool":
      return "true or false";
    case "ladder":
      return "a list of renditions";
    case "argv":
      return "a list of strings (a program and its arguments)";
    case "list":
      return rule.expected;
  }
}

/** Turns an environment variable's text into the type the rule expects (numbers, booleans, JSON). */
export function parseEnvValue(rule: Rule, text: string): unknown {
  switch (rule.kind) {
    case "int":
    case "number": {
      const value = Number(text);
      // keep the text when it is no number, so the error shows what was given
      return text.trim() === "" || !Number.isFinite(value) ? text : value;
    }
    case "bool":
      return text === "true" ? true : text === "false" ? false : text;
    case "ladder":
    case "argv":
    case "list":
      try {
        return JSON.parse(text) as unknown;
      } catch {
        return text;
      }
    default:
      return text;
  }
}

const RENDITION_KEYS: Record<keyof Rendition, Rule> = {
  name: { kind: "string", pattern: RENDITION, expected: "1 to 32 of a-z, 0-9, '_', '-'" },
  height: { kind: "int", min: 120, max: 4320 },
  videoBitrate: { kind: "int", min: 50, max: 100000 },
  audioBitrate: { kind: "int", min: 16, max: 512 },
  maxFrameRate: { kind: "int", min: 0, max: 120 },
};

function checkLadder(key: string, value: unknown, origin: string): void {
  if (!Array.isArray(value) || value.length === 0) {
    throw new ConfigError(key, show(value), origin, "a non-empty list of renditions");
  }
  const names = new Set<string>();
  value.forEach((item: unknown, index) => {
    const at = `${key}[${index}]`;
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      throw new ConfigError(at, show(item), origin, "an object with name, height, videoBitrate, audioBitrate, maxFrameRate");
    }
    const entry = item as Record<string, unknown>;
    for (const field of Object.keys(entry)) {
      if (!Object.hasOwn(RENDITION_KEYS, field)) throw new ConfigError(`${at}.${field}`, show(entry[field]), origin, "no such key");
    }
    for (const [field, rule] of Object.entries(RENDITION_KEYS)) {
      if (!Object.hasOwn(entry, field)) throw new ConfigError(`${at}.${field}`, "nothing", origin, describe(rule));
      checkValue(`${at}.${field}`, rule, entry[field], origin);
    }
    if ((entry.height as number) % 2 !== 0) throw new ConfigError(`${at}.height`, show(entry.height), origin, "an even number");
    if (names.has(entry.name as string)) throw new ConfigError(`${at}.name`, show(entry.name), origin, "a name not used by another rendition");
    names.add(entry.name as string);
  });
}

export function checkValue(key: string, rule: Rule, value: unknown, origin: string): void {
  const bad = (): never => {
    // a refused secret is still someone's secret: say how long it was, never what it was
    const shown = rule.kind === "string" && rule.secret && typeof value === "string" ? `(hidden, ${value.length} characters)` : show(value);
    throw new ConfigError(key, shown, origin, describe(rule));
  };
  switch (rule.kind) {
    case "int":
    case "number":
      if (typeof value !== "number" || !Number.isFinite(value)) bad();
      if (rule.kind === "int" && !Number.isInteger(value)) bad();
      if ((value as number) < rule.min || (value as number) > rule.max) bad();
      return;
    case "string":
      if (typeof value !== "string") bad();
      if (rule.pattern && !rule.pattern.test(value as string)) bad();
      return;
    case "enum":
      if (typeof value !== "string" || !rule.values.includes(value)) bad();
      return;
    case "bool":
      if (typeof value !== "boolean") bad();
      return;
    case "ladder":
      checkLadder(key, value, origin);
      return;
    case "argv":
      if (!Array.isArray(value) || value.some((v) => typeof v !== "string" || v === "" || v.includes("\0"))) bad();
      return;
    case "list":
      if (!Array.isArray(value) || value.length > 100 || value.some((v) => typeof v !== "string" || !rule.pattern.test(v))) bad();
      return;
  }
}

export type { Rule };
