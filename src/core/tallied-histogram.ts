// A prom-client histogram that also takes observations counted in plain numbers (tally()), merged into what it
// exports when a scrape reads it. prom-client's own observe() makes a closure, a label object and a label hash
// per call, which on the viewers' hot HTTP routes costs about as much as the rest of a request's JavaScript.
import { Histogram, type HistogramConfiguration } from "prom-client";

/** Plain counts of one label set's observations: per bucket (not cumulative, +Inf last), their sum and count. */
export interface Tally {
  observe(value: number): void;
}

interface Counts extends Tally {
  labels: Record<string, string>;
  buckets: number[];
  sum: number;
  count: number;
}

type Exported = Awaited<ReturnType<Histogram["get"]>>;

export class TalliedHistogram<T extends string> extends Histogram<T> {
  private readonly bounds: number[];
  private readonly metricName: string;
  private readonly tallies = new Map<string, Counts>();

  constructor(config: HistogramConfiguration<T> & { buckets: number[] }) {
    super(config);
    this.bounds = [...config.buckets];
    this.metricName = config.name;
  }

  /** The tally of one label set (kept: callers hold it), observing as observe() would, in plain numbers. */
  tally(labels: Record<T, string>): Tally {
    const key = JSON.stringify(labels);
    let counts = this.tallies.get(key);
    if (!counts) {
      const bounds = this.bounds;
      const made: Counts = {
        labels: { ...labels }, buckets: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0,
        observe(value: number): void {
          let i = 0;
          while (i < bounds.length && value > bounds[i]!) i++;
          made.buckets[i]! += 1;
          made.sum += value;
          made.count += 1;
        },
      };
      this.tallies.set(key, (counts = made));
    }
    return counts;
  }

  override get(): Promise<Exported> {
    return this.merged();
  }

  /** What the registry reads for its text format (prom-client's own name for it). */
  getForPromString(): Promise<Exported> {
    return this.merged();
  }

  private async merged(): Promise<Exported> {
    const data = await (Histogram.prototype as unknown as { getForPromString(this: Histogram<T>): Promise<Exported> }).getForPromString.call(this);
    type Value = { value: number; labels: Record<string, string | number>; metricName?: string; sharedLabels?: Record<string, string | number> };
    // label sets flattened as prom-client's get() does
    const values = (data.values as Value[]).map(({ sharedLabels, ...v }): Value => ({ ...v, labels: { ...sharedLabels, ...v.labels } }));
    data.values = values as Exported["values"];
    const name = this.metricName;
    const index = new Map(values.map((v) => [entryKey(v.metricName ?? "", v.labels), v]));
    const add = (metricName: string, labels: Record<string, string | number>, value: number): void => {
      const found = index.get(entryKey(metricName, labels));
      if (found) found.value += value;
      else values.push({ metricName, labels, value });
    };
    for (const counts of this.tallies.values()) {
      if (counts.count === 0) continue;
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += counts.buckets[i]!;
        add(`${name}_bucket`, { ...counts.labels, le }, cumulative);
      });
      add(`${name}_bucket`, { ...counts.labels, le: "+Inf" }, counts.count);
      add(`${name}_sum`, counts.labels, counts.sum);
      add(`${name}_count`, counts.labels, counts.count);
    }
    return data;
  }

  override reset(): void {
    super.reset();
    // prom-client's constructor calls reset() before this class's fields exist
    const tallies = this.tallies as Map<string, Counts> | undefined;
    for (const counts of tallies?.values() ?? []) Object.assign(counts, { buckets: counts.buckets.fill(0), sum: 0, count: 0 });
  }
}

function entryKey(metricName: string, labels: Record<string, string | number>): string {
  return `${metricName}|${Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join(",")}`;
}
