// s3rver (a real S3-protocol server, a devDependency) as its own process on a loopback port, with one bucket:
// the s3 segment store for the tests and the storage benchmark, without Docker.
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { freePort, startProcess, waitForPort, type Managed } from "./processes.ts";

export const S3RVER_BUCKET = "baton-segments";
/** s3rver's built-in account. */
export const S3RVER_ACCESS = { s3AccessKeyId: "S3RVER", s3SecretAccessKey: "S3RVER" };

export interface S3rver {
  endpoint: string;
  proc: Managed;
  /** A plain SDK client on the server, for what a store does not do (make buckets, look at objects). */
  client(): S3Client;
}

/** Starts s3rver keeping its objects in `dir` and makes the bucket. */
export async function startS3rver(host: string, dir: string): Promise<S3rver> {
  const port = await freePort();
  const endpoint = `http://${host}:${port}`;
  // s3rver's continuation tokens use DES, which OpenSSL 3 (Node 17 and later) keeps in its legacy provider
  const proc = startProcess("s3rver", process.execPath, ["--openssl-legacy-provider", "node_modules/s3rver/bin/s3rver.js", "-d", dir, "-a", host, "-p", String(port), "-s"]);
  await waitForPort(host, port, 20000, proc);
  const client = (): S3Client =>
    new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: S3RVER_ACCESS.s3AccessKeyId, secretAccessKey: S3RVER_ACCESS.s3SecretAccessKey } });
  const admin = client();
  await admin.send(new CreateBucketCommand({ Bucket: S3RVER_BUCKET }));
  admin.destroy();
  return { endpoint, proc, client };
}

/** The BATON_* settings of a node whose segment store is this s3rver's bucket. */
export function s3rverNodeEnv(s3: Pick<S3rver, "endpoint">): Record<string, string> {
  return {
    BATON_STORAGE_BACKEND: "s3", BATON_STORAGE_S3ENDPOINT: s3.endpoint, BATON_STORAGE_S3BUCKET: S3RVER_BUCKET,
    BATON_STORAGE_S3FORCEPATHSTYLE: "true", BATON_STORAGE_S3_ACCESSKEYID: S3RVER_ACCESS.s3AccessKeyId,
    BATON_STORAGE_S3_SECRETACCESSKEY: S3RVER_ACCESS.s3SecretAccessKey,
  };
}
