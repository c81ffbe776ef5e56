import { S3Client } from "@aws-sdk/client-s3";
import { S3VeleroBucket } from "../adapters/s3-velero.js";
import { BackupRegistry, type VeleroCodec } from "../core/registry.js";
import { publishReady } from "./metrics.js";
import type { Runtime } from "./runtime.js";
import { veleroCodec } from "./velero-codec.js";

/**
 * Adds the backup registry (Velero's bucket, the DR-ready verdict, failover metadata, retention)
 * to a runtime, when Velero's bucket is configured. Only the functions that judge backups import
 * this module, so only their bundles carry the S3 client and the Velero formats.
 */
export function withRegistry(rt: Runtime, options: { s3?: S3Client; codec?: VeleroCodec } = {}): Runtime {
  const velero = rt.config.velero;
  if (!velero) return rt;
  const s3 = options.s3 ?? new S3Client({ region: rt.config.failoverRegion });
  rt.registry = new BackupRegistry(
    {
      ledger: rt.ledger,
      bucket: new S3VeleroBucket(s3, velero),
      copier: rt.copier,
      codec: options.codec ?? veleroCodec(rt.config),
      clock: rt.clock,
      log: rt.logger,
      onReady: (ready) => publishReady(rt.metrics, ready),
      snapshots: rt.plane,
    },
    {
      allowedWarnings: velero.allowedWarnings,
      backupRepositoryReplicated: velero.backupRepositoryReplicated ?? false,
      // Registration copies a backup's CSI snapshots (the registry's `snapshots`), and publishing
      // names their copies in every CSI handle a restore reads: a CSI volume counts once copied.
      csiSnapshotsCopied: true,
    },
  );
  return rt;
}
