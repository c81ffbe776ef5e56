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
  volumeSnapshotRecords as records,
  type VeleroBackupObject,
  type VeleroPv,
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
  snapshots: number;
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
  };
}

/** `velero-backup.json`: a velero.io/v1 Backup as Velero stores it. */
export function veleroBackupJson(o: VeleroBackupOptions): VeleroBackupObject {
  return backupJson(backupOptions(o));
}

/**
 * `<name>-volumesnapshots.json.gz` records, as velero-plugin-for-aws's snapshots are recorded (with
 * Velero's `PersistentVolumeName` key spelling, which functions/core/velero.ts reads).
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
   * velero-backup.json with the final phase (default Completed, 90 s after the start).
   */
  async writeBackup(
    o: Omit<VeleroBackupOptions, "phase" | "snapshots"> & { phase?: string } & SnapshotVolumeOptions,
    snapshots: readonly TakenSnapshot[],
    az: string,
  ): Promise<void> {
    const base = { ...o, snapshots: snapshots.length };
    const final = {
      ...base,
      phase: o.phase ?? "Completed",
      completion: o.completion ?? new Date(o.start.getTime() + 90_000),
    };
    const { "velero-backup.json": _, ...rest } = backupFiles({
      ...backupOptions(final),
      region: o.region ?? regionOf(az),
      pvs: snapshotVolumes(snapshots, az, o),
    });
    await this.putJson(o.name, { ...base, phase: "InProgress" });
    for (const [file, body] of Object.entries(rest)) await this.put(o.name, file, body);
    await this.putJson(o.name, final);
  }
}
