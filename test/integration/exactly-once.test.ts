import { describe, expect, it } from "vitest";
import { asEvent } from "../../local/runtime.js";
import { copiesBySource, depth, makePlane, seeded, shuffle, useMoto } from "../support/harness.js";

const moto = useMoto();

const chunk = <T>(items: T[], size: number): T[][] =>
  Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, i * size + size));

describe("replicate: exactly one copy per source snapshot", () => {
  it("200 deliveries, 30% duplicates, shuffled, in 20 concurrent batches", async () => {
    // arrange: 140 snapshots of one ad-hoc backup (ad-hoc backups are never superseded)
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 2 });
    await primary.addControllers(140);
    const taken = await primary.takeBackup("adhoc-140", { emit: false });
    const random = seeded(2026);
    const unique = taken.map((s) => JSON.stringify(asEvent(primary.createdEvent(s), primary.region)));
    const duplicates = Array.from({ length: 60 }, () => unique[Math.floor(random() * unique.length)] ?? "");
    const deliveries = shuffle([...unique, ...duplicates], random);
    expect(deliveries).toHaveLength(200);

    // act: every batch in flight at once, then the copy events flow back through their queue
    const responses = await Promise.all(chunk(deliveries, 10).map((batch) => plane.invokeReplicate(batch)));
    await plane.settle();

    // assert
    expect(responses.flatMap((r) => r.batchItemFailures)).toEqual([]);
    const copies = await copiesBySource(moto(), plane.rt.config.failoverRegion);
    expect(copies.size).toBe(140);
    expect([...copies.values()].filter((ids) => ids.length !== 1)).toEqual([]);
    expect(new Set(copies.keys())).toEqual(new Set(taken.map((s) => s.snapshotId)));
    expect(plane.emitter.copies).toHaveLength(140);
    expect(plane.emitter.maxPending).toBeLessThanOrEqual(plane.rt.config.copyBudget);
    expect(await depth(plane, plane.resources.snapshotQueue.dlqUrl)).toBe(0);
    expect(await depth(plane, plane.resources.copyQueue.dlqUrl)).toBe(0);
  }, 240_000); // ~700 DynamoDB transactions; the emulator deep-copies the table for each one

  it("a redelivered event after its copy completed makes no second copy", async () => {
    // arrange
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1 });
    await primary.addControllers(3);
    const taken = await primary.takeBackup("adhoc-3");
    await plane.settle();
    expect(plane.emitter.copies).toHaveLength(3);

    // act: the same three events again, twice
    await primary.emitCreated(taken);
    await primary.emitCreated(taken);
    await plane.settle();

    // assert
    expect(plane.emitter.copies).toHaveLength(3);
    const copies = await copiesBySource(moto(), plane.rt.config.failoverRegion);
    for (const s of taken) expect(copies.get(s.snapshotId)).toHaveLength(1);
  });
});
