/**
 * Percentiles and the "bounded" verdict. Ages are whole seconds in a histogram (exact at 1 s
 * resolution), so pooling a million per-controller samples costs nothing.
 */
export class Histogram {
  private counts = new Float64Array(4096);
  count = 0;
  max = 0;

  add(seconds: number, times = 1): void {
    const s = Math.max(0, Math.round(seconds));
    if (s >= this.counts.length) {
      const grown = new Float64Array(Math.max(s + 1, this.counts.length * 2));
      grown.set(this.counts);
      this.counts = grown;
    }
    this.counts[s] = (this.counts[s] as number) + times;
    this.count += times;
    if (s > this.max) this.max = s;
  }

  /** The smallest age with at least q of the samples at or below it (nearest rank). */
  quantile(q: number): number {
    if (this.count === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let s = 0; s < this.counts.length; s++) {
      seen += this.counts[s] as number;
      if (seen >= rank) return s;
    }
    return this.max;
  }
}

/** One sampled time series over the day (virtual ms and a value). */
export interface Series {
  t: Float64Array;
  value: Float64Array;
}

export function meanOver(s: Series, from: number, to: number): number {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < s.t.length; i++) {
    const t = s.t[i] as number;
    if (t >= from && t < to) {
      sum += s.value[i] as number;
      n++;
    }
  }
  return n === 0 ? Number.NaN : sum / n;
}

export interface Boundedness {
  bounded: boolean;
  meanAgeQ2: number;
  meanAgeQ4: number;
  meanOpenQ2?: number;
  meanOpenQ4?: number;
}

/**
 * A policy keeps up ("bounded") unless its backlog grows through the day: compare the second
 * quarter of the day with the last. Unbounded when the mean backup-set recovery point age in the
 * last quarter exceeds the second quarter's by more than max(one backup interval, 25 %), or the
 * mean open work (snapshots still to copy) by more than max(N snapshots = one backup, 25 %).
 * A steady policy differs between the quarters by noise well under those margins; a growing
 * backlog adds half a day of growth.
 */
export function boundedness(
  age: Series,
  open: Series | undefined,
  dayMs: number,
  intervalMs: number,
  controllers: number,
): Boundedness {
  const q2 = [dayMs / 4, dayMs / 2] as const;
  const q4 = [(3 * dayMs) / 4, dayMs] as const;
  const meanAgeQ2 = meanOver(age, ...q2);
  const meanAgeQ4 = meanOver(age, ...q4);
  let bounded = !(meanAgeQ4 - meanAgeQ2 > Math.max(intervalMs / 1000, 0.25 * meanAgeQ2));
  const out: Boundedness = { bounded, meanAgeQ2, meanAgeQ4 };
  if (open) {
    out.meanOpenQ2 = meanOver(open, ...q2);
    out.meanOpenQ4 = meanOver(open, ...q4);
    if (out.meanOpenQ4 - out.meanOpenQ2 > Math.max(controllers, 0.25 * out.meanOpenQ2)) bounded = false;
    out.bounded = bounded;
  }
  return out;
}
