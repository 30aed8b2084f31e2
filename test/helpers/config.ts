// Helpers for the config tests: config files in a temp dir, and the ConfigError a load throws.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, type LoadOptions } from "../../src/config/load.ts";
import { ConfigError, errorMessage } from "../../src/core/errors.ts";

export const GOOD_RENDITION = { name: "a", height: 360, videoBitrate: 800, audioBitrate: 96, maxFrameRate: 30 };

let dir = "";
let fileCount = 0;

/** Mocha hooks: a temp dir for the describe block's config files. */
export function configFiles(): { dir(): string } {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "baton-config-test-"));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir: () => dir };
}

/** Writes `content` (text as is, anything else as JSON) to a fresh temp file and returns its path. */
export function configFile(content: unknown): string {
  const path = join(dir, `config-${fileCount++}.json`);
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

/** Runs loadConfig and returns the ConfigError it throws; fails if it throws nothing or something else. */
export function configError(options: LoadOptions): ConfigError {
  let caught: unknown;
  try {
    loadConfig(options);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught !== undefined, "expected loadConfig to throw, it returned a config");
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.equal(caught.code, "CONFIG_INVALID");
  return caught;
}

/** The message Node gives for a failing JSON.parse / readFileSync, so the expected text is exact on any Node. */
export function thrownMessage(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    return errorMessage(error);
  }
  throw new Error("expected the action to throw");
}
