import type { SnapshotRecord } from "../functions/core/model.js";
import type {
  Admission,
  CopyCompletion,
  LeaseHolder,
  Ledger,
  OpenState,
  RecordOutcome,
  RecordResult,
  ReleaseOutcome,
} from "../functions/core/ports.js";

/**
 * The ledger in memory, with the semantics of functions/adapters/dynamo-ledger.ts: every
 * transition checks its condition and applies all of its writes or none, the copy budget is a
 * counter taken and returned with the record's transitions, each volume has a lineage lock that
 * pins the lineage's KMS key on first use, and a backup's `started` flag (set by its first
 * admission) is what protects it from supersession.
 *
 * For the simulation bench and tests: single-threaded, so a method's body is its transaction.
 * Stored records are frozen and replaced on every change, so a caller holding one sees a stale
 * snapshot (as with DynamoDB), never a record changing under it, and cannot change the ledger
 * by mutating what it read. Open (waiting or copying) records are indexed, so `loadOpen` costs
 * the open work, not the whole history. Batched operations behave as the DynamoDB ledger's
 * transactions after their retries: each record gets the outcome it would get on its own.
 */
export class MemoryLedger implements Ledger {
  private readonly records = new Map<string, SnapshotRecord>();
  private readonly open = new Map<string, SnapshotRecord>();
  private readonly started = new Set<string>();
  private readonly locks = new Map<string, { holder?: string; kmsKeyId?: string }>();
  private inFlight = 0;
  private waiting = 0;
  private fullDiscoveryAt: string | undefined;

  /** Number of transitions by kind, for reports. */
  readonly counts = { recorded: 0, admitted: 0, completed: 0, requeued: 0, failed: 0, superseded: 0 };

  private put(r: SnapshotRecord): void {
    const frozen = Object.freeze(r);
    this.records.set(r.sourceSnapshotId, frozen);
    if (r.status === "waiting" || r.status === "copying") this.open.set(r.sourceSnapshotId, frozen);
    else this.open.delete(r.sourceSnapshotId);
  }

  private putNew(record: SnapshotRecord): RecordResult {
    if (this.records.has(record.sourceSnapshotId)) return "duplicate";
    this.put({ ...record, tags: { ...record.tags } });
    this.counts.recorded++;
    if (record.status === "waiting") this.waiting++;
    return "recorded";
  }

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
    // The DynamoDB ledger's control condition: new copies start only while nothing waits.
    const backlog = batch.admit.length > 0 && (this.waiting > 0 || this.inFlight >= budget);
    if (backlog) out.control = { inFlight: this.inFlight, waiting: this.waiting };
    const later: SnapshotRecord[] = [];
    for (const r of batch.admit) {
      if (this.records.has(r.sourceSnapshotId)) {
        out.duplicates.push(r.sourceSnapshotId);
        continue;
      }
      const lock = this.locks.get(r.volumeId) ?? {};
      if (backlog || this.inFlight >= budget || lock.holder !== undefined) {
        later.push(r);
        continue;
      }
      const key = this.takeLock(r, kmsKeyId);
      this.putNew({
        ...r,
        status: "copying",
        admittedAt: now.toISOString(),
        ...(key ? { kmsKeyId: key } : {}),
      });
      this.inFlight++;
      this.started.add(r.backup);
      this.counts.admitted++;
      out.admitted.push({ record: this.records.get(r.sourceSnapshotId) as SnapshotRecord, kmsKeyId: key });
    }
    for (const r of [...later, ...batch.wait]) {
      if (this.putNew({ ...r, status: "waiting" }) === "duplicate") out.duplicates.push(r.sourceSnapshotId);
      else out.waiting.push(r);
    }
    return out;
  }

  /** Takes a free lineage lock; the lineage's pinned key (or `kmsKeyId`, pinned now). */
  private takeLock(r: SnapshotRecord, kmsKeyId: string | undefined): string | undefined {
    const lock = this.locks.get(r.volumeId) ?? {};
    const pinned = lock.kmsKeyId ?? kmsKeyId;
    this.locks.set(r.volumeId, {
      ...(pinned === undefined ? {} : { kmsKeyId: pinned }),
      holder: r.sourceSnapshotId,
    });
    return kmsKeyId === undefined ? undefined : pinned;
  }

  async recordSourceFailure(record: SnapshotRecord): Promise<RecordResult> {
    return this.putNew(record);
  }

  async get(sourceSnapshotId: string): Promise<SnapshotRecord | undefined> {
    return this.records.get(sourceSnapshotId);
  }

  async known(sourceSnapshotIds: readonly string[]): Promise<Set<string>> {
    const found = new Set<string>();
    for (const id of sourceSnapshotIds) if (this.records.has(id)) found.add(id);
    return found;
  }

  async stillOpen(sourceSnapshotIds: readonly string[]): Promise<Set<string>> {
    return new Set(sourceSnapshotIds.filter((id) => this.open.has(id)));
  }

  async counters(): Promise<{ inFlight: number; waiting: number }> {
    return { inFlight: this.inFlight, waiting: this.waiting };
  }

  async loadOpen(): Promise<OpenState> {
    const open = [...this.open.values()];
    // As the DynamoDB ledger: the started flags of the open records' backups only.
    const startedBackups = new Set<string>();
    for (const r of open) if (this.started.has(r.backup)) startedBackups.add(r.backup);
    return {
      open,
      startedBackups,
      inFlightCounter: this.inFlight,
      waitingCounter: this.waiting,
      ...(this.fullDiscoveryAt ? { fullDiscoveryAt: this.fullDiscoveryAt } : {}),
    };
  }

  async admitMany(
    records: readonly SnapshotRecord[],
    budget: number,
    kmsKeyId: string | undefined,
    now: Date,
  ): Promise<{ admitted: Admission[]; lostRaces: SnapshotRecord[] }> {
    const out: { admitted: Admission[]; lostRaces: SnapshotRecord[] } = { admitted: [], lostRaces: [] };
    for (const record of records) {
      const stored = this.records.get(record.sourceSnapshotId);
      const lock = this.locks.get(record.volumeId) ?? {};
      if (this.inFlight >= budget || lock.holder !== undefined || stored?.status !== "waiting") {
        out.lostRaces.push(record);
        continue;
      }
      const key = this.takeLock(record, kmsKeyId);
      this.inFlight++;
      this.waiting--;
      const { notBefore: _n, stuck: _s, ...rest } = stored;
      this.put({
        ...rest,
        status: "copying",
        admittedAt: now.toISOString(),
        ...(key ? { kmsKeyId: key } : {}),
      });
      this.started.add(record.backup);
      this.counts.admitted++;
      out.admitted.push({
        record: this.records.get(record.sourceSnapshotId) as SnapshotRecord,
        kmsKeyId: key,
      });
    }
    return out;
  }

  async noteCopyStarted(sourceSnapshotId: string, copySnapshotId: string, kmsKeyId: string | undefined) {
    const r = this.records.get(sourceSnapshotId);
    if (r?.status !== "copying" || r.copySnapshotId !== undefined) return false;
    this.put({ ...r, copySnapshotId, ...(kmsKeyId === undefined ? {} : { kmsKeyId }) });
    return true;
  }

  /**
   * Leaves `copying`: the record changes, the budget slot is returned and the volume's lock
   * dropped, all or nothing. Refused when the record is not copying, or when the lock is held by
   * another snapshot (the DynamoDB transaction's conditions).
   */
  private leaveCopying(
    holder: LeaseHolder,
    next: (r: SnapshotRecord) => SnapshotRecord | undefined,
  ): boolean {
    const r = this.records.get(holder.sourceSnapshotId);
    if (r?.status !== "copying") return false;
    const lock = this.locks.get(holder.volumeId);
    if (lock?.holder !== undefined && lock.holder !== holder.sourceSnapshotId) return false;
    const after = next(r);
    if (!after) return false;
    this.put(after);
    this.inFlight--;
    if (after.status === "waiting") this.waiting++;
    if (lock) delete lock.holder;
    return true;
  }

  async completeMany(completions: readonly CopyCompletion[]): Promise<boolean[]> {
    return completions.map((copy) => {
      const ok = this.leaveCopying(copy.record, (r) => {
        if (r.copySnapshotId !== undefined && r.copySnapshotId !== copy.copySnapshotId) return undefined;
        const { notBefore: _n, ...rest } = r;
        return {
          ...rest,
          status: "completed",
          copySnapshotId: copy.copySnapshotId,
          completedAt: copy.completedAt,
          ...(copy.incremental === undefined ? {} : { incremental: copy.incremental }),
        };
      });
      if (ok) this.counts.completed++;
      return ok;
    });
  }

  async release(record: LeaseHolder, outcome: ReleaseOutcome): Promise<boolean> {
    const bump = (r: SnapshotRecord): Partial<SnapshotRecord> => ({
      ...(outcome.count === "none" ? {} : { [outcome.count]: (r[outcome.count] ?? 0) + 1 }),
      ...(outcome.failedCopy ? { failedCopies: [...(r.failedCopies ?? []), outcome.failedCopy] } : {}),
    });
    const ok = this.leaveCopying(record, (r) => {
      if (outcome.status === "waiting") {
        const { copySnapshotId: _c, admittedAt: _a, ...rest } = r;
        return {
          ...rest,
          ...bump(r),
          status: "waiting",
          notBefore: outcome.notBefore,
          reason: outcome.reason,
        };
      }
      return { ...r, ...bump(r), status: "failed", reason: outcome.reason };
    });
    if (ok) this.counts[outcome.status === "waiting" ? "requeued" : "failed"]++;
    return ok;
  }

  async supersedeMany(backup: string, sourceSnapshotIds: readonly string[], by: string): Promise<number> {
    if (this.started.has(backup)) return 0;
    let n = 0;
    for (const id of new Set(sourceSnapshotIds)) {
      const r = this.records.get(id);
      if (r?.status !== "waiting") continue;
      const { notBefore: _n, ...rest } = r;
      this.put({ ...rest, status: "superseded", reason: `superseded by newer backup ${by}` });
      this.waiting--;
      this.counts.superseded++;
      n++;
    }
    return n;
  }

  async flag(sourceSnapshotId: string, flag: "stuck" | "missedDeadline"): Promise<void> {
    const r = this.records.get(sourceSnapshotId);
    if (r?.status === "copying") this.put({ ...r, [flag]: true });
  }

  async noteFullDiscovery(at: string): Promise<void> {
    this.fullDiscoveryAt = at;
  }

  /** Copies in flight as the budget counter says. */
  get inFlightCounter(): number {
    return this.inFlight;
  }

  /** Waiting or copying records (the open work). */
  get openCount(): number {
    return this.open.size;
  }

  /** Every record, in any state (tests and reports). */
  all(): IterableIterator<SnapshotRecord> {
    return this.records.values();
  }
}
