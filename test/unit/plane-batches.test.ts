import { describe, expect, it } from "vitest";
import { loadConfig } from "../../functions/core/config.js";
import {
  type SourceSnapshot,
  VELERO_BACKUP_TAG,
  VELERO_PV_TAG,
  VELERO_SCHEDULE_TAG,
} from "../../functions/core/model.js";
import { attemptCopies, ReplicationPlane } from "../../functions/core/plane.js";
import type {
  CopyRequest,
  CopyState,
  Log,
  SnapshotCopier,
  SourceSnapshots,
} from "../../functions/core/ports.js";
import { MemoryLedger } from "../../local/memory-ledger.js";
import { FakeClock, seeded } from "../support/harness.js";

/**
 * The plane's batched use cases on the in-memory ledger (which answers as the DynamoDB ledger:
 * test/integration/ledger-contract.test.ts) and fake EBS ports: what `replicate` and
 * `copy-completed` do with a batch, without the emulator.
 */
const SILENT: Log = { debug() {}, info() {}, warn() {}, error() {} };
const REGION = "us-east-1";

class FakeSources implements SourceSnapshots {
  readonly snapshots = new Map<string, SourceSnapshot>();
  /** How far back each listing looked (ms before the clock's now). */
  readonly lookBacks: number[] = [];
  constructor(private readonly clock: FakeClock) {}
  async describe(_region: string, ids: readonly string[]): Promise<SourceSnapshot[]> {
    return ids.flatMap((id) => this.snapshots.get(id) ?? []);
  }
  async listVelero(_region: string, since: Date): Promise<SourceSnapshot[]> {
    this.lookBacks.push(this.clock.now().getTime() - since.getTime());
    return [...this.snapshots.values()].filter((s) => s.startTime >= since.toISOString());
  }
}

class FakeCopier implements SnapshotCopier {
  readonly requests: CopyRequest[] = [];
  /** Codes to throw, one per call, before answering normally. */
  refusals: string[] = [];
  /** What a DescribeSnapshots by our source tag finds in the failover region. */
  found: CopyState[] = [];
  findCalls = 0;
  async copy(request: CopyRequest): Promise<string> {
    const code = this.refusals.shift();
    if (code) throw Object.assign(new Error(code), { name: code, $metadata: { httpStatusCode: 400 } });
    this.requests.push(request);
    return `snap-copy-${request.sourceSnapshotId}`;
  }
  async describeCopies(): Promise<CopyState[]> {
    return [];
  }
  async findCopiesOf(sourceSnapshotIds: readonly string[]): Promise<CopyState[]> {
    this.findCalls++;
    const wanted = new Set(sourceSnapshotIds);
    return this.found.filter((c) => c.sourceSnapshotId && wanted.has(c.sourceSnapshotId));
  }
  async deleteCopy(): Promise<boolean> {
    return false;
  }
  async listCopies(): Promise<CopyState[]> {
    return [];
  }
}

function world(budget: number) {
  const clock = new FakeClock();
  const ledger = new MemoryLedger();
  const sources = new FakeSources(clock);
  const copier = new FakeCopier();
  const config = loadConfig({
    LEDGER_TABLE: "t",
    SOURCE_REGIONS: REGION,
    FAILOVER_REGION: "us-west-2",
    COPY_BUDGET: String(budget),
  });
  const plane = new ReplicationPlane(
    { ledger, copier, sources, clock, log: SILENT, random: seeded(7) },
    config,
  );
  /** Velero's backup `backup` of `volumes` volumes, taken now; returns intake requests. */
  const backup = (backup: string, volumes: number) =>
    Array.from({ length: volumes }, (_, v) => {
      const id = `snap-${backup}-${v}`;
      sources.snapshots.set(id, {
        snapshotId: id,
        region: REGION,
        volumeId: `vol-${v}`,
        startTime: clock.now().toISOString(),
        state: "completed",
        encrypted: true,
        tags: { [VELERO_BACKUP_TAG]: backup, [VELERO_SCHEDULE_TAG]: "cbci-dr", [VELERO_PV_TAG]: `pv-${v}` },
      });
      return { key: id, snapshotId: id, region: REGION };
    });
  const copied = (sourceSnapshotId: string) => ({
    kind: "snapshot-copied" as const,
    snapshotId: `snap-copy-${sourceSnapshotId}`,
    region: "us-west-2",
    sourceSnapshotId,
    sourceRegion: REGION,
  });
  /** The copy of a source snapshot as the poller's DescribeSnapshots sees it. */
  const copyOf = (
    sourceSnapshotId: string,
    state: CopyState["state"],
    startTime = clock.now(),
  ): CopyState => ({
    copySnapshotId: `snap-copy-${sourceSnapshotId}`,
    sourceSnapshotId,
    state,
    startTime: startTime.toISOString(),
  });
  return { clock, ledger, copier, sources, plane, backup, copied, copyOf };
}

describe("replicate's batch (intake)", () => {
  it("with nothing waiting, starts copies up to the budget in the same write and records the rest", async () => {
    // arrange
    const w = world(3);
    // act
    const { outcomes, admit } = await w.plane.intake(w.backup("b1", 5));
    // assert
    expect([...outcomes.values()].every((o) => o.status === "recorded")).toBe(true);
    expect(admit?.admitted).toHaveLength(3);
    expect(w.copier.requests.map((r) => r.sourceSnapshotId)).toEqual(admit?.admitted);
    const open = await w.ledger.loadOpen();
    expect(open.inFlightCounter).toBe(3);
    expect(open.waitingCounter).toBe(2);
  });

  it("with a backlog, starts nothing new ahead of what waits; a redelivery is a duplicate", async () => {
    // arrange: b1 fills the budget and leaves two waiting
    const w = world(3);
    const b1 = w.backup("b1", 5);
    await w.plane.intake(b1);
    // act: b2's snapshots (other volumes' lineages are busy or waiting) and b1's first again
    const b2 = w.backup("b2", 2);
    const { outcomes, admit } = await w.plane.intake([...b2, b1[0] as (typeof b1)[number]]);
    // assert
    expect(outcomes.get(b1[0]?.key ?? "")?.status).toBe("duplicate");
    expect(admit?.admitted).toEqual([]);
    expect(w.copier.requests).toHaveLength(3);
    expect((await w.ledger.loadOpen()).waitingCounter).toBe(4);
  });

  it("never starts a newer snapshot of a volume ahead of an older one that backs off", async () => {
    // arrange: b1's two copies were throttled and back off; every slot is free
    const w = world(4);
    w.copier.refusals = ["RequestLimitExceeded"];
    await w.plane.intake(w.backup("b1", 2));
    expect((await w.ledger.loadOpen()).inFlightCounter).toBe(0);
    // act: b2 of the same two volumes arrives while b1 still backs off
    const { admit } = await w.plane.intake(w.backup("b2", 2));
    // assert: nothing copied (b2 would make b1's copies full copies, or skip them)
    expect(admit?.admitted).toEqual([]);
    expect(w.copier.requests).toEqual([]);
    // once b1's back-off is over, b1 goes first, oldest first per volume
    w.clock.advance(16 * 60_000);
    const later = await w.plane.admit();
    expect(later.admitted.sort()).toEqual(["snap-b1-0", "snap-b1-1"]);
  });

  it("on a throttle, releases that copy and the rest of the round to wait, backing off", async () => {
    // arrange
    const w = world(4);
    w.copier.refusals = ["RequestLimitExceeded"];
    // act: the first CopySnapshot is refused; the other three admitted copies are not tried
    const { admit } = await w.plane.intake(w.backup("b1", 4));
    // assert
    expect(admit?.throttled).toBe(1);
    expect(admit?.admitted).toEqual([]);
    const open = await w.ledger.loadOpen();
    expect(open.inFlightCounter).toBe(0);
    expect(open.open.every((r) => r.status === "waiting" && r.notBefore !== undefined)).toBe(true);
    expect(open.open.find((r) => r.throttles === 1)).toBeDefined();
  });
});

describe("copy-completed's batch (settleCopies, then admit)", () => {
  it("settles a batch in one go, ignores the repeat, and admits the next copies from the same read", async () => {
    // arrange: budget 2, four snapshots: two copying, two waiting
    const w = world(2);
    const reqs = w.backup("b1", 4);
    await w.plane.intake(reqs);
    const [first, second] = w.copier.requests.map((r) => r.sourceSnapshotId);
    // act
    const settled = await w.plane.settleCopies([
      w.copied(first ?? ""),
      w.copied(second ?? ""),
      w.copied(first ?? ""),
    ]);
    const admit = await w.plane.admit(settled.state);
    // assert
    expect(settled.outcomes.map((o) => o.status)).toEqual(["completed", "completed", "ignored"]);
    expect(settled.drained).toEqual([]); // two of b1's copies are still to come
    expect(admit.admitted).toHaveLength(2);
    expect((await w.ledger.get(first ?? ""))?.copySnapshotId).toBe(`snap-copy-${first}`);
  });

  it("settles an event whose record a lagging read of the open set does not show yet", async () => {
    // arrange: the open set was read before the copy's admission (the index lags the table)
    const w = world(2);
    const stale = await w.ledger.loadOpen();
    await w.plane.intake(w.backup("b1", 1));
    // act
    const settled = await w.plane.settleCopies([w.copied("snap-b1-0")], stale);
    // assert: the consistent batch read found it open, so it settled rather than being ignored
    expect(settled.outcomes[0]?.status).toBe("completed");
    expect((await w.ledger.get("snap-b1-0"))?.status).toBe("completed");
    expect(await w.ledger.counters()).toEqual({ inFlight: 0, waiting: 0 });
  });

  it("names a backup drained when its last open copy settles", async () => {
    // arrange
    const w = world(4);
    await w.plane.intake(w.backup("b1", 2));
    // act
    const one = await w.plane.settleCopies([w.copied("snap-b1-0")]);
    const two = await w.plane.settleCopies([w.copied("snap-b1-1")]);
    // assert
    expect(one.drained).toEqual([]);
    expect(two.drained).toEqual(["b1"]);
  });
});

describe("the sweep's discovery of snapshots whose event was lost", () => {
  it("looks back a day once an hour and two hours otherwise", async () => {
    // arrange: a snapshot whose createSnapshot event never came, taken 5 hours ago
    const w = world(4);
    w.clock.advance(-5 * 3_600_000);
    w.backup("old", 1);
    w.clock.advance(5 * 3_600_000);
    // act / assert: the first sweep looks back a day and finds it
    expect((await w.plane.sweep()).discovered).toBe(1);
    // another lost one, also started 5 hours ago, is not seen by the next sweeps of the hour...
    w.clock.advance(-5 * 3_600_000);
    w.backup("older", 1);
    w.clock.advance(5 * 3_600_000 + 5 * 60_000);
    expect((await w.plane.sweep()).discovered).toBe(0);
    // ...but by the first sweep an hour after the last full one
    w.clock.advance(55 * 60_000);
    expect((await w.plane.sweep()).discovered).toBe(1);
    const hours = w.sources.lookBacks.map((ms) => ms / 3_600_000);
    expect(hours).toEqual([24, 2, 24]);
  });
});

describe("the copy poller (poll): slots freed before the events arrive", () => {
  it("does nothing but read the counters while nothing waits", async () => {
    // arrange: 2 snapshots, budget 3: both copying, none waiting
    const w = world(3);
    await w.plane.intake(w.backup("b1", 2));
    w.copier.found = w.copier.requests.map((r) => w.copyOf(r.sourceSnapshotId, "completed"));
    // act
    const r = await w.plane.poll();
    // assert: a slot waiting for nobody is not worth a DescribeSnapshots
    expect(r).toEqual({ busy: false, settled: [], drained: [] });
    expect(w.copier.findCalls).toBe(0);
    expect((await w.ledger.counters()).inFlight).toBe(2);
  });

  it("settles finished copies, fills their slots, and the late events change nothing", async () => {
    // arrange: budget 2, 5 snapshots: 2 copying, 3 waiting; the first copy finished, the second not
    const w = world(2);
    await w.plane.intake(w.backup("b1", 5));
    const [first, second] = w.copier.requests.map((r) => r.sourceSnapshotId);
    w.copier.found = [w.copyOf(first ?? "", "completed"), w.copyOf(second ?? "", "pending")];
    // act
    const r = await w.plane.poll();
    // assert
    expect(r.busy).toBe(true);
    expect(r.settled.map((o) => o.status)).toEqual(["completed"]);
    expect(r.admit?.admitted).toEqual(["snap-b1-2"]);
    expect((await w.ledger.get(first ?? ""))?.status).toBe("completed");
    expect((await w.ledger.get(second ?? ""))?.status).toBe("copying");
    expect(await w.ledger.counters()).toEqual({ inFlight: 2, waiting: 2 });
    // the completion event arrives later: already settled, no slot freed twice
    const late = await w.plane.settleCopies([w.copied(first ?? "")]);
    expect(late.outcomes[0]?.status).toBe("ignored");
    expect(await w.ledger.counters()).toEqual({ inFlight: 2, waiting: 2 });
  });

  it("stays busy and changes nothing while every copy in flight is pending", async () => {
    // arrange
    const w = world(1);
    await w.plane.intake(w.backup("b1", 2));
    w.copier.found = w.copier.requests.map((r) => w.copyOf(r.sourceSnapshotId, "pending"));
    // act
    const r = await w.plane.poll();
    // assert
    expect(r).toEqual({ busy: true, settled: [], drained: [] });
    expect(w.copier.requests).toHaveLength(1);
    expect(await w.ledger.counters()).toEqual({ inFlight: 1, waiting: 1 });
  });

  it("retries a copy it finds in error, and names the backup drained when its last copy settles", async () => {
    // arrange: budget 1, b1 has 2 volumes: vol-0 copying, vol-1 waiting
    const w = world(1);
    await w.plane.intake(w.backup("b1", 2));
    w.copier.found = [{ ...w.copyOf("snap-b1-0", "error"), stateMessage: "Given key ID is not accessible" }];
    // act
    const failed = await w.plane.poll();
    // assert: released to wait (backing off), its slot taken by the other volume
    expect(failed.settled.map((o) => o.status)).toEqual(["retrying"]);
    expect(failed.admit?.admitted).toEqual(["snap-b1-1"]);
    const retry = await w.ledger.get("snap-b1-0");
    expect(retry?.status).toBe("waiting");
    expect(retry?.reason).toContain("Given key ID is not accessible");
    // arrange: the retried copy goes, then finishes; vol-1's finishes too
    w.clock.advance(20 * 60_000);
    w.copier.found = [w.copyOf("snap-b1-1", "completed")];
    const second = await w.plane.poll();
    expect(second.admit?.admitted).toEqual(["snap-b1-0"]);
    w.clock.advance(60_000);
    w.copier.found = [
      { ...w.copyOf("snap-b1-0", "error", new Date(w.clock.now().getTime() - 30 * 60_000)) },
      w.copyOf("snap-b1-0", "completed"),
      w.copyOf("snap-b1-1", "completed"),
    ];
    // nothing waits now: only copy-completed's events (or the sweep) settle the last copy
    expect((await w.plane.poll()).busy).toBe(false);
    const last = await w.plane.settleCopies([w.copied("snap-b1-0")]);
    expect(last.drained).toEqual(["b1"]);
  });
});

describe("attemptCopies: which found copy is a record's current attempt", () => {
  const admittedAt = "2026-11-27T12:10:00.000Z";
  const record = {
    sourceSnapshotId: "snap-1",
    sourceRegion: REGION,
    volumeId: "vol-1",
    backup: "b1",
    startTime: "2026-11-27T12:00:00.000Z",
    status: "copying" as const,
    tags: {},
    attempts: 1,
    admittedAt,
  };
  const copy = (id: string, state: CopyState["state"], startTime: string): CopyState => ({
    copySnapshotId: id,
    sourceSnapshotId: "snap-1",
    state,
    startTime,
  });

  it("never takes an earlier attempt's copy (started before the admission) for the current one", () => {
    // arrange: the first attempt's copy failed at 12:05; the retry's copy is not made yet
    const found = [copy("snap-old", "error", "2026-11-27T12:05:00.000Z")];
    // act
    const picked = attemptCopies([record], found);
    // assert
    expect(picked.has("snap-1")).toBe(false);
  });

  it("never takes a copy of a failed attempt, even one started within the clock skew allowance", () => {
    // arrange: the first attempt's copy failed within a second and was retried a second later
    const found = [copy("snap-old", "error", "2026-11-27T12:09:58.000Z")];
    // act
    const picked = attemptCopies([{ ...record, failedCopies: ["snap-old"] }], found);
    // assert
    expect(picked.has("snap-1")).toBe(false);
  });

  it("prefers the newest copy not in error, within the clock skew allowance", () => {
    // arrange
    const found = [
      copy("snap-old", "error", "2026-11-27T12:05:00.000Z"),
      copy("snap-a", "pending", "2026-11-27T12:09:58.000Z"),
      copy("snap-b", "error", "2026-11-27T12:10:03.000Z"),
    ];
    // act
    const picked = attemptCopies([record], found);
    // assert
    expect(picked.get("snap-1")?.copySnapshotId).toBe("snap-a");
  });

  it("takes only the copy whose id the ledger knows", () => {
    // arrange
    const found = [
      copy("snap-a", "completed", "2026-11-27T12:11:00.000Z"),
      copy("snap-b", "pending", "2026-11-27T12:10:01.000Z"),
    ];
    // act
    const picked = attemptCopies([{ ...record, copySnapshotId: "snap-b" }], found);
    // assert
    expect(picked.get("snap-1")?.copySnapshotId).toBe("snap-b");
  });
});
