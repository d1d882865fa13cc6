import { Histogram, type HistogramConfiguration, type LabelValues } from 'prom-client';

/** One label set of a HotHistogram: observing costs a bucket scan and three additions. */
export interface HotChild {
  observe(seconds: number): void;
}

interface ChildState extends HotChild {
  labels: LabelValues<string>;
  /** Known to prom-client (zero()): from its first observation on, as prom-client's own label sets. */
  registered: boolean;
  counts: Float64Array;
  sum: number;
  count: number;
}

/** prom-client's export of one sample, as its histogram builds it for the registry. */
interface ExportedValue {
  labels: { le?: number | string };
  sharedLabels?: object;
  value: number;
  metricName?: string;
}

type Exported = { values: ExportedValue[] } & Record<string, unknown>;

const promClientExport = (Histogram.prototype as unknown as { getForPromString(this: Histogram): Promise<Exported> }).getForPromString;

/**
 * A prom-client Histogram whose hot label sets are observed without prom-client's per-call work (building a
 * label hash string, looking it up, turning the bucket bound into a property key), which was about 2 µs of a
 * cached token answer. `child(labels)` is resolved once per label set; its observations are kept here and
 * added to prom-client's own figures for that label set when the registry exports them, so the exposition
 * (names, labels, order, cumulative buckets, sum, count) is exactly prom-client's.
 */
export class HotHistogram<T extends string> extends Histogram<T> {
  private readonly metricName: string;
  private readonly bounds: number[];
  private readonly boundIndex = new Map<number, number>();
  private readonly children = new Map<string, ChildState>();
  private readonly byLabels = new Map<object, ChildState>();

  constructor(config: HistogramConfiguration<T> & { buckets: number[] }) {
    super(config);
    this.metricName = config.name;
    this.bounds = [...config.buckets];
    this.bounds.forEach((b, i) => this.boundIndex.set(b, i));
  }

  child(labels: LabelValues<T>): HotChild {
    const key = JSON.stringify(Object.keys(labels).sort().map((k) => [k, String(labels[k as T])]));
    let state = this.children.get(key);
    if (!state) {
      const own = { ...labels } as LabelValues<string>;
      const bounds = this.bounds;
      // prom-client keeps this very object as the label set's labels and exports it as `sharedLabels`: that
      // reference is how the export below finds the label set.
      const register = () => this.zero(own as LabelValues<T>);
      const s: ChildState = {
        labels: own,
        registered: false,
        counts: new Float64Array(bounds.length + 1),
        sum: 0,
        count: 0,
        observe(seconds: number) {
          if (!s.registered) {
            s.registered = true;
            register();
          }
          let i = 0;
          while (i < bounds.length && seconds > bounds[i]!) i++;
          s.counts[i]!++;
          s.sum += seconds;
          s.count++;
        },
      };
      state = s;
      this.children.set(key, state);
      this.byLabels.set(own, state);
    }
    return state;
  }

  /** What the registry exports (and `get()` builds on): prom-client's figures plus the children's. */
  async getForPromString(): Promise<Exported> {
    const data = await promClientExport.call(this);
    if (this.byLabels.size === 0) return data;
    const cumulative = new Map<ChildState, number[]>();
    for (const v of data.values) {
      const child = v.sharedLabels ? this.byLabels.get(v.sharedLabels) : undefined;
      if (!child) continue;
      if (v.metricName === `${this.metricName}_bucket`) {
        if (v.labels.le === '+Inf') v.value += child.count;
        else {
          let sums = cumulative.get(child);
          if (!sums) {
            let acc = 0;
            sums = Array.from(child.counts.subarray(0, this.bounds.length), (c) => (acc += c));
            cumulative.set(child, sums);
          }
          v.value += sums[this.boundIndex.get(Number(v.labels.le)) ?? -1] ?? 0;
        }
      } else if (v.metricName === `${this.metricName}_sum`) v.value += child.sum;
      else if (v.metricName === `${this.metricName}_count`) v.value += child.count;
    }
    return data;
  }

  override reset(): void {
    super.reset();
    // prom-client forgot the label sets; children stay resolved (callers hold them): zeroed, they register again
    // at their next observation. (prom-client's constructor calls this before the fields exist.)
    for (const child of this.byLabels?.values() ?? []) {
      child.counts.fill(0);
      child.sum = 0;
      child.count = 0;
      child.registered = false;
    }
  }
}
