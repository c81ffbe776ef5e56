import { gzipSync } from "node:zlib";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { VeleroConfig } from "../functions/core/config.js";
import type { TakenSnapshot } from "./primary.js";

/**
 * A stand-in for Velero's writes to its bucket (the bucket lives in the failover region), in
 * Velero's order: velero-backup.json while InProgress, then the backup's other files (the snapshot
 * list among them), then velero-backup.json again with the final phase.
 */

export interface VeleroBackupOptions {
  name: string;
  schedule?: string;
  phase: string;
  start: Date;
  completion?: Date;
  ttlMinutes?: number;
  errors?: number;
  warnings?: number;
  snapshots: number;
}

/** `velero-backup.json`: a velero.io/v1 Backup as Velero stores it. */
export function veleroBackupJson(o: VeleroBackupOptions): Record<string, unknown> {
  const ttl = o.ttlMinutes ?? 60;
  return {
    kind: "Backup",
    apiVersion: "velero.io/v1",
    metadata: {
      name: o.name,
      namespace: "velero",
      labels: {
        "velero.io/storage-location": "default",
        ...(o.schedule ? { "velero.io/schedule-name": o.schedule } : {}),
      },
    },
    spec: {
      includedNamespaces: ["cbci"],
      excludedResources: ["pods", "events", "events.events.k8s.io"],
      ttl: `${Math.floor(ttl / 60)}h${ttl % 60}m0s`,
      storageLocation: "default",
      volumeSnapshotLocations: ["default"],
    },
    status: {
      version: 1,
      formatVersion: "1.1.0",
      phase: o.phase,
      expiration: new Date(o.start.getTime() + ttl * 60_000).toISOString().replace(/\.\d{3}Z$/, "Z"),
      startTimestamp: o.start.toISOString().replace(/\.\d{3}Z$/, "Z"),
      ...(o.completion ? { completionTimestamp: o.completion.toISOString().replace(/\.\d{3}Z$/, "Z") } : {}),
      volumeSnapshotsAttempted: o.snapshots,
      ...(o.phase === "Completed" || o.phase === "PartiallyFailed"
        ? { volumeSnapshotsCompleted: o.snapshots }
        : {}),
      ...(o.errors ? { errors: o.errors } : {}),
      ...(o.warnings ? { warnings: o.warnings } : {}),
    },
  };
}

/** `<name>-volumesnapshots.json.gz` records, as velero-plugin-for-aws's snapshots are recorded. */
export function volumeSnapshotRecords(backup: string, snapshots: readonly TakenSnapshot[], az: string) {
  return snapshots.map((s) => ({
    spec: {
      backupName: backup,
      backupUID: "00000000-0000-0000-0000-000000000000",
      location: "default",
      persistentVolumeName: s.pvName,
      providerVolumeID: s.volumeId,
      volumeType: "gp3",
      volumeAZ: az,
      volumeIOPS: 3000,
    },
    status: { providerSnapshotID: s.snapshotId, phase: "Completed" },
  }));
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
    await this.put(backup, "velero-backup.json", JSON.stringify(veleroBackupJson(o)));
  }

  async putSnapshotList(backup: string, snapshots: readonly TakenSnapshot[], az: string): Promise<void> {
    await this.put(
      backup,
      `${backup}-volumesnapshots.json.gz`,
      gzipSync(JSON.stringify(volumeSnapshotRecords(backup, snapshots, az))),
    );
  }

  /** A whole backup, in Velero's write order. */
  async writeBackup(
    o: Omit<VeleroBackupOptions, "phase" | "snapshots"> & { phase?: string },
    snapshots: readonly TakenSnapshot[],
    az: string,
  ): Promise<void> {
    const base = { ...o, snapshots: snapshots.length };
    await this.putJson(o.name, { ...base, phase: "InProgress" });
    await this.putSnapshotList(o.name, snapshots, az);
    await this.putJson(o.name, {
      ...base,
      phase: o.phase ?? "Completed",
      completion: o.completion ?? new Date(o.start.getTime() + 90_000),
    });
  }
}
