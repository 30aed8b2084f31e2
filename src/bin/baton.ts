// baton's command line. Every failure ends in one clear line on stderr and a non-zero exit, never a stack.
//
//   baton start [--nodes N]      the local cluster: Redis, N nodes, HAProxy (npm start)
//   baton node [--config FILE]   one node, configured by file and BATON_* variables
//   baton token <streamId>       a ready publish URL, signed with the local cluster's secret
//   baton token --play <streamId>  a ready watch URL and master playlist URL with a playback token
//   baton status | drain <id> | undrain <id> | rolling-update [--to R] [--config F] | rollback | history
//                                the operator's commands (--url URL for another address than the balancer)
import { loadConfig } from "../config/load.ts";
import { adminToken, playbackSecret, publishSecret } from "../config/state-dir.ts";
import { makePlaybackToken, playbackUrls } from "../delivery/playback-token.ts";
import { drain, revoke, status, undrain, type AdminClient } from "../../tools/admin-cli.ts";
import { errorMessage } from "../core/errors.ts";
import { makePublishToken } from "../ingest/token.ts";
import { isStreamId } from "../core/ids.ts";
import { createLogger } from "../core/log.ts";

const USAGE = `usage: baton <command>
  start [--nodes N]       run the local cluster (Redis, N nodes, HAProxy); Ctrl-C stops it
  node [--config FILE]    run one node
  token <streamId> [--ttl S]  print a publish URL for a stream (good for auth.publishTokenTtl, or S seconds)
  token --play <streamId> print a watch URL and a master playlist URL with a playback token
  push [FILE] [--stream ID]  push the test pattern (or FILE, looped) and reconnect like OBS; Ctrl-C stops
  status                  nodes, states, streams, owners, viewers
  drain <nodeId>          drain a node (it keeps running, drained, until undrain)
  undrain <nodeId>        take a drained node back
  revoke <streamId>       refuse every publish token of the stream made until now, and end its live publish
  rolling-update [--to RELEASE] [--config FILE]
                          drain, restart and bring back every node in turn; with --to (a git ref or a directory
                          holding a baton checkout) and/or --config (a node config file), a staged update to that
                          release: a canary, then rollout.steps, each gated; a failed gate rolls back by itself
  rollback                restart every node not on the last good release on it
  history                 past rolling updates and rollbacks (when, from, to, outcome, why)
  (status, drain, undrain, revoke, rolling-update, rollback, history take --url URL, default the balancer
   http://<publicHost>:<http.port>)`;

class UsageError extends Error {}

function option(args: string[], name: string): string | undefined {
  const index = args.indexOf(name);
  if (index === -1) return undefined;
  const value = args[index + 1];
  if (value === undefined || value.startsWith("--")) throw new UsageError(`${name} needs a value`);
  args.splice(index, 2);
  return value;
}

async function runNode(args: string[]): Promise<void> {
  const file = option(args, "--config");
  if (args.length > 0) throw new UsageError(`unexpected argument ${args[0]}`);
  const config = loadConfig({ file });
  // loaded here, not at the top: an operator's command (status, token) should not load a whole node
  const { BatonNode } = await import("../node.ts");
  const log = createLogger({ level: config.log.level, node: config.node.id || undefined });
  const node = new BatonNode(config, log);
  node.onExit = () => process.exit(0);
  // A node's log goes to stderr, often a pipe to a supervisor (the local cluster's launcher): if that pipe
  // breaks, the node keeps serving without a log rather than fail on every line
  process.stdout.on("error", () => undefined);
  process.stderr.on("error", () => undefined);
  // The last line of defence: every listener and background task handles its own errors, so reaching here
  // is a bug. One stream's or one client's bug must not end every stream on the node: log it, count it
  // (baton_internal_errors_total, which the hostile-input tests assert stays 0), keep serving.
  process.on("unhandledRejection", (reason) => {
    node.metrics.internalErrors.inc({ kind: "unhandled_rejection" });
    log.error("unhandled promise rejection (a bug; the node keeps running)", { error: errorMessage(reason), stack: stackOf(reason) });
  });
  process.on("uncaughtException", (error) => {
    node.metrics.internalErrors.inc({ kind: "uncaught_exception" });
    log.error("uncaught exception (a bug; the node keeps running)", { error: errorMessage(error), stack: stackOf(error) });
  });
  await node.start();
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`baton: ${signal}, stopping\n`);
    void node.close().then(() => process.exit(0));
  };
  // SIGTERM (a rolling update, Kubernetes, docker stop) drains first: viewers and publishers move to other
  // nodes, then the process exits 0. A second SIGTERM, or SIGINT (Ctrl-C), stops at once, still cleanly.
  process.on("SIGTERM", () => {
    if (config.drain.onSigterm && node.state === "ready" && !stopping) {
      process.stderr.write("baton: SIGTERM, draining\n");
      void node.drain("SIGTERM", { exit: true });
    } else stop("SIGTERM");
  });
  process.on("SIGINT", () => stop("SIGINT"));
}

/** The first frames of an error's stack, on one line, for a log field. */
function stackOf(error: unknown): string | undefined {
  return error instanceof Error ? error.stack?.split("\n").slice(1, 6).map((l) => l.trim()).join(" | ") : undefined;
}

function token(args: string[]): void {
  const file = option(args, "--config");
  const ttlText = option(args, "--ttl");
  const ttl = ttlText === undefined ? undefined : Number(ttlText);
  if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 60 || ttl > 10 * 365 * 86400)) {
    throw new UsageError("--ttl takes a whole number of seconds from 60 to 315360000 (ten years)");
  }
  const play = args.indexOf("--play");
  if (play !== -1) args.splice(play, 1);
  const streamId = args[0];
  if (!streamId || args.length > 1) throw new UsageError("token takes one stream id");
  if (!isStreamId(streamId)) throw new UsageError(`stream id ${JSON.stringify(streamId)}: expected 1 to 64 of A-Z, a-z, 0-9, '_', '-'`);
  const config = loadConfig({ file });
  if (play === -1) {
    const value = makePublishToken(publishSecret(config), streamId, ttl ?? config.auth.publishTokenTtl);
    console.log(`rtmp://${config.node.publicHost}:${config.rtmp.port}/live/${streamId}?token=${value}`);
    return;
  }
  const { token: value } = makePlaybackToken(playbackSecret(config), streamId, ttl ?? config.auth.playbackTokenTtl);
  const { url, playlistUrl } = playbackUrls(`http://${config.node.publicHost}:${config.http.port}`, streamId, value);
  if (!config.auth.requirePlaybackToken) process.stderr.write("baton: auth.requirePlaybackToken is off here: viewers need no token\n");
  console.log(url);
  console.log(playlistUrl);
}

async function pushCommand(args: string[]): Promise<void> {
  const file = option(args, "--config");
  const streamId = option(args, "--stream") ?? "demo";
  const url = option(args, "--url");
  const testPattern = args.indexOf("--test-pattern");
  if (testPattern !== -1) args.splice(testPattern, 1);
  if (args.length > 1 || args[0]?.startsWith("--")) throw new UsageError(`push takes at most one file; unexpected ${args[args.length - 1]}`);
  const source = testPattern !== -1 ? null : (args[0] ?? null);
  if (!isStreamId(streamId)) throw new UsageError(`stream id ${JSON.stringify(streamId)}: expected 1 to 64 of A-Z, a-z, 0-9, '_', '-'`);
  const config = loadConfig({ file });
  const target = url ?? `rtmp://${config.node.publicHost}:${config.rtmp.port}/live/${streamId}?token=${makePublishToken(publishSecret(config), streamId, config.auth.publishTokenTtl)}`;
  const stop = new AbortController();
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => stop.abort());
  const { push } = await import("../../tools/push.ts");
  await push({ url: target, file: source, retryDelayMs: 2000, say: (line) => process.stderr.write(`baton push: ${line}\n`) }, stop.signal);
}

function adminClient(args: string[]): AdminClient {
  const url = option(args, "--url");
  const config = loadConfig({ file: option(args, "--config") });
  return {
    url: (url ?? `http://${config.node.publicHost}:${config.http.port}`).replace(/\/$/, ""),
    token: adminToken(config),
    say: (line) => console.log(line),
  };
}

function nodeArg(args: string[], command: string): string {
  const node = args[0];
  if (!node || args.length > 1) throw new UsageError(`${command} takes one node id`);
  return node;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  switch (command) {
    case "start": {
      const nodes = option(args, "--nodes");
      const count = nodes === undefined ? 3 : Number(nodes);
      if (!Number.isInteger(count) || count < 1 || count > 16) throw new UsageError("--nodes takes a whole number from 1 to 16");
      if (args.length > 0) throw new UsageError(`unexpected argument ${args[0]}`);
      const { runLocalCluster } = await import("../../tools/local-cluster.ts");
      await runLocalCluster({ nodes: count });
      return;
    }
    case "node":
      return runNode(args);
    case "token":
      return token(args);
    case "push":
      return pushCommand(args);
    case "status": {
      const client = adminClient(args);
      if (args.length > 0) throw new UsageError(`unexpected argument ${args[0]}`);
      console.log(await status(client));
      return;
    }
    case "drain": {
      const client = adminClient(args);
      console.log(await drain(client, nodeArg(args, "drain")));
      return;
    }
    case "revoke": {
      const client = adminClient(args);
      const stream = args[0];
      if (!stream || args.length > 1 || !isStreamId(stream)) throw new UsageError("revoke takes one stream id");
      console.log(await revoke(client, stream));
      return;
    }
    case "undrain": {
      const client = adminClient(args);
      console.log(await undrain(client, nodeArg(args, "undrain")));
      return;
    }
    case "rolling-update":
    case "rollback":
    case "history": {
      // --config of rolling-update is the release's config file, not this command's
      const releaseConfig = command === "rolling-update" ? option(args, "--config") : undefined;
      const to = command === "rolling-update" ? option(args, "--to") : undefined;
      const client = adminClient(args);
      if (args.length > 0) throw new UsageError(`unexpected argument ${args[0]}`);
      const { rolloutCommand } = await import("../../tools/rollout/cli.ts");
      await rolloutCommand(command, client, loadConfig(), { to, config: releaseConfig });
      return;
    }
    case undefined:
    case "help":
    case "--help":
      console.log(USAGE);
      return;
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`baton: ${errorMessage(error)}\n`);
  if (error instanceof UsageError) process.stderr.write(`${USAGE}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
});
