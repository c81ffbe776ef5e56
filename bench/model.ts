import { isoAt, MINUTE, SECOND, seeded } from "./engine.js";

/**
 * The workload (N controllers, one EBS volume each, one Velero backup of all of them per schedule
 * run) and the copy-duration model. Every random quantity is drawn once here, per volume or per
 * (volume, backup), so every policy and the lower bound see exactly the same inputs.
 *
 * Calibration (see bench/MODEL.md for sources and reasoning):
 * - Jenkins home volumes hold tens of GiB (median 40 GiB used).
 * - Changed data per 15 minutes: tens to hundreds of MiB (median 100 MiB), a few heavy controllers
 *   (5%) change 8x more (big workspaces, artifacts kept on the controller).
 * - A cross-region copy has a fixed overhead (API, snapshot metadata, registration in the
 *   destination) of tens of seconds to a couple of minutes (median 60 s) that dominates small
 *   incremental copies, plus its changed blocks at an effective per-copy throughput well below the
 *   500 MiB/s ceiling (median 80 MiB/s per volume).
 * - Snapshots complete a few minutes after the backup starts (median 2.5 min).
 */
export interface ModelParams {
  controllers: number;
  hours: number;
  intervalMinutes: number;
  seed: number;
  /**
   * true: every lineage already has a copy in the failover region (of a snapshot taken one interval
   * before the day starts), as on any day but the first; false: lineages start empty and each
   * volume's first copy is a full copy.
   */
  warmLineages: boolean;
}

export const MODEL = {
  usedGiB: { median: 40, sigma: 0.5, min: 10, max: 200 },
  /** Per-volume typical change per 15 minutes, then per-interval noise around it. */
  changeMiBPer15Min: { median: 100, volumeSigma: 0.7, intervalSigma: 0.5, max: 8192 },
  heavy: { fraction: 0.05, changeFactor: 8 },
  /**
   * Share of each interval's change that rewrites the same "hot" blocks every time (job configs,
   * build queue, fingerprints); the rest is new blocks (build logs, artifacts). Changed blocks over
   * several intervals are therefore sub-additive: skipping a snapshot saves work.
   */
  hotFraction: 0.3,
  /** Effective per-copy transfer rate, fixed per volume (its size, fragmentation, placement). */
  copyMiBps: { median: 80, sigma: 0.4, min: 25, max: 300 },
  /** Per-copy fixed overhead: the per-(volume, backup) random factor of a copy's duration. */
  overheadSeconds: { median: 60, sigma: 0.45, min: 20, max: 240 },
  /** Snapshot start after the backup starts (Velero walks the PVs) and its duration. */
  snapshotStartSpreadSeconds: 30,
  snapshotSeconds: { median: 150, sigma: 0.5, min: 45, max: 900 },
  /** EventBridge (cross-region bus) + SQS delivery delay of one event. */
  eventDelaySeconds: { min: 2, max: 20 },
} as const;

export const SCHEDULE = "cbci-dr";
export const SOURCE_REGION = "us-east-1";
export const FAILOVER_REGION = "us-west-2";

export interface Workload {
  params: ModelParams;
  n: number;
  /** Backups of the day: index j starts at j * interval. */
  backups: Array<{ name: string; start: number }>;
  usedMiB: Float64Array;
  copyMiBps: Float64Array;
  heavy: Uint8Array;
  /** Per (backup j, volume v), at index j * n + v. Times in virtual ms. */
  snapStart: Float64Array;
  snapReady: Float64Array;
  /** Data changed on the volume in the interval that ends with snapshot (j, v). */
  changeMiB: Float64Array;
  overheadMs: Float64Array;
  /** Delay of the createSnapshot event, and of the copySnapshot event of this snapshot's copy. */
  eventDelayMs: Float64Array;
  copyEventDelayMs: Float64Array;
  /** Start of the pre-existing, already copied backup (warm lineages): one interval before 0. */
  baselineStart: number;
}

function lognormal(random: () => number, median: number, sigma: number): number {
  // Box-Muller: one standard normal from two uniforms.
  const u = Math.max(random(), 1e-12);
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  return median * Math.exp(sigma * z);
}

const clamp = (x: number, min: number, max: number) => Math.min(max, Math.max(min, x));

export function makeWorkload(params: ModelParams): Workload {
  const random = seeded(params.seed);
  const n = params.controllers;
  const interval = params.intervalMinutes * MINUTE;
  const count = Math.floor((params.hours * 60) / params.intervalMinutes);
  const usedMiB = new Float64Array(n);
  const copyMiBps = new Float64Array(n);
  const heavy = new Uint8Array(n);
  const typicalChange = new Float64Array(n);
  for (let v = 0; v < n; v++) {
    const u = MODEL.usedGiB;
    usedMiB[v] = clamp(lognormal(random, u.median, u.sigma), u.min, u.max) * 1024;
    const r = MODEL.copyMiBps;
    copyMiBps[v] = clamp(lognormal(random, r.median, r.sigma), r.min, r.max);
    heavy[v] = random() < MODEL.heavy.fraction ? 1 : 0;
    const c = MODEL.changeMiBPer15Min;
    typicalChange[v] =
      lognormal(random, c.median, c.volumeSigma) *
      (heavy[v] ? MODEL.heavy.changeFactor : 1) *
      (params.intervalMinutes / 15);
  }
  const backups: Workload["backups"] = [];
  const size = count * n;
  const snapStart = new Float64Array(size);
  const snapReady = new Float64Array(size);
  const changeMiB = new Float64Array(size);
  const overheadMs = new Float64Array(size);
  const eventDelayMs = new Float64Array(size);
  const copyEventDelayMs = new Float64Array(size);
  const delay = () =>
    (MODEL.eventDelaySeconds.min + random() * (MODEL.eventDelaySeconds.max - MODEL.eventDelaySeconds.min)) *
    SECOND;
  for (let j = 0; j < count; j++) {
    const start = j * interval;
    backups.push({ name: backupName(start), start });
    for (let v = 0; v < n; v++) {
      const k = j * n + v;
      snapStart[k] = start + Math.floor(random() * MODEL.snapshotStartSpreadSeconds * SECOND);
      const s = MODEL.snapshotSeconds;
      snapReady[k] =
        (snapStart[k] as number) + clamp(lognormal(random, s.median, s.sigma), s.min, s.max) * SECOND;
      const c = MODEL.changeMiBPer15Min;
      changeMiB[k] = Math.min(
        c.max,
        lognormal(random, typicalChange[v] as number, c.intervalSigma),
        usedMiB[v] as number,
      );
      const o = MODEL.overheadSeconds;
      overheadMs[k] = clamp(lognormal(random, o.median, o.sigma), o.min, o.max) * SECOND;
      eventDelayMs[k] = delay();
      copyEventDelayMs[k] = delay();
    }
  }
  return {
    params,
    n,
    backups,
    usedMiB,
    copyMiBps,
    heavy,
    snapStart,
    snapReady,
    changeMiB,
    overheadMs,
    eventDelayMs,
    copyEventDelayMs,
    baselineStart: -interval,
  };
}

/** Velero names a scheduled backup `<schedule>-<yyyyMMddHHmmss>`. */
export function backupName(start: number): string {
  return `${SCHEDULE}-${isoAt(start).replace(/[-:T]/g, "").slice(0, 14)}`;
}

export const snapshotId = (w: Workload, j: number, v: number) =>
  `snap-${(j * w.n + v).toString(16).padStart(17, "0")}`;
export const volumeId = (v: number) => `vol-${v.toString(16).padStart(17, "0")}`;

/** No previous copy in the lineage: the copy is full. */
export const NO_BASE = -2;
/** The pre-existing copy of warm lineages (a snapshot taken one interval before the day). */
export const BASELINE = -1;

/**
 * MiB a copy of snapshot (j, v) transfers when the newest earlier copied snapshot of its lineage is
 * `base` (a backup index, BASELINE, or NO_BASE for a full copy). Changed blocks since the base:
 * the largest hot-set rewrite among the intervals plus every interval's new blocks, at most the
 * volume's used size. Monotone: a newer base never transfers more.
 */
export function transferMiB(w: Workload, v: number, base: number, j: number): number {
  const used = w.usedMiB[v] as number;
  if (base === NO_BASE) return used;
  let hot = 0;
  let cold = 0;
  for (let k = base + 1; k <= j; k++) {
    const c = w.changeMiB[k * w.n + v] as number;
    hot = Math.max(hot, MODEL.hotFraction * c);
    cold += (1 - MODEL.hotFraction) * c;
  }
  return Math.min(used, hot + cold);
}

/**
 * Duration of that copy when it has the link to itself: overhead(j, v) + MiB / rate(v).
 *
 * Why the random factor is on the overhead and the rate is per volume: the lower bound needs the
 * durations to be sub-additive along a lineage (copying j after k after i never takes less in
 * total than copying j straight after i). With a per-copy random rate a cheap intermediate copy
 * could undercut that and the "bound" would not be one.
 */
export function copyDurationMs(w: Workload, v: number, base: number, j: number): number {
  return (
    (w.overheadMs[j * w.n + v] as number) + (transferMiB(w, v, base, j) / (w.copyMiBps[v] as number)) * SECOND
  );
}
