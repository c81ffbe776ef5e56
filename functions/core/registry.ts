import {
  type BackupState,
  type EvaluateOptions,
  type Evaluation,
  evaluateBackup,
  snapshotsToCopy,
} from "./backup.js";
import { errorMessage } from "./errors.js";
import type { SnapshotRecord } from "./model.js";
import type { BackupSnapshot, IngestOutcome } from "./plane.js";
import type {
  BackupLedger,
  Clock,
  FailoverRewrite,
  Log,
  SnapshotCopier,
  StoredBackup,
  VeleroBackupFiles,
  VeleroBucket,
} from "./ports.js";

/** Reads and writes Velero's file formats (implemented over functions/core/velero.ts). */
export interface VeleroCodec {
  /** What the bucket's files say of the backup. Throws on files that are not Velero's. */
  toState(name: string, files: VeleroBackupFiles): BackupState;
  /** The files `rewrite` reads whole (never the tarball, which publishing streams, nor logs). */
  rewriteInputs(name: string): string[];
  /**
   * The files of the failover copy that differ from the source (snapshot ids, zones, PV topology):
   * small ones whole, the tarball as a streaming rewrite.
   */
  rewrite(
    name: string,
    files: Record<string, Uint8Array>,
    copyOf: ReadonlyMap<string, string>,
    /** The region the backup's snapshots were taken in; undefined when it has none. */
    sourceRegion: string | undefined,
  ): FailoverRewrite;
}

/** A backup that just became DR-ready (its failover metadata published, the verdict recorded). */
export interface ReadyBackup {
  backup: string;
  /** Velero's schedule; absent for an ad-hoc backup. */
  schedule?: string;
  /** Velero's completion to DR-ready, seconds (absent when the backup has no completion time). */
  replicationLagSeconds?: number;
}

export interface RegistryDeps {
  ledger: BackupLedger;
  bucket: VeleroBucket;
  copier: Pick<SnapshotCopier, "deleteCopy" | "listCopies">;
  codec: VeleroCodec;
  clock: Clock;
  log: Log;
  /**
   * Records and copies the snapshots a backup names only in its files (CSI snapshots: volumeinfo),
   * as the replication plane does for Velero-tagged ones (`ReplicationPlane.intakeBackupSnapshots`).
   * Without it (functions that do not register backups) nothing is ingested.
   */
  snapshots?: {
    intakeBackupSnapshots(
      backup: { name: string; schedule?: string; storageLocation?: string },
      snapshots: readonly BackupSnapshot[],
    ): Promise<{ outcomes: Map<string, IngestOutcome> }>;
  };
  /**
   * Called once per backup, by whichever path judged it ready (registration, a copy event, the
   * copy poller or the sweep), after the verdict is durable: the place metrics are published.
   */
  onReady?: (ready: ReadyBackup) => void;
}

/** A verdict, and when it is the one that made the backup DR-ready, what was published. */
export interface EvaluateResult extends Evaluation {
  published?: { prefix: string; objects: number };
  /** Backup completion to DR-ready, seconds (only when it became ready now). */
  replicationLagSeconds?: number;
}

export type RetireOutcome =
  | { status: "retired"; copies: number; objects: number }
  | { status: "kept" | "unknown"; reason: string };

export type RegisterOutcome =
  | { status: "registered" | "stale"; evaluation?: EvaluateResult }
  | { status: "gone"; reason: string; retention: RetireOutcome };

/**
 * The source region of a backup, from its own snapshots (a Velero backup comes from one cluster, so
 * one region): undefined when it has none, an error when they disagree. With several source regions
 * configured, each backup's zones are mapped from its own region, never from the first configured.
 */
export function sourceRegionOf(
  backup: string,
  records: Iterable<Pick<SnapshotRecord, "sourceSnapshotId" | "sourceRegion">>,
): string | undefined {
  const regions = new Set<string>();
  for (const r of records) regions.add(r.sourceRegion);
  if (regions.size > 1) {
    throw new Error(
      `backup ${backup} has snapshots in several regions (${[...regions].sort().join(", ")}); a Velero backup comes from one cluster`,
    );
  }
  return [...regions][0];
}

/**
 * The newest DR-ready backup of each schedule (ad-hoc backups form one group): the recovery points
 * that retention never deletes, even once Velero has.
 */
export function newestReadyPerSchedule(backups: readonly StoredBackup[]): Map<string, string> {
  const best = new Map<string, StoredBackup>();
  for (const b of backups) {
    if (!b.drReadyAt || !b.startTimestamp) continue;
    const key = b.schedule ?? "";
    const cur = best.get(key);
    if (!cur || Date.parse(b.startTimestamp) > Date.parse(cur.startTimestamp ?? "")) best.set(key, b);
  }
  return new Map([...best].map(([k, b]) => [k, b.name]));
}

/**
 * Velero backups in the failover region: registration from the bucket, the DR-ready verdict, and
 * the failover metadata that stock Velero in the standby cluster restores from.
 */
export class BackupRegistry {
  constructor(
    private readonly deps: RegistryDeps,
    private readonly options: Omit<EvaluateOptions, "now">,
  ) {}

  /**
   * Registers a backup from what the bucket holds now, not from the event that woke us: Velero
   * writes velero-backup.json, then the snapshot list, then rewrites the JSON with the final phase,
   * and events may arrive in any order, so every read converges on the bucket's latest state.
   */
  async register(name: string): Promise<RegisterOutcome> {
    const files = await this.deps.bucket.read(name);
    if (!files) {
      return {
        status: "gone",
        reason: `backups/${name}/velero-backup.json does not exist`,
        retention: await this.retire(name),
      };
    }
    const state = this.deps.codec.toState(name, files);
    const status = await this.deps.ledger.registerBackup({ ...state, metadataModified: files.modified });
    if (status === "stale") return { status };
    await this.intakeCsiSnapshots(state);
    return { status: "registered", evaluation: await this.evaluate(name) };
  }

  /**
   * A Completed backup's CSI snapshots (named by its volumeinfo, not tagged by Velero) are recorded
   * as its own and copied like native ones, once: those the ledger already holds are left alone. A
   * snapshot not found yet fails the registration, so its event is retried.
   */
  private async intakeCsiSnapshots(state: BackupState): Promise<void> {
    const { snapshots, ledger, log } = this.deps;
    if (!snapshots || state.phase !== "Completed") return;
    const csi = (state.volumes ?? []).flatMap((v): BackupSnapshot[] =>
      v.method === "csi" && !v.failed && v.snapshotHandle
        ? [{ snapshotId: v.snapshotHandle, ...(v.pvName ? { pvName: v.pvName } : {}) }]
        : [],
    );
    if (csi.length === 0) return;
    const known = await ledger.getSnapshots(csi.map((c) => c.snapshotId));
    const fresh = csi.filter((c) => !known.has(c.snapshotId));
    if (fresh.length === 0) return;
    const backup = {
      name: state.name,
      ...(state.schedule ? { schedule: state.schedule } : {}),
      ...(state.storageLocation ? { storageLocation: state.storageLocation } : {}),
    };
    const { outcomes } = await snapshots.intakeBackupSnapshots(backup, fresh);
    const retry = [...outcomes.values()].flatMap((o) => (o.status === "retry" ? [o.reason] : []));
    const skipped = [...outcomes].flatMap(([id, o]) =>
      o.status === "skipped" ? [`${id}: ${o.reason}`] : [],
    );
    if (skipped.length > 0) log.warn("CSI snapshots of a backup not copied", { backup: state.name, skipped });
    if (retry.length > 0) throw new Error(`CSI snapshots of backup ${state.name}: ${retry.join("; ")}`);
  }

  /**
   * Decides whether a backup is DR-ready and, the first time it is, publishes its failover
   * metadata before recording the verdict (a backup is never called ready before its files exist).
   */
  async evaluate(name: string): Promise<EvaluateResult | undefined> {
    const { ledger, clock, log } = this.deps;
    const backup = await ledger.getBackup(name);
    if (!backup) return undefined;
    if (backup.retiredAt) {
      await this.retire(name); // a copy that finished after Velero deleted the backup goes too
      return undefined;
    }
    const now = clock.now();
    const copies = await ledger.getSnapshots(
      snapshotsToCopy(backup, this.options).map((e) => e.sourceSnapshotId),
    );
    const e = evaluateBackup(backup, copies, { ...this.options, now });
    if (e.verdict === "dr-ready" && !backup.drReadyAt) {
      const copyOf = new Map<string, string>();
      for (const [id, r] of copies) if (r.copySnapshotId) copyOf.set(id, r.copySnapshotId);
      const published = await this.publish(backup, copyOf, sourceRegionOf(name, copies.values()));
      const first = await ledger.recordVerdict(name, e, now.toISOString(), published);
      const done = Date.parse(backup.completionTimestamp ?? "");
      const lag = Number.isNaN(done) ? undefined : Math.max(0, (now.getTime() - done) / 1000);
      log.info("backup is DR-ready", { backup: name, prefix: published.prefix, objects: published.objects });
      // Two evaluations can race to publish (both idempotent); only the one that set drReadyAt reports.
      if (first)
        this.deps.onReady?.({
          backup: name,
          ...(backup.schedule ? { schedule: backup.schedule } : {}),
          ...(lag === undefined ? {} : { replicationLagSeconds: lag }),
        });
      return { ...e, published, ...(lag === undefined ? {} : { replicationLagSeconds: lag }) };
    }
    // The counts too: a backup already not-ready for another reason still shows its copies' progress.
    if (
      backup.verdict !== e.verdict ||
      backup.reason !== e.reason ||
      backup.copied !== e.copied ||
      backup.expectedCount !== e.expectedCount
    ) {
      await ledger.recordVerdict(name, e, now.toISOString());
      if (e.verdict === "not-ready")
        log.warn("backup will not be DR-ready", { backup: name, reason: e.reason });
    }
    return e;
  }

  private async publish(
    backup: StoredBackup,
    copyOf: ReadonlyMap<string, string>,
    sourceRegion: string | undefined,
  ) {
    const { bucket, codec } = this.deps;
    const files = await bucket.files(backup.name, codec.rewriteInputs(backup.name));
    const { replaced, tarball } = codec.rewrite(backup.name, files, copyOf, sourceRegion);
    return bucket.publish(backup.name, replaced, tarball);
  }

  /**
   * Velero deleted the backup (its velero-backup.json is gone): delete its copies and its failover
   * metadata, unless it is the newest DR-ready backup of its schedule, the recovery point, which is
   * kept until a newer one is ready. Idempotent: copies already gone are skipped.
   */
  async retire(name: string): Promise<RetireOutcome> {
    const { ledger, bucket, copier, clock, log } = this.deps;
    const backup = await ledger.getBackup(name);
    if (!backup) return { status: "unknown", reason: `backup ${name} was never registered` };
    const keep = newestReadyPerSchedule(await ledger.listBackups(500)).get(backup.schedule ?? "");
    if (keep === name) {
      const reason = `kept: the newest DR-ready backup of ${backup.schedule ? `schedule ${backup.schedule}` : "ad-hoc backups"}`;
      log.warn("Velero deleted the recovery point; keeping its copies", { backup: name });
      return { status: "kept", reason };
    }
    const records = await ledger.getSnapshots(
      snapshotsToCopy(backup, this.options).map((e) => e.sourceSnapshotId),
    );
    let copies = 0;
    for (const r of records.values()) {
      if (r.status === "completed" && r.copySnapshotId && (await copier.deleteCopy(r.copySnapshotId)))
        copies++;
    }
    const objects = backup.failoverPrefix ? await bucket.unpublish(name) : 0;
    const reason = `deleted by Velero; ${copies} copies and ${objects} failover objects removed`;
    await ledger.retireBackup(name, clock.now().toISOString(), reason);
    log.info("backup retired", { backup: name, copies, objects });
    return { status: "retired", copies, objects };
  }

  /**
   * Retention for the sweep: backups Velero deleted without our hearing of it, then orphaned
   * copies: copies of retired backups that finished after their backup was retired.
   */
  async sweepRetention(
    limit = 200,
  ): Promise<{ retired: string[]; kept: string[]; orphansDeleted: string[] }> {
    const { ledger, bucket, copier, log } = this.deps;
    const out = { retired: [] as string[], kept: [] as string[], orphansDeleted: [] as string[] };
    const retired = new Set<string>();
    for (const b of await ledger.listBackups(limit)) {
      if (b.retiredAt) {
        retired.add(b.name);
        continue;
      }
      if (await bucket.read(b.name)) continue;
      const r = await this.retire(b.name);
      if (r.status === "retired") {
        out.retired.push(b.name);
        retired.add(b.name);
      } else if (r.status === "kept") out.kept.push(b.name);
    }
    if (retired.size === 0) return out;
    for (const c of await copier.listCopies()) {
      if (c.backup && retired.has(c.backup) && (await copier.deleteCopy(c.copySnapshotId))) {
        out.orphansDeleted.push(c.copySnapshotId);
      }
    }
    if (out.orphansDeleted.length > 0) {
      log.warn("orphaned copies deleted", { copies: out.orphansDeleted });
    }
    return out;
  }

  /** Re-evaluates backups that may still become ready (the sweep calls this). */
  async evaluateOpen(limit = 50): Promise<{ evaluated: number; ready: string[]; errors: string[] }> {
    const out = { evaluated: 0, ready: [] as string[], errors: [] as string[] };
    for (const b of await this.deps.ledger.listBackups(limit)) {
      if (b.drReadyAt || b.retiredAt || b.verdict === "not-ready") continue;
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
