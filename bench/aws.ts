import { type Engine, SECOND } from "./engine.js";
import { BASELINE, NO_BASE, transferMiB, type Workload } from "./model.js";

/**
 * EBS in the failover region, as far as copies go, with AWS's quotas
 * (https://docs.aws.amazon.com/ebs/latest/userguide/ebs-copy-snapshot.html, EC2 API throttling):
 * - at most 20 concurrent copies per destination region: a CopySnapshot beyond it fails with
 *   ResourceLimitExceeded (not adjustable);
 * - copies of one lineage run one after another: a copy requested while an earlier copy of the same
 *   volume is in progress waits behind it, and counts toward the 20 while it waits;
 * - CopySnapshot calls draw on a token bucket (burst 50, refill 5/s); an empty bucket answers
 *   RequestLimitExceeded. A call refused by the copy quota has still spent its token;
 * - a copy transfers its changed blocks at its volume's rate, all copies together at most
 *   2000 MiB/s per region pair (shared in proportion when the sum exceeds it).
 *
 * It is also the referee of the statistics: which backups have every copy completed (DR-ready) and
 * each volume's newest copied snapshot come from here, not from any policy's own bookkeeping.
 */
export const AWS_LIMITS = {
  concurrentCopies: 20,
  tokenBurst: 50,
  tokenRefillPerSecond: 5,
  regionPairMiBps: 2000,
} as const;

export type CopyErrorCode = "RequestLimitExceeded" | "ResourceLimitExceeded" | "IncorrectState";

export interface SimCopy {
  id: string;
  j: number;
  v: number;
  requestedAt: number;
  state: "queued" | "overhead" | "transfer" | "completed";
  /** The lineage's copied snapshot the copy was incremental to (or NO_BASE: full). */
  base?: number;
  startedAt?: number;
  doneAt?: number;
  transferMiB: number;
  remainingMiB: number;
  rate: number;
  version: number;
}

export interface AwsStats {
  calls: number;
  requestLimitExceeded: number;
  resourceLimitExceeded: number;
  copiesRequested: number;
  copiesCompleted: number;
  fullCopies: number;
  miBTransferred: number;
  /** Most copies counting toward the 20 at once. */
  maxActive: number;
  /** Copies that had to wait behind an earlier copy of their volume. */
  lineageQueued: number;
}

export class SimEbs {
  readonly stats: AwsStats = {
    calls: 0,
    requestLimitExceeded: 0,
    resourceLimitExceeded: 0,
    copiesRequested: 0,
    copiesCompleted: 0,
    fullCopies: 0,
    miBTransferred: 0,
    maxActive: 0,
    lineageQueued: 0,
  };
  /** Copies counting toward the concurrency quota (transferring or queued behind their lineage). */
  active = 0;
  readonly copies = new Map<string, SimCopy>();
  /** Copies by their source snapshot (index j * n + v): what a tag-filtered DescribeSnapshots finds. */
  readonly copiesBySource = new Map<number, SimCopy[]>();
  /** Start of each volume's newest snapshot with a completed copy. */
  readonly newestCopiedStart: Float64Array;
  /** Start of the newest backup all of whose snapshots have completed copies. */
  newestReadyStart: number;
  /** Each backup as it became DR-ready (every copy completed), in order. */
  readonly readyLog: Array<{ j: number; at: number }> = [];

  private tokens: number = AWS_LIMITS.tokenBurst;
  private tokensAt: number;
  private copySeq = 0;
  private readonly copied: Uint8Array;
  private readonly completedPerBackup: Int32Array;
  private readonly busy: Array<SimCopy | undefined>;
  private readonly waiting = new Map<number, SimCopy[]>();
  private readonly transferring = new Set<SimCopy>();
  private transferAt: number;

  constructor(
    readonly w: Workload,
    private readonly engine: Engine,
    /** Called at the instant a copy completes (the policy adds its event's delivery delay). */
    private readonly onCompleted: (copy: SimCopy) => void,
  ) {
    // Warm lineages: the baseline backup (one interval before the day) is copied and DR-ready.
    // Cold start: there is no recovery point yet; ages count from that same instant, so the
    // figures stay finite (and the warm-up is excluded from the statistics anyway).
    const start = w.baselineStart;
    this.newestCopiedStart = new Float64Array(w.n).fill(start);
    this.newestReadyStart = start;
    this.copied = new Uint8Array(w.backups.length * w.n);
    this.completedPerBackup = new Int32Array(w.backups.length);
    this.busy = new Array(w.n).fill(undefined);
    this.tokensAt = engine.now;
    this.transferAt = engine.now;
  }

  /** Source snapshot (backup j, volume v) from its id (ids encode j * n + v in hex). */
  locate(snapshotId: string): { j: number; v: number } | undefined {
    const k = Number.parseInt(snapshotId.slice(5), 16);
    if (!snapshotId.startsWith("snap-") || !Number.isFinite(k) || k < 0 || k >= this.copied.length) {
      return undefined;
    }
    return { j: Math.floor(k / this.w.n), v: k % this.w.n };
  }

  private refill(): void {
    const now = this.engine.now;
    this.tokens = Math.min(
      AWS_LIMITS.tokenBurst,
      this.tokens + ((now - this.tokensAt) / SECOND) * AWS_LIMITS.tokenRefillPerSecond,
    );
    this.tokensAt = now;
  }

  /** CopySnapshot of source snapshot (j, v): the new copy, or the error AWS would answer. */
  requestCopy(j: number, v: number): SimCopy | CopyErrorCode {
    this.stats.calls++;
    this.refill();
    if (this.tokens < 1) {
      this.stats.requestLimitExceeded++;
      return "RequestLimitExceeded";
    }
    this.tokens -= 1;
    const now = this.engine.now;
    if (now < (this.w.snapReady[j * this.w.n + v] as number)) return "IncorrectState";
    if (this.active >= AWS_LIMITS.concurrentCopies) {
      this.stats.resourceLimitExceeded++;
      return "ResourceLimitExceeded";
    }
    const copy: SimCopy = {
      id: `snap-c${(++this.copySeq).toString(16).padStart(16, "0")}`,
      j,
      v,
      requestedAt: now,
      state: "queued",
      transferMiB: 0,
      remainingMiB: 0,
      rate: 0,
      version: 0,
    };
    this.copies.set(copy.id, copy);
    const k = j * this.w.n + v;
    this.copiesBySource.set(k, [...(this.copiesBySource.get(k) ?? []), copy]);
    this.stats.copiesRequested++;
    this.active++;
    this.stats.maxActive = Math.max(this.stats.maxActive, this.active);
    if (this.busy[v]) {
      this.stats.lineageQueued++;
      const q = this.waiting.get(v) ?? [];
      q.push(copy);
      this.waiting.set(v, q);
    } else {
      this.start(copy);
    }
    return copy;
  }

  /**
   * Accounts for `count` more calls at this instant that cannot succeed (the bucket is empty or
   * the copy quota is full): each spends a token while there is one. Lets a policy with thousands
   * of identical retries in one second be simulated in O(1).
   */
  refuseMany(count: number): void {
    this.refill();
    if (this.tokens >= 1 && this.active < AWS_LIMITS.concurrentCopies) {
      throw new Error("refuseMany: a call could still succeed");
    }
    this.stats.calls += count;
    const withToken =
      this.active >= AWS_LIMITS.concurrentCopies ? Math.min(count, Math.floor(this.tokens)) : 0;
    this.tokens -= withToken;
    this.stats.resourceLimitExceeded += withToken;
    this.stats.requestLimitExceeded += count - withToken;
  }

  canSucceed(): boolean {
    this.refill();
    return this.tokens >= 1 && this.active < AWS_LIMITS.concurrentCopies;
  }

  private newestCopiedBefore(v: number, j: number): number {
    for (let i = j - 1; i >= 0; i--) if (this.copied[i * this.w.n + v]) return i;
    return this.w.params.warmLineages ? BASELINE : NO_BASE;
  }

  /** The lineage is free: the copy runs its fixed overhead, then transfers. */
  private start(copy: SimCopy): void {
    const { w, engine } = this;
    this.busy[copy.v] = copy;
    copy.state = "overhead";
    copy.startedAt = engine.now;
    copy.base = this.newestCopiedBefore(copy.v, copy.j);
    copy.transferMiB = transferMiB(w, copy.v, copy.base, copy.j);
    copy.remainingMiB = copy.transferMiB;
    engine.after(w.overheadMs[copy.j * w.n + copy.v] as number, () => {
      if (copy.remainingMiB <= 0) return this.finish(copy);
      copy.state = "transfer";
      this.transferring.add(copy);
      this.reshare();
    });
  }

  /**
   * Advances every transfer to now at its current rate, then gives each its volume's rate, scaled
   * down in proportion when together they would exceed the region pair's throughput.
   */
  private reshare(): void {
    const now = this.engine.now;
    const dt = (now - this.transferAt) / SECOND;
    this.transferAt = now;
    let total = 0;
    for (const c of this.transferring) {
      c.remainingMiB -= c.rate * dt;
      total += this.w.copyMiBps[c.v] as number;
    }
    const scale = total > AWS_LIMITS.regionPairMiBps ? AWS_LIMITS.regionPairMiBps / total : 1;
    for (const c of this.transferring) {
      const rate = (this.w.copyMiBps[c.v] as number) * scale;
      if (rate === c.rate) continue;
      c.rate = rate;
      const version = ++c.version;
      this.engine.after((Math.max(0, c.remainingMiB) / rate) * SECOND, () => {
        if (c.version !== version || c.state !== "transfer") return;
        this.transferring.delete(c);
        this.reshare();
        c.remainingMiB = 0;
        this.finish(c);
      });
    }
  }

  private finish(copy: SimCopy): void {
    const { w, engine } = this;
    const k = copy.j * w.n + copy.v;
    copy.state = "completed";
    copy.doneAt = engine.now;
    this.active--;
    this.stats.copiesCompleted++;
    this.stats.miBTransferred += copy.transferMiB;
    if (copy.base === NO_BASE) this.stats.fullCopies++;
    this.busy[copy.v] = undefined;
    const next = this.waiting.get(copy.v)?.shift();
    if (next) this.start(next);
    if (!this.copied[k]) {
      this.copied[k] = 1;
      const start = w.snapStart[k] as number;
      if (start > (this.newestCopiedStart[copy.v] as number)) this.newestCopiedStart[copy.v] = start;
      const done = (this.completedPerBackup[copy.j] ?? 0) + 1;
      this.completedPerBackup[copy.j] = done;
      const backup = w.backups[copy.j];
      if (done === w.n && backup) {
        this.readyLog.push({ j: copy.j, at: engine.now });
        if (backup.start > this.newestReadyStart) this.newestReadyStart = backup.start;
      }
    }
    this.onCompleted(copy);
  }

  /** Whether snapshot (j, v) has a completed copy. */
  isCopied(j: number, v: number): boolean {
    return this.copied[j * this.w.n + v] === 1;
  }
}
