// The RTMP limits' and RTMPS listener's config keys: their rules, and RTMPS turned on with a certificate and key
// that must be readable PEM files that go together (the process exits before it opens a port otherwise).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config/load.ts";
import { ConfigError, errorMessage } from "../../src/core/errors.ts";
import { selfSignedCertificate } from "../helpers/tls.ts";

function configError(env: Record<string, string>): string {
  try {
    loadConfig({ env });
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${errorMessage(error)}`);
    return error.message;
  }
  assert.fail("loadConfig accepted the config");
}

describe("config: rtmp limits and rtmps", () => {
  let dir = "";
  let pem = { cert: "", key: "" };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "baton-config-rtmp-"));
    pem = selfSignedCertificate(dir);
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  const bad: [Record<string, string>, string][] = [
    [{ BATON_RTMP_HANDSHAKETIMEOUT: "0" }, "config: rtmp.handshakeTimeout = 0 (from BATON_RTMP_HANDSHAKETIMEOUT): expected a number from 1 to 120"],
    [{ BATON_RTMP_MAXCONNECTIONS: "0" }, "config: rtmp.maxConnections = 0 (from BATON_RTMP_MAXCONNECTIONS): expected an integer from 1 to 100000"],
    [{ BATON_RTMP_MAXCONNECTIONSPERADDRESS: "1.5" }, "config: rtmp.maxConnectionsPerAddress = 1.5 (from BATON_RTMP_MAXCONNECTIONSPERADDRESS): expected an integer from 1 to 100000"],
    [{ BATON_RTMP_MAXMESSAGESIZE: "16777216" }, "config: rtmp.maxMessageSize = 16777216 (from BATON_RTMP_MAXMESSAGESIZE): expected an integer from 1048576 to 16777215"],
    [{ BATON_RTMP_PROXYPROTOCOL: "1" }, 'config: rtmp.proxyProtocol = "1" (from BATON_RTMP_PROXYPROTOCOL): expected true or false'],
    [{ BATON_RTMPS_PORT: "65536" }, "config: rtmps.port = 65536 (from BATON_RTMPS_PORT): expected an integer from 0 to 65535"],
    [{ BATON_RTMPS_PORT: "1936" }, 'config: rtmps.cert = "" (from BATON_RTMPS_PORT): expected a PEM certificate file, since rtmps.port is 1936'],
  ];
  for (const [env, message] of bad) {
    it(`refuses ${JSON.stringify(env)}`, () => assert.equal(configError(env), message));
  }

  it("refuses RTMPS with a key but no certificate, or a certificate but no key", () => {
    assert.match(configError({ BATON_RTMPS_PORT: "1936", BATON_RTMPS_KEY: pem.key }), /^config: rtmps\.cert = "" \(from BATON_RTMPS_PORT\)/);
    assert.equal(
      configError({ BATON_RTMPS_PORT: "1936", BATON_RTMPS_CERT: pem.cert }),
      'config: rtmps.key = "" (from BATON_RTMPS_PORT): expected a PEM private key file, since rtmps.port is 1936',
    );
  });

  it("names a missing certificate file and where its path came from", () => {
    const missing = join(dir, "nope.pem");
    const message = configError({ BATON_RTMPS_PORT: "1936", BATON_RTMPS_CERT: missing, BATON_RTMPS_KEY: pem.key });
    assert.match(message, new RegExp(`^config: rtmps\\.cert = "${missing}" \\(from BATON_RTMPS_CERT\\): expected a readable PEM certificate file \\(ENOENT`));
  });

  it("refuses a certificate that is no PEM, and a key that is not the certificate's", () => {
    const junk = join(dir, "junk.pem");
    writeFileSync(junk, "not a certificate\n");
    assert.match(configError({ BATON_RTMPS_PORT: "1936", BATON_RTMPS_CERT: junk, BATON_RTMPS_KEY: pem.key }), /^config: rtmps\.cert = .*: expected a PEM certificate that matches rtmps\.key \(/);
    const other = selfSignedCertificate(mkdtempSync(join(dir, "other-")));
    assert.match(configError({ BATON_RTMPS_PORT: "1936", BATON_RTMPS_CERT: pem.cert, BATON_RTMPS_KEY: other.key }), /expected a PEM certificate that matches rtmps\.key \(.*key values mismatch/);
  });

  it("takes RTMPS with a readable certificate and key, and is off at port 0 whatever the files", () => {
    const config = loadConfig({ env: { BATON_RTMPS_PORT: "1936", BATON_RTMPS_CERT: pem.cert, BATON_RTMPS_KEY: pem.key } });
    assert.deepEqual(config.rtmps, { port: 1936, cert: pem.cert, key: pem.key });
    assert.equal(loadConfig({ env: { BATON_RTMPS_CERT: join(dir, "nope.pem") } }).rtmps.port, 0);
  });
});
