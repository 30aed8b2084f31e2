// `baton rolling-update [--to RELEASE] [--config FILE]`, `baton rollback`, `baton history`: the CLI's side of
// rollouts. It reads and writes the rollout keys in the cluster's Redis (redis.* of its config, as the nodes'),
// prepares the release before any node is touched, and exits non-zero naming a failed gate.
import type { Config } from "../../src/config/defaults.ts";
import { stateDir } from "../../src/config/state-dir.ts";
import { errorMessage } from "../../src/core/errors.ts";
import { closeRedis, redisClient } from "../../src/state/client.ts";
import { Keys } from "../../src/state/keys.ts";
import { RolloutStore } from "../../src/state/rollouts.ts";
import { streamsOf, type AdminClient } from "../admin-cli.ts";
import { loadReleaseConfig, prepareRelease, startingRelease } from "./release.ts";
import { historyTable, rollback, rollingUpdate, type RollingOptions } from "./run.ts";

/**
 * A live playlist's EXT-X-TARGETDURATION never changes (RFC 8216bis 6.2.1): a release with another segment
 * duration would break every live stream it took, so it is refused before any node is touched.
 */
async function checkLiveStreams(client: AdminClient, store: RolloutStore, next: Config): Promise<void> {
  const live = (await streamsOf(client)).filter((s) => s.state !== "ended").map((s) => s.id);
  const conflicts = [...(await store.targetDurations(live))].filter(([, target]) => target !== next.hls.segmentDuration);
  if (conflicts.length === 0) return;
  throw new Error(
    `refused: the release's hls.segmentDuration ${next.hls.segmentDuration} differs from the target duration of live stream(s) ` +
      `${conflicts.map(([id, t]) => `${id} (${t} s)`).join(", ")}, which a live playlist cannot change; no node was touched. ` +
      "Keep the segment duration, or roll it out once those streams ended",
  );
}

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
    if (to.config) await checkLiveStreams(client, store, loadReleaseConfig(to.config));
    await rollingUpdate(client, options, { from: lastGood, to });
  } finally {
    closeRedis(redis);
  }
}
