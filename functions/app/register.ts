import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { MetricUnit } from "@aws-lambda-powertools/metrics";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import middy from "@middy/core";
import type { SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { classifyBucketEvent } from "../core/bucket-events.js";
import { ConfigError, errorMessage } from "../core/errors.js";
import type { BackupRegistry } from "../core/registry.js";
import { METRIC } from "./metrics.js";
import type { Runtime } from "./runtime.js";
import { type MessageOutcome, toBatchResponse } from "./sqs.js";

/** The registry, which exists only when Velero's bucket is configured. */
export function registryOf(rt: Runtime): BackupRegistry {
  if (!rt.registry) throw new ConfigError("VELERO_BUCKET is required for backup registration but not set");
  return rt.registry;
}

/**
 * Velero bucket events: register each backup they concern once per batch, from the bucket's
 * current state (so the order of events does not matter), then judge it DR-ready or not.
 */
export async function processBucketMessages(
  rt: Runtime,
  records: readonly SQSRecord[],
): Promise<MessageOutcome[]> {
  const registry = registryOf(rt);
  const velero = rt.config.velero;
  const where = { bucket: velero?.bucket ?? "", prefix: velero?.prefix ?? "" };
  const outcomes = new Map<string, MessageOutcome>();
  const byBackup = new Map<string, string[]>();
  for (const { messageId, body } of records) {
    try {
      const ev = classifyBucketEvent(JSON.parse(body), where);
      if (ev.kind === "ignored")
        outcomes.set(messageId, { messageId, outcome: "ignored", reason: ev.reason });
      else byBackup.set(ev.backup, [...(byBackup.get(ev.backup) ?? []), messageId]);
    } catch (err) {
      outcomes.set(messageId, { messageId, outcome: "invalid", reason: errorMessage(err) });
    }
  }
  for (const [backup, messageIds] of byBackup) {
    let outcome: MessageOutcome["outcome"];
    let reason: string | undefined;
    try {
      const r = await registry.register(backup);
      outcome = r.status === "gone" ? "ignored" : "recorded";
      reason =
        r.status === "gone"
          ? r.reason
          : `${r.status}${r.evaluation ? `: ${r.evaluation.verdict}, ${r.evaluation.reason}` : ""}`;
      rt.logger.info("backup registration", { backup, status: r.status, reason });
    } catch (err) {
      outcome = "retry";
      reason = errorMessage(err);
      rt.logger.warn("backup registration will be retried", { backup, error: reason });
    }
    for (const messageId of messageIds)
      outcomes.set(messageId, { messageId, outcome, ...(reason ? { reason } : {}) });
  }
  return [...outcomes.values()];
}

export function makeRegisterHandler(rt: Runtime) {
  registryOf(rt); // fail at cold start, not at the first event
  return middy(async (event: SQSEvent): Promise<SQSBatchResponse> => {
    const outcomes = await processBucketMessages(rt, event.Records);
    rt.metrics.addMetric(METRIC.backupEvents, MetricUnit.Count, outcomes.length);
    return toBatchResponse(outcomes);
  })
    .use(injectLambdaContext(rt.logger))
    .use(logMetrics(rt.metrics));
}
