import { beforeAll, describe, expect, it } from "vitest";
import { callsOf, type ModeResult, renderTable, runHandlerBench } from "../../bench/handlers.js";

/**
 * The copy path's AWS API budget, measured on the emulator (bench/handlers.ts, small): Velero-like
 * bursts of snapshots through the real replicate and copy-completed handlers and queues, with the
 * copy poller running beside them as deployed (time-scaled), racing their events for the same copies.
 */
describe("AWS API calls per source snapshot (20 controllers x 2 backups, bursts)", () => {
  let measured: ModeResult | undefined;
  const result = (): ModeResult => {
    if (!measured) throw new Error("the benchmark did not run");
    return measured;
  };

  beforeAll(async () => {
    [measured] = await runHandlerBench({ controllers: 20, backups: 2, modes: ["bursts"] });
  }, 180_000);

  it("counts every call: the middleware's counts equal the emulator's own request log", () => {
    const r = result();
    expect(r.sourceSnapshots).toBe(40);
    expect(r.mismatches).toEqual([]);
    expect(r.invocations.replicate?.count).toBeGreaterThan(0);
    expect(r.invocations["copy-completed"]?.count).toBeGreaterThan(0);
    expect(r.invocations.poll?.count).toBeGreaterThan(0);
    expect(r.calls.some((c) => c.fn === "poll" && c.operation === "DynamoDB GetItem")).toBe(true);
  });

  it("makes exactly one CopySnapshot per source snapshot, and the emulator holds one copy of each", () => {
    const r = result();
    expect(callsOf(r, "EC2 CopySnapshot")).toBe(r.sourceSnapshots);
    expect(r.copies).toBe(r.sourceSnapshots);
    expect(r.copiedSources).toBe(r.sourceSnapshots);
  });

  it("makes at most 3 calls per source snapshot on the copy path (backup evaluation excluded)", () => {
    // The message carries the per-operation table, to see where the calls go when this fails.
    expect(result().copyPathPerSnapshot, renderTable([result()])).toBeLessThanOrEqual(3);
  });
});
