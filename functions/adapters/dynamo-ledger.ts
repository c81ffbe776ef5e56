import { TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  paginateQuery,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { type BackupState, type Evaluation, phaseRank } from "../core/backup.js";
import type { SnapshotRecord, SnapshotStatus } from "../core/model.js";
import type {
  BackupLedger,
  LeaseHolder,
  Ledger,
  OpenState,
  RecordResult,
  ReleaseOutcome,
  StoredBackup,
} from "../core/ports.js";

/**
 * The ledger in one DynamoDB table (single-table design):
 *
 * | item                     | pk                  | sk       | gsi1pk (byStatus)                 |
 * |--------------------------|---------------------|----------|-----------------------------------|
 * | a source snapshot        | `SNAP#<snapshot id>`| `SNAP`   | `OPEN` while waiting or copying,  |
 * |                          |                     |          | `BACKUP#<name>` once settled      |
 * | a Velero backup          | `BACKUP#<name>`     | `BACKUP` | `BACKUPS` once registered         |
 * | a volume's lineage lock  | `VOL#<volume id>`   | `LOCK`   | -                                 |
 * | the copy budget counter  | `CONTROL`           | `BUDGET` | -                                 |
 *
 * Every transition is a conditional write or a transaction, so concurrent deliveries of one event
 * agree on a single outcome; CopySnapshot has no ClientToken, the ledger is the idempotency key.
 */
export const OPEN = "OPEN";
export const INDEX = "byStatus";
const BUDGET_KEY = { pk: "CONTROL", sk: "BUDGET" };

const snapKey = (id: string) => ({ pk: `SNAP#${id}`, sk: "SNAP" });
const backupKey = (name: string) => ({ pk: `BACKUP#${name}`, sk: "BACKUP" });
const volKey = (id: string) => ({ pk: `VOL#${id}`, sk: "LOCK" });

type Item = Record<string, unknown>;

function toItem(r: SnapshotRecord): Item {
  const open = r.status === "waiting" || r.status === "copying";
  return {
    ...snapKey(r.sourceSnapshotId),
    ...r,
    gsi1pk: open ? OPEN : `BACKUP#${r.backup}`,
    gsi1sk: `${r.startTime}#${r.sourceSnapshotId}`,
  };
}

const STATUSES = new Set<SnapshotStatus>(["waiting", "copying", "completed", "failed", "superseded"]);

/** Reads a stored item back into a record, refusing anything that is not one. */
function fromItem(item: Item): SnapshotRecord {
  const str = (k: string) => {
    const v = item[k];
    if (typeof v !== "string") throw new Error(`ledger item ${String(item.pk)} has no string ${k}`);
    return v;
  };
  const status = str("status") as SnapshotStatus;
  if (!STATUSES.has(status)) throw new Error(`ledger item ${String(item.pk)} has unknown status ${status}`);
  const r: SnapshotRecord = {
    sourceSnapshotId: str("sourceSnapshotId"),
    sourceRegion: str("sourceRegion"),
    volumeId: str("volumeId"),
    backup: str("backup"),
    startTime: str("startTime"),
    status,
    tags: (item.tags ?? {}) as Record<string, string>,
    attempts: typeof item.attempts === "number" ? item.attempts : 0,
  };
  for (const k of [
    "schedule",
    "notBefore",
    "copySnapshotId",
    "admittedAt",
    "completedAt",
    "reason",
    "kmsKeyId",
  ]) {
    if (typeof item[k] === "string") (r as unknown as Item)[k] = item[k];
  }
  for (const k of ["incremental", "stuck", "missedDeadline"]) {
    if (typeof item[k] === "boolean") (r as unknown as Item)[k] = item[k];
  }
  if (typeof item.throttles === "number") r.throttles = item.throttles;
  return r;
}

function conditionFailed(err: unknown): boolean {
  return (
    err instanceof TransactionCanceledException ||
    (err as { name?: string })?.name === "ConditionalCheckFailedException" ||
    (err as { name?: string })?.name === "TransactionCanceledException"
  );
}

export class DynamoLedger implements Ledger, BackupLedger {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  /** A conditional write: `ok` when it applied, `refused` when its condition did not hold. */
  private async conditional<T>(write: () => Promise<unknown>, ok: T, refused: T): Promise<T> {
    try {
      await write();
      return ok;
    } catch (err) {
      if (conditionFailed(err)) return refused;
      throw err;
    }
  }

  recordSource(record: SnapshotRecord): Promise<RecordResult> {
    return this.putNew(record);
  }

  recordSourceFailure(record: SnapshotRecord): Promise<RecordResult> {
    return this.putNew(record);
  }

  /**
   * Puts a new snapshot record unless the snapshot is already known. The backup's own item is
   * written only when one of its copies is admitted (its `started` flag is all the scheduler needs).
   */
  private async putNew(record: SnapshotRecord): Promise<RecordResult> {
    return this.conditional(
      () =>
        this.db.send(
          new PutCommand({
            TableName: this.table,
            Item: toItem(record),
            ConditionExpression: "attribute_not_exists(pk)",
          }),
        ),
      "recorded",
      "duplicate",
    );
  }

  async get(sourceSnapshotId: string): Promise<SnapshotRecord | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.table, Key: snapKey(sourceSnapshotId), ConsistentRead: true }),
    );
    return out.Item ? fromItem(out.Item) : undefined;
  }

  async known(sourceSnapshotIds: readonly string[]): Promise<Set<string>> {
    const found = new Set<string>();
    const items = await this.batchGet(sourceSnapshotIds.map(snapKey), "sourceSnapshotId");
    for (const item of items) if (typeof item.sourceSnapshotId === "string") found.add(item.sourceSnapshotId);
    return found;
  }

  /** BatchGetItem in chunks of 100, asking again for unprocessed keys until none are left. */
  private async batchGet(keys: readonly Item[], projection: string): Promise<Item[]> {
    const names: Record<string, string> = {};
    const expr = projection
      .split(",")
      .map((a, i) => {
        names[`#a${i}`] = a.trim();
        return `#a${i}`;
      })
      .join(", ");
    const out: Item[] = [];
    for (let i = 0; i < keys.length; i += 100) {
      let pending: Item[] | undefined = keys.slice(i, i + 100);
      while (pending && pending.length > 0) {
        const res = await this.db.send(
          new BatchGetCommand({
            RequestItems: {
              [this.table]: { Keys: pending, ProjectionExpression: expr, ExpressionAttributeNames: names },
            },
          }),
        );
        out.push(...(res.Responses?.[this.table] ?? []));
        pending = res.UnprocessedKeys?.[this.table]?.Keys as Item[] | undefined;
      }
    }
    return out;
  }

  async loadOpen(): Promise<OpenState> {
    const open = await this.queryIndex(OPEN);
    const backups = [...new Set(open.map((r) => r.backup))];
    const startedBackups = new Set<string>();
    for (const item of await this.batchGet(backups.map(backupKey), "name, started")) {
      if (item.started === true && typeof item.name === "string") startedBackups.add(item.name);
    }
    const counter = await this.db.send(
      new GetCommand({ TableName: this.table, Key: BUDGET_KEY, ConsistentRead: true }),
    );
    const inFlightCounter = typeof counter.Item?.inFlight === "number" ? counter.Item.inFlight : 0;
    return { open, startedBackups, inFlightCounter };
  }

  async admit(record: SnapshotRecord, budget: number, kmsKeyId: string | undefined, now: Date) {
    const id = record.sourceSnapshotId;
    const admitted = await this.conditional(
      () =>
        this.db.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                Update: {
                  TableName: this.table,
                  Key: BUDGET_KEY,
                  UpdateExpression: "SET inFlight = if_not_exists(inFlight, :zero) + :one",
                  ConditionExpression: "attribute_not_exists(inFlight) OR inFlight < :budget",
                  ExpressionAttributeValues: { ":zero": 0, ":one": 1, ":budget": budget },
                },
              },
              {
                Update: {
                  TableName: this.table,
                  Key: volKey(record.volumeId),
                  UpdateExpression:
                    kmsKeyId === undefined
                      ? "SET holder = :id"
                      : "SET holder = :id, kmsKeyId = if_not_exists(kmsKeyId, :key)",
                  ConditionExpression: "attribute_not_exists(holder)",
                  ExpressionAttributeValues: {
                    ":id": id,
                    ...(kmsKeyId === undefined ? {} : { ":key": kmsKeyId }),
                  },
                },
              },
              {
                Update: {
                  TableName: this.table,
                  Key: snapKey(id),
                  UpdateExpression: "SET #status = :copying, admittedAt = :now REMOVE notBefore, stuck",
                  ConditionExpression: "#status = :waiting",
                  ExpressionAttributeNames: { "#status": "status" },
                  ExpressionAttributeValues: {
                    ":copying": "copying",
                    ":waiting": "waiting",
                    ":now": now.toISOString(),
                  },
                },
              },
              {
                Update: {
                  TableName: this.table,
                  Key: backupKey(record.backup),
                  UpdateExpression: "SET started = :true, #name = :backup, schedule = :schedule",
                  ExpressionAttributeNames: { "#name": "name" },
                  ExpressionAttributeValues: {
                    ":true": true,
                    ":backup": record.backup,
                    ":schedule": record.schedule ?? "",
                  },
                },
              },
            ],
          }),
        ),
      true,
      false,
    );
    if (!admitted) return false;
    if (kmsKeyId === undefined) return { kmsKeyId: undefined };
    // The lineage's key was pinned by its first copy: keep using it so copies stay incremental.
    const lock = await this.db.send(
      new GetCommand({ TableName: this.table, Key: volKey(record.volumeId), ConsistentRead: true }),
    );
    const pinned = lock.Item?.kmsKeyId;
    return { kmsKeyId: typeof pinned === "string" ? pinned : kmsKeyId };
  }

  async noteCopyStarted(sourceSnapshotId: string, copySnapshotId: string, kmsKeyId: string | undefined) {
    return this.conditional(
      () =>
        this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: snapKey(sourceSnapshotId),
            UpdateExpression:
              kmsKeyId === undefined
                ? "SET copySnapshotId = :copy"
                : "SET copySnapshotId = :copy, kmsKeyId = :key",
            ConditionExpression: "#status = :copying AND attribute_not_exists(copySnapshotId)",
            ExpressionAttributeNames: { "#status": "status" },
            ExpressionAttributeValues: {
              ":copy": copySnapshotId,
              ":copying": "copying",
              ...(kmsKeyId === undefined ? {} : { ":key": kmsKeyId }),
            },
          }),
        ),
      true,
      false,
    );
  }

  /**
   * Leaves `copying`: one transaction updates the record, returns the budget slot and drops the
   * volume's lock. Only the record is conditional (it must still be copying), so the slot and the
   * lock can never stay taken by a settled record.
   */
  private async leaveCopying(
    record: LeaseHolder,
    update: { expression: string; values: Record<string, unknown> },
  ): Promise<boolean> {
    return this.conditional(
      () =>
        this.db.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                Update: {
                  TableName: this.table,
                  Key: snapKey(record.sourceSnapshotId),
                  UpdateExpression: update.expression,
                  ConditionExpression: "#status = :copying",
                  ExpressionAttributeNames: {
                    "#status": "status",
                    // "incremental" is a DynamoDB reserved word
                    ...(update.expression.includes("#incremental") ? { "#incremental": "incremental" } : {}),
                  },
                  ExpressionAttributeValues: { ":copying": "copying", ...update.values },
                },
              },
              {
                Update: {
                  TableName: this.table,
                  Key: BUDGET_KEY,
                  UpdateExpression: "ADD inFlight :minus",
                  ExpressionAttributeValues: { ":minus": -1 },
                },
              },
              {
                Update: {
                  TableName: this.table,
                  Key: volKey(record.volumeId),
                  UpdateExpression: "REMOVE holder",
                  ConditionExpression: "attribute_not_exists(holder) OR holder = :id",
                  ExpressionAttributeValues: { ":id": record.sourceSnapshotId },
                },
              },
            ],
          }),
        ),
      true,
      false,
    );
  }

  async complete(
    record: LeaseHolder,
    copy: { copySnapshotId: string; completedAt: string; incremental?: boolean },
  ): Promise<boolean> {
    return this.leaveCopying(record, {
      expression:
        "SET #status = :completed, copySnapshotId = :copy, completedAt = :at, gsi1pk = :settled" +
        (copy.incremental === undefined ? "" : ", #incremental = :inc") +
        " REMOVE notBefore",
      values: {
        ":completed": "completed",
        ":copy": copy.copySnapshotId,
        ":at": copy.completedAt,
        ":settled": `BACKUP#${record.backup}`,
        ...(copy.incremental === undefined ? {} : { ":inc": copy.incremental }),
      },
    });
  }

  async release(record: LeaseHolder, outcome: ReleaseOutcome): Promise<boolean> {
    const counter =
      outcome.count === "none" ? "" : `, ${outcome.count} = if_not_exists(${outcome.count}, :zero) + :one`;
    const counterValues = outcome.count === "none" ? {} : { ":zero": 0, ":one": 1 };
    if (outcome.status === "waiting") {
      return this.leaveCopying(record, {
        expression: `SET #status = :waiting, notBefore = :nb, reason = :reason${counter} REMOVE copySnapshotId, admittedAt`,
        values: {
          ":waiting": "waiting",
          ":nb": outcome.notBefore,
          ":reason": outcome.reason,
          ...counterValues,
        },
      });
    }
    return this.leaveCopying(record, {
      expression: `SET #status = :failed, reason = :reason, gsi1pk = :settled${counter}`,
      values: {
        ":failed": "failed",
        ":reason": outcome.reason,
        ":settled": `BACKUP#${record.backup}`,
        ...counterValues,
      },
    });
  }

  async supersede(sourceSnapshotId: string, backup: string, by: string): Promise<boolean> {
    return this.conditional(
      () =>
        this.db.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                ConditionCheck: {
                  TableName: this.table,
                  Key: backupKey(backup),
                  ConditionExpression: "attribute_not_exists(started)",
                },
              },
              {
                Update: {
                  TableName: this.table,
                  Key: snapKey(sourceSnapshotId),
                  UpdateExpression:
                    "SET #status = :superseded, reason = :reason, gsi1pk = :settled REMOVE notBefore",
                  ConditionExpression: "#status = :waiting",
                  ExpressionAttributeNames: { "#status": "status" },
                  ExpressionAttributeValues: {
                    ":superseded": "superseded",
                    ":waiting": "waiting",
                    ":reason": `superseded by newer backup ${by}`,
                    ":settled": `BACKUP#${backup}`,
                  },
                },
              },
            ],
          }),
        ),
      true,
      false,
    );
  }

  async flag(sourceSnapshotId: string, flag: "stuck" | "missedDeadline"): Promise<void> {
    await this.conditional(
      () =>
        this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: snapKey(sourceSnapshotId),
            UpdateExpression: `SET ${flag} = :true`,
            ConditionExpression: "#status = :copying",
            ExpressionAttributeNames: { "#status": "status" },
            ExpressionAttributeValues: { ":true": true, ":copying": "copying" },
          }),
        ),
      true,
      false,
    );
  }

  /** Every record of one backup (open or settled); for reports and the status command. */
  async listBackup(backup: string): Promise<SnapshotRecord[]> {
    const all = [...(await this.queryIndex(OPEN)), ...(await this.queryIndex(`BACKUP#${backup}`))];
    return all.filter((r) => r.backup === backup);
  }

  /** All snapshot records under one `byStatus` partition, every page. */
  private async queryIndex(gsi1pk: string): Promise<SnapshotRecord[]> {
    const out: SnapshotRecord[] = [];
    for await (const page of paginateQuery(
      { client: this.db },
      {
        TableName: this.table,
        IndexName: INDEX,
        KeyConditionExpression: "gsi1pk = :pk",
        ExpressionAttributeValues: { ":pk": gsi1pk },
      },
    )) {
      for (const item of page.Items ?? []) out.push(fromItem(item));
    }
    return out;
  }

  // --- Backups ---------------------------------------------------------------------------------

  async registerBackup(b: BackupState): Promise<"updated" | "stale"> {
    const values: Record<string, unknown> = {
      ":gsi": BACKUPS,
      ":sk": `${b.startTimestamp ?? "0"}#${b.name}`,
      ":name": b.name,
      ":rank": phaseRank(b.phase),
      ":modified": b.metadataModified ?? "",
      ":errors": b.errors,
      ":warnings": b.warnings,
    };
    const sets = [
      "gsi1pk = :gsi",
      "gsi1sk = :sk",
      "#name = :name",
      "phaseRank = :rank",
      "metadataModified = :modified",
    ];
    sets.push("errors = :errors", "warnings = :warnings");
    const optional: Array<keyof BackupState> = [
      "schedule",
      "storageLocation",
      "phase",
      "startTimestamp",
      "completionTimestamp",
      "expiration",
      "volumeSnapshotsAttempted",
      "expected",
    ];
    for (const k of optional) {
      if (b[k] === undefined) continue;
      values[`:${k}`] = b[k];
      sets.push(`${k} = :${k}`);
    }
    return this.conditional(
      () =>
        this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: backupKey(b.name),
            UpdateExpression: `SET ${sets.join(", ")}`,
            // Newer metadata wins; at the same LastModified (one-second resolution) the more final phase
            // wins. Fields a read lacks (the snapshot list, before Velero wrote it) are left as they are.
            ConditionExpression:
              "attribute_not_exists(metadataModified) OR metadataModified < :modified OR " +
              "(metadataModified = :modified AND phaseRank <= :rank)",
            ExpressionAttributeNames: { "#name": "name" },
            ExpressionAttributeValues: values,
          }),
        ),
      "updated",
      "stale",
    );
  }

  async getBackup(name: string): Promise<StoredBackup | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.table, Key: backupKey(name), ConsistentRead: true }),
    );
    return out.Item && out.Item.gsi1pk === BACKUPS ? backupFromItem(out.Item) : undefined;
  }

  async getSnapshots(sourceSnapshotIds: readonly string[]): Promise<Map<string, SnapshotRecord>> {
    const items = await this.batchGet(
      [...new Set(sourceSnapshotIds)].map(snapKey),
      "sourceSnapshotId, sourceRegion, volumeId, backup, startTime, status, tags, attempts, copySnapshotId, reason, completedAt, schedule",
    );
    return new Map(items.map((i) => fromItem(i)).map((r) => [r.sourceSnapshotId, r]));
  }

  async recordVerdict(
    name: string,
    e: Evaluation,
    at: string,
    published?: { prefix: string },
  ): Promise<void> {
    await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: backupKey(name),
        UpdateExpression:
          "SET verdict = :v, reason = :r, copied = :c, expectedCount = :n, evaluatedAt = :at" +
          (published ? ", drReadyAt = if_not_exists(drReadyAt, :at), failoverPrefix = :p" : ""),
        ConditionExpression: "gsi1pk = :gsi",
        ExpressionAttributeValues: {
          ":v": e.verdict,
          ":r": e.reason,
          ":c": e.copied,
          ":n": e.expectedCount,
          ":at": at,
          ":gsi": BACKUPS,
          ...(published ? { ":p": published.prefix } : {}),
        },
      }),
    );
  }

  async retireBackup(name: string, at: string, reason: string): Promise<void> {
    await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: backupKey(name),
        UpdateExpression: "SET retiredAt = if_not_exists(retiredAt, :at), verdict = :v, reason = :r",
        ConditionExpression: "gsi1pk = :gsi",
        ExpressionAttributeValues: { ":at": at, ":v": "not-ready", ":r": reason, ":gsi": BACKUPS },
      }),
    );
  }

  async listBackups(limit = 50): Promise<StoredBackup[]> {
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: INDEX,
        KeyConditionExpression: "gsi1pk = :pk",
        ExpressionAttributeValues: { ":pk": BACKUPS },
        ScanIndexForward: false,
        Limit: limit,
      }),
    );
    return (out.Items ?? []).map(backupFromItem);
  }
}

const BACKUPS = "BACKUPS";

function backupFromItem(item: Item): StoredBackup {
  const b: StoredBackup = {
    name: String(item.name ?? ""),
    errors: typeof item.errors === "number" ? item.errors : 0,
    warnings: typeof item.warnings === "number" ? item.warnings : 0,
  };
  const strings = [
    "schedule",
    "storageLocation",
    "phase",
    "startTimestamp",
    "completionTimestamp",
    "expiration",
    "metadataModified",
    "verdict",
    "reason",
    "evaluatedAt",
    "drReadyAt",
    "failoverPrefix",
    "retiredAt",
  ] as const;
  for (const k of strings) if (typeof item[k] === "string") (b as unknown as Item)[k] = item[k];
  for (const k of ["volumeSnapshotsAttempted", "copied", "expectedCount"] as const) {
    if (typeof item[k] === "number") (b as unknown as Item)[k] = item[k];
  }
  if (Array.isArray(item.expected)) b.expected = item.expected as StoredBackup["expected"];
  return b;
}
