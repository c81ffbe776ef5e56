import { looksPerRun } from "../../functions/app/poll.js";
import { loadConfig } from "../../functions/core/config.js";
import {
  type SourceSnapshot,
  VELERO_BACKUP_TAG,
  VELERO_PV_TAG,
  VELERO_SCHEDULE_TAG,
} from "../../functions/core/model.js";
import { ReplicationPlane } from "../../functions/core/plane.js";
import type { CopyState, Log, SnapshotCopier, SourceSnapshots } from "../../functions/core/ports.js";
import { MemoryLedger } from "../../local/memory-ledger.js";
import { type SimCopy, SimEbs } from "../aws.js";
import { type Engine, EPOCH_MS, isoAt, MINUTE, SECOND } from "../engine.js";
import {
  FAILOVER_REGION,
  NO_BASE,
  SCHEDULE,
  SOURCE_REGION,
  snapshotId,
  volumeId,
  type Workload,
} from "../model.js";
import type { Policy } from "./policy.js";

/**
 * Our pipeline: the project's ReplicationPlane and its scheduler, driven only through its ports,
 * the way the deployed functions drive it:
 * - createSnapshot events -> SQS (batches of up to 10, 5 s batching window, as stacks/Replication.ts
 *   configures the event sources) -> `replicate`: plane.intake(batch) (records the batch, starting
 *   copies at once when nothing waits, else the scheduler runs);
 * - copySnapshot events -> SQS (same batching) -> `copy-completed`: plane.settleCopies(batch), then
 *   plane.admit(state) if a slot was freed;
 * - the scheduled sweep: plane.sweep() every `sweepMinutes`;
 * - the copy poller: each minute, plane.poll() every `pollSeconds` while copies wait for a slot.
 * Everything the plane touches is simulated: the ledger (MemoryLedger), EBS in both regions
 * (SimEbs, answering with AWS-shaped errors) and the clock (the engine's virtual time).
 * This is the only file that knows the plane's ports.
 */
export interface SchedulerOptions {
  sweepMinutes: number;
  random: () => number;
  /** Copy budget (default: the plane's documented default, DEFAULTS.copyBudget). */
  copyBudget?: number;
  /** The copy poller's interval (default DEFAULTS.pollSeconds; 0: off, events and sweep only). */
  pollSeconds?: number;
}

const SILENT: Log = { debug() {}, info() {}, warn() {}, error() {} };

/** An EC2 error as the SDK throws it (what classifyAwsError looks at). */
function awsError(code: string, message: string): Error {
  return Object.assign(new Error(message), { name: code, $metadata: { httpStatusCode: 400 } });
}

/** Velero's tags on its snapshots (stock velero-plugin-for-aws). */
function veleroTags(w: Workload, j: number, v: number): Record<string, string> {
  return {
    [VELERO_BACKUP_TAG]: w.backups[j]?.name ?? "",
    [VELERO_SCHEDULE_TAG]: SCHEDULE,
    [VELERO_PV_TAG]: `pvc-${v.toString(16).padStart(8, "0")}`,
    "velero.io/storage-location": "default",
    "kubernetes.io/created-for/pvc/name": `jenkins-home-mc-${v}-0`,
  };
}

/** EBS in the primary region, read through the plane's SourceSnapshots port. */
class SimSources implements SourceSnapshots {
  private readonly completed: Array<SourceSnapshot | undefined>;

  constructor(
    private readonly aws: SimEbs,
    private readonly engine: Engine,
  ) {
    this.completed = new Array(aws.w.backups.length * aws.w.n);
  }

  /** The snapshot as DescribeSnapshots shows it now (completed ones built once and shared). */
  private snapshot(j: number, v: number): SourceSnapshot {
    const w = this.aws.w;
    const k = j * w.n + v;
    const done = this.engine.now >= (w.snapReady[k] as number);
    const cached = done ? this.completed[k] : undefined;
    if (cached) return cached;
    const s: SourceSnapshot = Object.freeze({
      snapshotId: snapshotId(w, j, v),
      region: SOURCE_REGION,
      volumeId: volumeId(v),
      startTime: isoAt(w.snapStart[k] as number),
      state: done ? "completed" : "pending",
      encrypted: true,
      tags: Object.freeze(veleroTags(w, j, v)),
    });
    if (done) this.completed[k] = s;
    return s;
  }

  async describe(region: string, snapshotIds: readonly string[]): Promise<SourceSnapshot[]> {
    if (region !== SOURCE_REGION) return [];
    const out: SourceSnapshot[] = [];
    for (const id of snapshotIds) {
      const at = this.aws.locate(id);
      if (at && this.engine.now >= (this.aws.w.snapStart[at.j * this.aws.w.n + at.v] as number)) {
        out.push(this.snapshot(at.j, at.v));
      }
    }
    return out;
  }

  async listVelero(region: string, since: Date): Promise<SourceSnapshot[]> {
    if (region !== SOURCE_REGION) return [];
    const { w } = this.aws;
    const from = since.getTime() - EPOCH_MS;
    const now = this.engine.now;
    const out: SourceSnapshot[] = [];
    for (let j = 0; j < w.backups.length; j++) {
      const start = w.backups[j]?.start ?? 0;
      if (start > now) break;
      for (let v = 0; v < w.n; v++) {
        const k = j * w.n + v;
        if ((w.snapStart[k] as number) >= from && (w.snapReady[k] as number) <= now)
          out.push(this.snapshot(j, v));
      }
    }
    return out;
  }
}

/** EBS in the failover region, through the plane's SnapshotCopier port. */
class SimCopier implements SnapshotCopier {
  constructor(private readonly aws: SimEbs) {}

  async copy(request: { sourceSnapshotId: string }): Promise<string> {
    const at = this.aws.locate(request.sourceSnapshotId);
    if (!at)
      throw awsError(
        "InvalidSnapshot.NotFound",
        `The snapshot '${request.sourceSnapshotId}' does not exist.`,
      );
    const r = this.aws.requestCopy(at.j, at.v);
    if (r === "RequestLimitExceeded") throw awsError(r, "Request limit exceeded.");
    if (r === "ResourceLimitExceeded") throw awsError(r, "Too many snapshot copies in progress.");
    if (r === "IncorrectState") throw awsError(r, "Snapshot is in invalid state - pending");
    return r.id;
  }

  private state(c: SimCopy): CopyState {
    return {
      copySnapshotId: c.id,
      sourceSnapshotId: snapshotId(this.aws.w, c.j, c.v),
      backup: this.aws.w.backups[c.j]?.name ?? "",
      state: c.state === "completed" ? "completed" : "pending",
      startTime: isoAt(c.requestedAt),
    };
  }

  async describeCopies(copySnapshotIds: readonly string[]): Promise<CopyState[]> {
    const out: CopyState[] = [];
    for (const id of copySnapshotIds) {
      const c = this.aws.copies.get(id);
      if (c) out.push(this.state(c));
    }
    return out;
  }

  async findCopiesOf(sourceSnapshotIds: readonly string[]): Promise<CopyState[]> {
    const out: CopyState[] = [];
    for (const id of new Set(sourceSnapshotIds)) {
      const at = this.aws.locate(id);
      if (!at) continue;
      for (const c of this.aws.copiesBySource.get(at.j * this.aws.w.n + at.v) ?? []) out.push(this.state(c));
    }
    return out;
  }

  /** Retention is not simulated: nothing is ever deleted. */
  async deleteCopy(): Promise<boolean> {
    return false;
  }

  async listCopies(): Promise<CopyState[]> {
    return [...this.aws.copies.values()].map((c) => this.state(c));
  }
}

/**
 * An SQS queue with a Lambda event source mapping: a batch goes to the consumer when it holds
 * `size` messages or `windowMs` after its first message, whichever is first.
 */
class Batcher<T> {
  private batch: T[] = [];

  constructor(
    private readonly engine: Engine,
    private readonly consume: (batch: T[]) => Promise<void>,
    private readonly size = 10,
    private readonly windowMs = 5 * SECOND,
  ) {}

  push(item: T): void {
    this.batch.push(item);
    const mine = this.batch;
    if (mine.length === 1) {
      this.engine.after(this.windowMs, () => (this.batch === mine ? this.flush() : undefined));
    }
    if (mine.length >= this.size) {
      this.batch = [];
      this.engine.after(0, () => this.consume(mine));
    }
  }

  private flush(): Promise<void> {
    const batch = this.batch;
    this.batch = [];
    return this.consume(batch);
  }
}

export class SchedulerPolicy implements Policy {
  readonly name = "scheduler";
  readonly aws: SimEbs;
  readonly ledger = new MemoryLedger();
  readonly plane: ReplicationPlane;
  /** Handler invocations, by kind (for reports). */
  readonly invocations = { replicate: 0, copyCompleted: 0, sweep: 0, admitCalls: 0, poll: 0, pollLooks: 0 };
  private readonly snapshotQueue: Batcher<string>;
  private readonly copyQueue: Batcher<SimCopy>;

  constructor(
    readonly w: Workload,
    engine: Engine,
    options: SchedulerOptions,
  ) {
    this.aws = new SimEbs(w, engine, (copy) =>
      engine.after(w.copyEventDelayMs[copy.j * w.n + copy.v] as number, () => this.copyQueue.push(copy)),
    );
    const config = loadConfig({
      LEDGER_TABLE: "bench-ledger",
      SOURCE_REGIONS: SOURCE_REGION,
      FAILOVER_REGION,
      ...(options.copyBudget === undefined ? {} : { COPY_BUDGET: String(options.copyBudget) }),
      ...(options.pollSeconds === undefined ? {} : { POLL_SECONDS: String(options.pollSeconds) }),
    });
    this.plane = new ReplicationPlane(
      {
        ledger: this.ledger,
        copier: new SimCopier(this.aws),
        sources: new SimSources(this.aws, engine),
        clock: { now: () => new Date(EPOCH_MS + engine.now) },
        log: SILENT,
        random: options.random,
      },
      config,
    );
    this.snapshotQueue = new Batcher(engine, (ids) => this.replicate(ids));
    this.copyQueue = new Batcher(engine, (copies) => this.copyCompleted(copies));
    const sweepEvery = options.sweepMinutes * MINUTE;
    const sweep = async () => {
      this.invocations.sweep++;
      this.invocations.admitCalls++;
      await this.plane.sweep();
      engine.after(sweepEvery, sweep);
    };
    engine.after(sweepEvery, sweep);
    // The copy poller (functions/app/poll.ts): a run every minute that looks every pollSeconds
    // while copies wait for a slot, for up to looksPerRun looks, and stops when nothing waits.
    const pollMs = this.plane.config.pollSeconds * SECOND;
    if (pollMs > 0) {
      const maxPolls = looksPerRun(pollMs);
      const look = async (n: number, busy: boolean) => {
        this.invocations.pollLooks++;
        const r = await this.plane.poll({ busy });
        if (r.busy && n < maxPolls) engine.after(pollMs, () => look(n + 1, true));
      };
      const run = async () => {
        this.invocations.poll++;
        await look(1, false);
        engine.after(MINUTE, run);
      };
      engine.after(MINUTE, run);
    }
  }

  get copyBudget(): number {
    return this.plane.config.copyBudget;
  }

  onSnapshotEvent(j: number, v: number): void {
    this.snapshotQueue.push(snapshotId(this.w, j, v));
  }

  onCopyEvent(copy: SimCopy): void {
    this.copyQueue.push(copy);
  }

  /** functions/app/replicate.ts: record the batch, starting copies at once when nothing waits. */
  private async replicate(ids: string[]): Promise<void> {
    this.invocations.replicate++;
    await this.plane.intake(ids.map((id, i) => ({ key: `${i}`, snapshotId: id, region: SOURCE_REGION })));
  }

  /** functions/app/copy-completed.ts: settle the batch, then admit if a slot was freed. */
  private async copyCompleted(copies: SimCopy[]): Promise<void> {
    this.invocations.copyCompleted++;
    const settled = await this.plane.settleCopies(
      copies.map((c) => ({
        kind: "snapshot-copied" as const,
        snapshotId: c.id,
        region: FAILOVER_REGION,
        sourceSnapshotId: snapshotId(this.w, c.j, c.v),
        sourceRegion: SOURCE_REGION,
        incremental: c.base !== NO_BASE,
        ...(c.startedAt === undefined ? {} : { startTime: isoAt(c.startedAt) }),
        ...(c.doneAt === undefined ? {} : { endTime: isoAt(c.doneAt) }),
      })),
    );
    if (settled.outcomes.some((o) => o.status !== "ignored" && o.status !== "flagged")) {
      this.invocations.admitCalls++;
      await this.plane.admit(settled.state);
    }
  }

  openWork(): number {
    return this.ledger.openCount;
  }

  superseded(): number {
    return this.ledger.counts.superseded;
  }
}
