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

/**
 * How Velero backed up a volume: `backupMethod` (and `snapshotDataMoved`, `skipped`) of its entry in
 * `<name>-volumeinfo.json.gz` (Velero 1.13+, internal/volume/volumes_information.go).
 * - `native`: NativeSnapshot, velero-plugin-for-aws's EBS snapshot (also in the snapshot list);
 * - `csi`: CSISnapshot without data movement, an EBS snapshot the CSI driver took (no snapshot-list
 *   record; counted in `csiVolumeSnapshotsAttempted/Completed`);
 * - `data-mover`: CSISnapshot with `snapshotDataMoved: true`, a DataUpload that moved the data into
 *   Velero's backup repository (kopia, in the BackupStorageLocation);
 * - `fs-backup`: PodVolumeBackup, file-system backup (kopia or restic) into the same repository;
 * - `skipped`: `skipped: true`, no data backed up (a volume policy, no snapshot location, ...);
 * - `unknown`: any other method.
 */
export type VolumeMethod = "native" | "csi" | "data-mover" | "fs-backup" | "skipped" | "unknown";

/** One volume of a backup's volumeinfo, as much as the verdict needs. */
export interface BackupVolume {
  method: VolumeMethod;
  /** The PV; absent for a pod volume that is not a claim (file-system backup of an emptyDir, ...). */
  pvName?: string;
  /** `namespace/pod/volume` of a file-system backup without a PV. */
  podVolume?: string;
  /** native and csi: the EBS snapshot id; data-mover and fs-backup: the repository's snapshot id. */
  snapshotHandle?: string;
  /**
   * csi: the CSI driver (its VolumeSnapshotContent is left out: the ledger item stays small, and
   * the backup's files name it).
   */
  driver?: string;
  /** Velero's own result for the volume was "failed" (1.15+): its data is not in the backup. */
  failed?: boolean;
  /** skipped: Velero's reason; unknown: the backupMethod as written. */
  detail?: string;
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
  /** The status's counts of native snapshots (velero-backup.json). */
  volumeSnapshotsAttempted?: number;
  /** Undefined for backups registered before it was recorded: then not checked. */
  volumeSnapshotsCompleted?: number;
  /** The status's counts of CSI volume snapshots (undefined: registered before they were recorded). */
  csiVolumeSnapshotsAttempted?: number;
  csiVolumeSnapshotsCompleted?: number;
  /** Undefined until `<name>-volumesnapshots.json.gz` has been read. */
  expected?: ExpectedSnapshot[];
  /**
   * The volumes of `<name>-volumeinfo.json.gz` (Velero 1.13+) that the snapshot list does not
   * account for: every entry but the succeeded native snapshots whose snapshot is in the list (left
   * out to keep the ledger item small; `expected` covers them). [] when that is all of them;
   * undefined until the file has been read, and for backups of Velero 1.12 and older (none).
   */
  volumes?: BackupVolume[];
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
  "Queued",
  "ReadyToStart",
  "InProgress",
  "WaitingForPluginOperations",
  "Finalizing",
]);

/** Phases still in progress that can only end PartiallyFailed (or Failed): never DR-ready. */
const ENDING_PARTIALLY_FAILED = new Set([
  "WaitingForPluginOperationsPartiallyFailed",
  "FinalizingPartiallyFailed",
]);

/** How final a phase is, so an older copy of `velero-backup.json` never overwrites a newer one. */
export function phaseRank(phase: string | undefined): number {
  switch (phase) {
    case undefined:
    case "":
    case "New":
    case "Queued": // Velero after 1.17: waiting for a concurrent-backup slot, then ReadyToStart
    case "ReadyToStart":
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
  /**
   * The user replicates Velero's backup repository (file-system backup and data-mover data) where
   * the standby cluster restores from (BACKUP_REPOSITORY_REPLICATED): such volumes then count as
   * restorable. Default false: they keep a backup from DR-ready.
   */
  backupRepositoryReplicated?: boolean;
  /**
   * CSI snapshots are copied like native ones, so a CSI volume counts once its snapshot has a
   * completed copy. Default false, and nothing sets it yet: the replication plane does not copy CSI
   * snapshots, so every CSI volume keeps a backup from DR-ready.
   */
  csiSnapshotsCopied?: boolean;
}

const volumeName = (v: BackupVolume) =>
  v.pvName ? `pv ${v.pvName}` : v.podVolume ? `pod volume ${v.podVolume}` : "a volume without a name";

/** The first `max` items, then how many more. */
function listed(items: readonly string[], max = 5): string {
  const more = items.length - max;
  return `${items.slice(0, max).join("; ")}${more > 0 ? `; and ${more} more` : ""}`;
}

const listed3 = (items: readonly string[]) => listed(items, 3).replaceAll("; ", ", ");

/**
 * The snapshots whose copies decide the verdict: the snapshot list's (native) and, once CSI
 * snapshots are copied (`csiSnapshotsCopied`), each CSI volume's snapshot handle.
 */
export function snapshotsToCopy(
  b: Pick<BackupState, "expected" | "volumes">,
  o: Pick<EvaluateOptions, "csiSnapshotsCopied"> = {},
): ExpectedSnapshot[] {
  const out = [...(b.expected ?? [])];
  if (!o.csiSnapshotsCopied) return out;
  const seen = new Set(out.map((e) => e.sourceSnapshotId));
  for (const v of b.volumes ?? []) {
    if (v.method !== "csi" || v.failed || !v.snapshotHandle || seen.has(v.snapshotHandle)) continue;
    seen.add(v.snapshotHandle);
    out.push({ pvName: v.pvName ?? "", sourceSnapshotId: v.snapshotHandle });
  }
  return out;
}

/** Where the status's counts disagree with the files: something Velero did is not in them. */
function countProblems(b: BackupState): string[] {
  const out: string[] = [];
  const native = b.expected?.length;
  if (native !== undefined) {
    for (const [field, n] of [
      ["volumeSnapshotsAttempted", b.volumeSnapshotsAttempted],
      ["volumeSnapshotsCompleted", b.volumeSnapshotsCompleted],
    ] as const) {
      if (n !== undefined && n !== native)
        out.push(`status.${field} is ${n} but the snapshot list has ${native} snapshot(s)`);
    }
  }
  if (b.volumes !== undefined) {
    const csi = b.volumes.filter((v) => v.method === "csi").length;
    for (const [field, n] of [
      ["csiVolumeSnapshotsAttempted", b.csiVolumeSnapshotsAttempted],
      ["csiVolumeSnapshotsCompleted", b.csiVolumeSnapshotsCompleted],
    ] as const) {
      if (n !== undefined && n !== csi)
        out.push(`status.${field} is ${n} but volumeinfo lists ${csi} CSI snapshot(s)`);
    }
  }
  return out;
}

/**
 * What keeps each volume of the volumeinfo from being restorable in the failover region, for good
 * (the snapshot list's copies are judged apart), and notes for the reason of a DR-ready verdict.
 */
function volumeProblems(b: BackupState, o: EvaluateOptions): { problems: string[]; notes: string[] } {
  const problems: string[] = [];
  const repository: string[] = [];
  const skipped: string[] = [];
  const inList = new Set((b.expected ?? []).map((e) => e.sourceSnapshotId));
  for (const v of b.volumes ?? []) {
    const name = volumeName(v);
    if (v.method === "skipped") {
      skipped.push(`${name}${v.detail ? ` (${v.detail})` : ""}`);
      continue;
    }
    if (v.failed) {
      problems.push(`Velero's backup of ${name} (${v.method}) failed`);
      continue;
    }
    switch (v.method) {
      case "native":
        if (!v.snapshotHandle || !inList.has(v.snapshotHandle)) {
          problems.push(
            `native snapshot ${v.snapshotHandle || "(no id)"} of ${name} is in volumeinfo but not in the snapshot list`,
          );
        }
        break;
      case "csi":
        if (!o.csiSnapshotsCopied) {
          problems.push(
            `CSI snapshot ${v.snapshotHandle || "(no handle)"} of ${name}: its copy is made, but the failover metadata does not name CSI copies yet, so a restore would use the source-region snapshot`,
          );
        } else if (!v.snapshotHandle) {
          problems.push(`CSI snapshot of ${name} has no snapshot handle`);
        }
        break;
      case "data-mover":
      case "fs-backup": {
        const how =
          v.method === "fs-backup" ? "file-system backup (PodVolumeBackup)" : "the data mover (DataUpload)";
        if (o.backupRepositoryReplicated) repository.push(`${name} by ${how}`);
        else {
          problems.push(
            `${name} was backed up by ${how} into Velero's backup repository, which this pipeline does not ` +
              "replicate (DR_BACKUP_REPOSITORY_REPLICATED=true says you replicate it yourself)",
          );
        }
        break;
      }
      default:
        problems.push(`${name}: unknown backup method ${JSON.stringify(v.detail ?? "")} in volumeinfo`);
    }
  }
  const notes: string[] = [];
  if (repository.length > 0) {
    notes.push(
      `${repository.length} volume(s) in the backup repository, replicated by you (DR_BACKUP_REPOSITORY_REPLICATED): ${listed3(repository)}`,
    );
  }
  if (skipped.length > 0) notes.push(`${skipped.length} volume(s) skipped by Velero: ${listed3(skipped)}`);
  return { problems, notes };
}

/**
 * Is this backup DR-ready? Completed, no errors, warnings within the allowance, not expired, every
 * volume of its volumeinfo (Velero 1.13+) restorable in the failover region, the status's snapshot
 * counts matching its files, and every expected snapshot with a completed copy there. "pending"
 * means it may still become ready (Velero or the copies are not done); "not-ready" is final, with
 * the reason.
 */
export function evaluateBackup(
  b: BackupState,
  copies: ReadonlyMap<string, SnapshotRecord>,
  o: EvaluateOptions,
): Evaluation {
  const awaited = snapshotsToCopy(b, o);
  const expectedCount = awaited.length;
  const copied = awaited.filter((e) => copies.get(e.sourceSnapshotId)?.status === "completed").length;
  const v = (verdict: Verdict, reason: string): Evaluation => ({ verdict, reason, copied, expectedCount });
  const phase = b.phase ?? "";
  // Velero's garbage collection deletes a backup once its expiration is not after now.
  if (b.expiration && Date.parse(b.expiration) <= o.now.getTime())
    return v("not-ready", `expired at ${b.expiration}`);
  if (RUNNING.has(phase)) return v("pending", `Velero phase ${phase || "unknown"}: backup not finished`);
  if (ENDING_PARTIALLY_FAILED.has(phase))
    return v("not-ready", `Velero phase ${phase}: the backup ends PartiallyFailed`);
  if (phase !== "Completed") return v("not-ready", `Velero phase ${phase}`);
  if (b.errors > 0) return v("not-ready", `backup has ${b.errors} error(s)`);
  if (b.warnings > o.allowedWarnings) {
    return v("not-ready", `backup has ${b.warnings} warning(s), ${o.allowedWarnings} allowed`);
  }
  // Without volumeinfo (Velero 1.12 and older, or not read yet) CSI volumes have no names, only a count.
  const csiUnnamed = b.volumes === undefined && (b.csiVolumeSnapshotsAttempted ?? 0) > 0;
  if (csiUnnamed && !o.csiSnapshotsCopied) {
    return v(
      "not-ready",
      `status counts ${b.csiVolumeSnapshotsAttempted} CSI volume snapshot(s) and no volumeinfo names them, so they cannot be found and copied`,
    );
  }
  // Velero writes the list for every backup (`null` without native snapshots), right after the
  // tarball and with volumeinfo, often after velero-backup.json already says Completed: judging a
  // backup before its list is there would miss what the list and volumeinfo say.
  if (b.expected === undefined) return v("pending", "volume snapshot list not read yet");
  const { problems, notes } = volumeProblems(b, o);
  problems.unshift(...countProblems(b));
  const lost: string[] = [];
  const waiting: string[] = [];
  for (const e of awaited) {
    const c = copies.get(e.sourceSnapshotId);
    if (c?.status === "completed") continue;
    const what = `${e.sourceSnapshotId} (pv ${e.pvName}): ${c ? c.status : "not seen"}`;
    if (c?.status === "failed" || c?.status === "superseded")
      lost.push(`${what}${c.reason ? `, ${c.reason}` : ""}`);
    else waiting.push(what);
  }
  if (lost.length > 0) problems.push(`copy missing for good: ${lost.join("; ")}`);
  if (problems.length > 0) return v("not-ready", listed(problems));
  if (csiUnnamed) return v("pending", "CSI volume snapshots counted; volumeinfo not read yet");
  if (waiting.length > 0) {
    return v(
      "pending",
      `${copied} of ${expectedCount} snapshots copied; waiting: ${waiting.slice(0, 5).join("; ")}`,
    );
  }
  const done =
    expectedCount === 0 ? "Completed with no volume snapshots" : `all ${expectedCount} snapshots copied`;
  return v("dr-ready", [done, ...notes].join("; "));
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
