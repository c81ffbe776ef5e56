import type { Readable, Writable } from "node:stream";
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
  /** The backlog counter as stored (equals the waiting records unless something is wrong). */
  waitingCounter: number;
  /** When the sweep last looked back over the whole discovery window (ISO), if ever. */
  fullDiscoveryAt?: string;
}

export type RecordResult = "recorded" | "duplicate";

/** A copy the ledger admitted, with the KMS key its lineage is pinned to. */
export interface Admission {
  record: SnapshotRecord;
  kmsKeyId: string | undefined;
}

/** What one batched write of new snapshots did. */
export interface RecordOutcome {
  /** New snapshots recorded straight into `copying`: each holds a slot and its volume's lock. */
  admitted: Admission[];
  /** New snapshots recorded as `waiting`. */
  waiting: SnapshotRecord[];
  /** Snapshots the ledger already knew (repeated deliveries): nothing written for them. */
  duplicates: string[];
  /** The counters as the write found them: whether a planner run could admit more right now. */
  control: { inFlight: number; waiting: number };
}

export interface CopyCompletion {
  record: LeaseHolder;
  copySnapshotId: string;
  completedAt: string;
  incremental?: boolean;
}

/**
 * The ledger: one record per source snapshot, a control item (copies in flight, copies waiting),
 * one lineage lock per volume and a `started` marker per backup. Every state change is a
 * conditional write or transaction, so concurrent and repeated deliveries agree on one outcome.
 * The batched operations exist to keep AWS API calls per snapshot low (one transaction per batch);
 * each behaves exactly like the same operations one by one.
 */
export interface Ledger {
  /**
   * Records new source snapshots in one write. `admit` (in priority order) go straight to
   * `copying` while there is no backlog (no waiting record anywhere), a slot is free and the
   * volume's lock is free; the rest, and all of `wait`, are recorded `waiting`.
   */
  recordMany(
    batch: { admit: readonly SnapshotRecord[]; wait: readonly SnapshotRecord[] },
    budget: number,
    kmsKeyId: string | undefined,
    now: Date,
  ): Promise<RecordOutcome>;
  /** Records a source snapshot that failed in its own region; never copied. */
  recordSourceFailure(record: SnapshotRecord): Promise<RecordResult>;
  get(sourceSnapshotId: string): Promise<SnapshotRecord | undefined>;
  /** Which of these source snapshots the ledger knows, in any state. */
  known(sourceSnapshotIds: readonly string[]): Promise<Set<string>>;
  /** Which of these are still waiting or copying, by a strongly consistent read. */
  stillOpen(sourceSnapshotIds: readonly string[]): Promise<Set<string>>;
  /** Every waiting or copying record, which backups have started copying, and the counters. */
  loadOpen(): Promise<OpenState>;
  /** The counters alone (copies in flight, records waiting): one small read. */
  counters(): Promise<{ inFlight: number; waiting: number }>;
  /**
   * Waiting records -> copying, in priority order, as far as the budget allows: each takes a
   * budget slot and its volume's lineage lock, and marks its backup started. A record another
   * invocation admitted or settled first is skipped (`lostRaces`). The KMS key is the lineage's
   * (pinned on its first copy), else `kmsKeyId`.
   */
  admitMany(
    records: readonly SnapshotRecord[],
    budget: number,
    kmsKeyId: string | undefined,
    now: Date,
  ): Promise<{ admitted: Admission[]; lostRaces: SnapshotRecord[] }>;
  /** Notes the copy's id where the sweep found it by tag (only while copying without a copy id). */
  noteCopyStarted(
    sourceSnapshotId: string,
    copySnapshotId: string,
    kmsKeyId: string | undefined,
  ): Promise<boolean>;
  /**
   * copying -> completed, freeing slots and locks; per completion, false if it was not copying
   * (duplicate event) or its copy is another one: the write itself checks.
   */
  completeMany(completions: readonly CopyCompletion[]): Promise<boolean[]>;
  /**
   * copying -> waiting (retry after `notBefore`) or failed; frees the slot and the lock.
   * `count` names the counter the outcome increments (copy failures or throttles).
   */
  release(record: LeaseHolder, outcome: ReleaseOutcome): Promise<boolean>;
  /** waiting -> superseded, only while their backup has not started copying; how many were. */
  supersedeMany(backup: string, sourceSnapshotIds: readonly string[], by: string): Promise<number>;
  /** Flags a copying record (idempotent): pending too long, or missed its time-based deadline. */
  flag(sourceSnapshotId: string, flag: "stuck" | "missedDeadline"): Promise<void>;
  /** Notes that the sweep looked back over the whole discovery window at `at` (ISO). */
  noteFullDiscovery(at: string): Promise<void>;
}

/** What leaving `copying` needs to know of a record (fields that never change). */
export type LeaseHolder = Pick<SnapshotRecord, "sourceSnapshotId" | "volumeId" | "backup">;

export type ReleaseOutcome = (
  | { status: "waiting"; notBefore: string; reason: string; count: "attempts" | "throttles" | "none" }
  | { status: "failed"; reason: string; count: "attempts" | "none" }
) & {
  /** The attempt's copy, when it was made and failed (kept in `failedCopies`). */
  failedCopy?: string;
};

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
  /**
   * Copies of these source snapshots, found by our source tag (for copies whose id the ledger does
   * not know yet: it learns ids from completion events, not by a write after each CopySnapshot).
   */
  findCopiesOf(sourceSnapshotIds: readonly string[]): Promise<CopyState[]>;
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
  /**
   * Records a verdict; with `published`, also when the backup became DR-ready (kept if already set).
   * Resolves true when this call was the one that made it DR-ready (racing evaluations: one wins).
   */
  recordVerdict(name: string, e: Evaluation, at: string, published?: { prefix: string }): Promise<boolean>;
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
  /** The parsed `<name>-volumeinfo.json.gz`, when it exists (Velero 1.13+, once written). */
  volumeInfo?: unknown;
}

/** The tarball of a failover copy: `<name>.tar.gz`, which every backup must have. */
export interface TarballRewrite {
  file: string;
  /**
   * Streams the stored tarball (gzip) from `source` through the rewrite into `sink` (gzip), never
   * holding it whole; resolves once `sink` has finished, with the number of entries replaced (none:
   * the stored tarball is what the copy gets). Absent when no entry can change: copied as stored.
   */
  rewrite?: (source: Readable, sink: Writable) => Promise<{ entries: number; replaced: number }>;
}

/** What the failover copy of a backup changes: small files whole, and the tarball as a stream. */
export interface FailoverRewrite {
  /** File name -> its new bytes. */
  replaced: Record<string, Uint8Array>;
  tarball?: TarballRewrite;
}

/** Velero's bucket (in the failover region). */
export interface VeleroBucket {
  /** The backup's current metadata, or undefined when velero-backup.json does not exist (deleted). */
  read(name: string): Promise<VeleroBackupFiles | undefined>;
  /**
   * Writes the failover copy of a backup under the failover prefix: the `replaced` files, the
   * tarball through its streaming rewrite (first: a tarball that cannot be read fails the
   * publication before anything else is written), every other file copied server-side (never
   * read), velero-backup.json last (its presence is what Velero's sync looks for).
   */
  publish(
    name: string,
    replaced: Record<string, Uint8Array>,
    tarball?: TarballRewrite,
  ): Promise<{ prefix: string; objects: number }>;
  /** The named files of the backup that exist (name -> bytes): only what the rewrite reads. */
  files(name: string, names: readonly string[]): Promise<Record<string, Uint8Array>>;
  /** Deletes the backup's failover copy (velero-backup.json first, so Velero stops listing it). */
  unpublish(name: string): Promise<number>;
}
