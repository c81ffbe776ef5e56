import type { Logger } from "@aws-lambda-powertools/logger";
import type { SQSBatchResponse, SQSRecord } from "aws-lambda";
import { errorMessage } from "../core/errors.js";
import { classifyEvent } from "../core/events.js";
import type { ClassifiedEvent } from "../core/model.js";

/** What became of one SQS message. `retry` and `invalid` are reported as batch item failures. */
export interface MessageOutcome {
  messageId: string;
  outcome: "recorded" | "duplicate" | "skipped" | "ignored" | "completed" | "settled" | "invalid" | "retry";
  reason?: string;
}

export type Parsed = { messageId: string; event: ClassifiedEvent } | { messageId: string; invalid: string };

/**
 * Parses one SQS message holding an EventBridge event. Events from another account than ours are
 * ignored (the bus should never route them here, so seeing one is worth a log line). Informational
 * fields the event could not give (its `notes`) are logged once, at WARN, with the event id.
 */
export function parseMessage(
  record: SQSRecord,
  account: string | undefined,
  logger: Pick<Logger, "warn">,
): Parsed {
  let body: unknown;
  try {
    body = JSON.parse(record.body);
  } catch (err) {
    return { messageId: record.messageId, invalid: `body is not JSON (${errorMessage(err)})` };
  }
  try {
    const event = classifyEvent(body, account ? { account } : {});
    const { eventId, notes } = event;
    if (notes) logger.warn("event field ignored", { eventId, messageId: record.messageId, notes });
    return { messageId: record.messageId, event };
  } catch (err) {
    return { messageId: record.messageId, invalid: errorMessage(err) };
  }
}

/** Invalid input is reported as failed so that, after the queue's retries, it lands in the DLQ for a human. */
export function toBatchResponse(outcomes: readonly MessageOutcome[]): SQSBatchResponse {
  return {
    batchItemFailures: outcomes
      .filter((o) => o.outcome === "retry" || o.outcome === "invalid")
      .map((o) => ({ itemIdentifier: o.messageId })),
  };
}

/** The function's own account, from its ARN (arn:aws:lambda:region:ACCOUNT:function:name). */
export function accountOf(invokedFunctionArn: string | undefined): string | undefined {
  const account = invokedFunctionArn?.split(":")[4];
  return account && /^\d{12}$/.test(account) ? account : undefined;
}
