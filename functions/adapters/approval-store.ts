import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import * as z from "zod/mini";
import {
  APPROVAL_ACTIONS,
  APPROVAL_CHANNELS,
  type ApprovalEntry,
  type ApprovalRules,
  type ApprovalStore,
  type ApprovalSummary,
  type DecisionRecord,
  nextDecision,
  type RecordOutcome,
  type TaskTokens,
} from "../core/approval.js";
import { RetryableError } from "../core/errors.js";

/**
 * Approvals in the ledger table (same table, same single-table key style as
 * functions/adapters/dynamo-ledger.ts):
 *
 * | item                                  | pk                        | sk         |
 * |---------------------------------------|---------------------------|------------|
 * | the execution's decision (audit)      | `APPROVAL#<execution id>` | `DECISION` |
 * | the waiting workflow's task token     | `APPROVAL#<execution id>` | `TASK`     |
 *
 * **The decision** is written only by a transaction that (1) requires the decision to be exactly
 * the one the rules were applied to (`attribute_not_exists(pk)` for the first write, the version
 * read for later ones) and (2) requires the task token item to exist and be unexpired. So of any
 * number of concurrent or repeated attempts (the same link twice, email and Slack at once, the other
 * button, a replayed Slack request) exactly one moves the decision to final, and only that request
 * goes on to take the task token and resume the workflow: approving twice starts one failover. A
 * refused attempt writes nothing. The decision item has no `expiresAt`, so the table's TTL never
 * removes it: it is the audit record (approvers, channel, time, source IP, user agent, nonce).
 *
 * **The task token** item carries `expiresAt` in Unix seconds, the table's TTL attribute, so an
 * abandoned one is cleaned up; it is also treated as absent once expired, before TTL runs.
 * `take` deletes it conditionally and returns what it held: even two takers could not both get it.
 *
 * Forged, tampered, expired, wrong-action, other-execution tokens and unverified Slack requests
 * never reach this store: the endpoint verifies first (functions/app/approval-http.ts).
 */
export const approvalKey = (executionId: string, sk: "DECISION" | "TASK") => ({
  pk: `APPROVAL#${executionId}`,
  sk,
});

/** DynamoDB's TTL deletes within days, not at once: expiry is checked on read as well. */
const epochSeconds = (d: Date) => Math.floor(d.getTime() / 1000);

const entrySchema = z.object({
  action: z.enum(APPROVAL_ACTIONS),
  channel: z.enum(APPROVAL_CHANNELS),
  approver: z.string(),
  approverName: z.optional(z.string()),
  named: z.boolean(),
  at: z.string(),
  nonce: z.string(),
  sourceIp: z.optional(z.string()),
  userAgent: z.optional(z.string()),
});

const decisionSchema = z.object({
  executionId: z.string(),
  status: z.enum(["awaiting-second", "approved", "rejected"]),
  entries: z.array(entrySchema),
  decidedAt: z.optional(z.string()),
  version: z.int(),
  resumedAt: z.optional(z.string()),
  resumeError: z.optional(z.string()),
});

const summarySchema = z.object({
  backup: z.string(),
  dataLossSeconds: z.number(),
  reason: z.optional(z.string()),
  requestedBy: z.optional(z.string()),
  drill: z.optional(z.boolean()),
});

const taskSchema = z.object({
  taskToken: z.string(),
  expiresAt: z.number(),
  summary: z.optional(summarySchema),
});

function conditionFailed(err: unknown): boolean {
  const name = (err as { name?: string })?.name;
  return name === "ConditionalCheckFailedException" || name === "TransactionCanceledException";
}

/** Bounds what a client can make us store (user agents are free text). */
const clip = (s: string | undefined, n: number) => (s === undefined ? undefined : s.slice(0, n));

function toEntryItem(e: ApprovalEntry): Record<string, unknown> {
  const item: Record<string, unknown> = {
    ...e,
    sourceIp: clip(e.sourceIp, 64),
    userAgent: clip(e.userAgent, 256),
  };
  for (const k of Object.keys(item)) if (item[k] === undefined) delete item[k];
  return item;
}

/** Attempts before a decision write gives up under contention (each loser re-reads and re-decides). */
const MAX_ROUNDS = 5;

export class DynamoApprovalStore implements ApprovalStore {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async get(executionId: string): Promise<DecisionRecord | undefined> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.table,
        Key: approvalKey(executionId, "DECISION"),
        ConsistentRead: true,
      }),
    );
    if (!out.Item) return undefined;
    const parsed = decisionSchema.safeParse(out.Item);
    if (!parsed.success) throw new Error(`approval decision of ${executionId} is malformed in the ledger`);
    return parsed.data as DecisionRecord;
  }

  async record(
    executionId: string,
    entry: ApprovalEntry,
    rules: ApprovalRules,
    now: Date,
  ): Promise<RecordOutcome> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const current = await this.get(executionId);
      const next = nextDecision(current, entry, executionId, rules);
      if (!next.ok) {
        return {
          status: "refused",
          reason: next.reason,
          message: next.message,
          ...(current ? { record: current } : {}),
        };
      }
      const { entries, decidedAt, ...rest } = next.record;
      try {
        await this.db.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                ConditionCheck: {
                  TableName: this.table,
                  Key: approvalKey(executionId, "TASK"),
                  ConditionExpression: "attribute_exists(taskToken) AND expiresAt > :now",
                  ExpressionAttributeValues: { ":now": epochSeconds(now) },
                },
              },
              {
                Put: {
                  TableName: this.table,
                  Item: {
                    ...approvalKey(executionId, "DECISION"),
                    ...rest,
                    ...(decidedAt === undefined ? {} : { decidedAt }),
                    entries: entries.map(toEntryItem),
                  },
                  ...(current
                    ? {
                        ConditionExpression: "#v = :v",
                        ExpressionAttributeNames: { "#v": "version" },
                        ExpressionAttributeValues: { ":v": current.version },
                      }
                    : { ConditionExpression: "attribute_not_exists(pk)" }),
                },
              },
            ],
          }),
        );
        return { status: "recorded", record: next.record, final: next.final };
      } catch (err) {
        if (!conditionFailed(err)) throw err;
        // Either the decision moved under us (re-read and re-apply the rules: a final one refuses)
        // or the execution no longer waits for approval.
        const now2 = await this.get(executionId);
        if ((now2?.version ?? 0) !== (current?.version ?? 0)) continue;
        return {
          status: "refused",
          reason: "not-waiting",
          message: "this execution is not waiting for approval (finished, timed out or unknown)",
          ...(current ? { record: current } : {}),
        };
      }
    }
    throw new RetryableError(`approval of ${executionId}: too much contention`, "ApprovalContention");
  }

  async noteResumed(executionId: string, at: string, error?: string): Promise<void> {
    await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: approvalKey(executionId, "DECISION"),
        UpdateExpression:
          error === undefined ? "SET resumedAt = :at" : "SET resumedAt = :at, resumeError = :e",
        ConditionExpression: "attribute_exists(pk)",
        ExpressionAttributeValues: {
          ":at": at,
          ...(error === undefined ? {} : { ":e": error.slice(0, 1000) }),
        },
      }),
    );
  }
}

/** Task tokens of executions waiting for approval, in the ledger table (see {@link DynamoApprovalStore}). */
export class DynamoTaskTokens implements TaskTokens {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  /** Stores (or replaces, when the request step is retried with a new token) the execution's token. */
  async put(
    executionId: string,
    taskToken: string,
    expiresAt: Date,
    summary?: ApprovalSummary,
  ): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.table,
        Item: {
          ...approvalKey(executionId, "TASK"),
          executionId,
          taskToken,
          expiresAt: epochSeconds(expiresAt),
          ...(summary ? { summary } : {}),
        },
      }),
    );
  }

  async take(executionId: string): Promise<string | undefined> {
    try {
      const out = await this.db.send(
        new DeleteCommand({
          TableName: this.table,
          Key: approvalKey(executionId, "TASK"),
          ConditionExpression: "attribute_exists(taskToken)",
          ReturnValues: "ALL_OLD",
        }),
      );
      const token = out.Attributes?.taskToken;
      return typeof token === "string" ? token : undefined;
    } catch (err) {
      if (conditionFailed(err)) return undefined;
      throw err;
    }
  }

  async peek(executionId: string): Promise<{ expiresAt: Date; summary?: ApprovalSummary } | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.table, Key: approvalKey(executionId, "TASK"), ConsistentRead: true }),
    );
    if (!out.Item) return undefined;
    const parsed = taskSchema.safeParse(out.Item);
    if (!parsed.success) throw new Error(`approval task of ${executionId} is malformed in the ledger`);
    return {
      expiresAt: new Date(parsed.data.expiresAt * 1000),
      ...(parsed.data.summary ? { summary: parsed.data.summary as ApprovalSummary } : {}),
    };
  }
}
