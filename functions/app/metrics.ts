import { type Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { NO_SCHEDULE } from "../core/backup.js";
import type { AdmitReport, CopyEventOutcome, SweepReport } from "../core/plane.js";
import type { ReadyBackup } from "../core/registry.js";

/** Metric names, shared with the dashboards and alarms in the stacks. */
export const METRIC = {
  copyLag: "SnapshotCopyLag",
  copiesStarted: "CopiesStarted",
  copiesCompleted: "CopiesCompleted",
  copiesIncremental: "CopiesIncremental",
  copiesFull: "CopiesFull",
  copyFailures: "CopyFailures",
  copiesRetried: "CopiesRetried",
  copiesThrottled: "CopiesThrottled",
  copiesSuperseded: "CopiesSuperseded",
  copiesInFlight: "CopiesInFlight",
  copiesWaiting: "CopiesWaiting",
  copiesStuck: "CopiesStuck",
  copiesMissedDeadline: "CopiesMissedDeadline",
  settledWithoutEvent: "CopiesSettledWithoutEvent",
  settledByPoll: "CopiesSettledByPoll",
  discoveredWithoutEvent: "SnapshotsDiscoveredWithoutEvent",
  copyEventsProcessed: "CopyEventsProcessed",
  backupEvents: "BackupEventsProcessed",
  eventsRejected: "EventsRejected",
  snapshotsSkipped: "SnapshotsSkipped",
  snapshotsRecorded: "SnapshotsRecorded",
  recoveryPointAge: "RecoveryPointAge",
  drReadyBackups: "DrReadyBackups",
  recoveryPointMissing: "RecoveryPointMissing",
  backupReplicationLag: "BackupReplicationLag",
} as const;

export function publishAdmit(metrics: Metrics, r: AdmitReport): void {
  metrics.addMetric(METRIC.copiesStarted, MetricUnit.Count, r.admitted.length);
  metrics.addMetric(METRIC.copiesSuperseded, MetricUnit.Count, r.superseded);
  metrics.addMetric(METRIC.copiesThrottled, MetricUnit.Count, r.throttled);
  metrics.addMetric(METRIC.copyFailures, MetricUnit.Count, r.failed);
  metrics.addMetric(METRIC.copiesInFlight, MetricUnit.Count, r.inFlight);
  metrics.addMetric(METRIC.copiesWaiting, MetricUnit.Count, r.waiting);
}

/** Published only after the ledger holds the outcome (copy, record, then emit). */
export function publishCopyOutcome(metrics: Metrics, o: CopyEventOutcome): void {
  if (o.status === "completed") {
    const m = metrics.singleMetric();
    m.addDimension("Schedule", o.record.schedule ?? NO_SCHEDULE);
    m.addMetric(METRIC.copyLag, MetricUnit.Seconds, o.lagSeconds);
    metrics.addMetric(METRIC.copiesCompleted, MetricUnit.Count, 1);
    if (o.incremental !== undefined) {
      metrics.addMetric(o.incremental ? METRIC.copiesIncremental : METRIC.copiesFull, MetricUnit.Count, 1);
    }
  } else if (o.status === "failed") {
    metrics.addMetric(METRIC.copyFailures, MetricUnit.Count, 1);
  } else if (o.status === "retrying") {
    metrics.addMetric(METRIC.copiesRetried, MetricUnit.Count, 1);
  } else if (o.status === "flagged") {
    metrics.addMetric(METRIC.copiesMissedDeadline, MetricUnit.Count, 1);
  }
}

export function publishSweep(metrics: Metrics, r: SweepReport): void {
  metrics.addMetric(METRIC.copiesStuck, MetricUnit.Count, r.stuck.length);
  metrics.addMetric(
    METRIC.settledWithoutEvent,
    MetricUnit.Count,
    r.completedWithoutEvent + r.failedWithoutEvent,
  );
  publishAdmit(metrics, r.admit);
}

/**
 * A backup just became DR-ready: how long after Velero completed it, per schedule (the dashboard
 * draws it with a SEARCH over `{VeleroDR,Schedule,service}`). Emitted at once, whichever function
 * judged the backup, so that the Schedule dimension is not shared with the invocation's other metrics.
 */
export function publishReady(metrics: Metrics, ready: ReadyBackup): void {
  if (ready.replicationLagSeconds === undefined) return;
  const m = metrics.singleMetric();
  m.addDimension("Schedule", ready.schedule ?? NO_SCHEDULE);
  m.addMetric(METRIC.backupReplicationLag, MetricUnit.Seconds, ready.replicationLagSeconds);
}
