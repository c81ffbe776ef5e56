import { describe, expect, it } from "vitest";
import type { TakenSnapshot } from "../../local/primary.js";
import { makePlane, useMoto } from "../support/harness.js";

const moto = useMoto();

describe("saturation: backups arrive faster than copies finish", () => {
  it("skips whole backups, completes the newest reachable one, and never overlaps copies of one volume", async () => {
    // arrange: budget 2, 10 volumes, a scheduled backup arriving after every 4 copy completions
    // (a backup needs 10), copies held pending until the test completes them
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: "held", config: { copyBudget: 2 } });
    await primary.addControllers(10);
    const backups: string[] = [];
    const snapshots: TakenSnapshot[] = [];
    const take = async () => {
      const name = `cbci-dr-2026112712${String(backups.length).padStart(2, "0")}00`;
      backups.push(name);
      snapshots.push(...(await primary.takeBackup(name, { schedule: "cbci-dr" })));
      await plane.drain();
    };

    // act
    await take();
    for (let i = 0; i < 7; i++) {
      for (let j = 0; j < 2; j++) {
        await plane.emitter.release(2);
        await plane.drain();
        expect(plane.emitter.inFlight).toBeLessThanOrEqual(2);
      }
      await take();
    }
    while (plane.emitter.held.length > 0) {
      await plane.emitter.release(2);
      await plane.drain();
      expect(plane.emitter.inFlight).toBeLessThanOrEqual(2);
    }
    await plane.settle();

    // assert: never more than the budget pending in "AWS"
    expect(plane.emitter.maxPending).toBe(2);

    // every backup is all-or-nothing: 10 completed copies, or none and all 10 superseded
    const verdicts = new Map<string, string>();
    for (const b of backups) {
      const records = await plane.rt.ledger.listBackup(b);
      const completed = records.filter((r) => r.status === "completed").length;
      const superseded = records.filter((r) => r.status === "superseded").length;
      expect(records, b).toHaveLength(10);
      expect([completed, superseded], b).toSatisfy(
        ([c, s]: number[]) => (c === 10 && s === 0) || (c === 0 && s === 10),
      );
      verdicts.set(b, completed === 10 ? "completed" : "superseded");
    }
    const completedBackups = backups.filter((b) => verdicts.get(b) === "completed");
    expect(completedBackups.length).toBeGreaterThanOrEqual(2);
    expect(completedBackups.length).toBeLessThan(backups.length); // saturation did skip some
    expect(verdicts.get(backups.at(-1) ?? "")).toBe("completed"); // the newest is the one completed
    expect(verdicts.get(backups[0] ?? "")).toBe("completed"); // the one being copied was finished

    // copies of one volume never overlap: each starts after the previous one of its volume ended
    const volumeOf = new Map(snapshots.map((s) => [s.snapshotId, s.volumeId]));
    const byVolume = new Map<string, { start: number; end: number }[]>();
    for (const c of plane.emitter.copies) {
      const v = volumeOf.get(c.sourceSnapshotId) ?? "?";
      byVolume.set(v, [
        ...(byVolume.get(v) ?? []),
        { start: c.startSeq, end: c.endSeq ?? Number.POSITIVE_INFINITY },
      ]);
    }
    for (const [volume, copies] of byVolume) {
      copies.sort((a, b) => a.start - b.start);
      for (let i = 1; i < copies.length; i++) {
        expect(copies[i]?.start, volume).toBeGreaterThan(copies[i - 1]?.end ?? 0);
      }
    }
  });
});
