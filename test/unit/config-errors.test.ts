// Refused config values: each with its exact message (the key, the value, where it came from, what was
// expected), from a file and from the environment.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { loadConfig } from "../../src/config/load.ts";
import { GOOD_RENDITION, configError, configFile, configFiles, thrownMessage } from "../helpers/config.ts";

describe("config", () => {
  const files = configFiles();

  describe("refused values", () => {
    interface BadCase {
      what: string;
      env?: NodeJS.ProcessEnv;
      /** File content: a string is written as is, anything else as JSON. */
      file?: unknown;
      /** The exact message; gets the temp file's path when the case has a file. */
      message: (file: string) => string;
    }

    const cases: BadCase[] = [
      {
        what: "unknown section in a file",
        file: { nope: { port: 1 } },
        message: (f) => `config: unknown key nope (from ${f})`,
      },
      {
        what: "unknown key in a file",
        file: { http: { nope: 1 } },
        message: (f) => `config: unknown key http.nope (from ${f})`,
      },
      {
        what: "a key name inherited from Object.prototype (http.constructor) in a file",
        file: { http: { constructor: 8080 } },
        message: (f) => `config: unknown key http.constructor (from ${f})`,
      },
      {
        what: "a section name inherited from Object.prototype (toString) in a file",
        file: { toString: {} },
        message: (f) => `config: unknown key toString (from ${f})`,
      },
      {
        what: "a file whose top level is not an object",
        file: [1, 2],
        message: (f) => `config: (top level) = [1,2] (from ${f}): expected an object of sections`,
      },
      {
        what: "a section that is not an object",
        file: { http: 8080 },
        message: (f) => `config: http = 8080 (from ${f}): expected an object`,
      },
      {
        what: "unknown BATON_* environment variable",
        env: { BATON_HTTP_NOPE: "1" },
        message: () => "config: unknown key BATON_HTTP_NOPE (from environment)",
      },
      {
        what: "unknown BATON_* environment variable with a known section",
        env: { BATON_REDIS: "redis://x:1" },
        message: () => "config: unknown key BATON_REDIS (from environment)",
      },
      {
        what: "port out of range from the environment",
        env: { BATON_HTTP_PORT: "70000" },
        message: () => "config: http.port = 70000 (from BATON_HTTP_PORT): expected an integer from 1 to 65535",
      },
      {
        what: "port 0 from the environment",
        env: { BATON_RTMP_PORT: "0" },
        message: () => "config: rtmp.port = 0 (from BATON_RTMP_PORT): expected an integer from 1 to 65535",
      },
      {
        what: "empty port from the environment",
        env: { BATON_AGENT_PORT: "" },
        message: () => 'config: agent.port = "" (from BATON_AGENT_PORT): expected an integer from 1 to 65535',
      },
      {
        what: "non-integer from the environment",
        env: { BATON_HLS_SEGMENTDURATION: "2.5" },
        message: () => "config: hls.segmentDuration = 2.5 (from BATON_HLS_SEGMENTDURATION): expected an integer from 1 to 10",
      },
      {
        what: "non-integer in a file",
        file: { http: { port: 80.5 } },
        message: (f) => `config: http.port = 80.5 (from ${f}): expected an integer from 1 to 65535`,
      },
      {
        what: "a number given as a string in a file",
        file: { http: { port: "8080" } },
        message: (f) => `config: http.port = "8080" (from ${f}): expected an integer from 1 to 65535`,
      },
      {
        what: "number below its minimum in a file",
        file: { hls: { playlistWindow: 2 } },
        message: (f) => `config: hls.playlistWindow = 2 (from ${f}): expected an integer from 3 to 100`,
      },
      {
        what: "a negative DVR window",
        file: { hls: { dvrWindow: -1 } },
        message: (f) => `config: hls.dvrWindow = -1 (from ${f}): expected an integer from 0 to 1209600`,
      },
      {
        what: "a recording retention under a minute",
        file: { recording: { retention: 10 } },
        message: (f) => `config: recording.retention = 10 (from ${f}): expected an integer from 60 to 31622400`,
      },
      {
        what: "a DVR page of one entry",
        file: { hls: { dvrPageSize: 1 } },
        message: (f) => `config: hls.dvrPageSize = 1 (from ${f}): expected an integer from 2 to 1000`,
      },
      {
        what: "bad enum transcode.preset",
        env: { BATON_TRANSCODE_PRESET: "placebo" },
        message: () =>
          'config: transcode.preset = "placebo" (from BATON_TRANSCODE_PRESET): ' +
          "expected one of ultrafast, superfast, veryfast, faster, fast, medium, slow",
      },
      {
        what: "bad enum log.level",
        file: { log: { level: "verbose" } },
        message: (f) => `config: log.level = "verbose" (from ${f}): expected one of debug, info, warn, error`,
      },
      {
        what: "bad redis url (http scheme)",
        env: { BATON_REDIS_URL: "http://127.0.0.1:6379" },
        message: () => 'config: redis.url = "http://127.0.0.1:6379" (from BATON_REDIS_URL): expected a redis:// or rediss:// URL',
      },
      {
        what: "bad redis url (nothing after the scheme)",
        file: { redis: { url: "redis://" } },
        message: (f) => `config: redis.url = "redis://" (from ${f}): expected a redis:// or rediss:// URL`,
      },
      {
        what: "bad redis url given in REDIS_URL names REDIS_URL",
        env: { REDIS_URL: "localhost:6379" },
        message: () => 'config: redis.url = "localhost:6379" (from REDIS_URL): expected a redis:// or rediss:// URL',
      },
      {
        what: "redis.commandTimeout below 100 ms (every call would time out)",
        env: { BATON_REDIS_COMMANDTIMEOUT: "0" },
        message: () => "config: redis.commandTimeout = 0 (from BATON_REDIS_COMMANDTIMEOUT): expected an integer from 100 to 60000",
      },
      {
        what: "redis.sentinels not a JSON list",
        env: { BATON_REDIS_SENTINELS: "10.0.0.1:26379,10.0.0.2:26379" },
        message: () =>
          'config: redis.sentinels = "10.0.0.1:26379,10.0.0.2:26379" (from BATON_REDIS_SENTINELS): expected a list of host:port addresses (IPv6 as [address]:port)',
      },
      {
        what: "redis.sentinels: an address without a port",
        file: { redis: { sentinels: ["10.0.0.1:26379", "10.0.0.2"] } },
        message: (f) => `config: redis.sentinels = ["10.0.0.1:26379","10.0.0.2"] (from ${f}): expected a list of host:port addresses (IPv6 as [address]:port)`,
      },
      {
        what: "redis.sentinels: a port out of range",
        file: { redis: { sentinels: ["sentinel-1:65536"] } },
        message: (f) => `config: redis.sentinels = ["sentinel-1:65536"] (from ${f}): expected a list of host:port addresses (IPv6 as [address]:port)`,
      },
      {
        what: "redis.sentinels: an IPv6 address without brackets",
        file: { redis: { sentinels: ["::1:26379"] } },
        message: (f) => `config: redis.sentinels = ["::1:26379"] (from ${f}): expected a list of host:port addresses (IPv6 as [address]:port)`,
      },
      {
        what: "redis.sentinelName with a space",
        env: { BATON_REDIS_SENTINELNAME: "my master" },
        message: () => `config: redis.sentinelName = "my master" (from BATON_REDIS_SENTINELNAME): expected 1 to 64 of A-Z, a-z, 0-9, '.', '_', '-'`,
      },
      {
        what: "redis.waitReplicas not an integer",
        file: { redis: { waitReplicas: 1.5 } },
        message: (f) => `config: redis.waitReplicas = 1.5 (from ${f}): expected an integer from 0 to 16`,
      },
      {
        what: "redis.cluster: a seed without a port",
        env: { BATON_REDIS_CLUSTER: '["10.0.0.1:7000","10.0.0.2"]' },
        message: () => 'config: redis.cluster = ["10.0.0.1:7000","10.0.0.2"] (from BATON_REDIS_CLUSTER): expected a list of host:port addresses of Redis Cluster nodes (IPv6 as [address]:port)',
      },
      {
        what: "redis.cluster beside redis.sentinels",
        file: { redis: { cluster: ["10.0.0.1:7000"], sentinels: ["10.0.0.1:26379"] } },
        message: (f) => `config: redis.sentinels = ["10.0.0.1:26379"] (from ${f}): expected [] since redis.cluster is set (a Redis Cluster fails over by itself)`,
      },
      {
        what: "redis.cluster with a database in redis.url",
        env: { BATON_REDIS_CLUSTER: '["10.0.0.1:7000"]', BATON_REDIS_URL: "redis://:pw@ignored:6379/2" },
        message: () => 'config: redis.url = "redis://***@ignored:6379/2" (from BATON_REDIS_URL): expected a URL without a database (or /0) since redis.cluster is set (a Redis Cluster has database 0 only)',
      },
      {
        what: "ladder: empty list",
        file: { transcode: { ladder: [] } },
        message: (f) => `config: transcode.ladder = [] (from ${f}): expected a non-empty list of renditions`,
      },
      {
        what: "ladder: not a list",
        file: { transcode: { ladder: { name: "a" } } },
        message: (f) => `config: transcode.ladder = {"name":"a"} (from ${f}): expected a non-empty list of renditions`,
      },
      {
        what: "ladder: a rendition that is not an object",
        file: { transcode: { ladder: [GOOD_RENDITION, "480p"] } },
        message: (f) =>
          `config: transcode.ladder[1] = "480p" (from ${f}): expected an object with name, height, videoBitrate, audioBitrate, maxFrameRate`,
      },
      {
        what: "ladder: missing field",
        file: { transcode: { ladder: [{ name: "a", height: 360, videoBitrate: 800, audioBitrate: 96 }] } },
        message: (f) => `config: transcode.ladder[0].maxFrameRate = nothing (from ${f}): expected an integer from 0 to 120`,
      },
      {
        what: "ladder: odd height",
        file: { transcode: { ladder: [{ ...GOOD_RENDITION, height: 361 }] } },
        message: (f) => `config: transcode.ladder[0].height = 361 (from ${f}): expected an even number`,
      },
      {
        what: "ladder: height out of range",
        file: { transcode: { ladder: [{ ...GOOD_RENDITION, height: 100 }] } },
        message: (f) => `config: transcode.ladder[0].height = 100 (from ${f}): expected an integer from 120 to 4320`,
      },
      {
        what: "ladder: duplicate name",
        file: { transcode: { ladder: [GOOD_RENDITION, { ...GOOD_RENDITION, height: 240 }] } },
        message: (f) => `config: transcode.ladder[1].name = "a" (from ${f}): expected a name not used by another rendition`,
      },
      {
        what: "ladder: bad name",
        file: { transcode: { ladder: [{ ...GOOD_RENDITION, name: "../x" }] } },
        message: (f) => `config: transcode.ladder[0].name = "../x" (from ${f}): expected 1 to 32 of a-z, 0-9, '_', '-'`,
      },
      {
        what: "ladder: unknown field in a rendition",
        file: { transcode: { ladder: [{ ...GOOD_RENDITION, fps: 30 }] } },
        message: (f) => `config: unknown key transcode.ladder[0].fps (from ${f})`,
      },
      {
        what: "ladder: a field name inherited from Object.prototype (constructor) in a rendition",
        file: { transcode: { ladder: [{ ...GOOD_RENDITION, constructor: 1 }] } },
        message: (f) => `config: unknown key transcode.ladder[0].constructor (from ${f})`,
      },
      {
        what: "ladder: unknown field in a rendition from BATON_TRANSCODE_LADDER",
        env: { BATON_TRANSCODE_LADDER: JSON.stringify([{ ...GOOD_RENDITION, bitrate: 1 }]) },
        message: () => "config: unknown key transcode.ladder[0].bitrate (from BATON_TRANSCODE_LADDER)",
      },
      {
        what: "ladder: non-JSON in BATON_TRANSCODE_LADDER",
        env: { BATON_TRANSCODE_LADDER: "[{name:720p}" },
        message: () =>
          'config: transcode.ladder = "[{name:720p}" (from BATON_TRANSCODE_LADDER): expected a non-empty list of renditions',
      },
      {
        what: "bad bool BATON_AUTH_REQUIREPUBLISHTOKEN=yes",
        env: { BATON_AUTH_REQUIREPUBLISHTOKEN: "yes" },
        message: () => 'config: auth.requirePublishToken = "yes" (from BATON_AUTH_REQUIREPUBLISHTOKEN): expected true or false',
      },
      {
        what: "bad bool given as a string in a file",
        file: { auth: { requirePublishToken: "false" } },
        message: (f) => `config: auth.requirePublishToken = "false" (from ${f}): expected true or false`,
      },
      {
        what: "bad bool BATON_AUTH_REQUIREPLAYBACKTOKEN=1",
        env: { BATON_AUTH_REQUIREPLAYBACKTOKEN: "1" },
        message: () => 'config: auth.requirePlaybackToken = "1" (from BATON_AUTH_REQUIREPLAYBACKTOKEN): expected true or false',
      },
      {
        what: "bad bool BATON_DELIVERY_CDN=on",
        env: { BATON_DELIVERY_CDN: "on" },
        message: () => 'config: delivery.cdn = "on" (from BATON_DELIVERY_CDN): expected true or false',
      },
      {
        what: "a playback token lifetime under a minute",
        file: { auth: { playbackTokenTtl: 30 } },
        message: (f) => `config: auth.playbackTokenTtl = 30 (from ${f}): expected an integer from 60 to 31536000`,
      },
      {
        what: "no session starts allowed per minute",
        env: { BATON_SESSIONS_STARTSPERMINUTE: "0" },
        message: () => "config: sessions.startsPerMinute = 0 (from BATON_SESSIONS_STARTSPERMINUTE): expected an integer from 1 to 1000000",
      },
      {
        what: "a publish secret shorter than 32 characters, without printing it",
        env: { BATON_AUTH_PUBLISHSECRET: "hunter2-hunter2" },
        message: () =>
          "config: auth.publishSecret = (hidden, 15 characters) (from BATON_AUTH_PUBLISHSECRET): " +
          "expected empty (one is generated), or 32 to 1024 printable characters without spaces",
      },
      {
        what: "a playback secret shorter than 32 characters",
        env: { BATON_AUTH_PLAYBACKSECRET: "short-secret" },
        message: () =>
          "config: auth.playbackSecret = (hidden, 12 characters) (from BATON_AUTH_PLAYBACKSECRET): " +
          "expected empty (one is generated), or 32 to 1024 printable characters without spaces",
      },
      {
        what: "a sessions secret shorter than 32 characters",
        file: { sessions: { secret: "short" } },
        message: (f) =>
          `config: sessions.secret = (hidden, 5 characters) (from ${f}): expected empty (one is generated), or 32 to 1024 printable characters without spaces`,
      },
      {
        what: "a trusted proxy that is no address",
        env: { BATON_HTTP_TRUSTEDPROXIES: '["haproxy.local"]' },
        message: () => 'config: http.trustedProxies = ["haproxy.local"] (from BATON_HTTP_TRUSTEDPROXIES): expected a list of IP addresses, or ["*"]',
      },
      {
        what: "bad node id",
        env: { BATON_NODE_ID: "Node_1" },
        message: () => `config: node.id = "Node_1" (from BATON_NODE_ID): expected empty or 1 to 63 of a-z, 0-9, '-'`,
      },
      {
        what: "invalid JSON file",
        file: '{ "http": { "port": 8080, } }',
        message: (f) =>
          `config: (file) = ${JSON.stringify(f)} (from ${f}): expected a readable JSON file ` +
          `(${thrownMessage(() => JSON.parse('{ "http": { "port": 8080, } }'))})`,
      },
      {
        what: "empty file",
        file: "",
        message: (f) =>
          `config: (file) = ${JSON.stringify(f)} (from ${f}): expected a readable JSON file (${thrownMessage(() => JSON.parse(""))})`,
      },
      {
        what: "a storage backend that does not exist",
        env: { BATON_STORAGE_BACKEND: "gcs" },
        message: () => 'config: storage.backend = "gcs" (from BATON_STORAGE_BACKEND): expected one of fs, s3',
      },
      {
        what: "the s3 backend without a bucket",
        file: { storage: { backend: "s3" } },
        message: (f) => `config: storage.s3Bucket = "" (from ${f}): expected a bucket name, since storage.backend is s3`,
      },
      {
        what: "an s3 access key id without its secret, from the issue's variable name",
        env: { BATON_STORAGE_BACKEND: "s3", BATON_STORAGE_S3BUCKET: "media", BATON_STORAGE_S3_ACCESSKEYID: "AKIAEXAMPLE" },
        message: () => 'config: storage.s3SecretAccessKey = "" (from BATON_STORAGE_S3_ACCESSKEYID): expected a secret access key, since storage.s3AccessKeyId is set',
      },
      {
        what: "an s3 secret with a space, without printing it",
        env: { BATON_STORAGE_S3_SECRETACCESSKEY: "two words" },
        message: () =>
          "config: storage.s3SecretAccessKey = (hidden, 9 characters) (from BATON_STORAGE_S3_SECRETACCESSKEY): expected empty, or up to 256 printable characters without spaces",
      },
      {
        what: "an s3 endpoint that is not an http(s) URL",
        file: { storage: { s3Endpoint: "minio:9000" } },
        message: (f) => `config: storage.s3Endpoint = "minio:9000" (from ${f}): expected empty, or an http:// or https:// URL`,
      },
      {
        what: "an s3 prefix that climbs out of its segment",
        file: { storage: { s3Prefix: "../media/" } },
        message: (f) => `config: storage.s3Prefix = "../media/" (from ${f}): expected empty, or path segments of A-Z, a-z, 0-9, '_', '.', '-' each ending in '/'`,
      },
      {
        what: "an s3 bucket name S3 would refuse",
        env: { BATON_STORAGE_S3BUCKET: "Media_Bucket" },
        message: () => `config: storage.s3Bucket = "Media_Bucket" (from BATON_STORAGE_S3BUCKET): expected empty, or 3 to 63 of a-z, 0-9, '.', '-'`,
      },
      {
        what: "an input-loss mode that does not exist",
        env: { BATON_HLS_INPUTLOSS: "freeze" },
        message: () => 'config: hls.inputLoss = "freeze" (from BATON_HLS_INPUTLOSS): expected one of slate, off',
      },
      {
        what: "a slate image that does not exist",
        env: { BATON_HLS_SLATEIMAGE: "/nonexistent/slate.png" },
        message: () =>
          `config: hls.slateImage = "/nonexistent/slate.png" (from BATON_HLS_SLATEIMAGE): expected a readable PNG or JPEG file ` +
          `(${thrownMessage(() => readFileSync("/nonexistent/slate.png"))})`,
      },
      {
        what: "a slate image that is no image (this JSON file)",
        file: { hls: { slateImage: "config/default.json" } },
        message: (f) => `config: hls.slateImage = "config/default.json" (from ${f}): expected a PNG or JPEG file (its first bytes are neither)`,
      },
    ];

    for (const c of cases) {
      it(`refuses ${c.what}`, () => {
        const file = c.file === undefined ? undefined : configFile(c.file);
        const error = configError({ env: c.env ?? {}, file });
        assert.equal(error.message, c.message(file ?? ""));
      });
    }

    it("refuses an unreadable (missing) file, naming it", () => {
      const path = join(files.dir(), "does-not-exist.json");
      const error = configError({ env: {}, file: path });
      const reason = thrownMessage(() => readFileSync(path, "utf8"));
      assert.match(reason, /ENOENT/);
      assert.equal(error.message, `config: (file) = ${JSON.stringify(path)} (from ${path}): expected a readable JSON file (${reason})`);
    });

    it("refuses a directory given as the file", () => {
      const error = configError({ env: {}, file: files.dir() });
      const reason = thrownMessage(() => readFileSync(files.dir(), "utf8"));
      assert.equal(error.message, `config: (file) = ${JSON.stringify(files.dir())} (from ${files.dir()}): expected a readable JSON file (${reason})`);
    });

    it("refuses a bad value given as an override, naming the command line", () => {
      const error = configError({ env: {}, overrides: { http: { port: 0 } } });
      assert.equal(error.message, "config: http.port = 0 (from command line): expected an integer from 1 to 65535");
    });

    for (const text of ["abc", "8080abc", "Infinity"]) {
      it(`names the text given when BATON_HTTP_PORT=${text} is not a number`, () => {
        const error = configError({ env: { BATON_HTTP_PORT: text } });
        // the message must show what the operator wrote, not what parsing made of it (NaN shows as null)
        assert.match(error.message, /^config: http\.port = (.+) \(from BATON_HTTP_PORT\): expected an integer from 1 to 65535$/);
        assert.ok(error.message.includes(`= ${JSON.stringify(text)} (`) || error.message.includes(`= ${text} (`), error.message);
      });
    }

    it("ignores BATON_* variables that other parts of baton read", () => {
      const config = loadConfig({
        env: { BATON_CONFIG: "", BATON_STATE_DIR: files.dir() },
      });
      assert.deepEqual(config, DEFAULTS);
    });

    it("takes BATON_ADMIN_TOKEN as admin.token, and refuses a short one", () => {
      assert.equal(loadConfig({ env: { BATON_ADMIN_TOKEN: "a-long-enough-admin-token" } }).admin.token, "a-long-enough-admin-token");
      assert.equal(
        configError({ env: { BATON_ADMIN_TOKEN: "t" } }).message,
        'config: admin.token = "t" (from BATON_ADMIN_TOKEN): expected empty, or 16 to 256 printable characters without spaces',
      );
    });

    it("takes admin.restartCommand as a JSON list of strings", () => {
      assert.deepEqual(loadConfig({ env: { BATON_ADMIN_RESTARTCOMMAND: '["systemctl","restart","baton@{node}"]' } }).admin.restartCommand, ["systemctl", "restart", "baton@{node}"]);
      assert.equal(
        configError({ env: { BATON_ADMIN_RESTARTCOMMAND: "systemctl restart" } }).message,
        'config: admin.restartCommand = "systemctl restart" (from BATON_ADMIN_RESTARTCOMMAND): expected a list of strings (a program and its arguments)',
      );
    });

    it("takes the s3 credentials from BATON_STORAGE_S3_* names too; the keys' own names win", () => {
      const s3 = { BATON_STORAGE_BACKEND: "s3", BATON_STORAGE_S3BUCKET: "media" };
      const storage = loadConfig({ env: { ...s3, BATON_STORAGE_S3_ACCESSKEYID: "alias-id", BATON_STORAGE_S3_SECRETACCESSKEY: "alias-secret" } }).storage;
      assert.deepEqual([storage.s3AccessKeyId, storage.s3SecretAccessKey], ["alias-id", "alias-secret"]);
      const both = loadConfig({
        env: { ...s3, BATON_STORAGE_S3_ACCESSKEYID: "alias-id", BATON_STORAGE_S3ACCESSKEYID: "own-id", BATON_STORAGE_S3SECRETACCESSKEY: "own-secret" },
      }).storage;
      assert.deepEqual([both.s3AccessKeyId, both.s3SecretAccessKey], ["own-id", "own-secret"]);
    });

    it("ignores environment variables without the BATON_ prefix", () => {
      assert.deepEqual(loadConfig({ env: { HTTP_PORT: "1", baton_http_port: "2", PATH: "/bin" } }), DEFAULTS);
    });
  });
});
