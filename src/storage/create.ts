// The one place a node's segment store is made from its config.
import type { Config } from "../config/defaults.ts";
import { FsSegmentStore } from "./fs.ts";
import { S3SegmentStore } from "./s3.ts";
import type { SegmentStore } from "./store.ts";

export function createSegmentStore(storage: Config["storage"]): SegmentStore {
  switch (storage.backend) {
    case "fs":
      return new FsSegmentStore(storage.path);
    case "s3":
      return new S3SegmentStore(storage);
  }
}
