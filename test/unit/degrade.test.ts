// The preset governor: when a stream steps to a faster preset, when it steps back, and never past the ends.
import assert from "node:assert/strict";
import { DEGRADE_BELOW, PRESETS, PresetGovernor, RESTORE_AT, type PresetStep } from "../../src/transcode/degrade.ts";

/** Feeds speeds one by one; returns the steps taken. */
function feed(governor: PresetGovernor, speeds: number[]): PresetStep[] {
  return speeds.flatMap((s) => governor.observe(s) ?? []);
}

describe("preset governor", () => {
  it("keeps the configured preset while the stream keeps real time", () => {
    const g = new PresetGovernor("veryfast");
    assert.deepEqual(feed(g, Array(50).fill(1.0)), []);
    assert.equal(g.current, "veryfast");
  });

  it("steps to the next faster preset after two slow samples, not one", () => {
    const g = new PresetGovernor("veryfast");
    assert.deepEqual(feed(g, [0.8, 1.0, 0.8, 1.0]), [], "a single slow sample moved it");
    const steps = feed(g, [0.8, 0.7]);
    assert.deepEqual(steps, [{ from: "veryfast", to: "superfast", direction: "degrade", speed: 0.7 }]);
  });

  it("waits for the new run to settle, then steps again while still behind, down to ultrafast and no further", () => {
    const g = new PresetGovernor("slow");
    const steps = feed(g, Array(100).fill(DEGRADE_BELOW - 0.3));
    assert.deepEqual(steps.map((s) => s.to), PRESETS.slice(1));
    assert.equal(g.current, "ultrafast");
    // three settle samples after each step, then two slow ones: five samples a step
    const g2 = new PresetGovernor("veryfast");
    assert.equal(feed(g2, Array(6).fill(0.5)).length, 1);
    assert.equal(feed(g2, [0.5]).length, 1);
  });

  it("steps back up once the slower preset is predicted to keep real time for a while, never past the configured one", () => {
    const g = new PresetGovernor("veryfast");
    feed(g, [0.5, 0.5]);
    assert.equal(g.current, "superfast");
    // superfast costs half of veryfast: 2.0x here predicts 1.0x there, not enough
    assert.deepEqual(feed(g, Array(40).fill(2.0)), []);
    // 2.8x predicts 1.4x at veryfast, above RESTORE_AT, for fifteen samples after the settle
    const steps = feed(g, Array(40).fill(2.8));
    assert.equal(steps.length, 1);
    assert.equal(steps[0]!.direction, "restore");
    assert.equal(steps[0]!.to, "veryfast");
    assert.ok(steps[0]!.speed >= RESTORE_AT);
    assert.deepEqual(feed(g, Array(100).fill(5)), [], "restored beyond transcode.preset");
  });

  it("a slow sample resets the count towards a restore", () => {
    const g = new PresetGovernor("veryfast");
    feed(g, [0.5, 0.5, 1, 1, 1]);
    const mixed = [...Array(14).fill(3), 1.0, ...Array(14).fill(3)];
    assert.deepEqual(feed(g, mixed), []);
  });
});
