import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { classifyAwsError } from "../core/errors.js";
import type { ExecutionMemo, FailoverAudit, FailoverReport } from "../core/failover.js";

/** How long a failover's memo items live (the table's TTL attribute `expiresAt`, Unix seconds). */
const KEEP_SECONDS = 90 * 24 * 3600;

export const memoKey = (executionId: string, key: string) => ({
  pk: `FAILOVER#${executionId}`,
  sk: `MEMO#${key}`,
});

/**
 * The failover steps' memo in the ledger table (failover region): one item per (execution, key),
 * written once with `attribute_not_exists(pk)`, so the first value stays and every re-run of a step
 * reads the same one (the node group's size before the scale-up, the DNS change and the target it
 * replaced, the chosen plan). Values are stored as JSON text and parsed by their reader's schema.
 *
 * | item                         | pk                        | sk           |
 * |------------------------------|---------------------------|--------------|
 * | one remembered fact          | `FAILOVER#<execution id>` | `MEMO#<key>` |
 */
export class DynamoExecutionMemo implements ExecutionMemo {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly table: string,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async remember(executionId: string, key: string, value: unknown): Promise<unknown> {
    const at = this.now();
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.table,
          Item: {
            ...memoKey(executionId, key),
            value: JSON.stringify(value),
            at: at.toISOString(),
            expiresAt: Math.floor(at.getTime() / 1000) + KEEP_SECONDS,
          },
          ConditionExpression: "attribute_not_exists(pk)",
        }),
      );
      return value;
    } catch (err) {
      if (
        !(err instanceof ConditionalCheckFailedException) &&
        (err as { name?: string })?.name !== "ConditionalCheckFailedException"
      ) {
        throw classifyAwsError(err, `remembering ${key}`);
      }
      return this.recall(executionId, key);
    }
  }

  async recall(executionId: string, key: string): Promise<unknown> {
    const out = await this.db
      .send(new GetCommand({ TableName: this.table, Key: memoKey(executionId, key), ConsistentRead: true }))
      .catch((err: unknown) => {
        throw classifyAwsError(err, `recalling ${key}`);
      });
    const raw = out.Item?.value;
    return typeof raw === "string" ? (JSON.parse(raw) as unknown) : undefined;
  }
}

export const auditKey = (executionId: string) => ({ pk: `FAILOVER#${executionId}`, sk: "AUDIT" });

const conditionFailed = (err: unknown) =>
  err instanceof ConditionalCheckFailedException ||
  (err as { name?: string })?.name === "ConditionalCheckFailedException";

/**
 * The audit record of one execution in the ledger table: its final report, kept (no TTL).
 * Written with a condition: the first record stays, except that a succeeded one replaces a failed
 * one (a failed run re-run to completion); a failed one never replaces anything.
 *
 * | item                         | pk                        | sk      |
 * |------------------------------|---------------------------|---------|
 * | an execution's audit record  | `FAILOVER#<execution id>` | `AUDIT` |
 */
export class DynamoFailoverAudit implements FailoverAudit {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async record(report: FailoverReport & { outcome: "succeeded" | "failed" }): Promise<"written" | "kept"> {
    const succeeded = report.outcome === "succeeded";
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.table,
          Item: {
            ...auditKey(report.executionId),
            executionId: report.executionId,
            outcome: report.outcome,
            drill: report.drill,
            backup: report.backup?.name ?? null,
            dataLossSeconds: report.dataLossSeconds,
            rtoSeconds: report.rtoSeconds,
            approvedBy: report.approvedBy ?? null,
            at: report.generatedAt,
            report: JSON.stringify(report),
          },
          ConditionExpression: succeeded
            ? "attribute_not_exists(pk) OR #outcome = :failed"
            : "attribute_not_exists(pk)",
          ...(succeeded
            ? {
                ExpressionAttributeNames: { "#outcome": "outcome" },
                ExpressionAttributeValues: { ":failed": "failed" },
              }
            : {}),
        }),
      );
      return "written";
    } catch (err) {
      if (conditionFailed(err)) return "kept";
      throw classifyAwsError(err, "writing the audit record");
    }
  }

  async read(executionId: string): Promise<FailoverReport | undefined> {
    const out = await this.db
      .send(new GetCommand({ TableName: this.table, Key: auditKey(executionId), ConsistentRead: true }))
      .catch((err: unknown) => {
        throw classifyAwsError(err, "reading the audit record");
      });
    const raw = out.Item?.report;
    return typeof raw === "string" ? (JSON.parse(raw) as FailoverReport) : undefined;
  }
}
