import { describe, expect, it } from "vitest";
import { S3VeleroBucket } from "../../functions/adapters/s3-velero.js";
import { veleroCodec } from "../../functions/app/velero-codec.js";
import type { BackupState } from "../../functions/core/backup.js";
import type { VeleroConfig } from "../../functions/core/config.js";
import { SimulatedVelero } from "../../local/velero.js";
import { makePlane, useMoto } from "../support/harness.js";

const moto = useMoto();

const VELERO: VeleroConfig = {
  bucket: "velero-dr-test",
  prefix: "",
  failoverBucket: "velero-dr-test-failover",
  failoverPrefix: "failover",
  zoneMap: { "us-east-1a": "us-west-2a" },
  allowedWarnings: 0,
  combinedIds: false,
};

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((x, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((p) => [x, ...p]),
  );
}

describe("backup registration converges whatever the order", () => {
  it("every order of the three reads of Velero's writes (JSON, snapshot list, final JSON) ends Completed with its snapshots", async () => {
    // arrange: the bucket as it is after each of Velero's three writes, read through the adapter
    const { plane, primary } = await makePlane(moto(), { config: { velero: VELERO } });
    const bucket = new S3VeleroBucket(plane.clients.s3, VELERO);
    const codec = veleroCodec(plane.rt.config);
    await primary.addControllers(3);
    const name = "cbci-dr-20261127120000";
    const snaps = await primary.takeBackup(name, { schedule: "cbci-dr", emit: false });
    const velero = new SimulatedVelero(plane.clients.s3, VELERO);
    const start = new Date("2026-11-27T12:00:00Z");
    const states: BackupState[] = [];
    const readNow = async () => {
      const files = await bucket.read(name);
      if (!files) throw new Error("velero-backup.json expected");
      states.push({ ...codec.toState(name, files), metadataModified: files.modified });
    };
    await velero.putJson(name, { name, schedule: "cbci-dr", phase: "InProgress", start, snapshots: 3 });
    await readNow();
    await velero.putSnapshotList(name, snaps, "us-east-1a");
    await readNow();
    await velero.putJson(name, {
      name,
      schedule: "cbci-dr",
      phase: "Completed",
      start,
      completion: new Date(start.getTime() + 90_000),
      snapshots: 3,
    });
    await readNow();
    expect(states.map((s) => [s.phase, s.expected?.length])).toEqual([
      ["InProgress", undefined],
      ["InProgress", 3],
      ["Completed", 3],
    ]);

    // two clocks: S3's one-second LastModified the same for all three reads, or one second apart
    const sameSecond = states.map((s) => ({ ...s, metadataModified: "2026-11-27T12:01:30.000Z" }));
    const apart = states.map((s, i) => ({
      ...s,
      metadataModified: `2026-11-27T12:01:3${i === 0 ? 0 : 1}.000Z`,
    }));
    for (const [label, variant] of [
      ["same second", sameSecond],
      ["apart", apart],
    ] as const) {
      for (const [i, order] of permutations([0, 1, 2]).entries()) {
        // act
        const backup = `${name}-${label.replace(" ", "")}-${i}`;
        for (const k of order) {
          const s = variant[k];
          if (s) await plane.rt.ledger.registerBackup({ ...s, name: backup });
        }

        // assert
        const stored = await plane.rt.ledger.getBackup(backup);
        expect(stored?.phase, `${label} ${order}`).toBe("Completed");
        expect(stored?.expected?.map((e) => e.sourceSnapshotId).sort(), `${label} ${order}`).toEqual(
          snaps.map((s) => s.snapshotId).sort(),
        );
      }
    }
  });

  it("through the real path: bucket events -> queue -> register, with the final rewrite", async () => {
    // arrange
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1, config: { velero: VELERO } });
    await primary.addControllers(2);
    const name = "cbci-dr-20261127121500";
    const snaps = await primary.takeBackup(name, { schedule: "cbci-dr", emit: false });
    const velero = new SimulatedVelero(plane.clients.s3, VELERO);

    // act: Velero's three writes, each raising an S3 event through EventBridge to the queue
    await velero.writeBackup({ name, schedule: "cbci-dr", start: new Date() }, snaps, "us-east-1a");
    await plane.drain();

    // assert: registered Completed, waiting for copies it has not seen (no snapshot event yet)
    const stored = await plane.rt.ledger.getBackup(name);
    expect(stored).toMatchObject({ phase: "Completed", verdict: "pending", expectedCount: 2, copied: 0 });
    expect(stored?.reason).toMatch(/0 of 2 snapshots copied/);
  });

  it("a PartiallyFailed backup is registered with its reason and never DR-ready", async () => {
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1, config: { velero: VELERO } });
    await primary.addControllers(1);
    const name = "cbci-dr-20261127123000";
    const snaps = await primary.takeBackup(name, { schedule: "cbci-dr" });
    const velero = new SimulatedVelero(plane.clients.s3, VELERO);
    await velero.writeBackup(
      { name, schedule: "cbci-dr", start: new Date(), phase: "PartiallyFailed" },
      snaps,
      "us-east-1a",
    );
    await plane.settle();
    const stored = await plane.rt.ledger.getBackup(name);
    expect(stored).toMatchObject({ verdict: "not-ready", reason: "Velero phase PartiallyFailed" });
    expect(stored?.drReadyAt).toBeUndefined();
  });
});
