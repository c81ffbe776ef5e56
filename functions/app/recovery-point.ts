import type { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { type Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import middy from "@middy/core";
import { type RecoveryPoints, type RecoveryPointView, recoveryPoints } from "../core/backup.js";
import type { BackupLedger, Clock } from "../core/ports.js";
import { METRIC } from "./metrics.js";

/**
 * How many of the newest registered backups are read each minute: one Query on the ledger's index,
 * newest start time first (one page, so also at most 1 MB of items). Two days of a 15-minute
 * schedule, enough for a daily schedule next to it. A recoverable backup older than the window is
 * not counted: the error can only make the recovery point look older (an alarm), never newer.
 */
export const RECOVERY_POINT_WINDOW = 200;

/** The log message the dashboard's Logs Insights widget filters on. */
export const RECOVERY_POINT_LOG = "recovery point";

/** What the handler needs (the Runtime satisfies it; tests pass a fake ledger and clock). */
export interface RecoveryPointDeps {
  ledger: Pick<BackupLedger, "listBackups">;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
}

type Point = [name: string, unit: (typeof MetricUnit)[keyof typeof MetricUnit], value: number];

/**
 * One view's metrics, all under `Schedule=<view.schedule>` (plus Powertools' `service`).
 *
 * No recovery point (no backup ever became DR-ready, or every one that did has expired): we publish
 * `RecoveryPointMissing` = 1 and **no** `RecoveryPointAge`, and the RPO alarm treats missing data
 * as breaching. A made-up age would lie on the graphs: 0 reads as "perfect", and an age since
 * deployment or since the epoch skews every statistic. Missing data also breaches when this
 * function stops running, which is the same situation for the operator (nothing vouches for a
 * recovery point); `RecoveryPointMissing` tells the two apart on the dashboard.
 */
export function viewMetrics(view: RecoveryPointView): Point[] {
  const points: Point[] = [
    [METRIC.drReadyBackups, MetricUnit.Count, view.drReadyBackups],
    [METRIC.recoveryPointMissing, MetricUnit.Count, view.newest ? 0 : 1],
  ];
  if (view.newest) points.push([METRIC.recoveryPointAge, MetricUnit.Seconds, view.newest.ageSeconds]);
  return points;
}

/**
 * Every minute (EventBridge schedule): the recovery point per schedule and overall
 * (`Schedule=all`), published whether or not anything changed, so the age keeps rising on the
 * graphs and the alarm sees it rise.
 */
export function makeRecoveryPointHandler(rt: RecoveryPointDeps) {
  return middy(async (): Promise<RecoveryPoints> => {
    const report = recoveryPoints(await rt.ledger.listBackups(RECOVERY_POINT_WINDOW), rt.clock.now());
    // Per schedule: a single-metric instance publishes at each addMetric and then drops its
    // dimensions, so one per data point.
    for (const view of report.schedules) {
      for (const [name, unit, value] of viewMetrics(view)) {
        rt.metrics.singleMetric().addDimension("Schedule", view.schedule).addMetric(name, unit, value);
      }
    }
    // Overall: on the handler's own instance, one document that logMetrics flushes (and whose
    // dimensions it clears) when the invocation ends.
    rt.metrics.addDimension("Schedule", report.all.schedule);
    for (const [name, unit, value] of viewMetrics(report.all)) rt.metrics.addMetric(name, unit, value);
    // Flat fields for the dashboard's Logs Insights widget (the newest DR-ready backup by name).
    const { newest } = report.all;
    const fields = {
      backup: newest?.backup,
      startTimestamp: newest?.startTimestamp,
      ageSeconds: newest?.ageSeconds,
      drReadyBackups: report.all.drReadyBackups,
      missing: newest === undefined,
      schedules: report.schedules,
    };
    if (newest) rt.logger.info(RECOVERY_POINT_LOG, fields);
    else rt.logger.warn(RECOVERY_POINT_LOG, fields);
    return report;
  })
    .use(injectLambdaContext(rt.logger))
    .use(logMetrics(rt.metrics));
}
