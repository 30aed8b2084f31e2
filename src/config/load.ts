// Loads the config: the defaults table, then an optional JSON file, then BATON_* environment variables,
// then validation. Unknown keys and bad values throw ConfigError before anything opens a port.
import { readFileSync } from "node:fs";
import { ConfigError, errorMessage } from "../core/errors.ts";
import { DEFAULTS, type Config } from "./defaults.ts";
import { SCHEMA, checkValue, parseEnvValue, type Rule } from "./schema.ts";
import { checkRedis } from "./redis.ts";
import { checkStorage } from "./storage.ts";
import { inputLossDefaults } from "./input-loss.ts";
import { rtmpsContext } from "./tls.ts";

/** BATON_* variables that are not config keys but are read elsewhere. */
const OTHER_ENV = new Set(["BATON_CONFIG", "BATON_STATE_DIR"]);

/**
 * Other names of config keys, as the S3 tools' users know them; the key's own variable
 * (BATON_STORAGE_S3ACCESSKEYID) wins when both are set, as BATON_REDIS_URL wins over REDIS_URL.
 */
const ENV_ALIASES: Record<string, { section: "storage"; key: "s3AccessKeyId" | "s3SecretAccessKey" }> = {
  BATON_STORAGE_S3_ACCESSKEYID: { section: "storage", key: "s3AccessKeyId" },
  BATON_STORAGE_S3_SECRETACCESSKEY: { section: "storage", key: "s3SecretAccessKey" },
};

export interface LoadOptions {
  /** Path of a JSON config file; BATON_CONFIG in the environment also names one. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Values applied after the environment (the local cluster sets ports this way). */
  overrides?: DeepPartial<Config>;
}

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object[] ? T[K] : T[K] extends object ? DeepPartial<T[K]> : T[K] };

type Section = Record<string, unknown>;

/** The env variable for a key: http.port -> BATON_HTTP_PORT, hls.segmentDuration -> BATON_HLS_SEGMENTDURATION. */
export function envName(section: string, key: string): string {
  return `BATON_${section}_${key}`.toUpperCase();
}

/** Where each key set so far came from ("section.key" to a file, a variable, the command line). */
type Origins = Map<string, string>;

function merge(target: Config, source: unknown, origin: string, origins: Origins): void {
  if (typeof source !== "object" || source === null || Array.isArray(source)) {
    throw new ConfigError("(top level)", JSON.stringify(source), origin, "an object of sections");
  }
  for (const [section, values] of Object.entries(source as Section)) {
    const rules = Object.hasOwn(SCHEMA, section) ? (SCHEMA as Record<string, Record<string, Rule>>)[section] : undefined;
    if (!rules) throw new ConfigError(section, "", origin, "no such key");
    if (typeof values !== "object" || values === null || Array.isArray(values)) {
      throw new ConfigError(section, JSON.stringify(values), origin, "an object");
    }
    for (const [key, value] of Object.entries(values as Section)) {
      const rule = Object.hasOwn(rules, key) ? rules[key] : undefined;
      if (!rule) throw new ConfigError(`${section}.${key}`, "", origin, "no such key");
      checkValue(`${section}.${key}`, rule, value, origin);
      ((target as unknown as Record<string, Section>)[section] as Section)[key] = value;
      origins.set(`${section}.${key}`, origin);
    }
  }
}

export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const config = structuredClone(DEFAULTS);
  const origins: Origins = new Map();
  const file = options.file ?? env.BATON_CONFIG;
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, "utf8"));
    } catch (error) {
      throw new ConfigError("(file)", JSON.stringify(file), file, `a readable JSON file (${errorMessage(error)})`);
    }
    merge(config, parsed, file, origins);
  }
  const fromEnv: Record<string, Section> = {};
  for (const [name, text] of Object.entries(env)) {
    if (!name.startsWith("BATON_") || OTHER_ENV.has(name) || Object.hasOwn(ENV_ALIASES, name) || text === undefined) continue;
    let found = false;
    for (const [section, rules] of Object.entries(SCHEMA as Record<string, Record<string, Rule>>)) {
      for (const [key, rule] of Object.entries(rules)) {
        if (envName(section, key) === name) {
          (fromEnv[section] ??= {})[key] = parseEnvValue(rule, text);
          found = true;
        }
      }
    }
    if (!found) throw new ConfigError(name, "", "environment", "no such key");
  }
  for (const [section, values] of Object.entries(fromEnv)) {
    for (const [key, value] of Object.entries(values)) merge(config, { [section]: { [key]: value } }, envName(section, key), origins);
  }
  // the conventional variable, for `REDIS_URL=... npm start`; BATON_REDIS_URL wins when both are set
  if (env.REDIS_URL && !env.BATON_REDIS_URL) merge(config, { redis: { url: env.REDIS_URL } }, "REDIS_URL", origins);
  for (const [alias, { section, key }] of Object.entries(ENV_ALIASES)) {
    const text = env[alias];
    if (text !== undefined && env[envName(section, key)] === undefined) merge(config, { [section]: { [key]: text } }, alias, origins);
  }
  if (options.overrides) merge(config, options.overrides, "command line", origins);
  // keys that must agree with each other, or with files
  const originOf = (key: string): string => origins.get(key) ?? "defaults";
  rtmpsContext(config.rtmps, originOf);
  checkStorage(config.storage, originOf);
  checkRedis(config.redis, originOf);
  inputLossDefaults(config.hls, originOf);
  return config;
}

/** The BATON_* variables that set these config values (the inverse of loading): for starting node processes. */
export function configEnv(values: DeepPartial<Config>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [section, keys] of Object.entries(values as Record<string, Record<string, unknown> | undefined>)) {
    for (const [key, value] of Object.entries(keys ?? {})) {
      if (value === undefined) continue;
      env[envName(section, key)] = typeof value === "object" ? JSON.stringify(value) : String(value);
    }
  }
  return env;
}
