// The segment store's keys that must agree with each other, checked when the config loads, so a node that
// cannot reach its store's bucket never starts with half a configuration.
import { ConfigError } from "../core/errors.ts";
import type { Config } from "./defaults.ts";
import type { OriginOf } from "./tls.ts";

export function checkStorage(storage: Config["storage"], originOf: OriginOf): void {
  if (storage.backend !== "s3") return;
  if (storage.s3Bucket === "") {
    throw new ConfigError("storage.s3Bucket", '""', originOf("storage.backend"), "a bucket name, since storage.backend is s3");
  }
  // one of the pair alone would sign with half a credential; both empty means the SDK's default chain
  const id = storage.s3AccessKeyId !== "";
  const secret = storage.s3SecretAccessKey !== "";
  if (id && !secret) {
    throw new ConfigError("storage.s3SecretAccessKey", '""', originOf("storage.s3AccessKeyId"), "a secret access key, since storage.s3AccessKeyId is set");
  }
  if (secret && !id) {
    throw new ConfigError("storage.s3AccessKeyId", '""', originOf("storage.s3SecretAccessKey"), "an access key id, since storage.s3SecretAccessKey is set");
  }
}
