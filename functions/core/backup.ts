import type { SnapshotRecord } from "./model.js";

/**
 * A Velero backup as the failover region knows it: what its metadata in the bucket says, the
 * snapshots it expects, and whether it is DR-ready. Pure types and rules: no SDK, no Lambda.
 */

/** One volume snapshot the backup expects, from `<name>-volumesnapshots.json.gz`. */
export interface ExpectedSnapshot {
  pvName: string;
  sourceSnapshotId: string;
  volumeId?: string;
  volumeAZ?: string;
}

export type Verdict = "dr-ready" | "pending" | "not-ready";

export interface BackupState {
  name: string;
  schedule?: string;
  storageLocation?: string;
  /** Velero's phase (New, InProgress, ..., Completed, PartiallyFailed, Failed). */
  phase?: string;
  startTimestamp?: string;
  completionTimestamp?: string;
  expiration?: string;
  errors: number;
  warnings: number;
  volumeSnapshotsAttempted?: number;
  /** Undefined until `<name>-volumesnapshots.json.gz` has been read. */
  expected?: ExpectedSnapshot[];
  /** When the ledger last changed its metadata (S3 LastModified of velero-backup.json). */
  metadataModified?: string;
}

export interface Evaluation {
  verdict: Verdict;
  reason: string;
  /** Expected snapshots with a completed copy, and how many are expected. */
  copied: number;
  expectedCount: number;
}

/** Phases Velero is still working in; the backup may yet complete. */
const RUNNING = new Set([
  "",
  "New",
  "InProgress",
  "WaitingForPluginOperations",
  "Finalizing",
  "FinalizingPartiallyFailed",
]);

/** How final a phase is, so an older copy of `velero-backup.json` never overwrites a newer one. */
export function phaseRank(phase: string | undefined): number {
  switch (phase) {
    case undefined:
    case "":
    case "New":
      return 0;
    case "InProgress":
      return 1;
    case "WaitingForPluginOperations":
    case "WaitingForPluginOperationsPartiallyFailed":
      return 2;
    case "Finalizing":
    case "FinalizingPartiallyFailed":
      return 3;
    default:
      return 4; // Completed, PartiallyFailed, Failed, FailedValidation, Deleting
  }
}

export interface EvaluateOptions {
  now: Date;
  /** Warnings a DR-ready backup may carry (default 0: the source requirement is "no warnings"). */
  allowedWarnings: number;
}

/**
 * Is this backup DR-ready? Completed, no errors, warnings within the allowance, not expired, and
 * every expected snapshot has a completed copy in the failover region. "pending" means it may still
 * become ready (Velero or the copies are not done); "not-ready" is final, with the reason.
 */
export function evaluateBackup(
  b: BackupState,
  copies: ReadonlyMap<string, SnapshotRecord>,
  o: EvaluateOptions,
): Evaluation {
  const expectedCount = b.expected?.length ?? 0;
  const copied = (b.expected ?? []).filter(
    (e) => copies.get(e.sourceSnapshotId)?.status === "completed",
  ).length;
  const v = (verdict: Verdict, reason: string): Evaluation => ({ verdict, reason, copied, expectedCount });
  const phase = b.phase ?? "";
  if (b.expiration && Date.parse(b.expiration) <= o.now.getTime())
    return v("not-ready", `expired at ${b.expiration}`);
  if (RUNNING.has(phase)) return v("pending", `Velero phase ${phase || "unknown"}: backup not finished`);
  if (phase !== "Completed") return v("not-ready", `Velero phase ${phase}`);
  if (b.errors > 0) return v("not-ready", `backup has ${b.errors} error(s)`);
  if (b.warnings > o.allowedWarnings) {
    return v("not-ready", `backup has ${b.warnings} warning(s), ${o.allowedWarnings} allowed`);
  }
  if (b.expected === undefined) {
    return (b.volumeSnapshotsAttempted ?? 1) === 0
      ? v("dr-ready", "Completed with no volume snapshots")
      : v("pending", "volume snapshot list not read yet");
  }
  const lost: string[] = [];
  const waiting: string[] = [];
  for (const e of b.expected) {
    const c = copies.get(e.sourceSnapshotId);
    if (c?.status === "completed") continue;
    const what = `${e.sourceSnapshotId} (pv ${e.pvName}): ${c ? c.status : "not seen"}`;
    if (c?.status === "failed" || c?.status === "superseded")
      lost.push(`${what}${c.reason ? `, ${c.reason}` : ""}`);
    else waiting.push(what);
  }
  if (lost.length > 0) return v("not-ready", `copy missing for good: ${lost.join("; ")}`);
  if (waiting.length > 0) {
    return v(
      "pending",
      `${copied} of ${expectedCount} snapshots copied; waiting: ${waiting.slice(0, 5).join("; ")}`,
    );
  }
  return v("dr-ready", `all ${expectedCount} snapshots copied`);
}

/** The recovery point: the newest DR-ready backup's start time, and its age now (seconds). */
export function recoveryPoint(
  ready: ReadonlyArray<Pick<BackupState, "name" | "startTimestamp">>,
  now: Date,
): { backup: string; startTimestamp: string; ageSeconds: number } | undefined {
  let best: { backup: string; startTimestamp: string } | undefined;
  for (const b of ready) {
    if (!b.startTimestamp) continue;
    if (!best || Date.parse(b.startTimestamp) > Date.parse(best.startTimestamp))
      best = { backup: b.name, startTimestamp: b.startTimestamp };
  }
  if (!best) return undefined;
  return { ...best, ageSeconds: Math.max(0, (now.getTime() - Date.parse(best.startTimestamp)) / 1000) };
}

/** The Schedule dimension of the whole system's recovery point (every schedule and ad-hoc backup). */
export const ALL_SCHEDULES = "all";
/** The Schedule dimension of backups taken outside a Velero schedule (as SnapshotCopyLag uses it). */
export const NO_SCHEDULE = "none";

/** What the recovery point needs of a registered backup (a StoredBackup is one). */
export interface RecoveryCandidate {
  name: string;
  schedule?: string;
  startTimestamp?: string;
  expiration?: string;
  /** Set once its failover metadata was published (the backup became DR-ready). */
  drReadyAt?: string;
  verdict?: Verdict;
}

/** The recovery point of one schedule, or of the whole system (`schedule` = ALL_SCHEDULES). */
export interface RecoveryPointView {
  schedule: string;
  /** DR-ready backups that have not expired: the restores available now. */
  drReadyBackups: number;
  /** The newest of them; undefined when there is no recovery point at all. */
  newest?: { backup: string; startTimestamp: string; ageSeconds: number };
}

export interface RecoveryPoints {
  all: RecoveryPointView;
  /** One per schedule seen among the backups (NO_SCHEDULE for ad-hoc ones), sorted by name. */
  schedules: RecoveryPointView[];
}

/**
 * Can this backup be restored in the failover region now? It became DR-ready (its failover
 * metadata exists), has a start time, has not expired (Velero's garbage collection deletes it at
 * `expiration`), and no later evaluation withdrew it.
 */
export function isRecoverable(b: RecoveryCandidate, now: Date): boolean {
  if (!b.drReadyAt || b.verdict === "not-ready") return false;
  if (!b.startTimestamp || Number.isNaN(Date.parse(b.startTimestamp))) return false;
  return b.expiration === undefined || Date.parse(b.expiration) > now.getTime();
}

/**
 * The recovery point per schedule and overall (DESIGN.md section 2.3): age = now minus the start
 * time of the newest recoverable backup, the moment from which a restore would lose data. A
 * schedule with registered backups of which none is recoverable has a view without `newest`.
 */
export function recoveryPoints(backups: readonly RecoveryCandidate[], now: Date): RecoveryPoints {
  const view = (schedule: string, of: readonly RecoveryCandidate[]): RecoveryPointView => {
    const ready = of.filter((b) => isRecoverable(b, now));
    const newest = recoveryPoint(ready, now);
    return { schedule, drReadyBackups: ready.length, ...(newest ? { newest } : {}) };
  };
  const bySchedule = new Map<string, RecoveryCandidate[]>();
  for (const b of backups) {
    const key = b.schedule || NO_SCHEDULE;
    bySchedule.set(key, [...(bySchedule.get(key) ?? []), b]);
  }
  return {
    all: view(ALL_SCHEDULES, backups),
    schedules: [...bySchedule.keys()].sort().map((s) => view(s, bySchedule.get(s) ?? [])),
  };
}
