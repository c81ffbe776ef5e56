import type { BackupState, BackupVolume, ExpectedSnapshot, VolumeMethod } from "../core/backup.js";
import type { ReplicationConfig } from "../core/config.js";
import type { VeleroCodec } from "../core/registry.js";
import {
  parseVeleroBackup,
  parseVolumeInfo,
  parseVolumeSnapshots,
  rewriteBackupFileSet,
  type VolumeInfoEntry,
  zoneMapFor,
} from "../core/velero.js";
import { publication, rewriteInputs } from "../core/velero-stream.js";

/** How Velero backed the volume up (internal/volume/volumes_information.go's methods). */
function methodOf(e: VolumeInfoEntry): VolumeMethod {
  if (e.skipped) return "skipped";
  switch (e.backupMethod) {
    case "NativeSnapshot":
      return "native";
    case "CSISnapshot":
      return e.snapshotDataMoved ? "data-mover" : "csi";
    case "PodVolumeBackup":
      return "fs-backup";
    default:
      return "unknown";
  }
}

/** What the verdict needs of one volumeinfo entry. */
export function backupVolume(e: VolumeInfoEntry): BackupVolume {
  const method = methodOf(e);
  const v: BackupVolume = { method };
  const pvb = e.podVolumeBackup;
  if (e.pvName) v.pvName = e.pvName;
  else if (pvb?.podName) v.podVolume = `${pvb.podNamespace ?? ""}/${pvb.podName}/${pvb.volumeName ?? ""}`;
  const handle = {
    native: e.nativeSnapshot?.snapshotHandle,
    csi: e.csiSnapshot?.snapshotHandle,
    "data-mover": e.dataMovement?.snapshotHandle,
    "fs-backup": pvb?.snapshotHandle,
    skipped: undefined,
    unknown: undefined,
  }[method];
  if (handle) v.snapshotHandle = handle;
  if (method === "csi" && e.csiSnapshot?.driver) v.driver = e.csiSnapshot.driver;
  if (e.result === "failed") v.failed = true;
  if (method === "skipped" && e.skippedReason) v.detail = e.skippedReason;
  if (method === "unknown") v.detail = e.backupMethod ?? "";
  return v;
}

/**
 * Velero's file formats, for the registry: what a backup's files say (functions/core/velero.ts
 * parses them the way Velero does), and the failover copy's rewritten files.
 */
export function veleroCodec(config: ReplicationConfig): VeleroCodec {
  const velero = config.velero;
  return {
    toState(name, files) {
      const b = parseVeleroBackup(files.backupJson);
      const state: BackupState = { name, errors: b.errors, warnings: b.warnings };
      if (b.schedule) state.schedule = b.schedule;
      if (b.storageLocation) state.storageLocation = b.storageLocation;
      if (b.phase) state.phase = b.phase;
      if (b.startTimestamp) state.startTimestamp = b.startTimestamp;
      if (b.completionTimestamp) state.completionTimestamp = b.completionTimestamp;
      if (b.expiration) state.expiration = b.expiration;
      state.volumeSnapshotsAttempted = b.volumeSnapshotsAttempted;
      state.volumeSnapshotsCompleted = b.volumeSnapshotsCompleted;
      state.csiVolumeSnapshotsAttempted = b.csiVolumeSnapshotsAttempted;
      state.csiVolumeSnapshotsCompleted = b.csiVolumeSnapshotsCompleted;
      if (files.volumeSnapshots !== undefined) {
        state.expected = parseVolumeSnapshots(files.volumeSnapshots).flatMap((r): ExpectedSnapshot[] => {
          if (!r.providerSnapshotID) return [];
          const e: ExpectedSnapshot = {
            pvName: r.persistentVolumeName,
            sourceSnapshotId: r.providerSnapshotID,
          };
          if (r.providerVolumeID) e.volumeId = r.providerVolumeID;
          if (r.volumeAZ) e.volumeAZ = r.volumeAZ;
          return [e];
        });
      }
      if (files.volumeInfo !== undefined) {
        // The native snapshots of the list are judged by `expected`; only the rest is kept.
        const inList = new Set((state.expected ?? []).map((e) => e.sourceSnapshotId));
        state.volumes = parseVolumeInfo(files.volumeInfo)
          .map(backupVolume)
          .filter(
            (v) => !(v.method === "native" && !v.failed && v.snapshotHandle && inList.has(v.snapshotHandle)),
          );
      }
      return state;
    },
    rewriteInputs,
    rewrite(_name, files, copyOf, backupRegion) {
      if (!velero) throw new Error("the Velero settings are required to publish failover metadata");
      // The backup's own region (its snapshots'); a backup without snapshots has no zone to map,
      // so any configured source region will do.
      const sourceRegion = backupRegion ?? config.sourceRegions[0] ?? "";
      if (!config.sourceRegions.includes(sourceRegion)) {
        throw new Error(`the backup's snapshots are in ${sourceRegion}, not a configured source region`);
      }
      // The tarball is not read here: publishing streams it (functions/core/velero-stream.ts).
      return publication(
        rewriteBackupFileSet(
          files,
          {
            copyOf,
            zoneMap: zoneMapFor(velero.zoneMap, sourceRegion),
            ...(velero.defaultZone ? { defaultZone: velero.defaultZone } : {}),
            sourceRegion,
            failoverRegion: config.failoverRegion,
            combinedIds: velero.combinedIds,
          },
          "stream",
        ),
      );
    },
  };
}
