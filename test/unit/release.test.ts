// A node's release: the commit it runs from and the digest of the config it shares with the cluster.
import assert from "node:assert/strict";
import { DEFAULTS, type Config } from "../../src/config/defaults.ts";
import { configDigest, currentCommit, currentRelease, describeRelease, releaseConfig } from "../../src/core/release.ts";
import { VERSION } from "../../src/core/version.ts";

const config = (change: (c: Config) => void = () => undefined): Config => {
  const c = structuredClone(DEFAULTS);
  change(c);
  return c;
};

describe("release", () => {
  it("gives nodes of one release one digest, whatever their ids, ports, spool and secrets", () => {
    const a = configDigest(config());
    const b = configDigest(config((c) => {
      c.node.id = "node-2";
      c.http.port = 8082;
      c.rtmp.port = 1937;
      c.agent.port = 10001;
      c.transcode.spoolDir = "/var/spool/2";
      c.auth.publishSecret = "another-secret-0123456789";
      c.admin.token = "another-admin-token-0123456789";
      c.redis.url = "redis://:password@10.0.0.2:6379";
      c.storage.s3SecretAccessKey = "s3cr3t";
    }));
    assert.match(a, /^[0-9a-f]{12}$/);
    assert.equal(a, b);
  });

  it("changes the digest for a change that makes another release: a segment duration, a preset, the ladder", () => {
    const base = configDigest(config());
    assert.notEqual(configDigest(config((c) => (c.hls.segmentDuration = 4))), base);
    assert.notEqual(configDigest(config((c) => (c.transcode.preset = "ultrafast"))), base);
    assert.notEqual(configDigest(config((c) => c.transcode.ladder.pop())), base);
  });

  it("never carries a secret into what it digests", () => {
    const shared = JSON.stringify(releaseConfig(config((c) => {
      c.auth.publishSecret = "publish-secret-xyz";
      c.sessions.secret = "session-secret-xyz";
      c.admin.token = "admin-token-xyz-0123456789";
    })));
    assert.doesNotMatch(shared, /-xyz/);
  });

  it("reads the commit of this checkout, or BATON_COMMIT, or says unknown", () => {
    assert.match(currentCommit({}), /^([0-9a-f]{12}|unknown)$/);
    assert.equal(currentCommit({ BATON_COMMIT: "0123456789abcdef0123" }), "0123456789ab");
    assert.match(currentCommit({ BATON_COMMIT: "$(rm -rf /)" }), /^([0-9a-f]{12}|unknown)$/, "a hostile BATON_COMMIT was taken");
    const release = currentRelease(config());
    assert.equal(release.version, VERSION);
    assert.equal(describeRelease(release), `${VERSION} ${release.commit} cfg ${release.config}`);
  });
});
