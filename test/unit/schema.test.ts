// Which schema versions a release reads: the cluster's (baton:schema) and each record's own.
import assert from "node:assert/strict";
import { RecordSchemaError, SCHEMA_VERSION, checkRecord, schemaRefusal } from "../../src/state/schema.ts";

describe("schema versions", () => {
  it("takes the cluster's schema when it is this release's or older, or not set yet", () => {
    assert.equal(schemaRefusal(null), null);
    assert.equal(schemaRefusal(String(SCHEMA_VERSION)), null);
    assert.equal(schemaRefusal("1", 3), null);
    assert.match(schemaRefusal("4", 3) ?? "", /the cluster's data is schema 4; this release reads schema 3 at most/);
    assert.match(schemaRefusal("two") ?? "", /is unreadable/);
  });

  it("reads a record of its own schema or older, or one without a version (schema 1), and nothing else", () => {
    for (const v of [undefined, 1, "1", SCHEMA_VERSION, String(SCHEMA_VERSION)]) assert.doesNotThrow(() => checkRecord("an entry", v), String(v));
    assert.doesNotThrow(() => checkRecord("an entry", 2, 2));
    assert.throws(() => checkRecord("a session record", "3", 2), /^RecordSchemaError: a session record of schema "3": this release reads schema 2 at most$/);
    for (const v of [SCHEMA_VERSION + 1, String(SCHEMA_VERSION + 1), 0, -1, 1.5, "", "1x", null, {}, [1], "9999999"]) {
      assert.throws(() => checkRecord("an entry", v), (error: unknown) => error instanceof RecordSchemaError && error.code === "RECORD_SCHEMA" && /^an entry of schema/.test(error.message), JSON.stringify(v));
    }
  });
});
