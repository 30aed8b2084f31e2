// The Redis keys that must agree with each other, checked when the config loads: a node is pointed at one
// kind of Redis (a URL, Sentinel or a Cluster), never at two at once with one silently ignored.
import { ConfigError } from "../core/errors.ts";
import type { Config } from "./defaults.ts";
import type { OriginOf } from "./tls.ts";

export function checkRedis(redis: Config["redis"], originOf: OriginOf): void {
  if (redis.cluster.length === 0) return;
  if (redis.sentinels.length > 0) {
    throw new ConfigError("redis.sentinels", JSON.stringify(redis.sentinels), originOf("redis.sentinels"), "[] since redis.cluster is set (a Redis Cluster fails over by itself)");
  }
  // a Redis Cluster has database 0 only; a URL naming another would have its data somewhere baton never looks
  const database = new URL(redis.url).pathname.replace(/^\//, "");
  if (database !== "" && database !== "0") {
    // the URL as shown without its credentials
    const shown = JSON.stringify(redis.url.replace(/\/\/[^@/]*@/, "//***@"));
    throw new ConfigError("redis.url", shown, originOf("redis.url"), "a URL without a database (or /0) since redis.cluster is set (a Redis Cluster has database 0 only)");
  }
}
