import { type BackupState, type Evaluation, evaluateBackup } from "./backup.js";
import { errorMessage } from "./errors.js";
import type { BackupLedger, Clock, Log, StoredBackup, VeleroBackupFiles, VeleroBucket } from "./ports.js";

/** Reads and writes Velero's file formats (implemented over functions/core/velero.ts). */
export interface VeleroCodec {
  /** What the bucket's files say of the backup. Throws on files that are not Velero's. */
  toState(name: string, files: VeleroBackupFiles): BackupState;
  /** The files of the failover copy that differ from the source (snapshot ids, zones, PV topology). */
  rewrite(
    name: string,
    files: Record<string, Uint8Array>,
    copyOf: ReadonlyMap<string, string>,
  ): Record<string, Uint8Array>;
}

export interface RegistryDeps {
  ledger: BackupLedger;
  bucket: VeleroBucket;
  codec: VeleroCodec;
  clock: Clock;
  log: Log;
}

/** A verdict, and when it is the one that made the backup DR-ready, what was published. */
export interface EvaluateResult extends Evaluation {
  published?: { prefix: string; objects: number };
  /** Backup completion to DR-ready, seconds (only when it became ready now). */
  replicationLagSeconds?: number;
}

export type RegisterOutcome =
  | { status: "registered" | "stale"; evaluation?: EvaluateResult }
  | { status: "gone"; reason: string };

/**
 * Velero backups in the failover region: registration from the bucket, the DR-ready verdict, and
 * the failover metadata that stock Velero in the standby cluster restores from.
 */
export class BackupRegistry {
  constructor(
    private readonly deps: RegistryDeps,
    private readonly options: { allowedWarnings: number },
  ) {}

  /**
   * Registers a backup from what the bucket holds now, not from the event that woke us: Velero
   * writes velero-backup.json, then the snapshot list, then rewrites the JSON with the final phase,
   * and events may arrive in any order, so every read converges on the bucket's latest state.
   */
  async register(name: string): Promise<RegisterOutcome> {
    const files = await this.deps.bucket.read(name);
    if (!files) return { status: "gone", reason: `backups/${name}/velero-backup.json does not exist` };
    const state = this.deps.codec.toState(name, files);
    const status = await this.deps.ledger.registerBackup({ ...state, metadataModified: files.modified });
    if (status === "stale") return { status };
    return { status: "registered", evaluation: await this.evaluate(name) };
  }

  /**
   * Decides whether a backup is DR-ready and, the first time it is, publishes its failover
   * metadata before recording the verdict (a backup is never called ready before its files exist).
   */
  async evaluate(name: string): Promise<EvaluateResult | undefined> {
    const { ledger, clock, log } = this.deps;
    const backup = await ledger.getBackup(name);
    if (!backup) return undefined;
    const now = clock.now();
    const copies = await ledger.getSnapshots((backup.expected ?? []).map((e) => e.sourceSnapshotId));
    const e = evaluateBackup(backup, copies, { now, allowedWarnings: this.options.allowedWarnings });
    if (e.verdict === "dr-ready" && !backup.drReadyAt) {
      const copyOf = new Map<string, string>();
      for (const [id, r] of copies) if (r.copySnapshotId) copyOf.set(id, r.copySnapshotId);
      const published = await this.publish(backup, copyOf);
      await ledger.recordVerdict(name, e, now.toISOString(), published);
      const done = Date.parse(backup.completionTimestamp ?? "");
      const lag = Number.isNaN(done) ? undefined : Math.max(0, (now.getTime() - done) / 1000);
      log.info("backup is DR-ready", { backup: name, prefix: published.prefix, objects: published.objects });
      return { ...e, published, ...(lag === undefined ? {} : { replicationLagSeconds: lag }) };
    }
    if (backup.verdict !== e.verdict || backup.reason !== e.reason) {
      await ledger.recordVerdict(name, e, now.toISOString());
      if (e.verdict === "not-ready")
        log.warn("backup will not be DR-ready", { backup: name, reason: e.reason });
    }
    return e;
  }

  private async publish(backup: StoredBackup, copyOf: ReadonlyMap<string, string>) {
    const { bucket, codec } = this.deps;
    const files = await bucket.files(backup.name);
    const replaced = codec.rewrite(backup.name, files, copyOf);
    return bucket.publish(backup.name, replaced);
  }

  /** Re-evaluates backups that may still become ready (the sweep calls this). */
  async evaluateOpen(limit = 50): Promise<{ evaluated: number; ready: string[]; errors: string[] }> {
    const out = { evaluated: 0, ready: [] as string[], errors: [] as string[] };
    for (const b of await this.deps.ledger.listBackups(limit)) {
      if (b.drReadyAt || b.verdict === "not-ready") continue;
      try {
        const e = await this.evaluate(b.name);
        out.evaluated++;
        if (e?.verdict === "dr-ready") out.ready.push(b.name);
      } catch (err) {
        out.errors.push(`${b.name}: ${errorMessage(err)}`);
        this.deps.log.error("backup evaluation failed", { backup: b.name, error: errorMessage(err) });
      }
    }
    return out;
  }
}
