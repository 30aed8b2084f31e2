// Keeping a live stream in real time on a busy machine: when its transcoder falls behind, the stream moves to
// a faster x264 preset (one step at a time, down to ultrafast), and back up one step at a time when the slower
// preset is expected to keep real time again. The renditions stay as they are (sizes, bitrates, codecs, so the
// master playlist and every player's choice stay valid), and so do sequence numbers, target duration and
// alignment: the switch is a new ffmpeg run from the next keyframe, marked as a discontinuity.
import type { Config } from "../config/defaults.ts";

export type Preset = Config["transcode"]["preset"];

/** Presets from the slowest to the fastest. */
export const PRESETS: readonly Preset[] = ["slow", "medium", "fast", "faster", "veryfast", "superfast", "ultrafast"];

/**
 * What each preset costs relative to ultrafast (x264's own speed ratios on 720p, rounded): how the speed of a
 * step up is predicted before it is taken.
 */
const RELATIVE_COST: Record<Preset, number> = { ultrafast: 1, superfast: 1.5, veryfast: 3, faster: 4.5, fast: 5.5, medium: 6.5, slow: 10 };

/** Smoothed speed below which the stream steps down. */
export const DEGRADE_BELOW = 0.95;
/** Predicted speed at the slower preset at or above which the stream steps back up. */
export const RESTORE_AT = 1.3;
/** Speed samples (one per two seconds) that must agree before a step down, and before a step up. */
const SAMPLES_DOWN = 2;
const SAMPLES_UP = 15;
/** Samples after a step that are ignored: the new run's first seconds say little. */
const SETTLE_SAMPLES = 3;

export interface PresetStep {
  from: Preset;
  to: Preset;
  direction: "degrade" | "restore";
  /** The speed (or predicted speed, for a restore) that decided it. */
  speed: number;
}

export class PresetGovernor {
  private preset: Preset;
  private below = 0;
  private above = 0;
  private settle = 0;

  /** `configured` is transcode.preset: never restored beyond it. */
  constructor(private readonly configured: Preset) {
    this.preset = configured;
  }

  get current(): Preset {
    return this.preset;
  }

  /**
   * One speed measurement; returns the step to take now, if any. The speed already tells how busy the machine
   * is: a step up is taken only when this speed, scaled by the slower preset's cost, still keeps real time with
   * a margin.
   */
  observe(speed: number): PresetStep | null {
    if (this.settle > 0) {
      this.settle--;
      return null;
    }
    const index = PRESETS.indexOf(this.preset);
    this.below = speed < DEGRADE_BELOW ? this.below + 1 : 0;
    if (this.below >= SAMPLES_DOWN && index < PRESETS.length - 1) return this.step(PRESETS[index + 1]!, "degrade", speed);
    if (this.preset === this.configured) return null;
    const slower = PRESETS[index - 1]!;
    const predicted = (speed * RELATIVE_COST[this.preset]) / RELATIVE_COST[slower];
    this.above = predicted >= RESTORE_AT ? this.above + 1 : 0;
    if (this.above >= SAMPLES_UP) return this.step(slower, "restore", predicted);
    return null;
  }

  private step(to: Preset, direction: PresetStep["direction"], speed: number): PresetStep {
    const from = this.preset;
    this.preset = to;
    this.below = 0;
    this.above = 0;
    this.settle = SETTLE_SAMPLES;
    return { from, to, direction, speed };
  }
}
