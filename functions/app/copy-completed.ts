import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { MetricUnit } from "@aws-lambda-powertools/metrics";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import middy from "@middy/core";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { errorMessage } from "../core/errors.js";
import type { AdmitReport, CopyEvent, SettledCopies } from "../core/plane.js";
import { METRIC, publishAdmit, publishCopyOutcome } from "./metrics.js";
import type { Runtime } from "./runtime.js";
import { accountOf, type MessageOutcome, parseMessage, toBatchResponse } from "./sqs.js";

/**
 * copySnapshot outcomes in the failover region (succeeded, failed, missed completion duration):
 * settle the ledger, free the slot, then admit the next waiting copies at once.
 */
export async function processCopyMessages(
  rt: Runtime,
  records: readonly SQSRecord[],
  account?: string,
): Promise<{ outcomes: MessageOutcome[]; admit?: AdmitReport }> {
  const { plane, logger, metrics } = rt;
  const outcomes: MessageOutcome[] = [];
  const copies: Array<{ messageId: string; ev: CopyEvent }> = [];
  for (const record of records) {
    const { messageId } = record;
    const parsed = parseMessage(record, rt.config.accountId ?? account, rt.logger);
    if ("invalid" in parsed) {
      logger.error("event rejected", { messageId, reason: parsed.invalid });
      outcomes.push({ messageId, outcome: "invalid", reason: parsed.invalid });
      continue;
    }
    const ev = parsed.event;
    if (ev.kind !== "snapshot-copied" && ev.kind !== "copy-failed" && ev.kind !== "copy-missed-deadline") {
      const reason = ev.kind === "ignored" ? ev.reason : `${ev.kind} belongs on the snapshot-events queue`;
      logger.info("event ignored", { messageId, reason });
      outcomes.push({ messageId, outcome: "ignored", reason });
      continue;
    }
    copies.push({ messageId, ev });
  }
  metrics.addMetric(METRIC.copyEventsProcessed, MetricUnit.Count, records.length);
  if (copies.length === 0) return { outcomes };

  // The batch settles with one read of the open set and one transaction; if that fails, every
  // copy event of the batch is retried (settling is idempotent).
  let settled: SettledCopies;
  try {
    settled = await plane.settleCopies(copies.map((c) => c.ev));
  } catch (err) {
    logger.warn("copy events will be retried", { error: errorMessage(err) });
    for (const { messageId } of copies)
      outcomes.push({ messageId, outcome: "retry", reason: errorMessage(err) });
    return { outcomes };
  }
  let freed = false;
  for (const [i, { messageId, ev }] of copies.entries()) {
    const o = settled.outcomes[i] ?? { status: "ignored", reason: "no outcome" };
    publishCopyOutcome(metrics, o);
    if (o.status === "ignored") {
      logger.info("copy event ignored", { messageId, copySnapshotId: ev.snapshotId, reason: o.reason });
      outcomes.push({ messageId, outcome: "ignored", reason: o.reason });
    } else {
      freed ||= o.status !== "flagged";
      logger.info("copy settled", { messageId, copySnapshotId: ev.snapshotId, status: o.status });
      outcomes.push({ messageId, outcome: o.status === "completed" ? "completed" : "settled" });
    }
  }
  let admit: AdmitReport | undefined;
  if (freed) {
    try {
      admit = await plane.admit(settled.state);
    } catch (err) {
      logger.error("admitting copies failed; the sweep will retry", { error: errorMessage(err) });
    }
  }
  // Only a backup with no open record left can have become DR-ready.
  await evaluateBackups(rt, settled.drained);
  return { outcomes, ...(admit ? { admit } : {}) };
}

/**
 * A settled copy may complete its backup: judge those backups now rather than at the next sweep.
 * Failures are logged, not retried here: the ledger holds the copies and the sweep re-evaluates.
 */
export async function evaluateBackups(rt: Runtime, backups: Iterable<string>): Promise<void> {
  if (!rt.registry) return;
  for (const backup of backups) {
    try {
      await rt.registry.evaluate(backup); // a backup it makes DR-ready publishes its metric (registry-runtime)
    } catch (err) {
      rt.logger.error("backup evaluation failed; the sweep will retry", { backup, error: errorMessage(err) });
    }
  }
}

export function makeCopyCompletedHandler(rt: Runtime) {
  return middy(async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
    const { outcomes, admit } = await processCopyMessages(
      rt,
      event.Records,
      accountOf(context.invokedFunctionArn),
    );
    if (admit) publishAdmit(rt.metrics, admit);
    return toBatchResponse(outcomes);
  })
    .use(injectLambdaContext(rt.logger))
    .use(logMetrics(rt.metrics));
}
