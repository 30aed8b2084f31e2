// A real S3-protocol server for tests: s3rver, as its own process on a free loopback port, with one bucket.
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { freePort, startProcess, stopProcess, waitForPort, type Managed } from "../../tools/processes.ts";
import { HOST, tempDir } from "./stack.ts";

export const S3_BUCKET = "baton-segments";
/** s3rver's built-in account. */
export const S3_ACCESS = { s3AccessKeyId: "S3RVER", s3SecretAccessKey: "S3RVER" };

export interface TestS3 {
  endpoint: string;
  proc: Managed;
  /** A plain SDK client on the server, for what a store does not do (make buckets, look at objects). */
  client(): S3Client;
  stop(): Promise<void>;
}

export async function startTestS3(): Promise<TestS3> {
  const port = await freePort();
  const endpoint = `http://${HOST}:${port}`;
  // s3rver's continuation tokens use DES, which OpenSSL 3 (Node 17 and later) keeps in its legacy provider
  const proc = startProcess("s3rver", process.execPath, ["--openssl-legacy-provider", "node_modules/s3rver/bin/s3rver.js", "-d", tempDir("s3rver"), "-a", HOST, "-p", String(port), "-s"]);
  await waitForPort(HOST, port, 20000, proc);
  const client = (): S3Client =>
    new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: S3_ACCESS.s3AccessKeyId, secretAccessKey: S3_ACCESS.s3SecretAccessKey } });
  const admin = client();
  await admin.send(new CreateBucketCommand({ Bucket: S3_BUCKET }));
  admin.destroy();
  return { endpoint, proc, client, stop: () => stopProcess(proc, "SIGTERM", 2000) };
}
