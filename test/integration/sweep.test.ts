import { describe, expect, it } from "vitest";
import { copyTags } from "../../functions/core/plane.js";
import { awsError } from "../../local/runtime.js";
import { copiesBySource, FakeClock, makePlane, useMoto } from "../support/harness.js";

const moto = useMoto();

describe("reconciliation sweep (EBS events are best effort)", () => {
  it("settles copies that completed without an event and admits the next ones", async () => {
    // arrange
    const clock = new FakeClock();
    const { plane, primary } = await makePlane(moto(), {
      copyDelayMs: "held",
      clock,
      config: { copyBudget: 2 },
    });
    await primary.addControllers(3);
    await primary.takeBackup("adhoc-lost-events");
    await plane.drain();
    expect(plane.emitter.inFlight).toBe(2);

    // act: both copies complete in "AWS" but their events are lost
    await plane.emitter.release(2, { emit: false });
    const report = await plane.sweep();

    // assert
    expect(report.completedWithoutEvent).toBe(2);
    expect(report.admit.admitted).toHaveLength(1);
    const records = await plane.rt.ledger.listBackup("adhoc-lost-events");
    expect(records.filter((r) => r.status === "completed")).toHaveLength(2);
    expect(records.filter((r) => r.status === "copying")).toHaveLength(1);
  });

  it("flags copies pending longer than the configured limit, once", async () => {
    // arrange
    const clock = new FakeClock();
    const { plane, primary } = await makePlane(moto(), {
      copyDelayMs: "held",
      clock,
      config: { stuckAfterMinutes: 60 },
    });
    await primary.addControllers(2);
    await primary.takeBackup("adhoc-stuck");
    await plane.drain();

    // act
    clock.advance(30 * 60_000);
    const early = await plane.sweep();
    clock.advance(31 * 60_000);
    const late = await plane.sweep();

    // assert
    expect(early.stuck).toEqual([]);
    expect(late.stuck).toHaveLength(2);
    const records = await plane.rt.ledger.listBackup("adhoc-stuck");
    expect(records.every((r) => r.status === "copying" && r.stuck === true)).toBe(true);
    // still pending, not abandoned: they complete normally later
    await plane.emitter.release();
    await plane.drain();
    expect((await plane.rt.ledger.listBackup("adhoc-stuck")).every((r) => r.status === "completed")).toBe(
      true,
    );
  });

  it("recovers an admission whose invocation died before or after CopySnapshot, with no second copy", async () => {
    // arrange: two snapshots recorded but never admitted by events (delivered with no admit)
    const clock = new FakeClock();
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1, clock });
    await primary.addControllers(2);
    const [a, b] = await primary.takeBackup("adhoc-crash", { emit: false });
    if (!a || !b) throw new Error("two snapshots expected");
    await plane.rt.plane.ingest([
      { key: "a", snapshotId: a.snapshotId, region: primary.region },
      { key: "b", snapshotId: b.snapshotId, region: primary.region },
    ]);
    const ledger = plane.rt.ledger;
    const recA = await ledger.get(a.snapshotId);
    const recB = await ledger.get(b.snapshotId);
    if (!recA || !recB) throw new Error("records expected");
    // A: admitted, then the invocation died before calling CopySnapshot; B: admitted and copied,
    // then the copy's completion event was lost (the ledger learns copy ids from those events)
    const { admitted } = await ledger.admitMany([recA, recB], 16, undefined, clock.now());
    expect(admitted.map((x) => x.record.sourceSnapshotId)).toEqual([a.snapshotId, b.snapshotId]);
    const copyOfB = await plane.rt.copier.copy({
      sourceSnapshotId: b.snapshotId,
      sourceRegion: primary.region,
      volumeId: b.volumeId,
      tags: copyTags({
        snapshotId: b.snapshotId,
        region: primary.region,
        volumeId: b.volumeId,
        tags: recB.tags,
      }),
      description: "copy made by an invocation that then died",
    });
    expect((await plane.rt.plane.admit()).admitted).toEqual([]); // both look busy: nothing to admit

    // act: a sweep within the lease, then one after it
    const within = await plane.sweep();
    clock.advance(6 * 60_000);
    const after = await plane.sweep();
    await plane.settle();

    // assert
    // B: its copy is found by our source tag at once, not made twice
    expect(within.recoveredCopyIds).toBe(1);
    // A: no copy exists; within the lease its invocation may still be about to make it, after
    // the lease it is copied again
    expect(within.requeued).toBe(0);
    expect(after.requeued).toBe(1);
    expect(after.recoveredCopyIds).toBe(0);
    const copies = await copiesBySource(moto(), plane.rt.config.failoverRegion);
    expect(copies.get(a.snapshotId)).toHaveLength(1);
    expect(copies.get(b.snapshotId)).toEqual([copyOfB]);
    expect((await ledger.get(a.snapshotId))?.status).toBe("completed");
    expect((await ledger.get(b.snapshotId))?.status).toBe("completed");
  });

  it("retries a failed copy a bounded number of times, recording why, then gives up", async () => {
    // arrange
    const clock = new FakeClock();
    const { plane, primary } = await makePlane(moto(), {
      copyDelayMs: "held",
      clock,
      config: { maxCopyAttempts: 3 },
    });
    await primary.addControllers(1);
    const [snap] = await primary.takeBackup("adhoc-failing");
    await plane.drain();

    // act: every copy attempt fails asynchronously (as with an unusable KMS key)
    for (let attempt = 1; attempt <= 3; attempt++) {
      expect(plane.emitter.held).toHaveLength(1);
      await plane.emitter.release(1, { result: "failed" });
      await plane.drain();
      clock.advance(16 * 60_000);
      await plane.sweep();
      await plane.drain();
    }

    // assert
    const record = await plane.rt.ledger.get(snap?.snapshotId ?? "");
    expect(record?.status).toBe("failed");
    expect(record?.attempts).toBe(3);
    expect(record?.reason).toMatch(
      /failed: Snapshot copy failed \(simulated\) \(attempt 3 of 3, giving up\)/,
    );
    expect(plane.emitter.copies).toHaveLength(3);
    expect(plane.emitter.held).toHaveLength(0);
    expect((await plane.rt.ledger.loadOpen()).inFlightCounter).toBe(0);
  });

  it("counts a refused CopySnapshot (source gone) against the attempts, then gives up with AWS's reason", async () => {
    // arrange: every CopySnapshot of this snapshot is refused as if it had been deleted meanwhile
    const clock = new FakeClock();
    let refusals = 0;
    const { plane, primary } = await makePlane(moto(), {
      copyDelayMs: 1,
      clock,
      config: { maxCopyAttempts: 3 },
      fault: (command) => {
        if (command !== "CopySnapshotCommand") return undefined;
        refusals++;
        return awsError("InvalidSnapshot.NotFound", "The snapshot does not exist.", 400);
      },
    });
    await primary.addControllers(1);
    const [snap] = await primary.takeBackup("adhoc-gone");

    // act
    await plane.settle(() => clock.advance(16 * 60_000));

    // assert
    expect(refusals).toBe(3);
    const record = await plane.rt.ledger.get(snap?.snapshotId ?? "");
    expect(record).toMatchObject({ status: "failed", attempts: 3 });
    expect(record?.reason).toMatch(/InvalidSnapshot\.NotFound.*attempt 3 of 3, giving up/);
    expect((await plane.rt.ledger.loadOpen()).inFlightCounter).toBe(0);
  });

  it("finds Velero snapshots whose createSnapshot event was lost, and copies them", async () => {
    // arrange: a backup of four volumes, but only two events ever arrive
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1 });
    await primary.addControllers(4);
    const taken = await primary.takeBackup("adhoc-lost-created", { emit: false });
    await primary.emitCreated(taken.slice(0, 2));
    await plane.drain();
    expect(plane.emitter.copies).toHaveLength(2);

    // act
    const report = await plane.sweep();
    await plane.settle();
    const again = await plane.sweep();

    // assert
    expect(report.discovered).toBe(2);
    expect(again.discovered).toBe(0);
    const records = await plane.rt.ledger.listBackup("adhoc-lost-created");
    expect(records.map((r) => r.status)).toEqual(["completed", "completed", "completed", "completed"]);
    const copies = await copiesBySource(moto(), plane.rt.config.failoverRegion);
    for (const s of taken) expect(copies.get(s.snapshotId)).toHaveLength(1);
  });
});
