import { gunzipSync } from "node:zlib";
import { DescribeSnapshotsCommand, EC2Client } from "@aws-sdk/client-ec2";
import { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { PurgeQueueCommand } from "@aws-sdk/client-sqs";
import { describe, expect, it } from "vitest";
import type { VeleroConfig } from "../../functions/core/config.js";
import { gunzipJson, parseVolumeSnapshots } from "../../functions/core/velero.js";
import { listTarEntries, tarEntryData } from "../../functions/core/velero-rewrite.js";
import type { LocalPlane } from "../../local/runtime.js";
import { LOCAL_CREDENTIALS } from "../../local/runtime.js";
import { SimulatedVelero } from "../../local/velero.js";
import { makePlane, useMoto } from "../support/harness.js";

const moto = useMoto();

const VELERO: VeleroConfig = {
  bucket: "velero-dr-ready-test",
  prefix: "",
  failoverBucket: "velero-dr-ready-test-failover",
  failoverPrefix: "failover",
  zoneMap: { "us-east-1a": "us-west-2b" },
  allowedWarnings: 0,
  combinedIds: false,
};

/** The failover metadata has its own bucket here (the primary's location has no prefix). */
const bucketOf = (key: string) => (key.startsWith("failover/") ? VELERO.failoverBucket : VELERO.bucket);

async function object(plane: LocalPlane, key: string): Promise<Uint8Array | undefined> {
  try {
    const o = await plane.clients.s3.send(new GetObjectCommand({ Bucket: bucketOf(key), Key: key }));
    return await o.Body?.transformToByteArray();
  } catch {
    return undefined;
  }
}

async function keys(plane: LocalPlane, prefix: string): Promise<string[]> {
  const out = await plane.clients.s3.send(
    new ListObjectsV2Command({ Bucket: bucketOf(prefix), Prefix: prefix }),
  );
  return (out.Contents ?? []).map((c) => c.Key ?? "");
}

/** A backup of every controller, replicated and registered. */
async function backup(
  plane: LocalPlane,
  primary: Awaited<ReturnType<typeof makePlane>>["primary"],
  name: string,
  start: Date,
) {
  const snaps = await primary.takeBackup(name, { schedule: "cbci-dr" });
  await new SimulatedVelero(plane.clients.s3, VELERO).writeBackup(
    { name, schedule: "cbci-dr", start, controllers: primary.controllers },
    snaps,
    "us-east-1a",
  );
  await plane.settle();
  return snaps;
}

describe("DR-ready backups and their failover metadata", () => {
  it("publishes metadata stock Velero restores in the failover region: every PV resolves to a completed copy of its own PV, in a failover zone", async () => {
    // arrange
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1, config: { velero: VELERO } });
    await primary.addControllers(3);
    const name = "cbci-dr-20261127120000";

    // act
    await backup(plane, primary, name, new Date(Date.now() - 60_000));

    // assert: the verdict
    const stored = await plane.rt.ledger.getBackup(name);
    expect(stored).toMatchObject({
      verdict: "dr-ready",
      copied: 3,
      expectedCount: 3,
      failoverPrefix: `failover/backups/${name}/`,
    });
    // the failover copy has every file of the backup, velero-backup.json included
    const source = (await keys(plane, `backups/${name}/`)).map((k) => k.split("/").at(-1)).sort();
    const failover = (await keys(plane, `failover/backups/${name}/`)).map((k) => k.split("/").at(-1)).sort();
    expect(failover).toEqual(source);
    expect(failover).toContain("velero-backup.json");
    // read it the way Velero's restore does: the first record per PV; its id and zone
    const bytes = await object(plane, `failover/backups/${name}/${name}-volumesnapshots.json.gz`);
    const records = parseVolumeSnapshots(gunzipJson(bytes ?? new Uint8Array(), "volumesnapshots"));
    expect(records).toHaveLength(3);
    const ec2 = new EC2Client({
      endpoint: moto().endpoint,
      region: "us-west-2",
      credentials: LOCAL_CREDENTIALS,
    });
    for (const r of records) {
      expect(r.volumeAZ).toBe("us-west-2b");
      const out = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [r.providerSnapshotID ?? ""] }));
      const copy = out.Snapshots?.[0];
      expect(copy?.State).toBe("completed");
      expect(copy?.Tags?.find((t) => t.Key === "velero.io/pv")?.Value).toBe(r.persistentVolumeName);
    }
    // the PV objects in the tarball now land in the failover zone
    const tar = gunzipSync(
      (await object(plane, `failover/backups/${name}/${name}.tar.gz`)) ?? new Uint8Array(),
    );
    const pvs = listTarEntries(tar).filter((e) =>
      /^resources\/persistentvolumes\/cluster\/.*\.json$/.test(e.name),
    );
    expect(pvs).toHaveLength(3);
    for (const e of pvs) {
      const pv = JSON.parse(Buffer.from(tarEntryData(tar, e)).toString("utf8"));
      expect(JSON.stringify(pv)).not.toMatch(/us-east-1/);
      expect(JSON.stringify(pv.spec.nodeAffinity)).toMatch(/us-west-2b/);
    }
  });

  it("a backup whose last copies complete in concurrent invocations becomes DR-ready at once, without the sweep", async () => {
    // arrange: two copies held pending; copy events one per invocation, two invocations at a time
    const { plane, primary } = await makePlane(moto(), {
      copyDelayMs: "held",
      batchSize: 1,
      concurrency: 2,
      config: { velero: VELERO },
    });
    await primary.addControllers(2);
    const name = "cbci-dr-20261127130000";
    const snaps = await primary.takeBackup(name, { schedule: "cbci-dr" });
    await new SimulatedVelero(plane.clients.s3, VELERO).writeBackup(
      { name, schedule: "cbci-dr", start: new Date(Date.now() - 60_000), controllers: primary.controllers },
      snaps,
      "us-east-1a",
    );
    await plane.drain();
    expect(plane.emitter.held).toHaveLength(2);
    expect((await plane.rt.ledger.getBackup(name))?.verdict).not.toBe("dr-ready");

    // act: both complete; each invocation read the open set while the other copy was still open
    await plane.emitter.release(2);
    await plane.drain();

    // assert
    expect(await plane.rt.ledger.getBackup(name)).toMatchObject({ verdict: "dr-ready", copied: 2 });
  });

  it("retention: deleting a backup deletes its copies and failover metadata, but never the newest DR-ready one", async () => {
    // arrange: two DR-ready backups of the same schedule
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1, config: { velero: VELERO } });
    await primary.addControllers(2);
    const older = "cbci-dr-20261127120000";
    const newer = "cbci-dr-20261127121500";
    const olderSnaps = await backup(plane, primary, older, new Date(Date.now() - 20 * 60_000));
    await backup(plane, primary, newer, new Date(Date.now() - 5 * 60_000));
    const copiesOf = async (b: string) =>
      [
        ...(
          await plane.rt.ledger.getSnapshots(
            (await plane.rt.ledger.getBackup(b))?.expected?.map((e) => e.sourceSnapshotId) ?? [],
          )
        ).values(),
      ].map((r) => r.copySnapshotId ?? "");
    const olderCopies = await copiesOf(older);
    const newerCopies = await copiesOf(newer);
    const ec2 = new EC2Client({
      endpoint: moto().endpoint,
      region: "us-west-2",
      credentials: LOCAL_CREDENTIALS,
    });
    const existing = async (ids: string[]) =>
      (
        (await ec2.send(new DescribeSnapshotsCommand({ Filters: [{ Name: "snapshot-id", Values: ids }] })))
          .Snapshots ?? []
      ).length;
    expect([await existing(olderCopies), await existing(newerCopies)]).toEqual([2, 2]);
    const deleteBackup = async (b: string) => {
      const ks = await keys(plane, `backups/${b}/`);
      await plane.clients.s3.send(
        new DeleteObjectsCommand({ Bucket: VELERO.bucket, Delete: { Objects: ks.map((Key) => ({ Key })) } }),
      );
    };

    // act: Velero deletes both (TTL); the older one's events arrive, the newer one's are lost
    await deleteBackup(older);
    await plane.drain();
    await deleteBackup(newer);
    await plane.clients.sqs.send(
      new PurgeQueueCommand({ QueueUrl: plane.mappings.register?.queue.url ?? "" }),
    );
    await plane.sweep();

    // assert
    expect(await existing(olderCopies)).toBe(0);
    expect(await keys(plane, `failover/backups/${older}/`)).toEqual([]);
    expect((await plane.rt.ledger.getBackup(older))?.reason).toBe(
      "deleted by Velero; 2 copies and 10 failover objects removed",
    );
    // the newest DR-ready backup stays restorable: copies and failover metadata kept
    expect(await existing(newerCopies)).toBe(2);
    expect(await keys(plane, `failover/backups/${newer}/`)).toContain(
      `failover/backups/${newer}/velero-backup.json`,
    );
    expect((await plane.rt.ledger.getBackup(newer))?.retiredAt).toBeUndefined();

    // a copy of the retired backup that turns up later (an in-flight copy finishing) is an orphan
    const [source] = olderSnaps;
    const late = await plane.rt.copier.copy({
      sourceSnapshotId: source?.snapshotId ?? "",
      sourceRegion: "us-east-1",
      volumeId: source?.volumeId ?? "",
      tags: { "dr.velero.io/source-snapshot-id": source?.snapshotId ?? "", "velero.io/backup": older },
      description: "a late copy",
    });
    expect(await existing([late])).toBe(1);
    await plane.sweep();
    expect(await existing([late])).toBe(0);
    expect(await existing(newerCopies)).toBe(2);
  });
});
