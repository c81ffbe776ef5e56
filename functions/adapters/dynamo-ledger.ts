import { randomUUID } from "node:crypto";
import { type CancellationReason, TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  paginateQuery,
  QueryCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { type BackupState, type Evaluation, phaseRank } from "../core/backup.js";
import { RetryableError } from "../core/errors.js";
import type { SnapshotRecord, SnapshotStatus } from "../core/model.js";
import type {
  Admission,
  BackupLedger,
  CopyCompletion,
  LeaseHolder,
  Ledger,
  OpenState,
  RecordOutcome,
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
 * | a backup's started mark  | `BACKUP#<name>`     | `STARTED`| `OPEN` (expires after 3 days)     |
 * | a volume's lineage lock  | `VOL#<volume id>`   | `LOCK`   | -                                 |
 * | copies in flight/waiting | `CONTROL`           | `BUDGET` | `OPEN`                            |
 *
 * Every transition is a conditional write or a transaction, so concurrent deliveries of one event
 * agree on a single outcome; CopySnapshot has no ClientToken, the ledger is the idempotency key.
 * One Query of the `OPEN` partition is everything the scheduler needs (open records, started
 * backups, counters), and batches of transitions share one transaction: API calls per snapshot
 * stay low (README, Scale).
 */
export const OPEN = "OPEN";
export const INDEX = "byStatus";
const BUDGET_KEY = { pk: "CONTROL", sk: "BUDGET" };
const CONTROL_SK = "~CONTROL";
/** How long a backup's started mark stays (DynamoDB TTL); far beyond any copy's life. */
const STARTED_TTL_SECONDS = 3 * 24 * 3600;
/** Records per transaction: each takes up to two items, DynamoDB allows 100 per transaction. */
const CHUNK = 30;
/**
 * Rounds of a batched write that drop refused items and try again with the rest. Each round drops
 * at least one (DynamoDB names every item whose condition failed; were it to name only the first,
 * a chunk would still settle within its size).
 */
const MAX_ROUNDS = CHUNK + 2;

const snapKey = (id: string) => ({ pk: `SNAP#${id}`, sk: "SNAP" });
const backupKey = (name: string) => ({ pk: `BACKUP#${name}`, sk: "BACKUP" });
const volKey = (id: string) => ({ pk: `VOL#${id}`, sk: "LOCK" });
const startedKey = (name: string) => ({ pk: `BACKUP#${name}`, sk: "STARTED" });

type Item = Record<string, unknown>;
type TransactItem = NonNullable<TransactWriteCommandInput["TransactItems"]>[number];
/** Why one item of a cancelled transaction failed, and the item as it was (ALL_OLD items). */
interface Reason {
  code: string;
  item: Record<string, { S?: string; N?: string }> | undefined;
}

const withKey = (kmsKeyId: string | undefined) => (kmsKeyId === undefined ? {} : { kmsKeyId });

/**
 * Why admissions in a cancelled transaction (items: control, then record and lock per admission)
 * failed: the record's condition (`refused`: already known, or no longer waiting) or the volume's
 * lock (`busy`: held by another copy). A lock refused only for its KMS key pins the lineage's key
 * in `keys`, so the next round uses it.
 */
function admissionRefusals(
  admissions: readonly SnapshotRecord[],
  reasons: readonly Reason[],
  keys: Map<string, string>,
): { refused: Set<string>; busy: Set<string> } {
  const refused = new Set<string>();
  const busy = new Set<string>();
  const failed = (i: number) => reasons[i]?.code === "ConditionalCheckFailed";
  admissions.forEach((r, i) => {
    if (failed(1 + 2 * i)) refused.add(r.sourceSnapshotId);
    else if (failed(2 + 2 * i)) {
      const old = reasons[2 + 2 * i]?.item;
      if (old?.holder?.S) busy.add(r.sourceSnapshotId);
      else if (old?.kmsKeyId?.S) keys.set(r.volumeId, old.kmsKeyId.S);
    }
  });
  return { refused, busy };
}

function uniqueIds(records: readonly SnapshotRecord[]): SnapshotRecord[] {
  const seen = new Set<string>();
  return records.filter((r) => !seen.has(r.sourceSnapshotId) && seen.add(r.sourceSnapshotId));
}

/** The first record of each volume, and the others. */
function onePerVolume(records: readonly SnapshotRecord[]): {
  first: SnapshotRecord[];
  repeats: SnapshotRecord[];
} {
  const seen = new Set<string>();
  const first: SnapshotRecord[] = [];
  const repeats: SnapshotRecord[] = [];
  for (const r of records) {
    if (seen.has(r.volumeId)) repeats.push(r);
    else {
      seen.add(r.volumeId);
      first.push(r);
    }
  }
  return { first, repeats };
}

/** The control item's counters as a cancelled transaction returned them. */
function counters(item: Reason["item"]): { inFlight: number; waiting: number } {
  return { inFlight: Number(item?.inFlight?.N ?? 0), waiting: Number(item?.waiting?.N ?? 0) };
}

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
  if (Array.isArray(item.failedCopies))
    r.failedCopies = item.failedCopies.filter((c): c is string => typeof c === "string");
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

  recordSourceFailure(record: SnapshotRecord): Promise<RecordResult> {
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

  async stillOpen(sourceSnapshotIds: readonly string[]): Promise<Set<string>> {
    const items = await this.batchGet(sourceSnapshotIds.map(snapKey), "sourceSnapshotId, status", true);
    return new Set(
      items
        .filter((i) => i.status === "waiting" || i.status === "copying")
        .map((i) => String(i.sourceSnapshotId)),
    );
  }

  /** BatchGetItem in chunks of 100, asking again for unprocessed keys until none are left. */
  private async batchGet(keys: readonly Item[], projection: string, consistent = false): Promise<Item[]> {
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
              [this.table]: {
                Keys: pending,
                ProjectionExpression: expr,
                ExpressionAttributeNames: names,
                ...(consistent ? { ConsistentRead: true } : {}),
              },
            },
          }),
        );
        out.push(...(res.Responses?.[this.table] ?? []));
        pending = res.UnprocessedKeys?.[this.table]?.Keys as Item[] | undefined;
      }
    }
    return out;
  }

  /** One Query of the `OPEN` partition: open records, started marks and the counters. */
  async loadOpen(): Promise<OpenState> {
    const state: OpenState = { open: [], startedBackups: new Set(), inFlightCounter: 0, waitingCounter: 0 };
    for (const item of await this.queryItems(OPEN)) {
      if (item.sk === "SNAP") state.open.push(fromItem(item));
      else if (item.sk === "STARTED" && typeof item.name === "string") state.startedBackups.add(item.name);
      else if (item.pk === BUDGET_KEY.pk) {
        state.inFlightCounter = typeof item.inFlight === "number" ? item.inFlight : 0;
        state.waitingCounter = typeof item.waiting === "number" ? item.waiting : 0;
        if (typeof item.fullDiscoveryAt === "string") state.fullDiscoveryAt = item.fullDiscoveryAt;
      }
    }
    return state;
  }

  async counters(): Promise<{ inFlight: number; waiting: number }> {
    const { Item: item } = await this.db.send(new GetCommand({ TableName: this.table, Key: BUDGET_KEY }));
    return {
      inFlight: typeof item?.inFlight === "number" ? item.inFlight : 0,
      waiting: typeof item?.waiting === "number" ? item.waiting : 0,
    };
  }

  // --- Transaction items -----------------------------------------------------------------------

  /**
   * The control item's update: counters move with the records in the same transaction, so they
   * cannot drift. `maxInFlight`: admit only while the slots allow; `noBacklog`: only while nothing
   * waits (a new snapshot may not overtake a waiting one: priorities and lineage order hold).
   */
  private control(
    delta: { inFlight: number; waiting: number },
    condition: { maxInFlight?: number; noBacklog?: boolean } = {},
  ): TransactItem {
    const conditions: string[] = [];
    const values: Record<string, unknown> = {
      ":open": OPEN,
      ":csk": CONTROL_SK,
      ":di": delta.inFlight,
      ":dw": delta.waiting,
    };
    if (condition.maxInFlight !== undefined) {
      conditions.push("(attribute_not_exists(inFlight) OR inFlight <= :max)");
      values[":max"] = condition.maxInFlight;
    }
    if (condition.noBacklog) {
      conditions.push("(attribute_not_exists(waiting) OR waiting <= :zero)");
      values[":zero"] = 0;
    }
    return {
      Update: {
        TableName: this.table,
        Key: BUDGET_KEY,
        UpdateExpression: "SET gsi1pk = :open, gsi1sk = :csk ADD inFlight :di, waiting :dw",
        ...(conditions.length > 0
          ? { ConditionExpression: conditions.join(" AND "), ReturnValuesOnConditionCheckFailure: "ALL_OLD" }
          : {}),
        ExpressionAttributeValues: values,
      },
    };
  }

  /** Takes a volume's lineage lock (free only), pinning the lineage's KMS key on its first copy. */
  private lock(volumeId: string, holder: string, kmsKeyId: string | undefined): TransactItem {
    return {
      Update: {
        TableName: this.table,
        Key: volKey(volumeId),
        UpdateExpression:
          kmsKeyId === undefined
            ? "SET holder = :id"
            : "SET holder = :id, kmsKeyId = if_not_exists(kmsKeyId, :key)",
        ConditionExpression:
          kmsKeyId === undefined
            ? "attribute_not_exists(holder)"
            : "attribute_not_exists(holder) AND (attribute_not_exists(kmsKeyId) OR kmsKeyId = :key)",
        ExpressionAttributeValues: { ":id": holder, ...(kmsKeyId === undefined ? {} : { ":key": kmsKeyId }) },
        ReturnValuesOnConditionCheckFailure: "ALL_OLD",
      },
    };
  }

  private unlock(volumeId: string, holder: string): TransactItem {
    return {
      Update: {
        TableName: this.table,
        Key: volKey(volumeId),
        UpdateExpression: "REMOVE holder",
        ConditionExpression: "attribute_not_exists(holder) OR holder = :id",
        ExpressionAttributeValues: { ":id": holder },
      },
    };
  }

  /** A backup's started mark: once set, none of its snapshots is ever superseded. */
  private startedMarks(records: readonly SnapshotRecord[], now: Date): TransactItem[] {
    const backups = new Map(records.map((r) => [r.backup, r.schedule ?? ""]));
    return [...backups].map(([backup, schedule]) => ({
      Put: {
        TableName: this.table,
        Item: {
          ...startedKey(backup),
          name: backup,
          schedule,
          gsi1pk: OPEN,
          gsi1sk: `~STARTED#${backup}`,
          expiresAt: Math.floor(now.getTime() / 1000) + STARTED_TTL_SECONDS,
        },
      },
    }));
  }

  private putNewSnapshot(record: SnapshotRecord): TransactItem {
    return {
      Put: { TableName: this.table, Item: toItem(record), ConditionExpression: "attribute_not_exists(pk)" },
    };
  }

  /**
   * Runs one transaction. Undefined when it applied; otherwise one reason per item (what failed
   * and, for ALL_OLD items, the item as it was), after retrying transaction conflicts.
   */
  private async transact(items: TransactItem[]): Promise<Reason[] | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.db.send(new TransactWriteCommand({ TransactItems: items }));
        return undefined;
      } catch (err) {
        if (!conditionFailed(err)) throw err;
        const reasons = (
          (err as { CancellationReasons?: CancellationReason[] }).CancellationReasons ?? []
        ).map((r) => ({
          code: r.Code ?? "None",
          item: r.Item as Record<string, { S?: string; N?: string }> | undefined,
        }));
        const conflict = reasons.some(
          (r) => r.code === "TransactionConflict" || r.code === "ThrottlingError",
        );
        if (conflict && attempt < 4) {
          await new Promise((resolve) => setTimeout(resolve, 20 * 2 ** attempt * (0.5 + Math.random())));
          continue;
        }
        if (!reasons.some((r) => r.code === "ConditionalCheckFailed")) {
          throw new RetryableError(
            `ledger transaction cancelled (${reasons.map((r) => r.code).join(", ")})`,
            "TransactionCanceled",
            { cause: err },
          );
        }
        return reasons;
      }
    }
  }

  /**
   * Writes `todo` in chunks, one transaction per chunk: `attempt` writes a chunk and returns what of
   * it to write again (nothing once it applied; the rest, after dropping what the cancelled
   * transaction refused). A chunk still unsettled after MAX_ROUNDS means heavy contention.
   */
  private async inChunks<T>(
    todo: readonly T[],
    what: string,
    attempt: (chunk: T[]) => Promise<T[]>,
  ): Promise<void> {
    for (let i = 0; i < todo.length; i += CHUNK) {
      let chunk = todo.slice(i, i + CHUNK);
      for (let round = 0; chunk.length > 0; round++) {
        if (round === MAX_ROUNDS)
          throw new RetryableError(`ledger: ${what} kept losing races`, "LedgerContention");
        chunk = await attempt(chunk);
      }
    }
  }

  // --- Transitions -----------------------------------------------------------------------------

  async recordMany(
    batch: { admit: readonly SnapshotRecord[]; wait: readonly SnapshotRecord[] },
    budget: number,
    kmsKeyId: string | undefined,
    now: Date,
  ): Promise<RecordOutcome> {
    const out: RecordOutcome = {
      admitted: [],
      waiting: [],
      duplicates: [],
      control: { inFlight: 0, waiting: 0 },
    };
    const admitAt = now.toISOString();
    // A transaction may touch an item once: one record per snapshot, one admission per volume.
    // More than the budget can never start at once (the control condition alone would let them
    // through while the control item does not exist yet).
    const { first, repeats } = onePerVolume(uniqueIds(batch.admit));
    const admit = first.slice(0, Math.max(0, budget));
    const admitIds = new Set(admit.map((r) => r.sourceSnapshotId));
    const wait = uniqueIds([...first.slice(admit.length), ...repeats, ...batch.wait]).filter(
      (r) => !admitIds.has(r.sourceSnapshotId),
    );
    const keys = new Map<string, string>();
    const keyOf = (r: SnapshotRecord) => keys.get(r.volumeId) ?? kmsKeyId;
    type New = { record: SnapshotRecord; admit: boolean };
    const todo: New[] = [
      ...admit.map((record) => ({ record, admit: true })),
      ...wait.map((record) => ({ record, admit: false })),
    ];
    await this.inChunks(todo, "recording snapshots", async (chunk) => {
      const a = chunk.filter((n) => n.admit).map((n) => n.record);
      const w = chunk.filter((n) => !n.admit).map((n) => n.record);
      const items: TransactItem[] = [
        this.control(
          { inFlight: a.length, waiting: w.length },
          a.length > 0 ? { maxInFlight: budget - a.length, noBacklog: true } : {},
        ),
        ...a.flatMap((r) => [
          this.putNewSnapshot({ ...r, status: "copying", admittedAt: admitAt, ...withKey(keyOf(r)) }),
          this.lock(r.volumeId, r.sourceSnapshotId, keyOf(r)),
        ]),
        ...w.map((r) => this.putNewSnapshot({ ...r, status: "waiting" })),
        ...this.startedMarks(a, now),
      ];
      const reasons = await this.transact(items);
      if (!reasons) {
        out.admitted.push(
          ...a.map((r) => ({ record: { ...r, status: "copying" as const }, kmsKeyId: keyOf(r) })),
        );
        out.waiting.push(...w);
        return [];
      }
      const failed = (i: number) => reasons[i]?.code === "ConditionalCheckFailed";
      const { refused: dup, busy } = admissionRefusals(a, reasons, keys);
      w.forEach((r, i) => {
        if (failed(1 + 2 * a.length + i)) dup.add(r.sourceSnapshotId);
      });
      out.duplicates.push(...dup);
      // Admissions on a busy volume, and beyond what the control item allows, are recorded waiting.
      let starts = a.filter((r) => !dup.has(r.sourceSnapshotId) && !busy.has(r.sourceSnapshotId));
      if (failed(0)) {
        const c = counters(reasons[0]?.item);
        out.control = c;
        starts = starts.slice(0, c.waiting > 0 ? 0 : Math.max(0, budget - c.inFlight));
      }
      const started = new Set(starts.map((r) => r.sourceSnapshotId));
      return chunk
        .filter((n) => !dup.has(n.record.sourceSnapshotId))
        .map((n) => ({ record: n.record, admit: started.has(n.record.sourceSnapshotId) }));
    });
    return out;
  }

  async admitMany(
    records: readonly SnapshotRecord[],
    budget: number,
    kmsKeyId: string | undefined,
    now: Date,
  ): Promise<{ admitted: Admission[]; lostRaces: SnapshotRecord[] }> {
    // A transaction may touch an item once: a second snapshot of a volume waits its turn.
    // ... and more than the budget never starts at once.
    const { first, repeats } = onePerVolume(uniqueIds(records));
    const out: { admitted: Admission[]; lostRaces: SnapshotRecord[] } = {
      admitted: [],
      lostRaces: [...first.slice(Math.max(0, budget)), ...repeats],
    };
    const keys = new Map<string, string>();
    const keyOf = (r: SnapshotRecord) => keys.get(r.volumeId) ?? kmsKeyId;
    await this.inChunks(first.slice(0, Math.max(0, budget)), "admitting copies", async (a) => {
      const items: TransactItem[] = [
        this.control({ inFlight: a.length, waiting: -a.length }, { maxInFlight: budget - a.length }),
        ...a.flatMap((r) => [
          {
            Update: {
              TableName: this.table,
              Key: snapKey(r.sourceSnapshotId),
              UpdateExpression:
                "SET #status = :copying, admittedAt = :now" +
                (keyOf(r) === undefined ? "" : ", kmsKeyId = :key") +
                " REMOVE notBefore, stuck",
              ConditionExpression: "#status = :waiting",
              ExpressionAttributeNames: { "#status": "status" },
              ExpressionAttributeValues: {
                ":copying": "copying",
                ":waiting": "waiting",
                ":now": now.toISOString(),
                ...(keyOf(r) === undefined ? {} : { ":key": keyOf(r) }),
              },
            },
          },
          this.lock(r.volumeId, r.sourceSnapshotId, keyOf(r)),
        ]),
        ...this.startedMarks(a, now),
      ];
      const reasons = await this.transact(items);
      if (!reasons) {
        out.admitted.push(
          ...a.map((r) => ({
            record: { ...r, status: "copying" as const, admittedAt: now.toISOString() },
            kmsKeyId: keyOf(r),
          })),
        );
        return [];
      }
      const { refused, busy } = admissionRefusals(a, reasons, keys);
      const lost = new Set([...refused, ...busy]);
      let again = a.filter((r) => !lost.has(r.sourceSnapshotId));
      // Other invocations took slots meanwhile: as many as are still free, the rest lost the race.
      if (reasons[0]?.code === "ConditionalCheckFailed") {
        again = again.slice(0, Math.max(0, budget - counters(reasons[0]?.item).inFlight));
      }
      const kept = new Set(again.map((r) => r.sourceSnapshotId));
      out.lostRaces.push(...a.filter((r) => !kept.has(r.sourceSnapshotId)));
      return again;
    });
    return out;
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
   * Leaves `copying`: the record's update, the slot back and the volume's lock dropped, in one
   * transaction (several records share one). Only the record is conditional in substance (it must
   * still be copying), so the slot and the lock never stay taken by a settled record.
   */
  private leaving(
    record: LeaseHolder,
    update: { expression: string; values: Record<string, unknown>; condition?: string },
  ): TransactItem[] {
    return [
      {
        Update: {
          TableName: this.table,
          Key: snapKey(record.sourceSnapshotId),
          UpdateExpression: update.expression,
          ConditionExpression: `#status = :copying${update.condition ? ` AND ${update.condition}` : ""}`,
          ExpressionAttributeNames: {
            "#status": "status",
            // "incremental" is a DynamoDB reserved word
            ...(update.expression.includes("#incremental") ? { "#incremental": "incremental" } : {}),
          },
          ExpressionAttributeValues: { ":copying": "copying", ...update.values },
        },
      },
      this.unlock(record.volumeId, record.sourceSnapshotId),
    ];
  }

  async completeMany(completions: readonly CopyCompletion[]): Promise<boolean[]> {
    const result = completions.map(() => false);
    const seen = new Set<string>();
    // A source delivered twice in one batch is completed once; the repeat reports false.
    const todo = completions
      .map((c, index) => ({ c, index }))
      .filter(({ c }) => !seen.has(c.record.sourceSnapshotId) && seen.add(c.record.sourceSnapshotId));
    await this.inChunks(todo, "completing copies", async (chunk) => {
      const items: TransactItem[] = [
        this.control({ inFlight: -chunk.length, waiting: 0 }),
        ...chunk.flatMap(({ c }) =>
          this.leaving(c.record, {
            expression:
              "SET #status = :completed, copySnapshotId = :copy, completedAt = :at, gsi1pk = :settled" +
              (c.incremental === undefined ? "" : ", #incremental = :inc") +
              " REMOVE notBefore",
            condition: "(attribute_not_exists(copySnapshotId) OR copySnapshotId = :copy)",
            values: {
              ":completed": "completed",
              ":copy": c.copySnapshotId,
              ":at": c.completedAt,
              ":settled": `BACKUP#${c.record.backup}`,
              ...(c.incremental === undefined ? {} : { ":inc": c.incremental }),
            },
          }),
        ),
      ];
      const reasons = await this.transact(items);
      if (!reasons) {
        for (const { index } of chunk) result[index] = true;
        return [];
      }
      const failed = (i: number) => reasons[i]?.code === "ConditionalCheckFailed";
      return chunk.filter((_, i) => !failed(1 + 2 * i) && !failed(2 + 2 * i));
    });
    return result;
  }

  async release(record: LeaseHolder, outcome: ReleaseOutcome): Promise<boolean> {
    const counter =
      outcome.count === "none" ? "" : `, ${outcome.count} = if_not_exists(${outcome.count}, :zero) + :one`;
    const counterValues = outcome.count === "none" ? {} : { ":zero": 0, ":one": 1 };
    const failed = outcome.failedCopy
      ? ", failedCopies = list_append(if_not_exists(failedCopies, :none), :failedCopy)"
      : "";
    const failedValues = outcome.failedCopy ? { ":none": [], ":failedCopy": [outcome.failedCopy] } : {};
    const update =
      outcome.status === "waiting"
        ? {
            expression: `SET #status = :waiting, notBefore = :nb, reason = :reason${counter}${failed} REMOVE copySnapshotId, admittedAt`,
            values: {
              ":waiting": "waiting",
              ":nb": outcome.notBefore,
              ":reason": outcome.reason,
              ...counterValues,
              ...failedValues,
            },
          }
        : {
            expression: `SET #status = :failed, reason = :reason, gsi1pk = :settled${counter}${failed}`,
            values: {
              ":failed": "failed",
              ":reason": outcome.reason,
              ":settled": `BACKUP#${record.backup}`,
              ...counterValues,
              ...failedValues,
            },
          };
    const items = [
      this.control({ inFlight: -1, waiting: outcome.status === "waiting" ? 1 : 0 }),
      ...this.leaving(record, update),
    ];
    return (await this.transact(items)) === undefined;
  }

  async supersedeMany(backup: string, sourceSnapshotIds: readonly string[], by: string): Promise<number> {
    let done = 0;
    let started = false;
    await this.inChunks([...new Set(sourceSnapshotIds)], "superseding", async (chunk) => {
      if (started) return [];
      const items: TransactItem[] = [
        {
          ConditionCheck: {
            TableName: this.table,
            Key: startedKey(backup),
            ConditionExpression: "attribute_not_exists(pk)",
          },
        },
        this.control({ inFlight: 0, waiting: -chunk.length }),
        ...chunk.map((id) => ({
          Update: {
            TableName: this.table,
            Key: snapKey(id),
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
        })),
      ];
      const reasons = await this.transact(items);
      if (!reasons) {
        done += chunk.length;
        return [];
      }
      // The backup started copying meanwhile: none of it may be superseded any more.
      started = reasons[0]?.code === "ConditionalCheckFailed";
      return started ? [] : chunk.filter((_, i) => reasons[2 + i]?.code !== "ConditionalCheckFailed");
    });
    return done;
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

  async noteFullDiscovery(at: string): Promise<void> {
    await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: BUDGET_KEY,
        UpdateExpression: "SET fullDiscoveryAt = :at, gsi1pk = :open, gsi1sk = :csk",
        ExpressionAttributeValues: { ":at": at, ":open": OPEN, ":csk": CONTROL_SK },
      }),
    );
  }

  /** Every record of one backup (open or settled); for reports and the status command. */
  async listBackup(backup: string): Promise<SnapshotRecord[]> {
    const all = [...(await this.queryItems(OPEN)), ...(await this.queryItems(`BACKUP#${backup}`))];
    return all
      .filter((i) => i.sk === "SNAP")
      .map(fromItem)
      .filter((r) => r.backup === backup);
  }

  /** Every item under one `byStatus` partition, every page. */
  private async queryItems(gsi1pk: string): Promise<Item[]> {
    const out: Item[] = [];
    for await (const page of paginateQuery(
      { client: this.db },
      {
        TableName: this.table,
        IndexName: INDEX,
        KeyConditionExpression: "gsi1pk = :pk",
        ExpressionAttributeValues: { ":pk": gsi1pk },
      },
    )) {
      out.push(...(page.Items ?? []));
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
      "volumeSnapshotsCompleted",
      "csiVolumeSnapshotsAttempted",
      "csiVolumeSnapshotsCompleted",
      "expected",
      "volumes",
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
  ): Promise<boolean> {
    const token = randomUUID();
    const out = await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: backupKey(name),
        UpdateExpression:
          "SET verdict = :v, reason = :r, copied = :c, expectedCount = :n, evaluatedAt = :at" +
          (published
            ? ", drReadyAt = if_not_exists(drReadyAt, :at), drReadyBy = if_not_exists(drReadyBy, :by), failoverPrefix = :p"
            : ""),
        // The item as it is now: drReadyBy equal to this call's own token means this write made the
        // backup DR-ready, also when the SDK retried the call after a lost response (ALL_OLD would
        // then say "already ready" and the backup would never be reported). A racing evaluation that
        // lost reads the winner's token (a time could be the same millisecond). ALL_NEW, not
        // UPDATED_NEW: whether an attribute SET to its own value counts as "updated" is not something
        // to rest a metric on (the emulator leaves it out). Only asked for when publishing: the
        // other verdicts need no answer, and the item carries the backup's whole snapshot list.
        ...(published ? { ReturnValues: "ALL_NEW" as const } : {}),
        ConditionExpression: "gsi1pk = :gsi",
        ExpressionAttributeValues: {
          ":v": e.verdict,
          ":r": e.reason,
          ":c": e.copied,
          ":n": e.expectedCount,
          ":at": at,
          ":gsi": BACKUPS,
          ...(published ? { ":p": published.prefix, ":by": token } : {}),
        },
      }),
    );
    return published !== undefined && out.Attributes?.drReadyBy === token;
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
  for (const k of [
    "volumeSnapshotsAttempted",
    "volumeSnapshotsCompleted",
    "csiVolumeSnapshotsAttempted",
    "csiVolumeSnapshotsCompleted",
    "copied",
    "expectedCount",
  ] as const) {
    if (typeof item[k] === "number") (b as unknown as Item)[k] = item[k];
  }
  if (Array.isArray(item.expected)) b.expected = item.expected as StoredBackup["expected"];
  if (Array.isArray(item.volumes)) b.volumes = item.volumes as StoredBackup["volumes"];
  return b;
}
