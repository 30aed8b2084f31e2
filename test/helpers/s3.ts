// A real S3-protocol server for tests: s3rver (tools/s3rver.ts), stopped with the test that started it.
import type { S3Client } from "@aws-sdk/client-s3";
import { S3RVER_ACCESS, S3RVER_BUCKET, startS3rver } from "../../tools/s3rver.ts";
import { stopProcess, type Managed } from "../../tools/processes.ts";
import { HOST, tempDir } from "./stack.ts";

export const S3_BUCKET = S3RVER_BUCKET;
export const S3_ACCESS = S3RVER_ACCESS;

export interface TestS3 {
  endpoint: string;
  proc: Managed;
  /** A plain SDK client on the server, for what a store does not do (make buckets, look at objects). */
  client(): S3Client;
  stop(): Promise<void>;
}

export async function startTestS3(): Promise<TestS3> {
  const s3 = await startS3rver(HOST, tempDir("s3rver"));
  return { ...s3, stop: () => stopProcess(s3.proc, "SIGTERM", 2000) };
}
