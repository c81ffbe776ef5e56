import type { BackupState, Evaluation } from "./backup.js";
import type { SnapshotRecord, SourceSnapshot, Tags } from "./model.js";

/** What the replication plane needs from the outside world. Adapters implement these with AWS SDK v3. */

export interface Clock {
  now(): Date;
}

/** Structured logging (Powertools Logger satisfies it). */
export interface Log {
  debug(message: string, ...attributes: Record<string, unknown>[]): void;
  info(message: string, ...attributes: Record<string, unknown>[]): void;
  warn(message: string, ...attributes: Record<string, unknown>[]): void;
  error(message: string, ...attributes: Record<string, unknown>[]): void;
}

export interface OpenState {
  open: SnapshotRecord[];
  startedBackups: Set<string>;
  /** The budget counter as stored (equals the copying records unless something is wrong). */
  inFlightCounter: number;
}

export type RecordResult = "recorded" | "duplicate";

/**
 * The ledger: one record per source snapshot, plus the copy budget counter and one lineage lock
 * per volume. Every state change is a conditional write, so concurrent and repeated deliveries
 * agree on one outcome.
 */
export interface Ledger {
  /** Records a source snapshot as waiting; "duplicate" when it is already known. */
  recordSource(record: SnapshotRecord): Promise<RecordResult>;
  /** Records a source snapshot that failed in its own region; never copied. */
  recordSourceFailure(record: SnapshotRecord): Promise<RecordResult>;
  get(sourceSnapshotId: string): Promise<SnapshotRecord | undefined>;
  /** Which of these source snapshots the ledger knows, in any state. */
  known(sourceSnapshotIds: readonly string[]): Promise<Set<string>>;
  /** Every waiting or copying record, and which of their backups have started copying. */
  loadOpen(): Promise<OpenState>;
  /**
   * Atomically: takes a budget slot (only while fewer than `budget` are in flight), takes the
   * volume's lineage lock, moves the record waiting -> copying and marks its backup started.
   * Returns the lineage's KMS key (pinned on first use) or false when any condition fails.
   */
  admit(
    record: SnapshotRecord,
    budget: number,
    kmsKeyId: string | undefined,
    now: Date,
  ): Promise<{ kmsKeyId: string | undefined } | false>;
  /** Notes the copy's id once CopySnapshot answered (only while copying without a copy id). */
  noteCopyStarted(
    sourceSnapshotId: string,
    copySnapshotId: string,
    kmsKeyId: string | undefined,
  ): Promise<boolean>;
  /**
   * copying -> completed; frees the slot and the lock. False if it was not copying (duplicate event):
   * the write itself checks, so the caller's copy of the record may be stale.
   */
  complete(
    record: LeaseHolder,
    copy: { copySnapshotId: string; completedAt: string; incremental?: boolean },
  ): Promise<boolean>;
  /**
   * copying -> waiting (retry after `notBefore`) or failed; frees the slot and the lock.
   * `count` names the counter the outcome increments (copy failures or throttles).
   */
  release(record: LeaseHolder, outcome: ReleaseOutcome): Promise<boolean>;
  /** waiting -> superseded, only while its backup has not started copying. */
  supersede(sourceSnapshotId: string, backup: string, by: string): Promise<boolean>;
  /** Flags a copying record (idempotent): pending too long, or missed its time-based deadline. */
  flag(sourceSnapshotId: string, flag: "stuck" | "missedDeadline"): Promise<void>;
}

/** What leaving `copying` needs to know of a record (fields that never change). */
export type LeaseHolder = Pick<SnapshotRecord, "sourceSnapshotId" | "volumeId" | "backup">;

export type ReleaseOutcome =
  | { status: "waiting"; notBefore: string; reason: string; count: "attempts" | "throttles" | "none" }
  | { status: "failed"; reason: string; count: "attempts" | "none" };

export interface CopyRequest {
  sourceSnapshotId: string;
  sourceRegion: string;
  volumeId: string;
  tags: Tags;
  kmsKeyId?: string;
  completionDurationMinutes?: number;
  description: string;
}

export type CopyState = {
  copySnapshotId: string;
  sourceSnapshotId: string | undefined;
  /** The Velero backup the copy belongs to (its `velero.io/backup` tag). */
  backup?: string;
  state: "pending" | "completed" | "error";
  stateMessage?: string;
  startTime?: string;
};

/** EBS in the failover region. Throws RetryableError or TerminalError. */
export interface SnapshotCopier {
  copy(request: CopyRequest): Promise<string>;
  /** Current state of copies by id (missing ids are omitted). */
  describeCopies(copySnapshotIds: readonly string[]): Promise<CopyState[]>;
  /** Finds copies of a source snapshot by our source tag (used when a copy id was never noted). */
  findCopiesOf(sourceSnapshotId: string): Promise<CopyState[]>;
  /** Deletes one of our copies; false when it was already gone. */
  deleteCopy(copySnapshotId: string): Promise<boolean>;
  /** Every copy this pipeline made (snapshots of the failover region carrying our source tag). */
  listCopies(): Promise<CopyState[]>;
}

/** EBS in a source region. One call per batch of ids. */
export interface SourceSnapshots {
  describe(region: string, snapshotIds: readonly string[]): Promise<SourceSnapshot[]>;
  /** Completed snapshots carrying Velero's backup tag that started at or after `since`. */
  listVelero(region: string, since: Date): Promise<SourceSnapshot[]>;
}

/** A backup as stored: its Velero metadata plus the pipeline's verdict. */
export interface StoredBackup extends BackupState {
  verdict?: Evaluation["verdict"];
  reason?: string;
  copied?: number;
  expectedCount?: number;
  evaluatedAt?: string;
  /** When the failover metadata was published and the backup declared DR-ready. */
  drReadyAt?: string;
  failoverPrefix?: string;
  /** When Velero deleted the backup and its copies and failover metadata were removed. */
  retiredAt?: string;
}

/** The backups half of the ledger (same table: one item per backup). */
export interface BackupLedger {
  /**
   * Stores what the bucket says of a backup, unless the ledger already holds a newer or more final
   * copy of `velero-backup.json` (events and reads arrive in any order; the ledger converges).
   */
  registerBackup(b: BackupState): Promise<"updated" | "stale">;
  getBackup(name: string): Promise<StoredBackup | undefined>;
  /** Snapshot records by source snapshot id (missing ones omitted). */
  getSnapshots(sourceSnapshotIds: readonly string[]): Promise<Map<string, SnapshotRecord>>;
  recordVerdict(name: string, e: Evaluation, at: string, published?: { prefix: string }): Promise<void>;
  /** Registered backups, newest first. */
  listBackups(limit?: number): Promise<StoredBackup[]>;
  /** Marks a backup deleted by Velero and cleaned up here (idempotent). */
  retireBackup(name: string, at: string, reason: string): Promise<void>;
}

/** The files of one backup in Velero's bucket. */
export interface VeleroBackupFiles {
  backupJson: unknown;
  /** LastModified of velero-backup.json (ISO). */
  modified: string;
  /** The parsed `<name>-volumesnapshots.json.gz`, when it exists yet. */
  volumeSnapshots?: unknown;
}

/** Velero's bucket (in the failover region). */
export interface VeleroBucket {
  /** The backup's current metadata, or undefined when velero-backup.json does not exist (deleted). */
  read(name: string): Promise<VeleroBackupFiles | undefined>;
  /**
   * Writes the failover copy of a backup: every file of it under the failover prefix, the given
   * ones replaced, velero-backup.json last (its presence is what Velero's sync looks for).
   */
  publish(name: string, replaced: Record<string, Uint8Array>): Promise<{ prefix: string; objects: number }>;
  /** Every file of the backup (name -> bytes), for the rewrite. */
  files(name: string): Promise<Record<string, Uint8Array>>;
  /** Deletes the backup's failover copy (velero-backup.json first, so Velero stops listing it). */
  unpublish(name: string): Promise<number>;
}
