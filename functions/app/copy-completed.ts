import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { MetricUnit } from "@aws-lambda-powertools/metrics";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import middy from "@middy/core";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { errorMessage } from "../core/errors.js";
import type { AdmitReport } from "../core/plane.js";
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
  let freed = false;
  for (const record of records) {
    const { messageId } = record;
    const parsed = parseMessage(record, rt.config.accountId ?? account);
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
    try {
      const o = await plane.onCopyEvent(ev);
      publishCopyOutcome(metrics, o);
      if (o.status === "ignored") {
        logger.info("copy event ignored", { messageId, copySnapshotId: ev.snapshotId, reason: o.reason });
        outcomes.push({ messageId, outcome: "ignored", reason: o.reason });
      } else {
        freed ||= o.status !== "flagged";
        logger.info("copy settled", { messageId, copySnapshotId: ev.snapshotId, status: o.status });
        outcomes.push({ messageId, outcome: o.status === "completed" ? "completed" : "settled" });
      }
    } catch (err) {
      logger.warn("copy event will be retried", { messageId, error: errorMessage(err) });
      outcomes.push({ messageId, outcome: "retry", reason: errorMessage(err) });
    }
  }
  metrics.addMetric(METRIC.copyEventsProcessed, MetricUnit.Count, outcomes.length);
  if (!freed) return { outcomes };
  try {
    return { outcomes, admit: await plane.admit() };
  } catch (err) {
    logger.error("admitting copies failed; the sweep will retry", { error: errorMessage(err) });
    return { outcomes };
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
