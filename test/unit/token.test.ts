import assert from "node:assert/strict";
import { AdmissionError, type RefusalReason } from "../../src/core/errors.ts";
import { admitPublish, type AdmissionPolicy } from "../../src/ingest/admission.ts";
import type { PublishRequest } from "../../src/ingest/rtmp-server.ts";
import { checkPublishToken, makePublishToken, readPublishToken } from "../../src/ingest/token.ts";

const SECRET = "unit-test-secret-0123456789abcdef";
const NOW = Date.UTC(2024, 0, 1, 0, 0, 0);

/** Runs `action` and returns the reason of the AdmissionError it throws; fails if it throws nothing or something else. */
function refusal(action: () => unknown): RefusalReason {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught !== undefined, "expected a refusal, got none");
  assert.ok(caught instanceof AdmissionError, `expected an AdmissionError, got ${String(caught)}`);
  assert.equal(caught.code, `PUBLISH_${caught.reason.toUpperCase()}`);
  return caught.reason;
}

/** Changes one character of the signature part, away from its edges (the last base64url character has spare bits). */
function tamper(token: string): string {
  const dot = token.lastIndexOf(".");
  const at = dot + 10;
  const c = token[at]!;
  return token.slice(0, at) + (c === "A" ? "B" : "A") + token.slice(at + 1);
}

describe("publish tokens", () => {
  it("has the shape <issued>.<expiry>.<43 base64url characters>, in unix seconds", () => {
    const token = makePublishToken(SECRET, "cam1", 3600, NOW);
    assert.match(token, /^\d+\.\d+\.[A-Za-z0-9_-]{43}$/);
    assert.equal(Number(token.split(".")[0]), NOW / 1000);
    assert.equal(Number(token.split(".")[1]), NOW / 1000 + 3600);
    const credential = checkPublishToken(SECRET, "cam1", token, NOW);
    assert.deepEqual({ ...credential, digest: typeof credential.digest }, { issuedAt: NOW / 1000, expiresAt: NOW / 1000 + 3600, expired: false, digest: "string" });
    assert.ok(!token.includes(credential.digest), "the digest does not give the token away");
  });

  it("reads an expired token as expired rather than refusing it (a live broadcast may still take it)", () => {
    const token = makePublishToken(SECRET, "cam1", 60, NOW);
    assert.equal(readPublishToken(SECRET, "cam1", token, NOW + 61_000).expired, true);
    assert.equal(refusal(() => readPublishToken(SECRET, "cam2", token, NOW + 61_000)), "bad_token", "a bad signature is refused all the same");
  });

  it("refuses a token of the older format (<expiry>.<signature>) with a message saying to make a new one", () => {
    let message = "";
    try {
      checkPublishToken(SECRET, "cam1", `${NOW / 1000 + 60}.${"A".repeat(43)}`, NOW);
    } catch (error) {
      message = (error as Error).message;
    }
    assert.match(message, /older format: make a new one/);
  });

  it("refuses a token whose issue time was moved later (past a revocation) as bad_token", () => {
    const token = makePublishToken(SECRET, "cam1", 60, NOW);
    const [issued, expiry, signature] = token.split(".");
    assert.equal(refusal(() => checkPublishToken(SECRET, "cam1", `${Number(issued) + 3600}.${expiry}.${signature}`, NOW)), "bad_token");
  });

  it("accepts its own token", () => {
    const token = makePublishToken(SECRET, "cam1", 3600, NOW);
    assert.doesNotThrow(() => checkPublishToken(SECRET, "cam1", token, NOW));
    assert.doesNotThrow(() => checkPublishToken(SECRET, "cam1", token, NOW + 3599_000));
  });

  it("accepts its own token with the real clock", () => {
    const token = makePublishToken(SECRET, "cam1", 60);
    assert.doesNotThrow(() => checkPublishToken(SECRET, "cam1", token));
  });

  it("refuses another stream's token as bad_token", () => {
    const token = makePublishToken(SECRET, "cam1", 3600, NOW);
    assert.equal(refusal(() => checkPublishToken(SECRET, "cam2", token, NOW)), "bad_token");
    assert.equal(refusal(() => checkPublishToken(SECRET, "cam", token, NOW)), "bad_token");
    assert.equal(refusal(() => checkPublishToken(SECRET, "cam10", token, NOW)), "bad_token");
  });

  it("refuses a tampered signature as bad_token", () => {
    const token = makePublishToken(SECRET, "cam1", 3600, NOW);
    const tampered = tamper(token);
    assert.notEqual(tampered, token);
    assert.equal(refusal(() => checkPublishToken(SECRET, "cam1", tampered, NOW)), "bad_token");
  });

  it("refuses a token whose expiry was moved later as bad_token", () => {
    const token = makePublishToken(SECRET, "cam1", 60, NOW);
    const [issued, expiry, signature] = token.split(".");
    const extended = `${issued}.${Number(expiry) + 86400}.${signature}`;
    assert.equal(refusal(() => checkPublishToken(SECRET, "cam1", extended, NOW)), "bad_token");
  });

  it("refuses a token made with another secret as bad_token", () => {
    const token = makePublishToken("another-secret-entirely-0123456789", "cam1", 3600, NOW);
    assert.equal(refusal(() => checkPublishToken(SECRET, "cam1", token, NOW)), "bad_token");
  });

  for (const malformed of [
    "abc",
    "12345",
    "12345.",
    ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "12345.short",
    "12345.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "12345.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "12345.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
    "-5.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "1234567890123.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    " 12345.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "12345.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
    "1.2.3.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "1..AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "1.-2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
  ]) {
    it(`refuses malformed text ${JSON.stringify(malformed)} as bad_token`, () => {
      assert.equal(refusal(() => checkPublishToken(SECRET, "cam1", malformed, NOW)), "bad_token");
    });
  }

  it("refuses a good token with text appended as bad_token", () => {
    const token = makePublishToken(SECRET, "cam1", 3600, NOW);
    assert.equal(refusal(() => checkPublishToken(SECRET, "cam1", token + "x", NOW)), "bad_token");
    assert.equal(refusal(() => checkPublishToken(SECRET, "cam1", `${token}.${token}`, NOW)), "bad_token");
  });

  for (const missing of [undefined, null, "", 12345, ["a"]]) {
    it(`refuses a missing token (${JSON.stringify(missing) ?? "undefined"}) as missing_token`, () => {
      assert.equal(refusal(() => checkPublishToken(SECRET, "cam1", missing, NOW)), "missing_token");
    });
  }

  it("refuses an expired token as expired_token, using the now parameter", () => {
    const token = makePublishToken(SECRET, "cam1", 60, NOW);
    assert.doesNotThrow(() => checkPublishToken(SECRET, "cam1", token, NOW + 60_000), "good up to its expiry");
    assert.equal(refusal(() => checkPublishToken(SECRET, "cam1", token, NOW + 61_000)), "expired_token");
    assert.equal(refusal(() => checkPublishToken(SECRET, "cam1", token, NOW + 365 * 86400_000)), "expired_token");
  });

  it("a token made in the past is expired now", () => {
    const token = makePublishToken(SECRET, "cam1", 60, Date.now() - 3600_000);
    assert.equal(refusal(() => checkPublishToken(SECRET, "cam1", token)), "expired_token");
  });
});

describe("admitPublish", () => {
  interface Calls {
    isLive: string[];
  }

  function policy(overrides: Partial<AdmissionPolicy> = {}, calls: Calls = { isLive: [] }): AdmissionPolicy {
    return {
      requireToken: true,
      secret: SECRET,
      isLive: (id) => {
        calls.isLive.push(id);
        return false;
      },
      refusing: () => false,
      full: () => null,
      ...overrides,
    };
  }

  function request(name: unknown, token?: string | string[]): PublishRequest {
    return { app: "live", name, query: token === undefined ? {} : { token }, remote: "127.0.0.1:50000" };
  }

  it("admits a good publish and returns the stream id", () => {
    const calls: Calls = { isLive: [] };
    const token = makePublishToken(SECRET, "cam_1-A", 600);
    const admitted = admitPublish(request("cam_1-A", token), policy({}, calls));
    assert.equal(admitted.streamId, "cam_1-A");
    assert.equal(admitted.credential?.expired, false);
    assert.deepEqual(calls.isLive, ["cam_1-A"]);
  });

  it("takes the first token when the query repeats it", () => {
    const token = makePublishToken(SECRET, "cam1", 600);
    assert.equal(admitPublish(request("cam1", [token, "junk"]), policy()).streamId, "cam1");
    assert.equal(refusal(() => admitPublish(request("cam1", ["junk", token]), policy())), "bad_token");
  });

  it("accepts a 64-character stream id", () => {
    const name = "a".repeat(64);
    assert.equal(admitPublish(request(name, makePublishToken(SECRET, name, 600)), policy()).streamId, name);
  });

  for (const app of ["app", "Live", "live/", "", undefined, 5]) {
    it(`refuses app ${JSON.stringify(app) ?? "undefined"} as bad_app`, () => {
      const token = makePublishToken(SECRET, "cam1", 600);
      const publish: PublishRequest = { ...request("cam1", token), app };
      assert.equal(refusal(() => admitPublish(publish, policy())), "bad_app");
    });
  }

  const hostile: unknown[] = [
    "../etc",
    "..",
    "a/b",
    "a b",
    "",
    "a".repeat(65),
    "x;rm -rf",
    "x\n",
    "cam1\0",
    "{cam1}",
    "cam:1",
    "été",
    5,
    null,
    undefined,
    ["cam1"],
    { toString: () => "cam1" },
  ];
  for (const name of hostile) {
    it(`refuses the stream name ${typeof name === "string" ? JSON.stringify(name) : String(name)} as bad_stream_id`, () => {
      const calls: Calls = { isLive: [] };
      const token = makePublishToken(SECRET, String(name), 600);
      assert.equal(refusal(() => admitPublish(request(name, token), policy({}, calls))), "bad_stream_id");
      assert.equal(refusal(() => admitPublish(request(name), policy({ requireToken: false }, calls))), "bad_stream_id");
      assert.deepEqual(calls.isLive, [], "a bad id goes no further");
    });
  }

  it("refuses a publish without a token as missing_token when tokens are required", () => {
    assert.equal(refusal(() => admitPublish(request("cam1"), policy())), "missing_token");
    assert.equal(refusal(() => admitPublish(request("cam1", ""), policy())), "missing_token");
  });

  it("refuses another stream's token as bad_token", () => {
    const token = makePublishToken(SECRET, "cam2", 600);
    assert.equal(refusal(() => admitPublish(request("cam1", token), policy())), "bad_token");
  });

  it("lets an expired token through flagged: the stream's owner decides with the cluster's state", () => {
    const token = makePublishToken(SECRET, "cam1", 60, Date.now() - 3600_000);
    assert.equal(admitPublish(request("cam1", token), policy()).credential?.expired, true);
  });

  it("needs no token when requireToken is false", () => {
    assert.deepEqual(admitPublish(request("cam1"), policy({ requireToken: false })), { streamId: "cam1", credential: null, role: "primary" });
    assert.equal(admitPublish(request("cam1", "garbage"), policy({ requireToken: false })).streamId, "cam1");
  });

  it("refuses a stream this node already has live as already_live", () => {
    const token = makePublishToken(SECRET, "cam1", 600);
    const live = policy({ isLive: (id) => id === "cam1" });
    assert.equal(refusal(() => admitPublish(request("cam1", token), live)), "already_live");
    assert.equal(admitPublish(request("cam2", makePublishToken(SECRET, "cam2", 600)), live).streamId, "cam2");
    assert.equal(refusal(() => admitPublish(request("cam1"), { ...live, requireToken: false })), "already_live");
  });

  it("refuses a publish to a full node: at_capacity while another node has room, cluster_full when none has", () => {
    const token = makePublishToken(SECRET, "cam1", 600);
    const full = (elsewhere: boolean): Partial<AdmissionPolicy> => ({ full: () => ({ why: "1 streams, transcode.capacity is 1", elsewhere }) });
    assert.equal(refusal(() => admitPublish(request("cam1", token), policy(full(true)))), "at_capacity");
    assert.equal(refusal(() => admitPublish(request("cam1", token), policy(full(false)))), "cluster_full");
    // a bad token is refused as such first: capacity is no reason to tell a stranger anything
    assert.equal(refusal(() => admitPublish(request("cam1", "x.y.z"), policy(full(false)))), "bad_token");
  });

  it("refuses every publish as draining while the node is refusing", () => {
    const token = makePublishToken(SECRET, "cam1", 600);
    assert.equal(refusal(() => admitPublish(request("cam1", token), policy({ refusing: () => true }))), "draining");
    assert.equal(refusal(() => admitPublish(request("cam1"), policy({ refusing: () => true, requireToken: false }))), "draining");
  });

  it("checks the token before anything about the node's state", () => {
    const busy = policy({ refusing: () => true, isLive: () => true });
    assert.equal(refusal(() => admitPublish(request("cam1"), busy)), "missing_token");
    assert.equal(refusal(() => admitPublish(request("cam1", makePublishToken(SECRET, "cam2", 600)), busy)), "bad_token");
  });
});
