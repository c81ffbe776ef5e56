import { Duration, type Stack } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import type * as logs from "aws-cdk-lib/aws-logs";
import type * as sqs from "aws-cdk-lib/aws-sqs";
import { METRIC } from "../functions/app/metrics.js";
import { RECOVERY_POINT_LOG } from "../functions/app/recovery-point.js";
import { ALL_SCHEDULES } from "../functions/core/backup.js";
import { AWS_CONCURRENT_COPY_LIMIT } from "../functions/core/config.js";

export interface DashboardProps {
  stage: string;
  /** The metrics' namespace and Powertools' `service` dimension, as the functions emit them. */
  namespace: string;
  service: string;
  copyBudget: number;
  /** Event queues by label, each with its dead-letter queue. */
  queues: Record<string, { queue: sqs.IQueue; dlq: sqs.IQueue }>;
  alarms: cloudwatch.IAlarm[];
  /** With Velero's bucket configured: the RPO target and the recovery-point function's logs. */
  recoveryPoint?: { rpoTargetMinutes: number; logGroup: logs.ILogGroup };
}

/** The dashboard's name; fixed so runbooks can link to it. */
export function dashboardName(stage: string): string {
  return `velero-dr-${stage}`;
}

const RED = "#d62728";
const ORANGE = "#ff7f0e";

/**
 * The operator's one page (`velero-dr-<stage>`): the recovery point against the RPO target, copy
 * lag, copies in flight against the budget and AWS's limit, waiting and superseded copies,
 * failures, and the dead-letter queues. Metrics carry Powertools' `service` dimension; the
 * per-schedule ones (SnapshotCopyLag, RecoveryPointAge, ...) also `Schedule`, and are drawn with
 * SEARCH expressions, since schedule names are not known when the stack is synthesized.
 */
export function operationsDashboard(stack: Stack, p: DashboardProps): cloudwatch.Dashboard {
  const metric = (
    metricName: string,
    statistic: string,
    period: Duration,
    label: string,
    dimensions: Record<string, string> = {},
  ) =>
    new cloudwatch.Metric({
      namespace: p.namespace,
      metricName,
      dimensionsMap: { service: p.service, ...dimensions },
      statistic,
      period,
      label,
    });
  /** Every schedule's series of a metric with the Schedule dimension (except the overall one). */
  const perSchedule = (metricName: string, statistic: string, period: Duration, labelPrefix: string) =>
    new cloudwatch.MathExpression({
      expression:
        `SEARCH('{${p.namespace},Schedule,service} MetricName="${metricName}" ` +
        `service="${p.service}" NOT Schedule="${ALL_SCHEDULES}"', '${statistic}', ${period.toSeconds()})`,
      label: `${labelPrefix}\${PROP('Dim.Schedule')}`,
      period,
    });
  const oneMinute = Duration.minutes(1);
  const fiveMinutes = Duration.minutes(5);
  const rows: cloudwatch.IWidget[][] = [];

  rows.push([
    new cloudwatch.TextWidget({
      width: 12,
      height: 5,
      markdown: [
        `# Velero DR (${p.stage})`,
        "**Recovery point age**: now minus the start of the newest DR-ready backup (all its snapshots",
        "copied, failover metadata published, not expired). No line and `RecoveryPointMissing` = 1: no",
        "backup is restorable in this region; the RPO alarm treats that as a breach.",
        "Per backup (progress, verdict and reason): `npx dr status`, or the ledger table's `BACKUP#<name>`",
        "items. Per copy: the `copy-completed`, copy poller and `sweep` logs. A record in a dead-letter",
        "queue failed 5 times: read its reason in the consumer's logs, then redrive it.",
      ].join("\n"),
    }),
    new cloudwatch.AlarmStatusWidget({ title: "Alarms", width: 12, height: 5, alarms: p.alarms }),
  ]);

  if (p.recoveryPoint) {
    const target = p.recoveryPoint.rpoTargetMinutes * 60;
    const all = { Schedule: ALL_SCHEDULES };
    rows.push([
      new cloudwatch.GraphWidget({
        title: "Recovery point age (s) against the RPO target",
        width: 16,
        height: 7,
        left: [
          metric(METRIC.recoveryPointAge, cloudwatch.Stats.MAXIMUM, oneMinute, "all schedules", all),
          perSchedule(METRIC.recoveryPointAge, cloudwatch.Stats.MAXIMUM, oneMinute, ""),
        ],
        leftAnnotations: [
          { value: target, label: `RPO target (${p.recoveryPoint.rpoTargetMinutes} min)`, color: RED },
        ],
        leftYAxis: { min: 0, label: "seconds", showUnits: false },
      }),
      new cloudwatch.SingleValueWidget({
        title: "Newest DR-ready backup",
        width: 8,
        height: 7,
        metrics: [
          metric(METRIC.recoveryPointAge, cloudwatch.Stats.MAXIMUM, oneMinute, "age (s)", all),
          metric(METRIC.drReadyBackups, cloudwatch.Stats.MAXIMUM, oneMinute, "DR-ready backups", all),
          metric(METRIC.recoveryPointMissing, cloudwatch.Stats.MAXIMUM, oneMinute, "missing (1 = none)", all),
        ],
      }),
    ]);
    rows.push([
      new cloudwatch.LogQueryWidget({
        title: "Newest DR-ready backup, by name (recovery-point function, every minute)",
        width: 16,
        height: 6,
        logGroupNames: [p.recoveryPoint.logGroup.logGroupName],
        view: cloudwatch.LogQueryVisualizationType.TABLE,
        queryLines: [
          "fields @timestamp, backup, startTimestamp, ageSeconds, drReadyBackups, missing",
          `filter message = "${RECOVERY_POINT_LOG}"`,
          "sort @timestamp desc",
          "limit 20",
        ],
      }),
      new cloudwatch.GraphWidget({
        title: "Backup replication lag (s): completed -> DR-ready",
        width: 8,
        height: 6,
        left: [perSchedule(METRIC.backupReplicationLag, cloudwatch.Stats.MAXIMUM, fiveMinutes, "")],
        leftYAxis: { min: 0, showUnits: false },
      }),
    ]);
  }

  rows.push([
    new cloudwatch.GraphWidget({
      title: "Snapshot copy lag (s): source snapshot start -> copy completed",
      width: 12,
      height: 6,
      left: ["p50", "p90", "p99"].map((stat) => perSchedule(METRIC.copyLag, stat, fiveMinutes, `${stat} `)),
      leftYAxis: { min: 0, showUnits: false },
    }),
    new cloudwatch.GraphWidget({
      title: "Copies in flight against the budget",
      width: 12,
      height: 6,
      left: [metric(METRIC.copiesInFlight, cloudwatch.Stats.MAXIMUM, oneMinute, "in flight")],
      leftAnnotations: [
        { value: p.copyBudget, label: `copy budget (${p.copyBudget})`, color: ORANGE },
        {
          value: AWS_CONCURRENT_COPY_LIMIT,
          label: `AWS limit (${AWS_CONCURRENT_COPY_LIMIT} per region)`,
          color: RED,
        },
      ],
      leftYAxis: { min: 0, showUnits: false },
    }),
  ]);
  rows.push([
    new cloudwatch.GraphWidget({
      title: "Waiting and superseded copies",
      width: 12,
      height: 6,
      left: [metric(METRIC.copiesWaiting, cloudwatch.Stats.MAXIMUM, fiveMinutes, "waiting")],
      right: [metric(METRIC.copiesSuperseded, cloudwatch.Stats.SUM, fiveMinutes, "superseded")],
      leftYAxis: { min: 0, showUnits: false },
      rightYAxis: { min: 0, showUnits: false },
    }),
    new cloudwatch.GraphWidget({
      title: "Failures, throttles and stuck copies",
      width: 12,
      height: 6,
      left: [
        metric(METRIC.copyFailures, cloudwatch.Stats.SUM, fiveMinutes, "failed (final)"),
        metric(METRIC.copiesRetried, cloudwatch.Stats.SUM, fiveMinutes, "retried"),
        metric(METRIC.copiesThrottled, cloudwatch.Stats.SUM, fiveMinutes, "throttled"),
        metric(METRIC.copiesStuck, cloudwatch.Stats.MAXIMUM, fiveMinutes, "stuck"),
        metric(METRIC.copiesMissedDeadline, cloudwatch.Stats.SUM, fiveMinutes, "missed deadline"),
      ],
      leftYAxis: { min: 0, showUnits: false },
    }),
  ]);
  const queues = Object.entries(p.queues);
  rows.push([
    new cloudwatch.GraphWidget({
      title: "Dead-letter queues (messages)",
      width: 12,
      height: 6,
      left: queues.map(([label, { dlq }]) =>
        dlq.metricApproximateNumberOfMessagesVisible({
          statistic: cloudwatch.Stats.MAXIMUM,
          period: oneMinute,
          label: `${label} DLQ`,
        }),
      ),
      leftYAxis: { min: 0, showUnits: false },
    }),
    new cloudwatch.GraphWidget({
      title: "Oldest message per event queue (s)",
      width: 12,
      height: 6,
      left: queues.map(([label, { queue }]) =>
        queue.metricApproximateAgeOfOldestMessage({
          statistic: cloudwatch.Stats.MAXIMUM,
          period: oneMinute,
          label,
        }),
      ),
      leftYAxis: { min: 0, showUnits: false },
    }),
  ]);

  return new cloudwatch.Dashboard(stack, "Dashboard", {
    dashboardName: dashboardName(p.stage),
    defaultInterval: Duration.hours(6),
    widgets: rows,
  });
}
