import { gunzipSync } from "node:zlib";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import type { VeleroConfig } from "../../functions/core/config.js";
import { listTarEntries, tarEntryData } from "../../functions/core/velero-rewrite.js";
import type { Controller } from "../../local/primary.js";
import type { LocalPlane } from "../../local/runtime.js";
import { repositoryVolumes, SimulatedVelero, snapshotVolumes } from "../../local/velero.js";
import { backupFiles } from "../../local/velero-files.js";
import { copiesBySource, makePlane, useMoto } from "../support/harness.js";

/**
 * Backups whose volumes are not all native snapshots (issue 11, points 1 and 4), on the emulator
 * through the real path: Velero's writes -> bucket events -> register -> the verdict. Velero 1.13+
 * names every volume in `<backup>-volumeinfo.json.gz`; CSI snapshots have no record in the
 * snapshot list, file-system backups and the data mover's uploads no EBS snapshot at all.
 */

const moto = useMoto();

const VELERO: VeleroConfig = {
  bucket: "velero-dr-volumes-test",
  prefix: "",
  failoverBucket: "velero-dr-volumes-test-failover",
  failoverPrefix: "failover",
  zoneMap: { "us-east-1a": "us-west-2b" },
  allowedWarnings: 0,
  combinedIds: false,
};

async function failoverObjects(plane: LocalPlane, backup: string): Promise<string[]> {
  const out = await plane.clients.s3.send(
    new ListObjectsV2Command({
      Bucket: VELERO.failoverBucket,
      Prefix: `${VELERO.failoverPrefix}/backups/${backup}/`,
    }),
  );
  return (out.Contents ?? []).map((o) => o.Key ?? "");
}

const start = () => new Date(Date.now() - 5 * 60_000);

/** Two controllers whose volumes Velero snapshotted through CSI, and the backup's files written. */
async function csiOnlyBackup(name: string, copyDelayMs: number | "held") {
  const { plane, primary } = await makePlane(moto(), { copyDelayMs, config: { velero: VELERO } });
  await primary.addControllers(2);
  const snaps = await primary.takeCsiSnapshots(name, primary.controllers);
  await new SimulatedVelero(plane.clients.s3, VELERO).writeBackup(
    {
      name,
      schedule: "cbci-dr",
      start: start(),
      controllers: primary.controllers,
      methods: snaps.map(() => "csi"),
    },
    snaps,
    "us-east-1a",
  );
  return { plane, snaps };
}

describe("DR-ready: volumes Velero backed up other than by native snapshots", () => {
  it("a Completed backup whose volumes are all CSI snapshots: each copied once, tagged with the backup and PV; then DR-ready, its metadata naming the copies in every CSI handle", async () => {
    // arrange
    const name = "cbci-dr-20261127140000";

    // act: Velero records them in volumeinfo and the status's CSI counts, none in the snapshot list
    const { plane, snaps } = await csiOnlyBackup(name, 1);
    await plane.settle();

    // assert: registration found the CSI snapshots in the backup's volumeinfo (they carry no Velero
    // tag) and copied each exactly once, tagged with the backup and its PV
    const copies = await copiesBySource(moto(), "us-west-2");
    expect(snaps.map((s) => copies.get(s.snapshotId)?.length)).toEqual(snaps.map(() => 1));
    const records = await plane.rt.ledger.getSnapshots(snaps.map((s) => s.snapshotId));
    for (const s of snaps) {
      expect(records.get(s.snapshotId)).toMatchObject({
        status: "completed",
        backup: name,
        schedule: "cbci-dr",
        tags: expect.objectContaining({ "velero.io/backup": name, "velero.io/pv": s.pvName }),
      });
    }
    const copyOf = new Map(
      snaps.map((s) => [s.snapshotId, records.get(s.snapshotId)?.copySnapshotId ?? "?"]),
    );
    // then the backup is DR-ready: every CSI volume copied, the counts agreeing
    const stored = await plane.rt.ledger.getBackup(name);
    expect(stored).toMatchObject({
      phase: "Completed",
      verdict: "dr-ready",
      copied: 2,
      expectedCount: 2,
      expected: [],
      volumeSnapshotsAttempted: 0,
      csiVolumeSnapshotsAttempted: 2,
      csiVolumeSnapshotsCompleted: 2,
    });
    expect(stored?.volumes?.map((v) => [v.method, v.pvName, v.snapshotHandle])).toEqual(
      snaps.map((s) => ["csi", s.pvName, s.snapshotId]),
    );
    // and its failover metadata names the copies wherever a restore reads a CSI handle
    const published = await failoverObjects(plane, name);
    const read = async (file: string) => {
      const o = await plane.clients.s3.send(
        new GetObjectCommand({ Bucket: VELERO.failoverBucket, Key: `failover/backups/${name}/${file}` }),
      );
      return Buffer.from((await o.Body?.transformToByteArray()) ?? new Uint8Array());
    };
    expect(published).toContain(`failover/backups/${name}/${name}-volumeinfo.json.gz`);
    const info = JSON.parse(gunzipSync(await read(`${name}-volumeinfo.json.gz`)).toString("utf8")) as Array<{
      pvName?: string;
      csiSnapshotInfo?: { snapshotHandle?: string };
    }>;
    for (const s of snaps) {
      expect(info.find((e) => e.pvName === s.pvName)?.csiSnapshotInfo?.snapshotHandle).toBe(
        copyOf.get(s.snapshotId),
      );
    }
    const contents = gunzipSync(await read(`${name}-csi-volumesnapshotcontents.json.gz`)).toString("utf8");
    const tar = gunzipSync(await read(`${name}.tar.gz`));
    const vscs = listTarEntries(tar).filter((e) => e.name.includes("volumesnapshotcontents"));
    expect(vscs.length).toBeGreaterThanOrEqual(snaps.length);
    for (const s of snaps) {
      expect(contents).not.toContain(s.snapshotId);
      expect(contents).toContain(copyOf.get(s.snapshotId));
      for (const e of vscs)
        expect(Buffer.from(tarEntryData(tar, e)).toString("utf8")).not.toContain(s.snapshotId);
    }
  });

  it("a CSI-only backup is pending while its copies are in flight, and DR-ready once they complete", async () => {
    // arrange: copies stay pending until released (the emulator completes them at once)
    const name = "cbci-dr-20261127143000";
    const { plane, snaps } = await csiOnlyBackup(name, "held");

    // act 1: registration finds and starts the copies
    await plane.drain();

    // assert 1: not ready, nothing published, while its copies are pending
    expect(plane.emitter.held.map((c) => c.sourceSnapshotId).sort()).toEqual(
      snaps.map((s) => s.snapshotId).sort(),
    );
    expect(await plane.rt.ledger.getBackup(name)).toMatchObject({
      verdict: "pending",
      copied: 0,
      expectedCount: 2,
    });
    expect(await failoverObjects(plane, name)).toEqual([]);

    // act 2: the copies complete
    await plane.emitter.release();
    await plane.drain();

    // assert 2
    expect(await plane.rt.ledger.getBackup(name)).toMatchObject({
      verdict: "dr-ready",
      copied: 2,
      expectedCount: 2,
    });
    expect((await failoverObjects(plane, name)).length).toBeGreaterThan(0);
  });

  it("a backup with file-system and data-mover volumes is not DR-ready, with the reason, although its native snapshots are copied", async () => {
    // arrange: four controllers; two natively snapshotted, one by file-system backup, one by the data mover
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1, config: { velero: VELERO } });
    await primary.addControllers(4);
    const [a, b, fs, moved] = primary.controllers as [Controller, Controller, Controller, Controller];
    const name = "cbci-dr-20261127141500";
    const snaps = await primary.takeBackup(name, { schedule: "cbci-dr", controllers: [a, b] });

    // act
    await new SimulatedVelero(plane.clients.s3, VELERO).writeBackup(
      {
        name,
        schedule: "cbci-dr",
        start: start(),
        controllers: primary.controllers,
        repository: [
          { controller: fs, method: "fs-backup" },
          { controller: moved, method: "data-mover" },
        ],
      },
      snaps,
      "us-east-1a",
    );
    await plane.settle();

    // assert: the native snapshots were copied, and still the backup is not DR-ready
    const stored = await plane.rt.ledger.getBackup(name);
    expect(stored).toMatchObject({
      verdict: "not-ready",
      copied: 2,
      expectedCount: 2,
      volumeSnapshotsAttempted: 2,
      volumeSnapshotsCompleted: 2,
      csiVolumeSnapshotsAttempted: 0,
    });
    expect(stored?.reason).toBe(
      `pv ${fs.pvName} was backed up by file-system backup (PodVolumeBackup) into Velero's backup ` +
        "repository, which this pipeline does not replicate (DR_BACKUP_REPOSITORY_REPLICATED=true says you " +
        `replicate it yourself); pv ${moved.pvName} was backed up by the data mover (DataUpload) into ` +
        "Velero's backup repository, which this pipeline does not replicate (DR_BACKUP_REPOSITORY_REPLICATED=true " +
        "says you replicate it yourself)",
    );
    expect(stored?.drReadyAt).toBeUndefined();
    expect(await failoverObjects(plane, name)).toEqual([]);
  });

  it("with BACKUP_REPOSITORY_REPLICATED on, the same backup is DR-ready once its native snapshots are copied, and is published", async () => {
    // arrange
    const velero = { ...VELERO, backupRepositoryReplicated: true };
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1, config: { velero } });
    await primary.addControllers(3);
    const [a, b, fs] = primary.controllers as [Controller, Controller, Controller];
    const name = "cbci-dr-20261127143000";
    const snaps = await primary.takeBackup(name, { schedule: "cbci-dr", controllers: [a, b] });

    // act
    await new SimulatedVelero(plane.clients.s3, velero).writeBackup(
      {
        name,
        schedule: "cbci-dr",
        start: start(),
        controllers: primary.controllers,
        repository: [{ controller: fs, method: "fs-backup" }],
      },
      snaps,
      "us-east-1a",
    );
    await plane.settle();

    // assert
    const stored = await plane.rt.ledger.getBackup(name);
    expect(stored).toMatchObject({
      verdict: "dr-ready",
      copied: 2,
      expectedCount: 2,
      failoverPrefix: `failover/backups/${name}/`,
      reason:
        "all 2 snapshots copied; 1 volume(s) in the backup repository, replicated by you " +
        `(DR_BACKUP_REPOSITORY_REPLICATED): pv ${fs.pvName} by file-system backup (PodVolumeBackup)`,
    });
    expect(stored?.drReadyAt).toBeDefined();
    expect(await failoverObjects(plane, name)).toContain(`failover/backups/${name}/velero-backup.json`);
  });

  it.each([
    ["volumeinfo before the snapshot list", ["volumeinfo", "volumesnapshots"]],
    ["the snapshot list before volumeinfo", ["volumesnapshots", "volumeinfo"]],
  ])(
    "Velero's own write order (velero-backup.json Completed first, the rest after the tarball): %s ends not DR-ready",
    async (_, order) => {
      // arrange: a synchronous backup (no plugin operations), one native snapshot and one file-system
      // backup: Velero's PutBackup writes the log, velero-backup.json already Completed, the tarball,
      // then the snapshot list, volumeinfo and the rest in Go's map order
      const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1, config: { velero: VELERO } });
      await primary.addControllers(2);
      const [a, fs] = primary.controllers as [Controller, Controller];
      const name = `cbci-dr-2026112715${order[0] === "volumeinfo" ? "00" : "15"}00`;
      const snaps = await primary.takeBackup(name, { schedule: "cbci-dr", controllers: [a] });
      const files = backupFiles({
        name,
        schedule: "cbci-dr",
        phase: "Completed",
        start: start(),
        completion: new Date(),
        region: "us-east-1",
        pvs: [
          ...snapshotVolumes(snaps, "us-east-1a", { controllers: primary.controllers }),
          ...repositoryVolumes(name, [{ controller: fs, method: "fs-backup" }], "us-east-1a"),
        ],
      });
      const velero = new SimulatedVelero(plane.clients.s3, VELERO);
      const put = async (file: string) => velero.put(name, file, files[file] ?? "");

      // act: each write, then whatever its event triggers (copies complete meanwhile)
      const verdicts: (string | undefined)[] = [];
      for (const file of [
        `${name}-logs.gz`,
        "velero-backup.json",
        `${name}.tar.gz`,
        ...order.map((f) => `${name}-${f}.json.gz`),
      ]) {
        await put(file);
        await plane.settle();
        verdicts.push((await plane.rt.ledger.getBackup(name))?.verdict);
      }

      // assert: never judged before the snapshot list was read; not DR-ready once volumeinfo was
      expect(verdicts.slice(1, 3)).toEqual(["pending", "pending"]);
      const stored = await plane.rt.ledger.getBackup(name);
      expect(stored?.verdict).toBe("not-ready");
      expect(stored?.reason).toMatch(new RegExp(`^pv ${fs.pvName} was backed up by file-system backup`));
      if (order[0] === "volumeinfo") {
        // both files there before the list's event: judged once, with both
        expect(verdicts.at(-1)).toBe("not-ready");
        expect(stored?.drReadyAt).toBeUndefined();
      } else {
        // judged on the list alone (its copy done): DR-ready, then withdrawn on volumeinfo's event
        expect(verdicts.at(-2)).toBe("dr-ready");
        expect(stored?.drReadyAt).toBeDefined();
      }
    },
  );

  it("a backup mixing a native and a CSI volume is DR-ready once both are copied", async () => {
    // arrange: one native snapshot, one CSI snapshot
    const velero = { ...VELERO, backupRepositoryReplicated: true };
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1, config: { velero } });
    await primary.addControllers(2);
    const [a, c] = primary.controllers as [Controller, Controller];
    const name = "cbci-dr-20261127144500";
    const native = await primary.takeBackup(name, { schedule: "cbci-dr", controllers: [a] });
    const csi = await primary.takeCsiSnapshots(name, [c]);

    // act
    await new SimulatedVelero(plane.clients.s3, velero).writeBackup(
      {
        name,
        schedule: "cbci-dr",
        start: start(),
        controllers: primary.controllers,
        methods: ["native", "csi"],
      },
      [...native, ...csi],
      "us-east-1a",
    );
    await plane.settle();

    // assert
    const stored = await plane.rt.ledger.getBackup(name);
    expect(stored).toMatchObject({ verdict: "dr-ready", copied: 2, expectedCount: 2 });
    expect(c.pvName).toBeDefined();
  });
});
