import { gunzipSync, gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { ConfigError, DrError } from "../../functions/core/errors.js";
import { sourceRegionOf } from "../../functions/core/registry.js";
import {
  type FailoverOptions,
  gunzipJson,
  InvalidBackupError,
  MissingCopyError,
  parseVeleroBackup,
  parseVolumeInfo,
  parseVolumeSnapshots,
  rewriteBackupFileSet,
  rewriteBackupForFailover,
  UnknownZoneError,
  zoneMapFor,
} from "../../functions/core/velero.js";
import { listTarEntries, tarEntryData } from "../../functions/core/velero-rewrite.js";
import * as files from "../../local/velero-files.js";
import {
  BACKUP,
  backupFiles,
  backupJson,
  COPY_OF,
  CSI_PVS,
  FAILOVER_REGION,
  goTar,
  legacyVolumeSnapshotRecords,
  MIXED_COPY_OF,
  mixedBackupFiles,
  PVS,
  persistentVolume,
  SOURCE_REGION,
  tarEntries,
  volumeInfos,
  volumeSnapshotRecords,
  ZONE_MAP,
} from "../fixtures/velero/backup.js";

// biome-ignore lint/suspicious/noExplicitAny: the tests walk nested JSON of known shape
type Obj = Record<string, any>;

const options = (over: Partial<FailoverOptions> = {}): FailoverOptions => ({
  copyOf: COPY_OF,
  zoneMap: ZONE_MAP,
  sourceRegion: SOURCE_REGION,
  failoverRegion: FAILOVER_REGION,
  ...over,
});

const fixtureFiles = () => ({
  backupJson: backupJson(),
  volumeSnapshots: volumeSnapshotRecords(),
  volumeInfo: volumeInfos(),
  tarball: gzipSync(goTar(tarEntries())),
});

const PV_PATH = /^resources\/persistentvolumes\/(?:v1-preferredversion\/)?cluster\/(.+)\.json$/;

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected an error");
}

describe("parseVeleroBackup", () => {
  it("reads a Velero 1.14 Backup: schedule, location, phase, times, counts", () => {
    // arrange
    const json = backupJson();
    // act
    const b = parseVeleroBackup(json);
    // assert
    expect(b).toEqual({
      name: BACKUP,
      namespace: "velero",
      uid: "7c4f2a9e-3b1d-4e8f-a6c2-9d0e1f2a3b4c",
      labels: { "velero.io/schedule-name": "cbci-dr", "velero.io/storage-location": "default" },
      schedule: "cbci-dr",
      storageLocation: "default",
      phase: "Completed",
      startTimestamp: "2025-03-01T12:00:05.000Z",
      completionTimestamp: "2025-03-01T12:01:17.000Z",
      expiration: "2025-03-01T13:00:05.000Z",
      errors: 0,
      warnings: 0,
      volumeSnapshotsAttempted: 3,
      volumeSnapshotsCompleted: 3,
      csiVolumeSnapshotsAttempted: 0,
      csiVolumeSnapshotsCompleted: 0,
    });
  });

  it("reads the CSI snapshot counts (left out when 0, as Go's omitempty does)", () => {
    // arrange
    const json = backupJson() as Obj;
    json.status.csiVolumeSnapshotsAttempted = 2;
    json.status.csiVolumeSnapshotsCompleted = 1;
    // act / assert
    expect(parseVeleroBackup(json)).toMatchObject({
      csiVolumeSnapshotsAttempted: 2,
      csiVolumeSnapshotsCompleted: 1,
    });
  });

  it("tolerates a Backup with nothing but a name (a new backup's first write)", () => {
    // arrange
    const json = {
      apiVersion: "velero.io/v1",
      kind: "Backup",
      metadata: { name: "b1", labels: null },
      status: {},
    };
    // act
    const b = parseVeleroBackup(json);
    // assert
    expect(b).toMatchObject({
      name: "b1",
      schedule: null,
      storageLocation: null,
      phase: null,
      startTimestamp: null,
      expiration: null,
      errors: 0,
      warnings: 0,
      volumeSnapshotsAttempted: 0,
      volumeSnapshotsCompleted: 0,
    });
  });

  it("rejects what is not a velero.io/v1 Backup, or a malformed one, with a clear message", () => {
    // arrange
    const cases: [unknown, string][] = [
      [[], "velero-backup.json must be an object, got array"],
      [
        { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x" } },
        'velero-backup.json is not a velero.io/v1 Backup (apiVersion "v1", kind "ConfigMap")',
      ],
      [
        { apiVersion: "velero.io/v1", kind: "Restore", metadata: { name: "x" } },
        'velero-backup.json is not a velero.io/v1 Backup (apiVersion "velero.io/v1", kind "Restore")',
      ],
      [{ apiVersion: "velero.io/v1", kind: "Backup" }, "velero-backup.json.metadata is required"],
      [
        { apiVersion: "velero.io/v1", kind: "Backup", metadata: { name: "../../etc" } },
        'velero-backup.json.metadata.name is not a Kubernetes object name: "../../etc"',
      ],
      [
        { ...backupJson(), status: { ...backupJson().status, warnings: -1 } },
        "velero-backup.json.status.warnings must be a whole number >= 0",
      ],
      [
        { ...backupJson(), status: { ...backupJson().status, expiration: "tomorrow" } },
        'velero-backup.json.status.expiration is not an RFC 3339 time: "tomorrow"',
      ],
    ];
    for (const [input, message] of cases) {
      // act
      const err = thrown(() => parseVeleroBackup(input));
      // assert
      expect(err).toBeInstanceOf(InvalidBackupError);
      expect(err).toBeInstanceOf(DrError);
      expect((err as Error).message).toBe(message);
    }
  });
});

describe("parseVolumeSnapshots", () => {
  it("reads every field of a Velero 1.11+ record (`persistentVolumeName`), and keeps the raw record", () => {
    // arrange
    const records = volumeSnapshotRecords();
    // act
    const parsed = parseVolumeSnapshots(records);
    // assert
    expect(parsed).toHaveLength(3);
    expect(parsed[1]).toEqual({
      backupName: BACKUP,
      backupUID: "7c4f2a9e-3b1d-4e8f-a6c2-9d0e1f2a3b4c",
      location: "default",
      persistentVolumeName: PVS[1]?.name,
      providerVolumeID: PVS[1]?.volumeId,
      volumeType: "io2",
      volumeAZ: "us-east-1b",
      volumeIOPS: 3000,
      providerSnapshotID: PVS[1]?.sourceSnapshotId,
      phase: "Completed",
      raw: records[1],
    });
  });

  it("reads Velero 1.10 and older's `PersistentVolumeName` the same (Go matches keys case-insensitively)", () => {
    // arrange
    const legacy = legacyVolumeSnapshotRecords();
    expect(legacy[0]?.spec).toHaveProperty("PersistentVolumeName", PVS[0]?.name);
    expect(legacy[0]?.spec).not.toHaveProperty("persistentVolumeName");
    // act
    const parsed = parseVolumeSnapshots(legacy);
    // assert
    const strip = (r: { raw: unknown }) => ({ ...r, raw: undefined });
    expect(parsed.map(strip)).toEqual(parseVolumeSnapshots(volumeSnapshotRecords()).map(strip));
  });

  it("reads keys as Go does: any case, the last one wins", () => {
    // arrange
    const record = {
      spec: {
        backupname: "b",
        Location: "default",
        persistentVolumeName: "old",
        PERSISTENTVOLUMENAME: "pv-1",
      },
      status: { ProviderSnapshotId: "snap-0123456789abcdef0" },
    };
    // act
    const [r] = parseVolumeSnapshots([record]);
    // assert
    expect(r).toMatchObject({ backupName: "b", location: "default", persistentVolumeName: "pv-1" });
    expect(r?.providerSnapshotID).toBe("snap-0123456789abcdef0");
    expect(r?.volumeAZ).toBeNull();
  });

  it("reads null (a backup without native snapshots) as no records", () => {
    expect(parseVolumeSnapshots(null)).toEqual([]);
    expect(parseVolumeInfo(null)).toEqual([]);
  });

  it("names the record and field that is wrong", () => {
    // arrange
    const bad = volumeSnapshotRecords();
    (bad[2] as Obj).spec.location = "";
    // act / assert
    expect(() => parseVolumeSnapshots(bad)).toThrow(
      new InvalidBackupError("volumesnapshots[2].spec.location must not be empty"),
    );
    expect(() => parseVolumeSnapshots({})).toThrow("volumesnapshots must be an array of records, got object");
    expect(() => parseVolumeSnapshots([{ spec: "x" }])).toThrow(
      "volumesnapshots[0].spec must be an object, got string",
    );
  });
});

describe("parseVolumeInfo", () => {
  it("reads each backup method Velero writes: native, CSI, file-system backup and the data mover", () => {
    // arrange: the fixture's PVs, backed up four ways (local/velero-files.ts writes Velero 1.15+'s entries)
    const methods = ["native", "csi", "fs-backup", "data-mover"] as const;
    const pvs = methods.map((method, i) => ({ ...(PVS[i % PVS.length] as (typeof PVS)[number]), method }));
    const entries = files.volumeInfos(pvs, SOURCE_REGION, "cbci", {
      name: BACKUP,
      start: "2025-03-01T12:00:05Z",
      completion: "2025-03-01T12:01:17Z",
    });
    // act
    const infos = parseVolumeInfo(entries);
    // assert
    expect(infos.map((i) => [i.backupMethod, i.snapshotDataMoved, i.skipped, i.result])).toEqual([
      ["NativeSnapshot", false, false, "succeeded"],
      ["CSISnapshot", false, false, "succeeded"],
      ["PodVolumeBackup", false, false, "succeeded"],
      ["CSISnapshot", true, false, "succeeded"],
    ]);
    expect(infos[1]?.csiSnapshot).toEqual({
      snapshotHandle: pvs[1]?.sourceSnapshotId,
      driver: "ebs.csi.aws.com",
      vscName: files.volumeSnapshotContentName(pvs[1] as files.VeleroPv),
    });
    expect(infos[2]?.podVolumeBackup).toMatchObject({
      snapshotHandle: pvs[2]?.sourceSnapshotId,
      uploaderType: "kopia",
      podName: "cjoc-0",
      podNamespace: "cbci",
    });
    expect(infos[3]?.csiSnapshot?.snapshotHandle).toBe("unknown");
    expect(infos[3]?.dataMovement).toEqual({ snapshotHandle: pvs[3]?.sourceSnapshotId, dataMover: "velero" });
    expect(infos.map((i) => i.pvName)).toEqual(pvs.map((p) => p.name));
  });

  it("reads a skipped volume and a Velero 1.13 entry (no result), keys in any case", () => {
    // act
    const [skipped, old] = parseVolumeInfo([
      { pvcName: "c", pvcNamespace: "cbci", pvName: "pv-1", skipped: true, skippedReason: "no snapshotter" },
      { PVName: "pv-2", BackupMethod: "PodVolumeBackup", PVBInfo: { SnapshotHandle: "abc", PodName: "p" } },
    ]);
    // assert
    expect(skipped).toMatchObject({
      pvName: "pv-1",
      backupMethod: null,
      skipped: true,
      skippedReason: "no snapshotter",
    });
    expect(old).toMatchObject({
      pvName: "pv-2",
      backupMethod: "PodVolumeBackup",
      result: null,
      skipped: false,
    });
    expect(old?.podVolumeBackup).toMatchObject({ snapshotHandle: "abc", podName: "p" });
    expect(() => parseVolumeInfo([{ skipped: "yes" }])).toThrow(
      new InvalidBackupError("volumeinfo[0].skipped must be a boolean, got string"),
    );
  });
});

describe("rewriteBackupForFailover", () => {
  it("keeps Velero 1.10's `PersistentVolumeName` spelling in the records it rewrites", () => {
    // arrange
    const legacy = { ...fixtureFiles(), volumeSnapshots: legacyVolumeSnapshotRecords() };
    // act
    const out = rewriteBackupForFailover(legacy, options());
    // assert
    for (const [i, record] of out.volumeSnapshots.entries()) {
      expect(Object.keys(record.spec as Obj)).toContain("PersistentVolumeName");
      expect(Object.keys(record.spec as Obj)).not.toContain("persistentVolumeName");
      expect((record.status as Obj).providerSnapshotID).toBe(PVS[i]?.copySnapshotId);
    }
  });

  it("points every record at its copy and a failover zone, keeping every other field (unknown ones too)", () => {
    // arrange
    const files = fixtureFiles();
    (files.volumeSnapshots[0] as Obj).spec.snapshotTags = { team: "ci" };
    (files.volumeSnapshots[0] as Obj).futureField = [1, 2];
    const before = structuredClone(files.volumeSnapshots);
    // act
    const out = rewriteBackupForFailover(files, options());
    // assert
    expect(files.volumeSnapshots).toEqual(before); // input untouched
    expect(out.volumeSnapshots).toHaveLength(3);
    out.volumeSnapshots.forEach((record, i) => {
      const pv = PVS[i];
      const expected = structuredClone(before[i]) as Obj;
      expected.spec.volumeAZ = ZONE_MAP[pv?.zone as keyof typeof ZONE_MAP];
      expected.status.providerSnapshotID = pv?.copySnapshotId;
      expect(record).toEqual(expected);
      expect(Object.keys(record.spec as Obj)).toEqual(Object.keys(expected.spec)); // key order and spelling kept
    });
    expect(out.backupJson).toBe(files.backupJson);
    expect(out.summary).toMatchObject({
      backup: BACKUP,
      volumeSnapshots: 3,
      volumeInfos: 3,
      tarEntries: 6,
      persistentVolumes: PVS.map((p) => p.name).sort(),
      combinedIds: false,
    });
    expect(out.summary.volumes[PVS[2]?.name ?? ""]).toEqual({
      sourceSnapshotId: PVS[2]?.sourceSnapshotId,
      snapshotId: PVS[2]?.copySnapshotId,
      sourceZone: "us-east-1c",
      zone: "us-west-2c",
    });
  });

  it("keeps volumeinfo consistent with the records: handle, zone and the PV labels it carries", () => {
    // arrange
    const files = fixtureFiles();
    // act
    const out = rewriteBackupForFailover(files, options());
    // assert
    const records = parseVolumeSnapshots(out.volumeSnapshots);
    const infos = out.volumeInfo as Obj[];
    expect(infos).toHaveLength(3);
    infos.forEach((info, i) => {
      const record = records.find((r) => r.persistentVolumeName === info.pvName);
      expect(info.nativeSnapshotInfo.snapshotHandle).toBe(record?.providerSnapshotID);
      expect(info.nativeSnapshotInfo.volumeAZ).toBe(record?.volumeAZ);
      const labels = info.pvInfo.labels as Record<string, string>;
      for (const [k, v] of Object.entries(labels)) {
        if (k.endsWith("/zone")) expect(v).toBe(record?.volumeAZ);
        if (k.endsWith("/region")) expect(v).toBe(FAILOVER_REGION);
      }
      const expected = structuredClone(volumeInfos()[i]) as Obj;
      expected.nativeSnapshotInfo.snapshotHandle = record?.providerSnapshotID;
      expected.nativeSnapshotInfo.volumeAZ = record?.volumeAZ;
      expected.pvInfo.labels = labels;
      expect(info).toEqual(expected);
    });
    expect(infos[2]?.pvInfo.labels["app.kubernetes.io/part-of"]).toBe("cloudbees-core");
  });

  it("moves each PV object in the tarball to its failover zone and leaves every other entry byte for byte", () => {
    // arrange
    const files = fixtureFiles();
    const inTar = gunzipSync(files.tarball);
    // act
    const out = rewriteBackupForFailover(files, options());
    // assert
    const outTar = gunzipSync(out.tarball ?? Buffer.alloc(0));
    const before = listTarEntries(inTar);
    const after = listTarEntries(outTar);
    expect(after.map((e) => e.name)).toEqual(before.map((e) => e.name));
    let rewritten = 0;
    before.forEach((b, i) => {
      const a = after[i];
      if (!a) throw new Error("entry lost");
      const pvName = PV_PATH.exec(b.name)?.[1];
      if (pvName === undefined) {
        expect(outTar.subarray(a.headerOffset, a.end)).toEqual(inTar.subarray(b.headerOffset, b.end));
        return;
      }
      rewritten++;
      const pv = PVS.find((p) => p.name === pvName);
      if (!pv) throw new Error(pvName);
      const zone = ZONE_MAP[pv.zone as keyof typeof ZONE_MAP];
      const expected = persistentVolume(pv) as Obj;
      for (const key of Object.keys(expected.metadata.labels)) {
        if (key.endsWith("/zone")) expected.metadata.labels[key] = zone;
        if (key.endsWith("/region")) expected.metadata.labels[key] = FAILOVER_REGION;
      }
      for (const term of expected.spec.nodeAffinity.required.nodeSelectorTerms) {
        for (const e of term.matchExpressions)
          e.values = [e.key.endsWith("/region") ? FAILOVER_REGION : zone];
      }
      if (pv.kind === "in-tree") expected.spec.awsElasticBlockStore.volumeID = `aws://${zone}/${pv.volumeId}`;
      // Go's json.Marshal of the same object: sorted keys, HTML-safe escapes, compact.
      const goBytes = JSON.stringify(expected).replace(
        /[<>&]/g,
        (c) => `\\u00${c.charCodeAt(0).toString(16)}`,
      );
      expect(tarEntryData(outTar, a).toString("utf8")).toBe(goBytes);
      // Only size and checksum change in the header.
      const hb = Buffer.from(inTar.subarray(b.headerOffset, b.headerOffset + 512));
      const ha = Buffer.from(outTar.subarray(a.headerOffset, a.headerOffset + 512));
      hb.fill(0, 124, 136).fill(0, 148, 156);
      ha.fill(0, 124, 136).fill(0, 148, 156);
      expect(ha).toEqual(hb);
    });
    expect(rewritten).toBe(6);
    expect(outTar.subarray(after.at(-1)?.end)).toEqual(inTar.subarray(before.at(-1)?.end)); // trailer
  });

  it("leaves PV objects without a snapshot record alone", () => {
    // arrange
    const files = { ...fixtureFiles(), volumeSnapshots: volumeSnapshotRecords().slice(0, 1) };
    files.volumeInfo = volumeInfos().slice(0, 1);
    // act
    const out = rewriteBackupForFailover(files, options());
    // assert
    expect(out.summary.persistentVolumes).toEqual([PVS[0]?.name]);
    expect(out.summary.tarEntries).toBe(2);
  });

  it("writes the CloudBees fork's combined SRC/snap;DST/snap ids when asked", () => {
    // arrange
    const files = fixtureFiles();
    // act
    const out = rewriteBackupForFailover(files, options({ combinedIds: true }));
    // assert
    out.volumeSnapshots.forEach((r, i) => {
      const id = `us-east-1/${PVS[i]?.sourceSnapshotId};us-west-2/${PVS[i]?.copySnapshotId}`;
      expect((r.status as Obj).providerSnapshotID).toBe(id);
      expect((out.volumeInfo as Obj[])[i]?.nativeSnapshotInfo.snapshotHandle).toBe(id);
    });
    expect(out.summary.combinedIds).toBe(true);
  });

  it("fails with MissingCopyError naming the PV and the source snapshot when a copy is missing", () => {
    // arrange
    const copyOf = new Map(COPY_OF);
    copyOf.delete(PVS[1]?.sourceSnapshotId ?? "");
    // act
    const err = thrown(() => rewriteBackupForFailover(fixtureFiles(), options({ copyOf })));
    // assert
    expect(err).toBeInstanceOf(MissingCopyError);
    expect(err).toBeInstanceOf(DrError);
    expect((err as Error).message).toBe(
      `no failover copy of snapshot ${PVS[1]?.sourceSnapshotId} (PV ${PVS[1]?.name})`,
    );
    expect((err as MissingCopyError).missing).toEqual([
      { pvName: PVS[1]?.name, sourceSnapshotId: PVS[1]?.sourceSnapshotId },
    ]);
  });

  it("names every missing copy at once", () => {
    // act
    const err = thrown(() => rewriteBackupForFailover(fixtureFiles(), options({ copyOf: new Map() })));
    // assert
    expect((err as Error).message).toBe(
      `no failover copy of 3 snapshots: ${PVS.map((p) => `${p.sourceSnapshotId} (PV ${p.name})`).join(", ")}`,
    );
  });

  it("fails with UnknownZoneError naming a zone the map does not cover, and uses the default zone when set", () => {
    // arrange
    const zoneMap = { "us-east-1a": "us-west-2a", "us-east-1b": "us-west-2b" };
    // act
    const err = thrown(() => rewriteBackupForFailover(fixtureFiles(), options({ zoneMap })));
    const out = rewriteBackupForFailover(fixtureFiles(), options({ zoneMap, defaultZone: "us-west-2a" }));
    // assert
    expect(err).toBeInstanceOf(UnknownZoneError);
    expect((err as UnknownZoneError).zone).toBe("us-east-1c");
    expect((err as Error).message).toBe(
      `PV ${PVS[2]?.name}: zone us-east-1c is not in the zone map (us-east-1a, us-east-1b) and no default zone is set`,
    );
    expect((out.volumeSnapshots[2] as Obj).spec.volumeAZ).toBe("us-west-2a");
  });

  it("rejects a record whose zone is not in the source region", () => {
    // arrange
    const files = fixtureFiles();
    (files.volumeSnapshots[0] as Obj).spec.volumeAZ = "eu-west-1a";
    // act
    const err = thrown(() => rewriteBackupForFailover(files, options({ defaultZone: "us-west-2a" })));
    // assert
    expect(err).toBeInstanceOf(UnknownZoneError);
    expect((err as Error).message).toBe(
      `PV ${PVS[0]?.name}: zone eu-west-1a is not in the source region us-east-1`,
    );
  });

  it("rejects options that contradict themselves as ConfigError", () => {
    const cases: [Partial<FailoverOptions>, string][] = [
      [{ failoverRegion: "us-east-1" }, "source and failover region are both us-east-1"],
      [{ failoverRegion: "mars-1" }, 'failover region is not an AWS region: "mars-1"'],
      [
        { zoneMap: { "us-east-1a": "eu-west-1a" } },
        'zone map: "eu-west-1a" is not a zone of the failover region us-west-2',
      ],
      [
        { zoneMap: { "us-west-2a": "us-west-2b" } },
        'zone map: "us-west-2a" is not a zone of the source region us-east-1',
      ],
      [{ zoneMap: {} }, "the zone map is empty and no default zone is set"],
      [
        { defaultZone: "us-east-1a" },
        'default zone "us-east-1a" is not a zone of the failover region us-west-2',
      ],
      [{ copyOf: new Map([["snap-1", "x"]]) }, 'copy map: "snap-1" is not an EBS snapshot id'],
    ];
    for (const [over, message] of cases) {
      const err = thrown(() => rewriteBackupForFailover(fixtureFiles(), options(over)));
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toBe(message);
    }
  });

  it("accepts Local Zones of the failover region", () => {
    const out = rewriteBackupForFailover(
      fixtureFiles(),
      options({ zoneMap: {}, defaultZone: "us-west-2-lax-1a" }),
    );
    expect((out.volumeSnapshots[0] as Obj).spec.volumeAZ).toBe("us-west-2-lax-1a");
  });

  it("rejects a record of another backup, or one without a snapshot id", () => {
    // arrange
    const other = fixtureFiles();
    (other.volumeSnapshots[1] as Obj).spec.backupName = "cbci-dr-20250301114505";
    const failed = fixtureFiles();
    (failed.volumeSnapshots[0] as Obj).status = { phase: "Failed" };
    // act / assert
    expect(() => rewriteBackupForFailover(other, options())).toThrow(
      new InvalidBackupError(
        `volumesnapshots[1] (PV ${PVS[1]?.name}) belongs to backup cbci-dr-20250301114505, not ${BACKUP}`,
      ),
    );
    expect(() => rewriteBackupForFailover(failed, options())).toThrow(
      `volumesnapshots[0] (PV ${PVS[0]?.name}) has no status.providerSnapshotID (phase Failed): nothing to restore it from`,
    );
  });

  it("rejects a tarball that is not gzip, is truncated or has a bad header checksum", () => {
    // arrange
    const tar = goTar(tarEntries());
    const nameByte = (listTarEntries(tar)[1]?.headerOffset ?? 0) + 10;
    const badHeader = Buffer.from(tar);
    badHeader[nameByte] = (tar[nameByte] ?? 0) ^ 1;
    const cases: [Buffer, RegExp][] = [
      [Buffer.from("not gzip"), /^cbci-dr-20250301120005\.tar\.gz is not gzip/],
      [
        gzipSync(tar.subarray(0, 3000)),
        /tar\.gz: (truncated at byte \d+|entry header at byte \d+: data runs past)/,
      ],
      [gzipSync(badHeader), /tar\.gz: entry header at byte 1024: bad checksum$/],
    ];
    for (const [tarball, message] of cases) {
      const err = thrown(() => rewriteBackupForFailover({ ...fixtureFiles(), tarball }, options()));
      expect(err).toBeInstanceOf(InvalidBackupError);
      expect((err as Error).message).toMatch(message);
    }
  });
});

describe("rewriteBackupFileSet", () => {
  it("returns the files that change, as Velero writes them (gzip JSON with a trailing newline)", () => {
    // arrange
    const files = backupFiles();
    // act
    const { replaced, summary, backup } = rewriteBackupFileSet(files, options());
    // assert
    expect(Object.keys(replaced).sort()).toEqual(
      [`${BACKUP}-volumeinfo.json.gz`, `${BACKUP}-volumesnapshots.json.gz`, `${BACKUP}.tar.gz`].sort(),
    );
    const text = gunzipSync(replaced[`${BACKUP}-volumesnapshots.json.gz`] ?? Buffer.alloc(0)).toString(
      "utf8",
    );
    expect(text.endsWith("]\n")).toBe(true);
    expect(text.split("\n")).toHaveLength(2);
    expect(backup.name).toBe(BACKUP);
    expect(summary.volumeSnapshots).toBe(3);
  });

  it("requires velero-backup.json, the snapshot list and the tarball; volumeinfo is optional (Velero < 1.13)", () => {
    // arrange
    const files = backupFiles();
    const without = (name: string) => Object.fromEntries(Object.entries(files).filter(([n]) => n !== name));
    // act / assert
    expect(() => rewriteBackupFileSet(without("velero-backup.json"), options())).toThrow(
      "no velero-backup.json: not a Velero backup directory",
    );
    expect(() => rewriteBackupFileSet(without(`${BACKUP}.tar.gz`), options())).toThrow(
      `no ${BACKUP}.tar.gz: the backup is incomplete`,
    );
    expect(() => rewriteBackupFileSet(without(`${BACKUP}-volumesnapshots.json.gz`), options())).toThrow(
      `no ${BACKUP}-volumesnapshots.json.gz: the backup is incomplete`,
    );
    const old = rewriteBackupFileSet(without(`${BACKUP}-volumeinfo.json.gz`), options());
    expect(Object.keys(old.replaced)).not.toContain(`${BACKUP}-volumeinfo.json.gz`);
    expect(() =>
      rewriteBackupFileSet({ ...files, [`${BACKUP}-volumesnapshots.json.gz`]: gzipSync("{oops") }, options()),
    ).toThrow(InvalidBackupError);
    expect(() => gunzipJson(Buffer.from("plain"), "x.json.gz")).toThrow(/^x\.json\.gz is not gzip/);
  });
});

describe("zoneMapFor: one source region's part of the zone map", () => {
  it("keeps the entries of that region only (Local Zones included)", () => {
    const map = { "us-east-1a": "us-west-2a", "us-east-1-bos-1a": "us-west-2b", "eu-west-1a": "us-west-2c" };
    expect(zoneMapFor(map, "us-east-1")).toEqual({
      "us-east-1a": "us-west-2a",
      "us-east-1-bos-1a": "us-west-2b",
    });
    expect(zoneMapFor(map, "eu-west-1")).toEqual({ "eu-west-1a": "us-west-2c" });
    expect(zoneMapFor(map, "us-east-2")).toEqual({});
  });
});

describe("sourceRegionOf: a backup's source region, from its own snapshots", () => {
  const rec = (sourceRegion: string, id: string) => ({ sourceSnapshotId: id, sourceRegion });

  it("is the one region its snapshots are in, and undefined without snapshots", () => {
    expect(sourceRegionOf("b", [rec("eu-west-1", "snap-1"), rec("eu-west-1", "snap-2")])).toBe("eu-west-1");
    expect(sourceRegionOf("b", [])).toBeUndefined();
  });

  it("refuses snapshots in two regions, naming the backup and both", () => {
    expect(() => sourceRegionOf("cbci-1", [rec("us-east-1", "snap-1"), rec("eu-west-1", "snap-2")])).toThrow(
      "backup cbci-1 has snapshots in several regions (eu-west-1, us-east-1)",
    );
  });
});

describe("the failover rewrite of CSI snapshots (a Velero 1.16-shaped backup mixing native and CSI volumes)", () => {
  const VS_PATH =
    /^resources\/volumesnapshots\.snapshot\.storage\.k8s\.io\/(?:v1-preferredversion\/)?namespaces\//;
  const VSC_PATH =
    /^resources\/volumesnapshotcontents\.snapshot\.storage\.k8s\.io\/(?:v1-preferredversion\/)?cluster\//;
  const gz = (f: Record<string, Uint8Array>, suffix: string) => {
    const bytes = f[`${BACKUP}${suffix}`];
    if (!bytes) throw new Error(`no ${suffix}`);
    return JSON.parse(gunzipSync(bytes).toString("utf8"));
  };

  /** Every CSI handle a restoring Velero (1.14 to current) reads, with where it was read. */
  function csiHandles(f: Record<string, Uint8Array>): [string, string][] {
    const out: [string, string][] = [];
    const tar = gunzipSync(f[`${BACKUP}.tar.gz`] ?? Buffer.alloc(0));
    for (const e of listTarEntries(tar)) {
      const obj =
        VS_PATH.test(e.name) || VSC_PATH.test(e.name) ? JSON.parse(tarEntryData(tar, e).toString()) : null;
      if (obj?.kind === "VolumeSnapshot")
        out.push([e.name, obj.metadata.annotations["velero.io/csi-volumesnapshot-handle"]]);
      if (obj?.kind === "VolumeSnapshotContent") {
        out.push([e.name, obj.status.snapshotHandle]);
        if (obj.spec.source.snapshotHandle) out.push([`${e.name} spec`, obj.spec.source.snapshotHandle]);
      }
    }
    for (const vs of gz(f, "-csi-volumesnapshots.json.gz") as Obj[])
      out.push(["csi-volumesnapshots", vs.metadata.annotations["velero.io/csi-volumesnapshot-handle"]]);
    for (const vsc of gz(f, "-csi-volumesnapshotcontents.json.gz") as Obj[]) {
      out.push(["csi-volumesnapshotcontents", vsc.status.snapshotHandle]);
      if (vsc.spec.source.snapshotHandle)
        out.push(["csi-volumesnapshotcontents spec", vsc.spec.source.snapshotHandle]);
    }
    for (const info of gz(f, "-volumeinfo.json.gz") as Obj[])
      if (info.backupMethod === "CSISnapshot")
        out.push([`volumeinfo ${info.pvName}`, info.csiSnapshotInfo.snapshotHandle]);
    return out;
  }

  it("the simulated Velero writes each CSI handle where Velero 1.16 does: 2 tarball paths x 2 objects, 2 lists, volumeinfo", () => {
    // act
    const handles = csiHandles(mixedBackupFiles());
    // assert
    expect(handles).toHaveLength(CSI_PVS.length * 7);
    expect(new Set(handles.map(([, h]) => h))).toEqual(new Set(CSI_PVS.map((p) => p.sourceSnapshotId)));
  });

  it("names only failover copies in every handle a restore reads, and native records get copies and failover zones", () => {
    // arrange
    const input = mixedBackupFiles();
    // act
    const { replaced, summary } = rewriteBackupFileSet(input, options({ copyOf: MIXED_COPY_OF }));
    // assert
    const out = { ...input, ...replaced };
    const copyOf = (h: string) => CSI_PVS.find((p) => p.sourceSnapshotId === h)?.copySnapshotId;
    const before = csiHandles(input);
    const after = csiHandles(out);
    expect(after.map(([w]) => w)).toEqual(before.map(([w]) => w));
    after.forEach(([, h], i) => {
      expect(h).toBe(copyOf(before[i]?.[1] ?? ""));
    });
    expect(Object.keys(replaced).sort()).toEqual(
      [
        `${BACKUP}-csi-volumesnapshotcontents.json.gz`,
        `${BACKUP}-csi-volumesnapshots.json.gz`,
        `${BACKUP}-volumeinfo.json.gz`,
        `${BACKUP}-volumesnapshots.json.gz`,
        `${BACKUP}.tar.gz`,
      ].sort(),
    );
    for (const r of parseVolumeSnapshots(gz(out, "-volumesnapshots.json.gz"))) {
      const pv = PVS.find((p) => p.name === r.persistentVolumeName);
      expect(r.providerSnapshotID).toBe(pv?.copySnapshotId);
      expect(r.volumeAZ).toBe(ZONE_MAP[pv?.zone as keyof typeof ZONE_MAP]);
    }
    expect(summary.csiSnapshots).toEqual(
      Object.fromEntries(CSI_PVS.map((p) => [p.sourceSnapshotId, p.copySnapshotId])),
    );
    expect(summary.snapshotObjectEntries).toBe(CSI_PVS.length * 4);
    expect(summary.tarEntries).toBe(PVS.length * 2 + CSI_PVS.length * 4);
  });

  it("changes nothing else: other tar entries byte for byte, the snapshot objects and lists only in their handles", () => {
    // arrange
    const input = mixedBackupFiles();
    const swap = (text: string) =>
      CSI_PVS.reduce((t, p) => t.replaceAll(`"${p.sourceSnapshotId}"`, `"${p.copySnapshotId}"`), text);
    // act
    const { replaced } = rewriteBackupFileSet(input, options({ copyOf: MIXED_COPY_OF }));
    // assert
    const inTar = gunzipSync(input[`${BACKUP}.tar.gz`] ?? Buffer.alloc(0));
    const outTar = gunzipSync(replaced[`${BACKUP}.tar.gz`] ?? Buffer.alloc(0));
    const before = listTarEntries(inTar);
    const after = listTarEntries(outTar);
    expect(after.map((e) => e.name)).toEqual(before.map((e) => e.name));
    before.forEach((b, i) => {
      const a = after[i] as (typeof after)[number];
      if (VS_PATH.test(b.name) || VSC_PATH.test(b.name)) {
        // the VolumeSnapshotContent's int64 status.creationTime (nanoseconds) survives digit for digit
        expect(tarEntryData(outTar, a).toString()).toBe(swap(tarEntryData(inTar, b).toString()));
        expect(tarEntryData(outTar, a).toString()).not.toBe(tarEntryData(inTar, b).toString());
      } else if (!PV_PATH.test(b.name)) {
        expect(outTar.subarray(a.headerOffset, a.end)).toEqual(inTar.subarray(b.headerOffset, b.end));
      }
    });
    for (const list of ["-csi-volumesnapshots.json.gz", "-csi-volumesnapshotcontents.json.gz"]) {
      const name = `${BACKUP}${list}`;
      expect(gunzipSync(replaced[name] ?? Buffer.alloc(0)).toString()).toBe(
        swap(gunzipSync(input[name] ?? Buffer.alloc(0)).toString()),
      );
    }
    expect(
      gunzipSync(input[`${BACKUP}-csi-volumesnapshotcontents.json.gz`] ?? Buffer.alloc(0)).toString(),
    ).toMatch(/"creationTime":\d{19},/);
  });

  it("rewrites spec.source.snapshotHandle when set (a pre-provisioned content, or one a 1.16+ restore wrote)", () => {
    // arrange
    const input = mixedBackupFiles();
    const name = `${BACKUP}-csi-volumesnapshotcontents.json.gz`;
    const list = gz(input, "-csi-volumesnapshotcontents.json.gz") as Obj[];
    const first = list[0] as Obj;
    first.spec.source = { snapshotHandle: first.status.snapshotHandle };
    const files = { ...input, [name]: gzipSync(`${JSON.stringify(list)}\n`) };
    // act
    const { replaced } = rewriteBackupFileSet(files, options({ copyOf: MIXED_COPY_OF }));
    // assert
    const out = JSON.parse(gunzipSync(replaced[name] ?? Buffer.alloc(0)).toString()) as Obj[];
    expect(out[0]?.spec.source.snapshotHandle).toBe(CSI_PVS[0]?.copySnapshotId);
    expect(out[0]?.status.snapshotHandle).toBe(CSI_PVS[0]?.copySnapshotId);
  });

  it("fails with MissingCopyError naming the PV, its VolumeSnapshotContent and the snapshot when a CSI copy is missing", () => {
    // arrange
    const copyOf = new Map(MIXED_COPY_OF);
    const missing = CSI_PVS[1] as (typeof CSI_PVS)[number];
    copyOf.delete(missing.sourceSnapshotId);
    // act
    const err = thrown(() => rewriteBackupFileSet(mixedBackupFiles(), options({ copyOf })));
    // assert
    expect(err).toBeInstanceOf(MissingCopyError);
    expect((err as Error).message).toBe(
      `no failover copy of snapshot ${missing.sourceSnapshotId} (PV ${missing.name}, VolumeSnapshotContent ${files.volumeSnapshotContentName(missing)})`,
    );
  });

  it("fails the same when only the tarball names a CSI handle without a copy (no volumeinfo, no CSI lists)", () => {
    // arrange
    const copyOf = new Map(MIXED_COPY_OF);
    const missing = CSI_PVS[0] as (typeof CSI_PVS)[number];
    copyOf.delete(missing.sourceSnapshotId);
    const bare = Object.fromEntries(
      Object.entries(mixedBackupFiles()).filter(
        ([n]) => !/-(volumeinfo|csi-volumesnapshots|csi-volumesnapshotcontents)\.json\.gz$/.test(n),
      ),
    );
    // act
    const err = thrown(() => rewriteBackupFileSet(bare, options({ copyOf })));
    // assert
    expect(err).toBeInstanceOf(MissingCopyError);
    expect((err as Error).message).toMatch(
      new RegExp(`^no failover copy of snapshot ${missing.sourceSnapshotId} \\(Volume`),
    );
  });
});
