import { describe, expect, it } from "vitest";
import { awsError } from "../../local/runtime.js";
import { copiesBySource, depth, FakeClock, makePlane, seeded, useMoto } from "../support/harness.js";

const moto = useMoto();

describe("copy quota and throttling", () => {
  it("20% of CopySnapshot calls refused with RequestLimitExceeded/ResourceLimitExceeded: every copy is still made, nothing reaches a DLQ", async () => {
    // arrange: the emulator never throttles, so the refusals are injected client-side, in the
    // EC2 client's initialize step: before the SDK's own retry, so each one reaches the scheduler.
    const random = seeded(42);
    let refused = 0;
    const clock = new FakeClock();
    const { plane, primary } = await makePlane(moto(), {
      copyDelayMs: 1,
      clock,
      random: seeded(7),
      config: { copyBudget: 8 },
      fault: (command) => {
        if (command !== "CopySnapshotCommand" || random() >= 0.2) return undefined;
        refused++;
        return refused % 2
          ? awsError("RequestLimitExceeded", "Request limit exceeded.", 503)
          : awsError(
              "ResourceLimitExceeded",
              "You have exceeded the number of concurrent snapshot copies.",
              400,
            );
      },
    });
    await primary.addControllers(40);
    const taken = await primary.takeBackup("adhoc-throttled");

    // act: events drive the plane; between sweeps time passes, so backed-off copies become due
    await plane.settle(() => clock.advance(16 * 60_000));

    // assert
    expect(refused).toBeGreaterThan(3);
    const copies = await copiesBySource(moto(), plane.rt.config.failoverRegion);
    for (const s of taken) expect(copies.get(s.snapshotId), s.snapshotId).toHaveLength(1);
    expect(copies.size).toBe(40);
    expect(await depth(plane, plane.resources.snapshotQueue.dlqUrl)).toBe(0);
    expect(await depth(plane, plane.resources.copyQueue.dlqUrl)).toBe(0);
    const records = await plane.rt.ledger.listBackup("adhoc-throttled");
    expect(records.filter((r) => r.status !== "completed")).toEqual([]);
    expect(records.reduce((n, r) => n + (r.throttles ?? 0), 0)).toBe(refused);
    expect(records.every((r) => r.attempts === 0)).toBe(true); // throttles never count as failures
  });
});
