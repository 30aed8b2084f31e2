// The s3 backend: any S3-compatible store (AWS S3, MinIO, Ceph RGW, R2) through the AWS SDK v3. PutObject is
// atomic by S3's semantics (an object appears whole or not at all). Every call is bounded by s3Timeout,
// retries included, and every failure becomes a StorageError naming the store, so an unreachable store fails
// its callers quickly and says where it was looked for.
import {
  DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type ListObjectsV2CommandOutput,
} from "@aws-sdk/client-s3";
import type { Config } from "../config/defaults.ts";
import { StorageError, errorMessage } from "../core/errors.ts";
import { checkKey, checkPrefix, isStorageKey } from "./keys.ts";
import { checkRange, closedError, rangeNotSatisfiable, type ByteRange, type SegmentStore, type StoredObject } from "./store.ts";

type S3Config = Pick<Config["storage"],
  "s3Endpoint" | "s3Bucket" | "s3Region" | "s3Prefix" | "s3ForcePathStyle" | "s3AccessKeyId" | "s3SecretAccessKey" | "s3Timeout">;

/** What the SDK's errors carry: a service error's name and HTTP status, or a socket error's code. */
interface SdkError {
  name?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

const NETWORK = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "EAI_AGAIN", "EPIPE"]);
const DENIED = new Set(["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "CredentialsProviderError"]);

export class S3SegmentStore implements SegmentStore {
  private readonly client: S3Client;
  private readonly where: string;
  private closed = false;

  constructor(private readonly config: S3Config) {
    this.where = `${config.s3Endpoint || `AWS S3 (${config.s3Region})`} bucket ${config.s3Bucket}`;
    this.client = new S3Client({
      endpoint: config.s3Endpoint || undefined,
      region: config.s3Region,
      forcePathStyle: config.s3ForcePathStyle,
      credentials: config.s3AccessKeyId ? { accessKeyId: config.s3AccessKeyId, secretAccessKey: config.s3SecretAccessKey } : undefined,
      requestHandler: { connectionTimeout: config.s3Timeout, requestTimeout: config.s3Timeout },
      // checksums only where S3 requires them: compatible stores that predate the SDK's default checksums
      // (and its aws-chunked uploads) refuse them
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
  }

  private objectKey(key: string): string {
    return this.config.s3Prefix + key;
  }

  /** Runs one call (its body included) within s3Timeout, and maps whatever it throws. */
  private async call<T>(what: string, run: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.closed) throw closedError();
    const abortSignal = AbortSignal.timeout(this.config.s3Timeout);
    try {
      return await run(abortSignal);
    } catch (error) {
      throw this.mapError(what, error, abortSignal.aborted);
    }
  }

  private mapError(what: string, error: unknown, timedOut: boolean): StorageError {
    if (error instanceof StorageError) return error;
    const e = (typeof error === "object" && error !== null ? error : {}) as SdkError;
    const status = e.$metadata?.httpStatusCode;
    const at = `storage: ${what} at ${this.where}`;
    if (timedOut || e.name === "AbortError" || e.name === "TimeoutError") {
      return new StorageError("STORAGE_UNAVAILABLE", `${at}: no answer within ${this.config.s3Timeout} ms (storage.s3Timeout)`);
    }
    if ((e.code !== undefined && NETWORK.has(e.code)) || (status !== undefined && status >= 500)) {
      return new StorageError("STORAGE_UNAVAILABLE", `${at}: unavailable (${errorMessage(error)})`);
    }
    if (status === 401 || status === 403 || (e.name !== undefined && DENIED.has(e.name))) {
      return new StorageError("STORAGE_DENIED", `${at}: credentials or permission refused (${e.name ?? status}: ${errorMessage(error)})`);
    }
    return new StorageError(status === undefined ? "STORAGE_UNAVAILABLE" : "STORAGE_FAILED", `${at}: ${e.name ?? "error"}: ${errorMessage(error)}`);
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    const name = this.objectKey(checkKey(key));
    await this.call(`writing ${key}`, (abortSignal) =>
      this.client.send(new PutObjectCommand({ Bucket: this.config.s3Bucket, Key: name, Body: bytes, ContentType: name.endsWith(".json") ? "application/json" : "video/mp2t" }), { abortSignal }));
  }

  async get(key: string, range?: ByteRange): Promise<Buffer | null> {
    const name = this.objectKey(checkKey(key));
    checkRange(range);
    return this.call(`reading ${key}`, async (abortSignal) => {
      try {
        const answer = await this.client.send(new GetObjectCommand({
          Bucket: this.config.s3Bucket, Key: name, Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }), { abortSignal });
        if (!answer.Body) return Buffer.alloc(0);
        const bytes = await answer.Body.transformToByteArray();
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      } catch (error) {
        const e = error as SdkError;
        if (e.name === "NoSuchKey") return null;
        if (range && (e.name === "InvalidRange" || e.$metadata?.httpStatusCode === 416)) throw rangeNotSatisfiable(key, range);
        throw error;
      }
    });
  }

  /** The pages of object names under a checked prefix (the store's prefix included). */
  private async *pages(prefix: string, what: string): AsyncGenerator<NonNullable<ListObjectsV2CommandOutput["Contents"]>> {
    let token: string | undefined;
    do {
      const page = await this.call(what, (abortSignal) => this.client.send(new ListObjectsV2Command({
        Bucket: this.config.s3Bucket, Prefix: this.objectKey(prefix), ContinuationToken: token,
      }), { abortSignal }));
      yield page.Contents ?? [];
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(keys: string[]): Promise<void> {
    const what = `deleting ${keys.length} objects`;
    for (let i = 0; i < keys.length; i += 1000) {
      const objects = keys.slice(i, i + 1000).map((key) => ({ Key: this.config.s3Prefix + checkKey(key) }));
      await this.call(what, (abortSignal) => this.client.send(new DeleteObjectsCommand({
        Bucket: this.config.s3Bucket, Delete: { Objects: objects, Quiet: true },
      }), { abortSignal }));
    }
  }

  async deletePrefix(prefix: string): Promise<void> {
    const what = `deleting ${prefix}`;
    for await (const page of this.pages(checkPrefix(prefix, "delete"), what)) {
      const objects = page.flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
      // a page is at most 1,000 names: exactly what one DeleteObjects takes
      if (objects.length === 0) continue;
      const answer = await this.call(what, (abortSignal) => this.client.send(new DeleteObjectsCommand({
        Bucket: this.config.s3Bucket, Delete: { Objects: objects, Quiet: true },
      }), { abortSignal }));
      const first = answer.Errors?.[0];
      if (first) {
        const denied = first.Code !== undefined && DENIED.has(first.Code);
        throw new StorageError(denied ? "STORAGE_DENIED" : "STORAGE_FAILED",
          `storage: ${what} at ${this.where}: ${answer.Errors?.length} objects not deleted (${first.Key}: ${first.Code} ${first.Message ?? ""})`);
      }
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    for await (const page of this.pages(checkPrefix(prefix, "list"), `listing ${prefix}`)) {
      for (const object of page) {
        const key = object.Key?.slice(this.config.s3Prefix.length);
        // names in the bucket that are not segment keys (another tool's files) are not the store's
        if (object.Key?.startsWith(this.config.s3Prefix) && isStorageKey(key)) yield { key, size: object.Size ?? 0 };
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
  }
}
