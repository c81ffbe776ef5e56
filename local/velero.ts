import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { VeleroConfig } from "../functions/core/config.js";
import type { Controller, TakenSnapshot } from "./primary.js";
import {
  type BackupJsonOptions,
  backupFiles,
  backupJson,
  backupJsonBytes,
  DEFAULT_NAMESPACE,
  gzipJson,
  methodOf,
  volumeSnapshotRecords as records,
  repositorySnapshotId,
  type VeleroBackupObject,
  type VeleroPv,
  type VeleroVolumeMethod,
  type VolumeSnapshotRecord,
} from "./velero-files.js";

/**
 * A stand-in for Velero's writes to its bucket (the bucket lives in the failover region), in
 * Velero's order: velero-backup.json while InProgress, then the backup's other files (tarball,
 * snapshot list, volumeinfo, logs, results, ...; see local/velero-files.ts), then
 * velero-backup.json again with the final phase.
 */

export interface VeleroBackupOptions {
  name: string;
  /** The namespace backed up. Default "cbci". */
  namespace?: string;
  schedule?: string;
  phase: string;
  start: Date;
  completion?: Date;
  ttlMinutes?: number;
  errors?: number;
  warnings?: number;
  /** Native snapshots (`status.volumeSnapshotsAttempted`, and Completed once finished). */
  snapshots: number;
  /** CSI snapshots (`status.csiVolumeSnapshotsAttempted`, and Completed once finished). Default 0. */
  csiSnapshots?: number;
}

/** What the simulated primary's snapshots do not say about their volumes. */
export interface SnapshotVolumeOptions {
  /** The source region. Default: the zone without its letter. */
  region?: string;
  /** Default "gp3" (SimulatedPrimary's volumes). */
  volumeType?: string;
  /** Default 3000 (gp3's baseline, as velero-plugin-for-aws records it). */
  iops?: number;
  /** Default "50Gi" (SimulatedPrimary's volumes). */
  size?: string;
  /** Default "csi" (SimulatedPrimary's volumes are the EBS CSI driver's). */
  kind?: VeleroPv["kind"];
  /**
   * The controllers, for each PV's claim name (their `kubernetes.io/created-for/pvc/name` tag).
   * A PV of no given controller gets `jenkins-home-mc-<i+1>-0`, i its snapshot's index: the claim
   * of SimulatedPrimary's i-th controller, right when the backup covers all of them.
   */
  controllers?: readonly Pick<Controller, "pvName" | "tags">[];
  /**
   * How Velero backed up each snapshot's volume, by the snapshot's index (default "native"): a
   * "csi" snapshot is the EBS CSI driver's, taken through a VolumeSnapshot, so it has no record in
   * the snapshot list; volumeinfo and the status's CSI counts name it.
   */
  methods?: readonly ("native" | "csi")[];
}

/** A volume Velero backed up into its backup repository, with no EBS snapshot. */
export interface RepositoryVolume {
  controller: Pick<Controller, "pvName" | "volumeId" | "tags">;
  /** File-system backup (PodVolumeBackup) or the data mover (a DataUpload of a CSI snapshot). */
  method: Extract<VeleroVolumeMethod, "fs-backup" | "data-mover">;
}

const PVC_TAG = "kubernetes.io/created-for/pvc/name";
const regionOf = (zone: string) => zone.replace(/[a-z]$/, "");

/** The PVs behind the simulated primary's snapshots, all in zone `az`. */
export function snapshotVolumes(
  snapshots: readonly TakenSnapshot[],
  az: string,
  o: SnapshotVolumeOptions = {},
): VeleroPv[] {
  const claims = new Map(
    (o.controllers ?? []).flatMap((c) => (c.tags[PVC_TAG] ? [[c.pvName, c.tags[PVC_TAG]] as const] : [])),
  );
  return snapshots.map((s, i) => ({
    name: s.pvName,
    claim: claims.get(s.pvName) ?? `jenkins-home-mc-${i + 1}-0`,
    zone: az,
    volumeId: s.volumeId,
    sourceSnapshotId: s.snapshotId,
    ...(o.methods?.[i] === "csi" ? { method: "csi" as const } : {}),
    kind: o.kind ?? "csi",
    volumeType: o.volumeType ?? "gp3",
    iops: o.iops ?? 3000,
    size: o.size ?? "50Gi",
  }));
}

/** The PVs of volumes backed up into the repository (no EBS snapshot), all in zone `az`. */
export function repositoryVolumes(
  backup: string,
  volumes: readonly RepositoryVolume[],
  az: string,
  o: Omit<SnapshotVolumeOptions, "controllers" | "methods"> = {},
): VeleroPv[] {
  return volumes.map(({ controller: c, method }, i) => ({
    name: c.pvName,
    claim: c.tags[PVC_TAG] ?? `jenkins-home-fs-${i + 1}-0`,
    zone: az,
    volumeId: c.volumeId,
    sourceSnapshotId: repositorySnapshotId(backup, c.pvName),
    method,
    kind: o.kind ?? "csi",
    volumeType: o.volumeType ?? "gp3",
    iops: o.iops ?? 3000,
    size: o.size ?? "50Gi",
  }));
}

/** The velero-files options of a backup (Velero omits zero error and warning counts). */
function backupOptions(o: VeleroBackupOptions): BackupJsonOptions {
  return {
    name: o.name,
    namespace: o.namespace ?? DEFAULT_NAMESPACE,
    ...(o.schedule ? { schedule: o.schedule } : {}),
    phase: o.phase,
    start: o.start,
    ...(o.completion ? { completion: o.completion } : {}),
    ...(o.ttlMinutes !== undefined ? { ttlMinutes: o.ttlMinutes } : {}),
    ...(o.errors ? { errors: o.errors } : {}),
    ...(o.warnings ? { warnings: o.warnings } : {}),
    volumeSnapshotsAttempted: o.snapshots,
    csiVolumeSnapshotsAttempted: o.csiSnapshots ?? 0,
  };
}

/** `velero-backup.json`: a velero.io/v1 Backup as Velero stores it. */
export function veleroBackupJson(o: VeleroBackupOptions): VeleroBackupObject {
  return backupJson(backupOptions(o));
}

/**
 * `<name>-volumesnapshots.json.gz` records, as velero-plugin-for-aws's snapshots are recorded (with
 * Velero 1.11+'s `persistentVolumeName` key; local/velero-files.ts writes 1.10's spelling on request).
 * Only native snapshots have one (`o.methods`).
 */
export function volumeSnapshotRecords(
  backup: string,
  snapshots: readonly TakenSnapshot[],
  az: string,
  o: SnapshotVolumeOptions = {},
): VolumeSnapshotRecord[] {
  return records(backup, snapshotVolumes(snapshots, az, o));
}

export class SimulatedVelero {
  constructor(
    private readonly s3: S3Client,
    private readonly velero: Pick<VeleroConfig, "bucket" | "prefix">,
  ) {}

  key(backup: string, file: string): string {
    return `${this.velero.prefix ? `${this.velero.prefix}/` : ""}backups/${backup}/${file}`;
  }

  async put(backup: string, file: string, body: Uint8Array | string): Promise<void> {
    await this.s3.send(
      new PutObjectCommand({ Bucket: this.velero.bucket, Key: this.key(backup, file), Body: body }),
    );
  }

  async putJson(backup: string, o: VeleroBackupOptions): Promise<void> {
    await this.put(backup, "velero-backup.json", backupJsonBytes(veleroBackupJson(o)));
  }

  async putSnapshotList(
    backup: string,
    snapshots: readonly TakenSnapshot[],
    az: string,
    o: SnapshotVolumeOptions = {},
  ): Promise<void> {
    await this.put(
      backup,
      `${backup}-volumesnapshots.json.gz`,
      gzipJson(volumeSnapshotRecords(backup, snapshots, az, o)),
    );
  }

  /**
   * A whole backup, in Velero's write order: velero-backup.json (InProgress), every other file of
   * the backup directory (tarball, snapshot list, volumeinfo, logs, results, ...), then
   * velero-backup.json with the final phase (default Completed, 90 s after the start). Each
   * snapshot's volume is a native snapshot unless `methods` makes it a CSI one; `repository` adds
   * volumes backed up by file-system backup or the data mover (no snapshot). The status counts
   * follow from them.
   */
  async writeBackup(
    o: Omit<VeleroBackupOptions, "phase" | "snapshots" | "csiSnapshots"> & {
      phase?: string;
      repository?: readonly RepositoryVolume[];
    } & SnapshotVolumeOptions,
    snapshots: readonly TakenSnapshot[],
    az: string,
  ): Promise<void> {
    const pvs = [
      ...snapshotVolumes(snapshots, az, o),
      ...repositoryVolumes(o.name, o.repository ?? [], az, o),
    ];
    const count = (m: VeleroVolumeMethod) => pvs.filter((p) => methodOf(p) === m).length;
    const base = { ...o, snapshots: count("native"), csiSnapshots: count("csi") };
    const final = {
      ...base,
      phase: o.phase ?? "Completed",
      completion: o.completion ?? new Date(o.start.getTime() + 90_000),
    };
    const { "velero-backup.json": _, ...rest } = backupFiles({
      ...backupOptions(final),
      region: o.region ?? regionOf(az),
      pvs,
    });
    await this.putJson(o.name, { ...base, phase: "InProgress" });
    for (const [file, body] of Object.entries(rest)) await this.put(o.name, file, body);
    await this.putJson(o.name, final);
  }
}
