// `baton rolling-update [--to RELEASE] [--config FILE]`, `baton rollback`, `baton history`: the CLI's side of
// rollouts. It reads and writes the rollout keys in the cluster's Redis (redis.* of its config, as the nodes'),
// prepares the release before any node is touched, and exits non-zero naming a failed gate.
import type { Config } from "../../src/config/defaults.ts";
import { stateDir } from "../../src/config/state-dir.ts";
import { errorMessage } from "../../src/core/errors.ts";
import { closeRedis, redisClient } from "../../src/state/client.ts";
import { Keys } from "../../src/state/keys.ts";
import { RolloutStore } from "../../src/state/rollouts.ts";
import type { AdminClient } from "../admin-cli.ts";
import { prepareRelease, startingRelease } from "./release.ts";
import { historyTable, rollback, rollingUpdate, type RollingOptions } from "./run.ts";

export async function rolloutCommand(
  command: "rolling-update" | "rollback" | "history",
  client: AdminClient,
  config: Config,
  release: { to?: string; config?: string },
): Promise<void> {
  const redis = redisClient(config.redis, "baton-cli", config.redis.commandTimeout);
  try {
    await redis.connect().catch((error: unknown) => {
      throw new Error(`cannot reach Redis at ${config.redis.url} (${errorMessage(error)}): the rollout's state is kept there`);
    });
    const store = new RolloutStore(redis, new Keys(config.redis.prefix));
    if (command === "history") {
      client.say(historyTable(await store.history()));
      return;
    }
    const dir = stateDir();
    const options: RollingOptions = {
      restartCommand: config.admin.restartCommand, timeout: config.drain.deadline + 60, maxErrorRate: 0.01, readyChecks: 3,
      store, stateDir: dir, rollout: config.rollout,
    };
    const lastGood = (await store.lastGood()) ?? startingRelease();
    if (command === "rollback") {
      await rollback(client, { ...options, stateDir: dir, store }, lastGood);
      return;
    }
    if (release.to === undefined && release.config === undefined) {
      await rollingUpdate(client, { ...options, rollout: undefined });
      return;
    }
    const to = await prepareRelease({ ...release, base: lastGood, stateDir: dir, say: client.say });
    await rollingUpdate(client, options, { from: lastGood, to });
  } finally {
    closeRedis(redis);
  }
}
