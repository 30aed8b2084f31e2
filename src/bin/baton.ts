// baton's command line. Every failure ends in one clear line on stderr and a non-zero exit, never a stack.
//
//   baton start [--nodes N]      the local cluster: Redis, N nodes, HAProxy (npm start)
//   baton node [--config FILE]   one node, configured by file and BATON_* variables
//   baton token <streamId>       a ready publish URL, signed with the local cluster's secret
import { loadConfig } from "../config/load.ts";
import { publishSecret } from "../config/state-dir.ts";
import { errorMessage } from "../errors.ts";
import { makePublishToken } from "../ingest/token.ts";
import { isStreamId } from "../ingest/stream-id.ts";
import { createLogger } from "../log.ts";
import { BatonNode } from "../node.ts";
import { runLocalCluster } from "../ops/local-cluster.ts";

const USAGE = `usage: baton <command>
  start [--nodes N]       run the local cluster (Redis, N nodes, HAProxy); Ctrl-C stops it
  node [--config FILE]    run one node
  token <streamId>        print a publish URL for a stream`;

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
  const node = new BatonNode(config, createLogger({ level: config.log.level, node: config.node.id || undefined }));
  await node.start();
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`baton: ${signal}, stopping\n`);
    void node.close().then(() => process.exit(0));
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

function token(args: string[]): void {
  const file = option(args, "--config");
  const streamId = args[0];
  if (!streamId || args.length > 1) throw new UsageError("token takes one stream id");
  if (!isStreamId(streamId)) throw new UsageError(`stream id ${JSON.stringify(streamId)}: expected 1 to 64 of A-Z, a-z, 0-9, '_', '-'`);
  const config = loadConfig({ file });
  const value = makePublishToken(publishSecret(config), streamId, config.auth.publishTokenTtl);
  console.log(`rtmp://${config.node.publicHost}:${config.rtmp.port}/live/${streamId}?token=${value}`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  switch (command) {
    case "start": {
      const nodes = option(args, "--nodes");
      const count = nodes === undefined ? 3 : Number(nodes);
      if (!Number.isInteger(count) || count < 1 || count > 16) throw new UsageError("--nodes takes a whole number from 1 to 16");
      if (args.length > 0) throw new UsageError(`unexpected argument ${args[0]}`);
      await runLocalCluster({ nodes: count });
      return;
    }
    case "node":
      return runNode(args);
    case "token":
      return token(args);
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
