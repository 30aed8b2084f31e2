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

/** What a rollout needs: the CLI's admin client, the cluster's config and Redis, the local cluster's state dir. */
export interface RolloutContext {
  client: AdminClient;
  config: Config;
  store: RolloutStore;
  stateDir: string;
}

function rollingOptions(r: RolloutContext): RollingOptions {
  const { config } = r;
  return {
    restartCommand: config.admin.restartCommand, timeout: config.drain.deadline + 60, maxErrorRate: 0.01, readyChecks: 3,
    store: r.store, stateDir: r.stateDir, rollout: config.rollout,
  };
}

/** `rolling-update --to/--config`: prepares and checks the release, then the staged, gated update to it. */
export async function updateToRelease(r: RolloutContext, release: { to?: string; config?: string }): Promise<void> {
  const lastGood = (await r.store.lastGood()) ?? startingRelease();
  const to = await prepareRelease({ ...release, base: lastGood, stateDir: r.stateDir, say: r.client.say });
  if (to.config) await checkLiveStreams(r.client, r.store, loadReleaseConfig(to.config));
  await rollingUpdate(r.client, rollingOptions(r), { from: lastGood, to });
}

/** A Redis client for the rollout's keys, connected, and closed after `use`. */
export async function withRolloutStore<T>(redisConfig: Config["redis"], use: (store: RolloutStore) => Promise<T>): Promise<T> {
  const redis = redisClient(redisConfig, "baton-cli", redisConfig.commandTimeout);
  try {
    await redis.connect().catch((error: unknown) => {
      throw new Error(`cannot reach Redis at ${redisConfig.url} (${errorMessage(error)}): the rollout's state is kept there`);
    });
    return await use(new RolloutStore(redis, new Keys(redisConfig.prefix)));
  } finally {
    closeRedis(redis);
  }
}

export async function rolloutCommand(
  command: "rolling-update" | "rollback" | "history",
  client: AdminClient,
  config: Config,
  release: { to?: string; config?: string },
): Promise<void> {
  await withRolloutStore(config.redis, async (store) => {
    const r: RolloutContext = { client, config, store, stateDir: stateDir() };
    if (command === "history") {
      client.say(historyTable(await store.history()));
    } else if (command === "rollback") {
      await rollback(client, { ...rollingOptions(r), stateDir: r.stateDir, store }, (await store.lastGood()) ?? startingRelease());
    } else if (release.to === undefined && release.config === undefined) {
      await rollingUpdate(client, { ...rollingOptions(r), rollout: undefined });
    } else {
      await updateToRelease(r, release);
    }
  });
}
