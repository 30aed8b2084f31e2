// Loads the Lua scripts (one file each, `name-K.lua` with K the number of keys or `n` when variable) into an
// ioredis client under a name that carries baton's version, so two releases sharing one Redis during a
// rolling update each run their own scripts. Maps script errors to baton's errors in one place.
import { readFileSync, readdirSync } from "node:fs";
import type { ChainableCommander } from "ioredis";
import type { RedisClient } from "./client.ts";
import { AdmissionError, AlreadyLiveError, BatonError, FencedError, HandoffPendingError } from "../core/errors.ts";
import { VERSION } from "../core/version.ts";

const DIR = new URL("./scripts/", import.meta.url);
const SUFFIX = `_v${VERSION.replace(/\W/g, "_")}`;

export type ScriptName = "claim" | "renew" | "ladder" | "append" | "archive" | "release" | "sweep" | "session" | "handoff" | "lead" | "slate";
export type ScriptArg = string | number | Buffer;
type ScriptFn = (...args: ScriptArg[]) => Promise<unknown>;

/** What every script shares (`*.lib.lua`), put before each script's own text. */
const LIBRARY = readdirSync(DIR).filter((f) => f.endsWith(".lib.lua")).sort().map((f) => readFileSync(new URL(f, DIR), "utf8")).join("");

export function defineScripts(redis: RedisClient): void {
  for (const file of readdirSync(DIR)) {
    const match = /^([a-z]+)-(\d+|n)\.lua$/.exec(file);
    if (!match) continue;
    const [, name, keys] = match as unknown as [string, string, string];
    const lua = LIBRARY + readFileSync(new URL(file, DIR), "utf8");
    redis.defineCommand(name + SUFFIX, keys === "n" ? { lua } : { lua, numberOfKeys: Number(keys) });
  }
}

/** Runs a script; for a script with a variable number of keys, the first argument is that number. */
export async function runScript(redis: RedisClient, name: ScriptName, args: ScriptArg[], buffers = false): Promise<unknown> {
  const fn = (redis as unknown as Record<string, ScriptFn | undefined>)[name + SUFFIX + (buffers ? "Buffer" : "")];
  if (!fn) throw new Error(`script ${name} is not loaded`);
  try {
    return await fn.apply(redis, args);
  } catch (error) {
    throw mapScriptError(error);
  }
}

/** Adds a script call to a pipeline (its result comes with the pipeline's exec()). */
export function queueScript(pipeline: ChainableCommander, name: ScriptName, args: ScriptArg[]): void {
  const fn = (pipeline as unknown as Record<string, ((...a: ScriptArg[]) => unknown) | undefined>)[name + SUFFIX];
  if (!fn) throw new Error(`script ${name} is not loaded`);
  fn.apply(pipeline, args);
}

/** Script errors start with a code; the rest of the message is detail. */
export function mapScriptError(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const [code, ...rest] = error.message.split(" ");
  const detail = rest.join(" ");
  switch (code) {
    case "STALE_EPOCH":
      return new FencedError("STALE_EPOCH", `write refused: the stream moved to epoch ${detail}`);
    case "SEQ_MISMATCH":
      return new FencedError("SEQ_MISMATCH", `write refused: the next sequence number is ${detail}`, Number.isInteger(Number(detail)) ? Number(detail) : null);
    case "STREAM_ENDED":
      return new FencedError("STREAM_ENDED", "write refused: the stream ended (EXT-X-ENDLIST was served)");
    case "HANDOFF_PENDING":
      return new HandoffPendingError(`the stream is being handed over by ${detail.split("/")[0]}`);
    case "NOT_LIVE":
      return new BatonError("NOT_LIVE", `no live timeline to keep a slate for (state ${detail})`);
    case "CONFIG_CONFLICT": {
      const [had, asked] = detail.split(" ");
      return new AdmissionError("config_conflict", `the stream's live timeline has ${had}-s segments (EXT-X-TARGETDURATION); this node's hls.segmentDuration is ${asked}: it does not take the stream`);
    }
    case "ALREADY_LIVE":
      return new AlreadyLiveError(detail.split("/")[0] ?? "");
    default:
      return error;
  }
}
