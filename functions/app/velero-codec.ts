import type { BackupState, ExpectedSnapshot } from "../core/backup.js";
import type { ReplicationConfig } from "../core/config.js";
import type { VeleroCodec } from "../core/registry.js";
import { parseVeleroBackup, parseVolumeSnapshots, rewriteBackupFileSet } from "../core/velero.js";

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
      return state;
    },
    rewrite(_name, files, copyOf) {
      if (!velero) throw new Error("the Velero settings are required to publish failover metadata");
      const sourceRegion = config.sourceRegions[0] ?? "";
      return rewriteBackupFileSet(files, {
        copyOf,
        zoneMap: velero.zoneMap,
        ...(velero.defaultZone ? { defaultZone: velero.defaultZone } : {}),
        sourceRegion,
        failoverRegion: config.failoverRegion,
        combinedIds: velero.combinedIds,
      }).replaced;
    },
  };
}
