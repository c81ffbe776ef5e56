import { AWS_LIMITS } from "./aws.js";
import { BASELINE, copyDurationMs, MODEL, NO_BASE, type Workload } from "./model.js";

/**
 * A lower bound on the backup-set recovery point age of ANY copy policy, from a fluid relaxation
 * of the copy quota: the 20 copy slots become one server of rate 20 that may split work at will,
 * and nothing else (token bucket, lineage queueing, the 2000 MiB/s cap, event delays) costs time.
 *
 * Per backup j let ready(j,v) be when volume v's snapshot completes, d_v(i,j) the duration of
 * copying that snapshot when the lineage's previous copied snapshot is backup i's (full copy if
 * none, see copyDurationMs) and W(i,j) = sum_v d_v(i,j). Over increasing sequences of backups copied
 * in full, ending in j:
 *
 *   C(j) = min_i  max(C(i), min_v ready(j,v)) + W(i,j) / 20
 *   E(j) = max(C(j), max_v (ready(j,v) + d_v(j-1, j)))
 *
 * C(j) is when a fluid server could finish the work of such a chain; E(j) adds that no copy of j
 * ends before its snapshot is ready plus its own duration with the most favourable base, the
 * previous snapshot (durations are monotone in the base, see transferMiB). That second term uses
 * d_v(j-1,j) rather than d_v(i,j): a policy that copies every snapshot (naive) does not copy along
 * whole-backup chains, and a bound must hold for it too. Chains start at the pre-existing copies
 * of warm lineages (C = -infinity) or, on a cold start, at no copy (full copies).
 *
 * Why it is valid pointwise: durations are deterministic and identical to the ones the policies
 * see (the 2000 MiB/s cap can only lengthen theirs), and sub-additive along a lineage (see
 * copyDurationMs), so whatever a policy copied between two of its DR-ready backups i < j cost it
 * at least W(i,j) slot-time, none of it before j's first snapshot was ready.
 * The bound's recovery point at t is the newest j with E(j) <= t; t - start(j) is a lower bound on
 * every policy's age at t.
 */
export interface Bound {
  /** Per backup (virtual ms): fluid completion, and earliest possible DR-ready time. */
  completion: Float64Array;
  earliest: Float64Array;
  slots: number;
}

export function lowerBound(w: Workload, slots: number = AWS_LIMITS.concurrentCopies): Bound {
  const { n } = w;
  const count = w.backups.length;
  const first = w.params.warmLineages ? BASELINE : NO_BASE;
  const readyMin = new Float64Array(count).fill(Number.POSITIVE_INFINITY);
  const perVolume = new Float64Array(count);
  for (let j = 0; j < count; j++) {
    let hi = Number.NEGATIVE_INFINITY;
    for (let v = 0; v < n; v++) {
      const ready = w.snapReady[j * n + v] as number;
      readyMin[j] = Math.min(readyMin[j] as number, ready);
      hi = Math.max(hi, ready + copyDurationMs(w, v, j === 0 ? first : j - 1, j));
    }
    perVolume[j] = hi;
  }
  const completion = new Float64Array(count).fill(Number.POSITIVE_INFINITY);
  const hot = new Float64Array(n);
  const cold = new Float64Array(n);
  // Relax in topological order: when chains continue from i, C(i) is final.
  for (let i = first; i < count; i = i < 0 ? 0 : i + 1) {
    const ci = i < 0 ? Number.NEGATIVE_INFINITY : (completion[i] as number);
    hot.fill(0);
    cold.fill(0);
    for (let j = Math.max(0, i + 1); j < count; j++) {
      let work = 0;
      for (let v = 0; v < n; v++) {
        const k = j * n + v;
        const c = w.changeMiB[k] as number;
        hot[v] = Math.max(hot[v] as number, MODEL.hotFraction * c);
        cold[v] = (cold[v] as number) + (1 - MODEL.hotFraction) * c;
        const used = w.usedMiB[v] as number;
        // Inline of copyDurationMs(w, v, i, j), incremental over j.
        const mib = i === NO_BASE ? used : Math.min(used, (hot[v] as number) + (cold[v] as number));
        work += (w.overheadMs[k] as number) + (mib / (w.copyMiBps[v] as number)) * 1000;
      }
      const c = Math.max(ci, readyMin[j] as number) + work / slots;
      if (c < (completion[j] as number)) completion[j] = c;
    }
  }
  const earliest = new Float64Array(count);
  for (let j = 0; j < count; j++) earliest[j] = Math.max(completion[j] as number, perVolume[j] as number);
  return { completion, earliest, slots };
}

/**
 * A recovery point over time: for increasing sample times, the start of the newest backup j with
 * earliest[j] <= t (or the baseline's start, before any).
 */
export function recoveryPoints(w: Workload, earliest: Float64Array): (t: number) => number {
  const order = [...earliest.keys()].sort((x, y) => (earliest[x] as number) - (earliest[y] as number));
  let next = 0;
  let newest = -1;
  let last = Number.NEGATIVE_INFINITY;
  return (t: number) => {
    if (t < last) throw new Error("boundRecoveryPoints: samples must not go back in time");
    last = t;
    while (next < order.length && (earliest[order[next] as number] as number) <= t) {
      newest = Math.max(newest, order[next] as number);
      next++;
    }
    return newest < 0 ? w.baselineStart : (w.backups[newest]?.start ?? w.baselineStart);
  };
}

/**
 * Not a bound: a reference that shows how loose the pointwise bound is under saturation. One
 * chain, as a real policy must follow: the fluid server (20 slots, no latency) copies one backup
 * at a time and, when done, jumps to the newest backup whose first snapshot is ready. Every
 * E(j) above may use its own chain; this one cannot, so its age saws between about W/20 and
 * 2 W/20. Returns each chain backup's DR-ready time (Infinity for skipped ones).
 */
export function fluidNewestNext(w: Workload, slots: number = AWS_LIMITS.concurrentCopies): Float64Array {
  const count = w.backups.length;
  const readyAt = new Float64Array(count).fill(Number.POSITIVE_INFINITY);
  const readyMin = (j: number) => {
    let m = Number.POSITIVE_INFINITY;
    for (let v = 0; v < w.n; v++) m = Math.min(m, w.snapReady[j * w.n + v] as number);
    return m;
  };
  let base = w.params.warmLineages ? BASELINE : NO_BASE;
  let free = Number.NEGATIVE_INFINITY;
  for (;;) {
    const next = Math.max(0, base + 1);
    if (next >= count) break;
    const t = Math.max(free, readyMin(next));
    let j = next;
    while (j + 1 < count && readyMin(j + 1) <= t) j++;
    let work = 0;
    let perVolume = Number.NEGATIVE_INFINITY;
    for (let v = 0; v < w.n; v++) {
      const d = copyDurationMs(w, v, base, j);
      work += d;
      perVolume = Math.max(perVolume, (w.snapReady[j * w.n + v] as number) + d);
    }
    free = Math.max(t, readyMin(j)) + work / slots;
    readyAt[j] = Math.max(free, perVolume);
    base = j;
  }
  return readyAt;
}
