// Releases that must not get past a canary, made for the tests, the benchmark and the chaos harness's
// `bad-release` scenario: a copy of this checkout's committed HEAD with one file changed, or a config file.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../processes.ts";

/** Code changes: which file, what is replaced, and by what. */
const CODE = {
  /** Every segment request answers 500 (caught by gate `errors`). */
  "segments-fail": {
    file: "src/delivery/hls.ts",
    find: "    const seq = Number(seqText);\n",
    put: '    throw new HttpError(500, "BAD_RELEASE", "this release cannot serve segments");\n    const seq = Number(seqText);\n',
  },
  /**
   * The transcoder reads its input at half real time, whatever the machine (gate `transcoder_speed`): a slower
   * preset was no proof, as a quiet machine keeps up with it on the tests' light ladder.
   */
  "slow-transcoder": {
    file: "src/transcode/job.ts",
    find: '    inputOptions: ["-loglevel", "info",',
    put: '    inputOptions: ["-readrate", "0.5", "-loglevel", "info",',
  },
  /** The node exits at start, again and again (gate `node_back`). */
  "crash-loop": {
    file: "src/bin/baton.ts",
    find: "async function runNode(args: string[]): Promise<void> {\n",
    put: 'async function runNode(args: string[]): Promise<void> {\n  if (args) throw new Error("bad release: crashes on start");\n',
  },
} as const;

/** Config changes: another segment duration than the cluster's (refused). */
const CONFIG = {
  "segment-duration": (current: number) => ({ hls: { segmentDuration: current + 1 } }),
} as const;

export type BadRelease = keyof typeof CODE | keyof typeof CONFIG;
export const BAD_RELEASES: BadRelease[] = ["segment-duration", "segments-fail", "crash-loop", "slow-transcoder"];

/**
 * The `rolling-update` arguments of a bad release made under `dir`: `--to` a checkout, or `--config` a file.
 * `segmentDuration` is the running cluster's (hls.segmentDuration), which the segment-duration release changes.
 */
export function makeBadRelease(kind: BadRelease, dir: string, segmentDuration = 1): ["--to" | "--config", string] {
  mkdirSync(dir, { recursive: true });
  if (kind in CONFIG) {
    const file = join(dir, `${kind}.json`);
    writeFileSync(file, JSON.stringify(CONFIG[kind as keyof typeof CONFIG](segmentDuration)));
    return ["--config", file];
  }
  const change = CODE[kind as keyof typeof CODE];
  const checkout = join(dir, kind);
  execFileSync("git", ["clone", "--quiet", "--shared", ROOT, checkout]);
  const path = join(checkout, change.file);
  const before = readFileSync(path, "utf8");
  if (!before.includes(change.find)) throw new Error(`the ${kind} release: ${change.file} no longer holds the line it changes`);
  writeFileSync(path, before.replace(change.find, change.put));
  return ["--to", checkout];
}
