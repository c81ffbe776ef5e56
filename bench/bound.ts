import { AWS_LIMITS } from "./aws.js";
import { SECOND } from "./engine.js";
import { BASELINE, copyDurationMs, MODEL, NO_BASE, type Workload } from "./model.js";

/**
 * Lower bounds on the backup-set recovery point age of ANY copy policy, from a fluid relaxation of
 * the copy quota: the 20 copy slots become one server of rate 20 that may split work at will, and
 * nothing else (token bucket, lineage queueing, the 2000 MiB/s cap, event delays) costs time.
 * See bench/MODEL.md, "The lower bound", for the argument in prose.
 *
 * Notation. Backups j = 0..count-1 start at start(j); "row" r = 0 is the origin (the warm
 * baseline copy, or no copy on a cold start), row r = j + 1 is backup j. ready(j,v) is when volume
 * v's snapshot in backup j completes, d_v(i,j) the duration of its copy when the lineage's newest
 * copied snapshot is backup i's (full copy for the cold origin, see copyDurationMs), and
 * W(i,j) = sum_v d_v(i,j). Durations are monotone in the base (a newer base never costs more) and
 * sub-additive along a lineage (d_v(i,k) + d_v(k,j) >= d_v(i,j)).
 *
 * A chain is an increasing sequence of backups origin -> j1 -> j2 -> ...; along it
 *
 *   C(j) = max( C(i) + W(i,j)/20,  max_{i <= k < j} ( rel(k) + W(k,j)/20 ) )     C(origin) = -inf
 *   E(j) = max( C(j), P~(j) )
 *
 * with rel(k) = min_{b > k} min_v ready(b,v) (no copy of a snapshot newer than k can start before
 * it), P(j) = max_v ready(j,v) + d_v(j-1, j) (no copy of (j,v) ends before its snapshot is ready
 * plus its duration with the most favourable base) and P~(j) = min_{b >= j} P(b) <= P(j), which
 * makes E increasing along every chain.
 *
 * Why a policy's recovery points are bounded by a chain: take the backups that became DR-ready
 * while newer than every earlier DR-ready one, in order, j1 < j2 < ... (DR-ready at R1 <= R2 ...).
 * For each volume v, follow the copy of (jm, v) back through its bases: the copies on that path
 * whose snapshots lie in (j(m-1), jm] took >= d_v(j(m-1), jm) slot-time in total (the first one's
 * base is <= j(m-1); sub-additivity, monotonicity), all of it before Rm, and the part for snapshots
 * >= k not before rel(k-1). These sets of copies are disjoint for different m. 20 slots do at most
 * 20 (b - a) of slot-time in [a, b), so Rm >= C(jm) (C is exactly the largest "release + work
 * released since / 20" over such groups), and Rm >= P(jm) >= P~(jm), so Rm >= E(jm). Hence at
 * every t the policy's age (t - start of its newest jm with Rm <= t) is >= the chain's age
 * (t - start of the chain's newest element with E <= t, before its first element t - start of
 * the origin's backup).
 */
export interface Bound {
  /** Per backup (virtual ms): fluid completion, and earliest possible DR-ready time. */
  completion: Float64Array;
  earliest: Float64Array;
  slots: number;
}

/** The chain relaxation's inputs (times in virtual ms). Rows: 0 = origin, j + 1 = backup j. */
export interface ChainModel {
  rows: number;
  /** Start of each row's backup (row 0: the baseline's start, the age before any copy). */
  start: Float64Array;
  /** P(j) and its suffix minimum P~(j) (row 0: -inf). */
  perVolume: Float64Array;
  perVolumeMono: Float64Array;
  /** C of row s when a chain goes from row r (with C = c) straight to row s > r. */
  next: (r: number, s: number, c: number) => number;
  slots: number;
}

/**
 * Builds C's transition (see the header): for rows r < s, with W = W(r,s)/slots,
 *
 *   C(s) = max( release(r,s),  pre( max(C(r), rel(r)) + W,  rel(s-1) + W ) )
 *
 * release(r,s) = max_{r <= k < s} rel(k) + W(k,s)/slots covers work released at rel(k): whatever
 * the chain copies of snapshots > k in this step costs at least W(k,s). pre(a, b) is the "early
 * work" relaxation: a volume v whose path copies nothing between r and s does all of its
 * d_v(r,s) after its snapshot in s is ready (>= rel(s-1)); one that copies an intermediate snapshot
 * k first can do all but d_v(s-1,s) of it early, saving g_v = d_v(r,s) - d_v(s-1,s) after
 * rel(s-1), but pays at least o_v = min_k overhead(k,v) more in total (durations are overhead +
 * sub-additive transfer). So for the set P of volumes that pre-copy,
 *
 *   C(s) >= max( a + O(P)/slots,  b - G(P)/slots )     O, G: sums of o_v, g_v over P,
 *
 * and pre(a, b) is its minimum over fractional P (a lower bound on the minimum over sets): with
 * G*(O) the fractional knapsack's best saving for extra work O (concave, piecewise linear, slopes
 * g_v / o_v in decreasing order), the smallest t >= a with G*(slots (t - a)) >= slots (b - t).
 * G* is replaced by an upper envelope (a subset of its segments' lines, plus the total saving),
 * which can only lower t: still a lower bound. No intermediate snapshot (s = r + 1): max(a, b).
 */
export function chainModel(w: Workload, slots: number = AWS_LIMITS.concurrentCopies): ChainModel {
  const { n } = w;
  const count = w.backups.length;
  const rows = count + 1;
  const first = w.params.warmLineages ? BASELINE : NO_BASE;
  const start = new Float64Array(rows);
  start[0] = w.baselineStart;
  const readyMin = new Float64Array(count).fill(Number.POSITIVE_INFINITY);
  const perVolume = new Float64Array(rows).fill(Number.NEGATIVE_INFINITY);
  /** d_v(j-1, j) per (j, v). */
  const self = new Float64Array(count * n);
  for (let j = 0; j < count; j++) {
    start[j + 1] = w.backups[j]?.start ?? 0;
    let hi = Number.NEGATIVE_INFINITY;
    for (let v = 0; v < n; v++) {
      const ready = w.snapReady[j * n + v] as number;
      readyMin[j] = Math.min(readyMin[j] as number, ready);
      const d = copyDurationMs(w, v, j === 0 ? first : j - 1, j);
      self[j * n + v] = d;
      hi = Math.max(hi, ready + d);
    }
    perVolume[j + 1] = hi;
  }
  const perVolumeMono = Float64Array.from(perVolume);
  for (let r = rows - 2; r >= 1; r--) {
    perVolumeMono[r] = Math.min(perVolumeMono[r] as number, perVolumeMono[r + 1] as number);
  }
  // rel[r]: earliest start of any copy of a snapshot newer than row r's backup (row r's successors
  // are backups r, r + 1, ...).
  const rel = new Float64Array(rows).fill(Number.POSITIVE_INFINITY);
  for (let r = rows - 2; r >= 0; r--) rel[r] = Math.min(rel[r + 1] as number, readyMin[r] as number);

  // Envelope lines of G*/slots per pair: t >= (b - alpha + beta a) / (1 + beta).
  const picks: number[] = [];
  for (let k = 0; k < n; k = 2 * k + 1) picks.push(k);
  const lines = picks.length + 1;
  const alpha = new Float64Array(rows * rows * lines).fill(Number.POSITIVE_INFINITY);
  const beta = new Float64Array(rows * rows * lines);
  const cost = new Float64Array(rows * rows).fill(Number.POSITIVE_INFINITY);
  const hot = new Float64Array(n);
  const cold = new Float64Array(n);
  const ohMin = new Float64Array(n);
  const gain = new Float64Array(n);
  const order = new Int32Array(n);
  const ratio = new Float64Array(n);
  for (let r = 0; r < rows; r++) {
    const i = r === 0 ? first : r - 1;
    hot.fill(0);
    cold.fill(0);
    ohMin.fill(Number.POSITIVE_INFINITY);
    for (let j = r; j < count; j++) {
      const s = j + 1;
      let work = 0;
      for (let v = 0; v < n; v++) {
        const k = j * n + v;
        const c = w.changeMiB[k] as number;
        hot[v] = Math.max(hot[v] as number, MODEL.hotFraction * c);
        cold[v] = (cold[v] as number) + (1 - MODEL.hotFraction) * c;
        const used = w.usedMiB[v] as number;
        // Inline of copyDurationMs(w, v, i, j), incremental over j.
        const mib = i === NO_BASE ? used : Math.min(used, (hot[v] as number) + (cold[v] as number));
        const d = (w.overheadMs[k] as number) + (mib / (w.copyMiBps[v] as number)) * SECOND;
        work += d;
        gain[v] = Math.max(0, d - (self[k] as number));
      }
      cost[r * rows + s] = work / slots;
      if (j > r) {
        // Intermediate snapshots r..j-1 exist: the envelope of the fractional knapsack.
        for (let v = 0; v < n; v++) {
          order[v] = v;
          ratio[v] = (gain[v] as number) / (ohMin[v] as number);
        }
        order.sort((x, y) => (ratio[y] as number) - (ratio[x] as number));
        let o = 0;
        let g = 0;
        let p = 0;
        const base = (r * rows + s) * lines;
        for (let k = 0; k < n; k++) {
          const v = order[k] as number;
          if (k === picks[p]) {
            // The line of segment k: G = g + ratio (O - o), in units of slot-time / slots.
            const b = ratio[v] as number;
            alpha[base + p] = (g - b * o) / slots;
            beta[base + p] = b;
            p++;
          }
          o += ohMin[v] as number;
          g += gain[v] as number;
        }
        alpha[base + p] = g / slots;
        beta[base + p] = 0;
      }
      for (let v = 0; v < n; v++) ohMin[v] = Math.min(ohMin[v] as number, w.overheadMs[j * n + v] as number);
    }
  }
  const release = new Float64Array(rows * rows).fill(Number.NEGATIVE_INFINITY);
  for (let s = 1; s < rows; s++) {
    let best = Number.NEGATIVE_INFINITY;
    for (let r = s - 1; r >= 0; r--) {
      best = Math.max(best, (rel[r] as number) + (cost[r * rows + s] as number));
      release[r * rows + s] = best;
    }
  }
  const next = (r: number, s: number, c: number) => {
    const pair = r * rows + s;
    const work = cost[pair] as number;
    const a = Math.max(c, rel[r] as number) + work;
    const b = (rel[s - 1] as number) + work;
    let t = a;
    if (a < b) {
      if (s === r + 1) t = b;
      else {
        for (let l = pair * lines; l < (pair + 1) * lines; l++) {
          const be = beta[l] as number;
          t = Math.max(t, (b - (alpha[l] as number) + be * a) / (1 + be));
        }
      }
    }
    return Math.max(release[pair] as number, t);
  };
  return { rows, start, perVolume, perVolumeMono, next, slots };
}

/**
 * The old, pointwise bound: per backup the best C over all chains (each backup its own chain),
 * E(j) = max(C(j), P(j)). At every t, t - start of the newest j with E(j) <= t is <= every
 * policy's age at t; no single policy can follow all those chains at once, hence the chain bound.
 */
export function pointwiseBound(m: ChainModel): Bound {
  const { rows } = m;
  const count = rows - 1;
  const c = new Float64Array(rows).fill(Number.POSITIVE_INFINITY);
  c[0] = Number.NEGATIVE_INFINITY;
  for (let s = 1; s < rows; s++) {
    for (let r = 0; r < s; r++) {
      const x = m.next(r, s, c[r] as number);
      if (x < (c[s] as number)) c[s] = x;
    }
  }
  const completion = c.slice(1);
  const earliest = new Float64Array(count);
  for (let j = 0; j < count; j++) earliest[j] = Math.max(c[j + 1] as number, m.perVolume[j + 1] as number);
  return { completion, earliest, slots: m.slots };
}

/** The sample grid the policies are measured on: t = k * step for k in [first, last]. */
export interface SampleGrid {
  step: number;
  first: number;
  last: number;
}

export interface ChainResult {
  /** Smallest total over chains of samples with age > ageSeconds (or > budget: Infinity). */
  excess: number;
  /** The best chain's DR-ready time per backup (Infinity off the chain). */
  earliest: Float64Array;
  /** Frontier points merged by rounding C down (0: the DP was exact). */
  coarsened: number;
  largestFrontier: number;
}

/** Frontiers above this size have their C rounded down (safe for a lower bound; see below). */
const FRONTIER_CAP = 4096;

/**
 * X(A): the least number of grid samples, over all chains, at which the chain's age exceeds A
 * seconds. DP over rows in start order with, per row, the Pareto frontier of (C, samples so far
 * above A), both smaller-is-better: C fixes the chain's future (E and every later C), so a point
 * with larger C and no smaller count is never needed. Points over `budget` are dropped (counts only
 * grow). If a frontier exceeds FRONTIER_CAP, C is rounded DOWN to a coarser grid before pruning:
 * that only lowers later E, hence ages and counts, so the result stays a lower bound.
 */
export function minExcess(m: ChainModel, grid: SampleGrid, ageSeconds: number, budget: number): ChainResult {
  const { rows, start, next, perVolumeMono } = m;
  const { step, first, last } = grid;
  const above = (s: number, lo: number, hi: number) => {
    const kLo = Math.max(Math.ceil(lo / step), Math.floor((s + ageSeconds * SECOND) / step) + 1, first);
    const kHi = Math.min(Math.ceil(hi / step) - 1, last);
    return kHi >= kLo ? kHi - kLo + 1 : 0;
  };
  const fc: Float64Array[] = [];
  const fx: Float64Array[] = [];
  const fromRow: Int32Array[] = [];
  const fromIdx: Int32Array[] = [];
  fc.push(Float64Array.of(Number.NEGATIVE_INFINITY));
  fx.push(Float64Array.of(0));
  fromRow.push(Int32Array.of(-1));
  fromIdx.push(Int32Array.of(-1));
  const e = (r: number, c: number) =>
    r === 0 ? Number.NEGATIVE_INFINITY : Math.max(c, perVolumeMono[r] as number);
  let coarsened = 0;
  let largestFrontier = 1;
  const cc: number[] = [];
  const cx: number[] = [];
  const cr: number[] = [];
  const ci: number[] = [];
  for (let s = 1; s < rows; s++) {
    cc.length = 0;
    cx.length = 0;
    cr.length = 0;
    ci.length = 0;
    for (let r = 0; r < s; r++) {
      const pc = fc[r] as Float64Array;
      const px = fx[r] as Float64Array;
      for (let p = 0; p < pc.length; p++) {
        const c0 = pc[p] as number;
        const c1 = next(r, s, c0);
        const e0 = e(r, c0);
        const x = (px[p] as number) + above(start[r] as number, e0, Math.max(e0, e(s, c1)));
        if (x > budget) continue;
        cc.push(c1);
        cx.push(x);
        cr.push(r);
        ci.push(p);
      }
    }
    let order = [...cc.keys()].sort(
      (a, b) => (cc[a] as number) - (cc[b] as number) || (cx[a] as number) - (cx[b] as number),
    );
    let keep = pareto(order, cx);
    if (keep.length > FRONTIER_CAP) {
      // Round C down to multiples of g (doubling g) until the frontier fits.
      let g = SECOND;
      while (keep.length > FRONTIER_CAP) {
        for (const idx of keep) cc[idx] = Math.floor((cc[idx] as number) / g) * g;
        order = [...keep].sort(
          (a, b) => (cc[a] as number) - (cc[b] as number) || (cx[a] as number) - (cx[b] as number),
        );
        const before = keep.length;
        keep = pareto(order, cx);
        coarsened += before - keep.length;
        g *= 2;
      }
    }
    largestFrontier = Math.max(largestFrontier, keep.length);
    fc.push(Float64Array.from(keep, (k) => cc[k] as number));
    fx.push(Float64Array.from(keep, (k) => cx[k] as number));
    fromRow.push(Int32Array.from(keep, (k) => cr[k] as number));
    fromIdx.push(Int32Array.from(keep, (k) => ci[k] as number));
  }
  // Finish each chain at its last element: samples above A from its E to the end.
  let best = Number.POSITIVE_INFINITY;
  let bestRow = 0;
  let bestIdx = 0;
  for (let r = 0; r < rows; r++) {
    const pc = fc[r] as Float64Array;
    const px = fx[r] as Float64Array;
    for (let p = 0; p < pc.length; p++) {
      const x =
        (px[p] as number) + above(start[r] as number, e(r, pc[p] as number), Number.POSITIVE_INFINITY);
      if (x < best) {
        best = x;
        bestRow = r;
        bestIdx = p;
      }
    }
  }
  const earliest = new Float64Array(rows - 1).fill(Number.POSITIVE_INFINITY);
  if (best <= budget) {
    for (let r = bestRow, p = bestIdx; r > 0; ) {
      earliest[r - 1] = e(r, (fc[r] as Float64Array)[p] as number);
      const pr = (fromRow[r] as Int32Array)[p] as number;
      p = (fromIdx[r] as Int32Array)[p] as number;
      r = pr;
    }
  }
  return { excess: best <= budget ? best : Number.POSITIVE_INFINITY, earliest, coarsened, largestFrontier };
}

/** Indices (sorted by C, then count) of the points no other point beats on both. */
function pareto(order: number[], x: number[]): number[] {
  const keep: number[] = [];
  let bestX = Number.POSITIVE_INFINITY;
  for (const k of order) {
    // In this order an equal C comes with a count no smaller: only a smaller count survives.
    if ((x[k] as number) < bestX) {
      keep.push(k);
      bestX = x[k] as number;
    }
  }
  return keep;
}

export interface ChainBound {
  /** Lower bounds on every policy's nearest-rank p50 / p99 / max of the sampled age (s). */
  p50: number;
  p99: number;
  max: number;
  /** A chain attaining the p99 bound (its DR-ready times; Infinity off the chain). */
  witness: Float64Array;
  evaluations: number;
  coarsened: number;
  largestFrontier: number;
}

/**
 * The chain bound on the q-quantiles of the sampled age over the grid. A policy whose nearest-rank
 * q-quantile is A has at most M - ceil(q M) of the M samples above A, and its age is >= some
 * chain's at every sample, so X(A) <= M - ceil(q M): the smallest integer A with that property is
 * a lower bound on its q-quantile (ages are whole seconds on this grid). X is non-increasing in A;
 * binary search from `from` (a known lower bound, e.g. the pointwise bound's quantile).
 */
export function chainBound(
  m: ChainModel,
  grid: SampleGrid,
  from: { p50: number; p99: number; max: number },
): ChainBound {
  const samples = grid.last - grid.first + 1;
  let evaluations = 0;
  let coarsened = 0;
  let largestFrontier = 0;
  const feasible = (a: number, budget: number) => {
    evaluations++;
    const r = minExcess(m, grid, a, budget);
    coarsened += r.coarsened;
    largestFrontier = Math.max(largestFrontier, r.largestFrontier);
    return r.excess <= budget;
  };
  const smallest = (q: number, lo0: number) => {
    const budget = q >= 1 ? 0 : samples - Math.ceil(q * samples);
    // lo: infeasible (or -1); hi: feasible.
    let lo = Math.max(-1, lo0 - 1);
    let gap = 60;
    let hi = lo + gap;
    while (!feasible(hi, budget)) {
      lo = hi;
      gap *= 2;
      hi = lo + gap;
    }
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (feasible(mid, budget)) hi = mid;
      else lo = mid;
    }
    return { a: hi, budget };
  };
  const p50 = smallest(0.5, from.p50).a;
  const p99 = smallest(0.99, from.p99);
  const max = smallest(1, Math.max(from.max, p99.a)).a;
  const witness = minExcess(m, grid, p99.a, p99.budget).earliest;
  return { p50, p99: p99.a, max, witness, evaluations, coarsened, largestFrontier };
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
