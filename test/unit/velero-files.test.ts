import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  gunzipJson,
  parseVeleroBackup,
  parseVolumeInfo,
  parseVolumeSnapshots,
  rewriteBackupFileSet,
} from "../../functions/core/velero.js";
import { listTarEntries, tarEntryData } from "../../functions/core/velero-rewrite.js";
import { volumeSnapshotRecords as simulatedRecords, veleroBackupJson } from "../../local/velero.js";
import {
  type BackupOptions,
  backupFiles,
  backupJson,
  goTar,
  tarEntries,
  type VeleroPv,
} from "../../local/velero-files.js";

// biome-ignore lint/suspicious/noExplicitAny: the tests walk nested JSON of known shape
type Obj = Record<string, any>;

const NAME = "jenkins-nightly-20260412030000";
const SOURCE = "eu-west-1";
const FAILOVER = "eu-central-1";
const NAMESPACE = "ci";

const PVS: VeleroPv[] = [
  {
    name: "pvc-0e6d1c2b-3a4f-4b5c-8d9e-0f1a2b3c4d01",
    claim: "jenkins-home-team-a-0",
    zone: "eu-west-1a",
    volumeId: "vol-0123456789abcde01",
    sourceSnapshotId: "snap-0123456789abcde01",
    kind: "csi",
    volumeType: "gp3",
    iops: 3000,
    size: "50Gi",
  },
  {
    name: "pvc-1e6d1c2b-3a4f-4b5c-8d9e-0f1a2b3c4d02",
    claim: "jenkins-home-team-b-0",
    zone: "eu-west-1b",
    volumeId: "vol-0123456789abcde02",
    sourceSnapshotId: "snap-0123456789abcde02",
    kind: "csi",
    volumeType: "io2",
    iops: 6000,
    size: "200Gi",
    affinityZoneKeys: ["topology.ebs.csi.aws.com/zone", "topology.kubernetes.io/zone"],
  },
  {
    name: "pvc-2e6d1c2b-3a4f-4b5c-8d9e-0f1a2b3c4d03",
    claim: "jenkins-home-team-c-0",
    zone: "eu-west-1c",
    volumeId: "vol-0123456789abcde03",
    sourceSnapshotId: "snap-0123456789abcde03",
    kind: "in-tree",
    volumeType: "gp2",
    iops: 0,
    size: "20Gi",
  },
  {
    name: "pvc-3e6d1c2b-3a4f-4b5c-8d9e-0f1a2b3c4d04",
    claim: "jenkins-home-cjoc-0",
    zone: "eu-west-1a",
    volumeId: "vol-0123456789abcde04",
    sourceSnapshotId: "snap-0123456789abcde04",
    kind: "in-tree",
    volumeType: "gp2",
    iops: 0,
    size: "20Gi",
  },
];

const COPY_OF = new Map(PVS.map((p, i) => [p.sourceSnapshotId, `snap-0fedcba98765432${i}0`]));
const ZONE_MAP = {
  "eu-west-1a": "eu-central-1b",
  "eu-west-1b": "eu-central-1c",
  "eu-west-1c": "eu-central-1a",
};

const OPTIONS: BackupOptions = {
  name: NAME,
  namespace: NAMESPACE,
  schedule: "jenkins-nightly",
  phase: "PartiallyFailed",
  start: new Date("2026-04-12T03:00:00.250Z"),
  completion: new Date("2026-04-12T03:04:31Z"),
  ttlMinutes: 30 * 24 * 60,
  errors: 1,
  warnings: 2,
  region: SOURCE,
  pvs: PVS,
};

const file = (files: Record<string, Buffer>, suffix: string) => {
  const bytes = files[`${NAME}${suffix}`];
  if (!bytes) throw new Error(`no ${NAME}${suffix}`);
  return bytes;
};

/** The tarball's PV objects, by entry name. */
function pvEntries(tgz: Buffer): Map<string, Obj> {
  const tar = gunzipSync(tgz);
  return new Map(
    listTarEntries(tar)
      .filter((e) => e.name.startsWith("resources/persistentvolumes/"))
      .map((e) => [e.name, JSON.parse(tarEntryData(tar, e).toString("utf8")) as Obj]),
  );
}

describe("local/velero-files", () => {
  it("builds a backup directory that functions/core/velero.ts reads as Velero's", () => {
    // act
    const files = backupFiles(OPTIONS);

    // assert: the file set Velero writes
    expect(Object.keys(files)).toEqual([
      "velero-backup.json",
      `${NAME}.tar.gz`,
      `${NAME}-volumesnapshots.json.gz`,
      `${NAME}-volumeinfo.json.gz`,
      `${NAME}-logs.gz`,
      `${NAME}-resource-list.json.gz`,
      `${NAME}-results.gz`,
      `${NAME}-podvolumebackups.json.gz`,
      `${NAME}-itemoperations.json.gz`,
      `${NAME}-csi-volumesnapshots.json.gz`,
    ]);

    // velero-backup.json
    const backup = parseVeleroBackup(JSON.parse((files["velero-backup.json"] ?? "").toString("utf8")));
    expect(backup).toMatchObject({
      name: NAME,
      namespace: "velero",
      schedule: "jenkins-nightly",
      storageLocation: "default",
      phase: "PartiallyFailed",
      startTimestamp: "2026-04-12T03:00:00.000Z",
      completionTimestamp: "2026-04-12T03:04:31.000Z",
      expiration: "2026-05-12T03:00:00.000Z",
      errors: 1,
      warnings: 2,
      volumeSnapshotsAttempted: 4,
      volumeSnapshotsCompleted: 4,
    });
    expect(backup.uid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(JSON.parse(files["velero-backup.json"]?.toString("utf8") ?? "").spec).toMatchObject({
      includedNamespaces: [NAMESPACE],
      ttl: "720h0m0s",
    });

    // the snapshot list: Velero 1.11+'s key spelling, json.Encoder's trailing newline
    const snapshotsText = gunzipSync(file(files, "-volumesnapshots.json.gz")).toString("utf8");
    expect(snapshotsText.endsWith("]\n")).toBe(true);
    expect(snapshotsText).toContain('"persistentVolumeName":');
    expect(snapshotsText).not.toContain('"PersistentVolumeName":');
    const records = parseVolumeSnapshots(gunzipJson(file(files, "-volumesnapshots.json.gz"), "snapshots"));
    expect(records.map((r) => ({ ...r, raw: undefined }))).toEqual(
      PVS.map((p) => ({
        backupName: NAME,
        backupUID: backup.uid,
        location: "default",
        persistentVolumeName: p.name,
        providerVolumeID: p.volumeId,
        volumeType: p.volumeType,
        volumeAZ: p.zone,
        volumeIOPS: p.iops,
        providerSnapshotID: p.sourceSnapshotId,
        phase: "Completed",
        raw: undefined,
      })),
    );

    // volumeinfo
    const infos = parseVolumeInfo(gunzipJson(file(files, "-volumeinfo.json.gz"), "volumeinfo"));
    expect(infos.map((i) => [i.pvName, i.backupMethod, i.nativeSnapshot])).toEqual(
      PVS.map((p) => [
        p.name,
        "NativeSnapshot",
        { snapshotHandle: p.sourceSnapshotId, volumeAZ: p.zone, volumeType: p.volumeType },
      ]),
    );
    expect(infos.map((i) => i.raw.pvcNamespace)).toEqual(PVS.map(() => NAMESPACE));

    // the tarball: each PV and PVC twice (group dir and v1-preferredversion), in the backup's namespace
    const pvs = pvEntries(file(files, ".tar.gz"));
    expect(pvs.size).toBe(8);
    for (const p of PVS) {
      const plain = pvs.get(`resources/persistentvolumes/cluster/${p.name}.json`);
      expect(pvs.get(`resources/persistentvolumes/v1-preferredversion/cluster/${p.name}.json`)).toEqual(
        plain,
      );
      expect(plain?.spec.claimRef).toMatchObject({ name: p.claim, namespace: NAMESPACE });
    }
    const names = listTarEntries(gunzipSync(file(files, ".tar.gz"))).map((e) => e.name);
    expect(names).toContain(
      `resources/persistentvolumeclaims/v1-preferredversion/namespaces/${NAMESPACE}/jenkins-home-team-a-0.json`,
    );

    // the resource list, results and log
    expect(gunzipJson(file(files, "-resource-list.json.gz"), "resource list")).toMatchObject({
      "v1/Namespace": [NAMESPACE],
      "v1/PersistentVolume": PVS.map((p) => p.name).sort(),
      "v1/PersistentVolumeClaim": PVS.map((p) => `${NAMESPACE}/${p.claim}`).sort(),
    });
    expect(gunzipJson(file(files, "-results.gz"), "results")).toEqual({
      errors: { velero: ["simulated error 1"] },
      warnings: { velero: ["simulated warning 1", "simulated warning 2"] },
    });
    expect(gunzipSync(file(files, "-logs.gz")).toString("utf8")).toMatch(
      /^time="2026-04-12T03:00:00Z" level=info msg="Setting up backup log"\n/,
    );
  });

  it("is deterministic, and the tarball carries the archive time", () => {
    expect(backupFiles(OPTIONS)).toEqual(backupFiles(OPTIONS));
    const tar = goTar(tarEntries(NAMESPACE, PVS, SOURCE), new Date("2026-04-12T03:00:07Z"));
    const mtime = Number.parseInt(tar.subarray(136, 147).toString("latin1"), 8);
    expect(mtime).toBe(Date.parse("2026-04-12T03:00:07Z") / 1000);
  });

  it("is rewritten by rewriteBackupFileSet for a copy map and zone map, every PV retargeted", () => {
    // arrange
    const files = backupFiles(OPTIONS);

    // act
    const { replaced, summary } = rewriteBackupFileSet(files, {
      copyOf: COPY_OF,
      zoneMap: ZONE_MAP,
      sourceRegion: SOURCE,
      failoverRegion: FAILOVER,
    });

    // assert: the summary
    expect(Object.keys(replaced).sort()).toEqual(
      [`${NAME}-volumeinfo.json.gz`, `${NAME}-volumesnapshots.json.gz`, `${NAME}.tar.gz`].sort(),
    );
    expect(summary).toMatchObject({
      backup: NAME,
      volumeSnapshots: 4,
      volumeInfos: 4,
      tarEntries: 8,
      persistentVolumes: PVS.map((p) => p.name).sort(),
    });
    const zoneOf = (p: VeleroPv) => ZONE_MAP[p.zone as keyof typeof ZONE_MAP];
    for (const p of PVS) {
      expect(summary.volumes[p.name]).toEqual({
        sourceSnapshotId: p.sourceSnapshotId,
        snapshotId: COPY_OF.get(p.sourceSnapshotId),
        sourceZone: p.zone,
        zone: zoneOf(p),
      });
    }

    // the snapshot list and volumeinfo name the copies in the failover zones
    const records = parseVolumeSnapshots(gunzipJson(file(replaced, "-volumesnapshots.json.gz"), "snapshots"));
    expect(records.map((r) => [r.persistentVolumeName, r.providerSnapshotID, r.volumeAZ])).toEqual(
      PVS.map((p) => [p.name, COPY_OF.get(p.sourceSnapshotId), zoneOf(p)]),
    );
    expect(records.every((r) => "persistentVolumeName" in (r.raw.spec as Obj))).toBe(true);
    const infos = parseVolumeInfo(gunzipJson(file(replaced, "-volumeinfo.json.gz"), "volumeinfo"));
    expect(infos).toHaveLength(PVS.length);
    for (const [i, p] of PVS.entries()) {
      const info = infos[i] as (typeof infos)[number];
      expect(info.nativeSnapshot).toMatchObject({
        snapshotHandle: COPY_OF.get(p.sourceSnapshotId),
        volumeAZ: zoneOf(p),
      });
      expect(Object.values((info.raw as Obj).pvInfo.labels)).toEqual(
        expect.arrayContaining([FAILOVER, zoneOf(p)]),
      );
    }

    // the tarball: every PV object (both copies) moved to its failover zone and region
    const pvs = pvEntries(file(replaced, ".tar.gz"));
    expect(pvs.size).toBe(8);
    for (const [entry, pv] of pvs) {
      const p = PVS.find((x) => x.name === pv.metadata.name);
      if (!p) throw new Error(`unexpected ${entry}`);
      const zone = zoneOf(p);
      const text = JSON.stringify(pv);
      expect(text, entry).not.toContain(SOURCE);
      const labels = Object.entries(pv.metadata.labels as Record<string, string>);
      expect(labels.filter(([k]) => k.endsWith("/zone")).map(([, v]) => v)).toEqual([zone]);
      expect(labels.filter(([k]) => k.endsWith("/region")).map(([, v]) => v)).toEqual([FAILOVER]);
      const values = (pv.spec.nodeAffinity.required.nodeSelectorTerms as Obj[]).flatMap((t) =>
        (t.matchExpressions as Obj[]).flatMap((e) => e.values as string[]),
      );
      expect(values.filter((v) => v !== FAILOVER)).toEqual(
        p.affinityZoneKeys ? p.affinityZoneKeys.map(() => zone) : [zone],
      );
      if (p.kind === "in-tree") {
        expect(pv.spec.awsElasticBlockStore.volumeID).toBe(`aws://${zone}/${p.volumeId}`);
      } else {
        expect(pv.spec.csi.volumeHandle).toBe(p.volumeId);
      }
    }
  });

  it("local/velero.ts's simulated files parse as Velero's too", () => {
    // arrange
    const snapshots = [
      {
        snapshotId: "snap-0aaaaaaaaaaaaaaa1",
        volumeId: "vol-0aaaaaaaaaaaaaaa1",
        backup: NAME,
        pvName: "pvc-a",
      },
      {
        snapshotId: "snap-0aaaaaaaaaaaaaaa2",
        volumeId: "vol-0aaaaaaaaaaaaaaa2",
        backup: NAME,
        pvName: "pvc-b",
      },
    ];
    // act
    const records = simulatedRecords(NAME, snapshots, "us-east-1a");
    const json = veleroBackupJson({ name: NAME, phase: "InProgress", start: new Date(), snapshots: 2 });
    // assert
    expect(parseVolumeSnapshots(records).map((r) => [r.persistentVolumeName, r.providerSnapshotID])).toEqual([
      ["pvc-a", "snap-0aaaaaaaaaaaaaaa1"],
      ["pvc-b", "snap-0aaaaaaaaaaaaaaa2"],
    ]);
    expect(records[0]?.spec).toHaveProperty("persistentVolumeName", "pvc-a");
    expect(parseVeleroBackup(json)).toMatchObject({
      phase: "InProgress",
      completionTimestamp: null,
      errors: 0,
      volumeSnapshotsAttempted: 2,
      volumeSnapshotsCompleted: 0,
    });
  });

  it("writes Velero 1.10 and older's `PersistentVolumeName` on request, read and rewritten alike", () => {
    // act
    const files = backupFiles({ ...OPTIONS, pvNameKey: "PersistentVolumeName" });
    // assert
    const text = gunzipSync(file(files, "-volumesnapshots.json.gz")).toString("utf8");
    expect(text).toContain('"PersistentVolumeName":');
    expect(text).not.toContain('"persistentVolumeName":');
    const legacy = parseVolumeSnapshots(gunzipJson(file(files, "-volumesnapshots.json.gz"), "snapshots"));
    const current = parseVolumeSnapshots(
      gunzipJson(file(backupFiles(OPTIONS), "-volumesnapshots.json.gz"), "snapshots"),
    );
    expect(legacy.map((r) => ({ ...r, raw: undefined }))).toEqual(
      current.map((r) => ({ ...r, raw: undefined })),
    );
    const { replaced } = rewriteBackupFileSet(files, {
      copyOf: COPY_OF,
      zoneMap: ZONE_MAP,
      sourceRegion: SOURCE,
      failoverRegion: FAILOVER,
    });
    const rewritten = gunzipSync(file(replaced, "-volumesnapshots.json.gz")).toString("utf8");
    expect(rewritten).toContain('"PersistentVolumeName":');
    expect(rewritten).not.toContain('"persistentVolumeName":');
  });

  it("a backup of native, CSI, file-system and data-mover volumes: records, volumeinfo and status counts as Velero writes them", () => {
    // arrange: one PV per method
    const methods = ["native", "csi", "fs-backup", "data-mover"] as const;
    const pvs = PVS.map((p, i) => ({ ...p, method: methods[i] }));

    // act
    const files = backupFiles({ ...OPTIONS, phase: "Completed", errors: 0, warnings: 0, pvs });

    // assert: only the native snapshot has a record
    const records = parseVolumeSnapshots(gunzipJson(file(files, "-volumesnapshots.json.gz"), "snapshots"));
    expect(records.map((r) => r.persistentVolumeName)).toEqual([PVS[0]?.name]);
    // volumeinfo names every volume with its method
    const infos = parseVolumeInfo(gunzipJson(file(files, "-volumeinfo.json.gz"), "volumeinfo"));
    expect(infos.map((i) => [i.pvName, i.backupMethod, i.snapshotDataMoved])).toEqual([
      [PVS[0]?.name, "NativeSnapshot", false],
      [PVS[1]?.name, "CSISnapshot", false],
      [PVS[2]?.name, "PodVolumeBackup", false],
      [PVS[3]?.name, "CSISnapshot", true],
    ]);
    expect(infos[1]?.csiSnapshot?.snapshotHandle).toBe(PVS[1]?.sourceSnapshotId);
    expect(infos[1]?.raw).toMatchObject({
      startTimestamp: "2026-04-12T03:00:00Z",
      completionTimestamp: "2026-04-12T03:04:31Z",
      csiSnapshotInfo: { size: 200 * 2 ** 30, ReadyToUse: true },
    });
    expect((infos[3]?.raw as Obj | undefined)?.snapshotDataMovementInfo.operationID).toMatch(
      /^du-[0-9a-f-]{36}\.[0-9a-f-]+$/,
    );
    // the status counts: one native snapshot, one CSI snapshot (the data mover's is not one), two operations
    const json = JSON.parse(files["velero-backup.json"]?.toString("utf8") ?? "");
    expect(json.status).toMatchObject({
      volumeSnapshotsAttempted: 1,
      volumeSnapshotsCompleted: 1,
      csiVolumeSnapshotsAttempted: 1,
      csiVolumeSnapshotsCompleted: 1,
      backupItemOperationsAttempted: 2,
      backupItemOperationsCompleted: 2,
    });
    expect(parseVeleroBackup(json)).toMatchObject({
      csiVolumeSnapshotsAttempted: 1,
      volumeSnapshotsAttempted: 1,
    });
    // a backup without CSI volumes writes no CSI count (omitempty), one without native ones no native count
    const csiOnly = backupJson({ ...OPTIONS, pvs: PVS.map((p) => ({ ...p, method: "csi" as const })) });
    expect(csiOnly.status).not.toHaveProperty("volumeSnapshotsAttempted");
    expect(csiOnly.status).toMatchObject({ csiVolumeSnapshotsAttempted: 4 });
    expect(backupJson({ ...OPTIONS, pvs: PVS }).status).not.toHaveProperty("csiVolumeSnapshotsAttempted");
  });
});
