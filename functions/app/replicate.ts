import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { MetricUnit } from "@aws-lambda-powertools/metrics";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import middy from "@middy/core";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { errorMessage } from "../core/errors.js";
import type { AdmitReport, IngestOutcome, IngestRequest } from "../core/plane.js";
import { METRIC, publishAdmit } from "./metrics.js";
import type { Runtime } from "./runtime.js";
import { accountOf, type MessageOutcome, parseMessage, toBatchResponse } from "./sqs.js";

/**
 * Snapshot events (createSnapshot, multi-volume) from the primary region: record Velero's
 * snapshots in the ledger (one DescribeSnapshots per region per batch), then admit copies.
 */
export async function processSnapshotMessages(
  rt: Runtime,
  records: readonly SQSRecord[],
  account?: string,
): Promise<{ outcomes: MessageOutcome[]; admit?: AdmitReport }> {
  const { plane, logger } = rt;
  const outcomes = new Map<string, MessageOutcome>();
  const requests: IngestRequest[] = [];
  const keysOf = new Map<string, string[]>();
  const want = (messageId: string, snapshotId: string, region: string) => {
    const key = `${messageId}#${requests.length}`;
    requests.push({ key, snapshotId, region });
    keysOf.set(messageId, [...(keysOf.get(messageId) ?? []), key]);
  };
  for (const record of records) {
    const parsed = parseMessage(record, rt.config.accountId ?? account, rt.logger);
    const { messageId } = record;
    if ("invalid" in parsed) {
      outcomes.set(messageId, { messageId, outcome: "invalid", reason: parsed.invalid });
      continue;
    }
    const ev = parsed.event;
    try {
      if (ev.kind === "snapshot-created") want(messageId, ev.snapshotId, ev.region);
      else if (ev.kind === "multi-volume") {
        for (const s of ev.snapshots) {
          if (s.succeeded) want(messageId, s.snapshotId, s.region);
          else
            await plane.recordSourceFailure({
              kind: "snapshot-failed",
              snapshotId: s.snapshotId,
              region: s.region,
              cause: s.cause ?? "multi-volume snapshot failed",
              ...(s.volumeId ? { volumeId: s.volumeId } : {}),
            });
        }
        if (!keysOf.has(messageId))
          outcomes.set(messageId, { messageId, outcome: "recorded", reason: "failures only" });
      } else if (ev.kind === "snapshot-failed") {
        const o = await plane.recordSourceFailure(ev);
        outcomes.set(messageId, {
          messageId,
          outcome: o.status === "retry" ? "retry" : o.status,
          ...reasonOf(o),
        });
      } else if (ev.kind === "ignored") {
        outcomes.set(messageId, { messageId, outcome: "ignored", reason: ev.reason });
      } else {
        outcomes.set(messageId, {
          messageId,
          outcome: "ignored",
          reason: `${ev.kind} belongs on the copy-events queue`,
        });
      }
    } catch (err) {
      outcomes.set(messageId, { messageId, outcome: "retry", reason: errorMessage(err) });
    }
  }

  // One transaction records the batch and, when nothing waits and slots are free, starts copies.
  // A failure to admit after the snapshots are durable fails no message: the sweep admits them.
  let ingested: Map<string, IngestOutcome>;
  let admit: AdmitReport | undefined;
  try {
    ({ outcomes: ingested, admit } = await plane.intake(requests));
  } catch (err) {
    logger.error("admitting copies failed; the sweep will retry", { error: errorMessage(err) });
    ingested = await plane.ingest(requests);
  }
  for (const [messageId, keys] of keysOf) {
    const results = keys.flatMap((k) => ingested.get(k) ?? []);
    const retry = results.find((r) => r.status === "retry");
    const first = retry ?? results.find((r) => r.status === "recorded") ?? results[0];
    if (first) outcomes.set(messageId, { messageId, outcome: first.status, ...reasonOf(first) });
  }

  const list = [...outcomes.values()];
  for (const o of list) {
    if (o.outcome === "invalid") logger.error("event rejected", { messageId: o.messageId, reason: o.reason });
    else if (o.outcome === "ignored")
      logger.info("event ignored", { messageId: o.messageId, reason: o.reason });
    else if (o.outcome === "retry")
      logger.warn("event will be retried", { messageId: o.messageId, reason: o.reason });
  }
  return { outcomes: list, ...(admit ? { admit } : {}) };
}

function reasonOf(o: IngestOutcome): { reason?: string } {
  return "reason" in o ? { reason: o.reason } : {};
}

export function makeReplicateHandler(rt: Runtime) {
  return middy(async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
    const { outcomes, admit } = await processSnapshotMessages(
      rt,
      event.Records,
      accountOf(context.invokedFunctionArn),
    );
    const count = (k: MessageOutcome["outcome"]) => outcomes.filter((o) => o.outcome === k).length;
    rt.metrics.addMetric(METRIC.snapshotsRecorded, MetricUnit.Count, count("recorded"));
    rt.metrics.addMetric(METRIC.snapshotsSkipped, MetricUnit.Count, count("skipped"));
    rt.metrics.addMetric(METRIC.eventsRejected, MetricUnit.Count, count("invalid"));
    if (admit) publishAdmit(rt.metrics, admit);
    return toBatchResponse(outcomes);
  })
    .use(injectLambdaContext(rt.logger))
    .use(logMetrics(rt.metrics));
}
