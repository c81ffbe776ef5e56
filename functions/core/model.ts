/**
 * The replication plane's vocabulary. Pure types: no SDK, no Lambda.
 */

/** Velero's tags on every EBS snapshot it takes (merged over the volume's own tags). */
export const VELERO_BACKUP_TAG = "velero.io/backup";
export const VELERO_PV_TAG = "velero.io/pv";
export const VELERO_SCHEDULE_TAG = "velero.io/schedule-name";
export const VELERO_STORAGE_LOCATION_TAG = "velero.io/storage-location";

/** Our own tags on every copy, so a copy can be traced to its source without the ledger. */
export const SOURCE_SNAPSHOT_TAG = "dr.velero.io/source-snapshot-id";
export const SOURCE_REGION_TAG = "dr.velero.io/source-region";
export const SOURCE_VOLUME_TAG = "dr.velero.io/source-volume-id";

export type Tags = Record<string, string>;

/**
 * Lifecycle of one source snapshot in the ledger.
 * - waiting: recorded, not yet copying (maybe backing off until `notBefore`)
 * - copying: holds a budget slot and its volume's lineage lock
 * - completed: a completed copy exists in the failover region
 * - failed: copy failed for good (reason recorded), or the source snapshot itself failed
 * - superseded: skipped because a newer backup of the same schedule is being copied instead
 */
export type SnapshotStatus = "waiting" | "copying" | "completed" | "failed" | "superseded";

export interface SnapshotRecord {
  sourceSnapshotId: string;
  sourceRegion: string;
  volumeId: string;
  backup: string;
  /** `velero.io/schedule-name`, absent for ad-hoc backups (which are never superseded). */
  schedule?: string;
  /** Source snapshot start time (ISO 8601): the instant the data was captured. */
  startTime: string;
  status: SnapshotStatus;
  tags: Tags;
  /** Copies that failed (counted against the configured maximum). */
  attempts: number;
  /** Throttled or quota-limited copy requests (never counted against the maximum; drive back-off). */
  throttles?: number;
  /** Earliest time (ISO) a waiting snapshot may be admitted again after a back-off. */
  notBefore?: string;
  copySnapshotId?: string;
  /** Copies of earlier attempts that failed: never taken for the current attempt's copy. */
  failedCopies?: string[];
  admittedAt?: string;
  completedAt?: string;
  reason?: string;
  /** KMS key the copy was made with (one key per lineage keeps copies incremental). */
  kmsKeyId?: string;
  incremental?: boolean;
  stuck?: boolean;
  missedDeadline?: boolean;
}

/** A source snapshot as described in its own region. */
export interface SourceSnapshot {
  snapshotId: string;
  region: string;
  volumeId: string;
  startTime: string;
  state: string;
  encrypted: boolean;
  tags: Tags;
}

/** What every classified event may carry besides its meaning (only when present / non-empty). */
export interface EventInfo {
  /** The EventBridge event id (the envelope's `id`), for logs. */
  eventId?: string;
  /** Informational fields that could not be read and were treated as absent, one line each. */
  notes?: string[];
}

/** What one EventBridge event means to us, after parsing at the edge. */
export type ClassifiedEvent = EventInfo &
  (
    | {
        kind: "snapshot-created";
        snapshotId: string;
        region: string;
        volumeId?: string;
        startTime?: string;
        endTime?: string;
      }
    | {
        kind: "snapshot-failed";
        snapshotId: string;
        region: string;
        volumeId?: string;
        cause: string;
      }
    | {
        kind: "snapshot-copied";
        snapshotId: string;
        region: string;
        sourceSnapshotId: string;
        sourceRegion: string;
        incremental?: boolean;
        transferType?: string;
        startTime?: string;
        endTime?: string;
      }
    | {
        kind: "copy-failed";
        snapshotId: string;
        region: string;
        sourceSnapshotId: string;
        sourceRegion: string;
        cause: string;
      }
    | {
        kind: "copy-missed-deadline";
        snapshotId: string;
        region: string;
        sourceSnapshotId?: string;
        sourceRegion?: string;
        completionDurationMinutes?: number;
        /** AWS's `missedCompletionDurationCause`. */
        cause?: string;
        startTime?: string;
      }
    | {
        kind: "multi-volume";
        snapshotId: null;
        region: string;
        snapshots: Array<{
          snapshotId: string;
          region: string;
          volumeId?: string;
          succeeded: boolean;
          cause?: string;
        }>;
        startTime?: string;
        endTime?: string;
      }
    | {
        kind: "ignored";
        reason: string;
        snapshotId: string | null;
        region: string | null;
      }
  );

export type EventKind = ClassifiedEvent["kind"];
