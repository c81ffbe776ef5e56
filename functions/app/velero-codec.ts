import type { BackupState, ExpectedSnapshot } from "../core/backup.js";
import type { ReplicationConfig } from "../core/config.js";
import { DrError } from "../core/errors.js";
import type { VeleroCodec } from "../core/registry.js";

const str = (v: unknown) => (typeof v === "string" && v ? v : undefined);
const num = (v: unknown) => (typeof v === "number" ? v : undefined);
const obj = (v: unknown): Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

/** Velero's file formats, for the registry. (Provisional: replaced by functions/core/velero.ts.) */
export function veleroCodec(_config: ReplicationConfig): VeleroCodec {
  return {
    toState(name, files) {
      const b = obj(files.backupJson);
      if (b.kind !== "Backup") throw new DrError(`backups/${name}/velero-backup.json is not a Velero Backup`);
      const meta = obj(b.metadata);
      const spec = obj(b.spec);
      const status = obj(b.status);
      const labels = obj(meta.labels);
      const state: BackupState = {
        name,
        errors: num(status.errors) ?? 0,
        warnings: num(status.warnings) ?? 0,
      };
      const set = <K extends keyof BackupState>(k: K, v: BackupState[K] | undefined) => {
        if (v !== undefined) state[k] = v;
      };
      set("schedule", str(labels["velero.io/schedule-name"]));
      set("storageLocation", str(spec.storageLocation));
      set("phase", str(status.phase));
      set("startTimestamp", str(status.startTimestamp));
      set("completionTimestamp", str(status.completionTimestamp));
      set("expiration", str(status.expiration));
      set("volumeSnapshotsAttempted", num(status.volumeSnapshotsAttempted));
      if (Array.isArray(files.volumeSnapshots)) {
        state.expected = files.volumeSnapshots.map((r): ExpectedSnapshot => {
          const rs = obj(obj(r).spec);
          const st = obj(obj(r).status);
          const e: ExpectedSnapshot = {
            pvName: str(rs.persistentVolumeName) ?? "",
            sourceSnapshotId: str(st.providerSnapshotID) ?? "",
          };
          const volumeId = str(rs.providerVolumeID);
          const az = str(rs.volumeAZ);
          if (volumeId) e.volumeId = volumeId;
          if (az) e.volumeAZ = az;
          return e;
        });
      }
      return state;
    },
    rewrite() {
      throw new DrError("failover metadata rewrite is not wired yet");
    },
  };
}
