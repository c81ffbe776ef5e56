import type { AwsStats } from "./aws.js";
import { chainBound, chainModel, fluidNewestNext, pointwiseBound, recoveryPoints } from "./bound.js";
import { Engine, HOUR, MINUTE, SECOND, seeded } from "./engine.js";
import { type ModelParams, makeWorkload, type Workload } from "./model.js";
import { NaivePolicy } from "./policies/naive.js";
import type { Policy } from "./policies/policy.js";
import { SchedulerPolicy } from "./policies/scheduler.js";
import { type Boundedness, boundedness, Histogram, type Series } from "./stats.js";

/** One simulated day for one N: the same workload through every policy, and the lower bound. */
export interface RunOptions extends ModelParams {
  /** Leading hours left out of the statistics (the first backups, full copies on a cold start). */
  warmupHours: number;
  sweepMinutes: number;
  sampleSeconds: number;
  /** Our copy budget; default the plane's (DEFAULTS.copyBudget = 16). */
  copyBudget?: number;
  /** Our copy poller's interval; default the plane's (DEFAULTS.pollSeconds = 10; 0: off). */
  pollSeconds?: number;
  /** Our scheduler again at these budgets, on the same workload (reported beside `runs`). */
  alsoBudgets?: number[];
}

export type PolicyName = "naive" | "scheduler" | "bound";

export interface PolicyRun {
  policy: PolicyName;
  /** Backup-set recovery point age (s) at every sample. */
  age: Series;
  /** The bound only: the single-chain fluid reference (fluidNewestNext), to show its slack. */
  reference?: Series;
  /** The bound only: the pointwise bound's age at every sample (<= every policy's, sample by sample). */
  pointwise?: Series;
  /**
   * The bound only: the chain bound's p50/p99/max (s), lower bounds on each policy's, which override
   * the statistics of `age` (there: a chain attaining the p99 bound, for the chart).
   */
  quantiles?: { p50: number; p99: number; max: number };
  /** Open work (snapshots still to copy) at every sample; not for the bound. */
  open?: Series;
  /** Per-controller recovery point ages pooled over controllers and samples (not for the bound). */
  perController?: Histogram;
  aws?: AwsStats;
  superseded?: number;
  /** Each backup as it became DR-ready (every copy completed). */
  readyLog?: Array<{ j: number; at: number }>;
  /** Ours: its copy budget and plane invocations; the bound: its DP's effort (evaluations, frontier). */
  policyDetail?: Record<string, number>;
  wallMs: number;
  policyObject?: Policy;
}

export interface Figures {
  controllers: number;
  policy: PolicyName;
  /** Ours: the copy budget it ran with (the bound and naive use AWS's 20). */
  copyBudget: number;
  /** Ours: the copy poller's interval (0: off); null for naive and the bound. */
  pollSeconds: number | null;
  p50RecoveryPointAgeSeconds: number;
  p99RecoveryPointAgeSeconds: number;
  maxRecoveryPointAgeSeconds: number;
  bounded: boolean;
  p50ControllerRecoveryPointAgeSeconds: number | null;
  p99ControllerRecoveryPointAgeSeconds: number | null;
  maxControllerRecoveryPointAgeSeconds: number | null;
  drReadyBackupsPerHour: number | null;
  copiesMade: number | null;
  fullCopies: number | null;
  copiesSuperseded: number | null;
  quotaErrors: number | null;
  resourceLimitExceeded: number | null;
  requestLimitExceeded: number | null;
  copySnapshotCalls: number | null;
  gibTransferred: number | null;
  maxConcurrentCopies: number | null;
  meanAgeSecondsQ2: number;
  meanAgeSecondsQ4: number;
  meanOpenWorkQ2: number | null;
  meanOpenWorkQ4: number | null;
  /** The bound row only: the single-chain fluid reference's p50/p99 (an ideal policy, not a bound). */
  fluidNewestNextP50RecoveryPointAgeSeconds: number | null;
  fluidNewestNextP99RecoveryPointAgeSeconds: number | null;
  /** The bound row only: the old pointwise bound's p50/p99/max (looser than the chain bound). */
  pointwiseP50RecoveryPointAgeSeconds: number | null;
  pointwiseP99RecoveryPointAgeSeconds: number | null;
  pointwiseMaxRecoveryPointAgeSeconds: number | null;
  wallSeconds: number;
}

function sampleTimes(o: RunOptions): Float64Array {
  const step = o.sampleSeconds * SECOND;
  const count = Math.floor((o.hours * HOUR) / step) + 1;
  return Float64Array.from({ length: count }, (_, i) => i * step);
}

export async function simulatePolicy(
  w: Workload,
  name: "naive" | "scheduler",
  o: RunOptions,
): Promise<PolicyRun> {
  const wall = performance.now();
  const engine = new Engine(0);
  const policy: Policy =
    name === "naive"
      ? new NaivePolicy(w, engine)
      : new SchedulerPolicy(w, engine, {
          sweepMinutes: o.sweepMinutes,
          random: seeded(o.seed ^ 0x5eed),
          ...(o.copyBudget === undefined ? {} : { copyBudget: o.copyBudget }),
          ...(o.pollSeconds === undefined ? {} : { pollSeconds: o.pollSeconds }),
        });
  const { aws } = policy;
  for (let j = 0; j < w.backups.length; j++) {
    for (let v = 0; v < w.n; v++) {
      const k = j * w.n + v;
      engine.at((w.snapReady[k] as number) + (w.eventDelayMs[k] as number), () =>
        policy.onSnapshotEvent(j, v),
      );
    }
  }
  const t = sampleTimes(o);
  const age = new Float64Array(t.length);
  const open = new Float64Array(t.length);
  const perController = new Histogram();
  const warmup = o.warmupHours * HOUR;
  t.forEach((time, i) => {
    engine.at(time, () => {
      age[i] = (time - aws.newestReadyStart) / SECOND;
      open[i] = policy.openWork();
      if (time < warmup) return;
      for (let v = 0; v < w.n; v++) perController.add((time - (aws.newestCopiedStart[v] as number)) / SECOND);
    });
  });
  await engine.run(o.hours * HOUR);
  const run: PolicyRun = {
    policy: name,
    age: { t, value: age },
    open: { t, value: open },
    perController,
    aws: { ...aws.stats },
    superseded: policy.superseded(),
    readyLog: aws.readyLog,
    wallMs: performance.now() - wall,
    policyObject: policy,
  };
  if (policy instanceof SchedulerPolicy) {
    run.policyDetail = {
      copyBudget: policy.copyBudget,
      pollSeconds: policy.plane.config.pollSeconds,
      ...policy.invocations,
    };
  }
  return run;
}

export function simulateBound(w: Workload, o: RunOptions): PolicyRun {
  const wall = performance.now();
  const t = sampleTimes(o);
  const ages = (earliest: Float64Array) => {
    const at = recoveryPoints(w, earliest);
    return t.map((time) => (time - at(time)) / SECOND);
  };
  const model = chainModel(w);
  const pointwise = { t, value: ages(pointwiseBound(model).earliest) };
  // The chain bound on the same sample grid as the policies' statistics (see figures).
  const step = o.sampleSeconds * SECOND;
  const grid = { step, first: Math.ceil((o.warmupHours * HOUR) / step), last: t.length - 1 };
  const h = measured(pointwise, o);
  const chain = chainBound(model, grid, { p50: h.quantile(0.5), p99: h.quantile(0.99), max: h.max });
  return {
    policy: "bound",
    age: { t, value: ages(chain.witness) },
    quantiles: { p50: chain.p50, p99: chain.p99, max: chain.max },
    pointwise,
    reference: { t, value: ages(fluidNewestNext(w)) },
    policyDetail: {
      evaluations: chain.evaluations,
      largestFrontier: chain.largestFrontier,
      coarsened: chain.coarsened,
    },
    wallMs: performance.now() - wall,
  };
}

/** The samples the statistics cover: t >= warm-up. */
function measured(s: Series, o: RunOptions): Histogram {
  const warmup = o.warmupHours * HOUR;
  const h = new Histogram();
  s.t.forEach((t, i) => {
    if (t >= warmup) h.add(s.value[i] as number);
  });
  return h;
}

export function figures(w: Workload, r: PolicyRun, o: RunOptions): Figures & { boundedness: Boundedness } {
  const warmup = o.warmupHours * HOUR;
  const day = o.hours * HOUR;
  const h = measured(r.age, o);
  const ref = r.reference ? measured(r.reference, o) : undefined;
  const pw = r.pointwise ? measured(r.pointwise, o) : undefined;
  const q = r.quantiles ?? { p50: h.quantile(0.5), p99: h.quantile(0.99), max: h.max };
  const b = boundedness(r.age, r.open, day, o.intervalMinutes * MINUTE, w.n);
  const s = r.aws;
  const measuredHours = (day - warmup) / HOUR;
  const ready = r.readyLog?.filter((x) => x.at >= warmup && x.at <= day).length;
  const pc = r.perController;
  return {
    controllers: w.n,
    policy: r.policy,
    copyBudget: r.policyDetail?.copyBudget ?? AWS_CONCURRENT_COPIES,
    pollSeconds: r.policyDetail?.pollSeconds ?? null,
    p50RecoveryPointAgeSeconds: q.p50,
    p99RecoveryPointAgeSeconds: q.p99,
    maxRecoveryPointAgeSeconds: q.max,
    bounded: b.bounded,
    p50ControllerRecoveryPointAgeSeconds: pc ? pc.quantile(0.5) : null,
    p99ControllerRecoveryPointAgeSeconds: pc ? pc.quantile(0.99) : null,
    maxControllerRecoveryPointAgeSeconds: pc ? pc.max : null,
    drReadyBackupsPerHour: ready === undefined ? null : round(ready / measuredHours, 2),
    copiesMade: s ? s.copiesCompleted : null,
    fullCopies: s ? s.fullCopies : null,
    copiesSuperseded: r.superseded ?? null,
    quotaErrors: s ? s.resourceLimitExceeded + s.requestLimitExceeded : null,
    resourceLimitExceeded: s ? s.resourceLimitExceeded : null,
    requestLimitExceeded: s ? s.requestLimitExceeded : null,
    copySnapshotCalls: s ? s.calls : null,
    gibTransferred: s ? round(s.miBTransferred / 1024, 1) : null,
    maxConcurrentCopies: s ? s.maxActive : null,
    meanAgeSecondsQ2: round(b.meanAgeQ2, 0),
    meanAgeSecondsQ4: round(b.meanAgeQ4, 0),
    meanOpenWorkQ2: b.meanOpenQ2 === undefined ? null : round(b.meanOpenQ2, 0),
    meanOpenWorkQ4: b.meanOpenQ4 === undefined ? null : round(b.meanOpenQ4, 0),
    fluidNewestNextP50RecoveryPointAgeSeconds: ref ? ref.quantile(0.5) : null,
    fluidNewestNextP99RecoveryPointAgeSeconds: ref ? ref.quantile(0.99) : null,
    pointwiseP50RecoveryPointAgeSeconds: pw ? pw.quantile(0.5) : null,
    pointwiseP99RecoveryPointAgeSeconds: pw ? pw.quantile(0.99) : null,
    pointwiseMaxRecoveryPointAgeSeconds: pw ? pw.max : null,
    wallSeconds: round(r.wallMs / 1000, 2),
    boundedness: b,
  };
}

/** AWS's concurrent copies per destination region: what naive and the bound may use. */
const AWS_CONCURRENT_COPIES = 20;

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

export interface DayResult {
  workload: Workload;
  runs: PolicyRun[];
  figures: Figures[];
  /** Ours at `alsoBudgets`. */
  alsoRuns: PolicyRun[];
  alsoFigures: Figures[];
}

/** One N: the workload once, then each policy and the bound on it. */
export async function simulateDay(o: RunOptions): Promise<DayResult> {
  const workload = makeWorkload(o);
  const runs = [
    await simulatePolicy(workload, "naive", o),
    await simulatePolicy(workload, "scheduler", o),
    simulateBound(workload, o),
  ];
  const figs = runs.map((r) => {
    const { boundedness: _b, ...f } = figures(workload, r, o);
    return f;
  });
  const alsoRuns: PolicyRun[] = [];
  const alsoFigures: Figures[] = [];
  for (const copyBudget of o.alsoBudgets ?? []) {
    const ob = { ...o, copyBudget };
    const run = await simulatePolicy(workload, "scheduler", ob);
    const { boundedness: _b, ...f } = figures(workload, run, ob);
    alsoRuns.push(run);
    alsoFigures.push(f);
  }
  return { workload, runs, figures: figs, alsoRuns, alsoFigures };
}
