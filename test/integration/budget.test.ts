import { describe, expect, it } from "vitest";
import { copiesBySource, makePlane, useMoto } from "../support/harness.js";

const moto = useMoto();

describe("copy budget", () => {
  it("never has more copies in flight than the budget, and a freed slot admits the next copy without the sweep", async () => {
    // arrange: the emulator completes copies at once, so copies are held pending client-side
    // (DescribeSnapshots shows them pending; no event until the test releases them)
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: "held", config: { copyBudget: 4 } });
    await primary.addControllers(12);
    await primary.takeBackup("adhoc-budget");

    // act: all twelve events are delivered and handled
    await plane.drain();

    // assert: four copies pending, eight waiting
    expect(plane.emitter.inFlight).toBe(4);
    let state = await plane.rt.ledger.loadOpen();
    expect(state.open.filter((r) => r.status === "copying")).toHaveLength(4);
    expect(state.open.filter((r) => r.status === "waiting")).toHaveLength(8);
    expect(state.inFlightCounter).toBe(4);

    // a sweep while they are pending changes nothing: the budget is full and the copies pending
    const swept = await plane.sweep();
    expect(swept.admit.admitted).toEqual([]);
    expect(swept.completedWithoutEvent).toBe(0);

    // act: one copy completes; its event alone (no sweep) admits exactly one more
    const [done] = await plane.emitter.release(1);
    await plane.drain();

    // assert
    expect(plane.emitter.copies).toHaveLength(5);
    expect(plane.emitter.inFlight).toBe(4);
    state = await plane.rt.ledger.loadOpen();
    expect(state.open.filter((r) => r.status === "copying")).toHaveLength(4);
    expect(state.open.some((r) => r.sourceSnapshotId === done?.sourceSnapshotId)).toBe(false);
    expect((await plane.rt.ledger.get(done?.sourceSnapshotId ?? ""))?.status).toBe("completed");

    // act: the rest complete two at a time, each release admitting the next through events only
    while (plane.emitter.held.length > 0) {
      await plane.emitter.release(2);
      await plane.drain();
    }

    // assert
    expect(plane.emitter.copies).toHaveLength(12);
    expect(plane.emitter.maxPending).toBe(4);
    const copies = await copiesBySource(moto(), plane.rt.config.failoverRegion);
    expect([...copies.values()].every((ids) => ids.length === 1)).toBe(true);
    expect((await plane.rt.ledger.loadOpen()).inFlightCounter).toBe(0);
  });
});
