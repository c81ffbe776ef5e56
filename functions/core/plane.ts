import type { ReplicationConfig } from "./config.js";
import { classifyAwsError, RetryableError } from "./errors.js";
import {
  type ClassifiedEvent,
  type SnapshotRecord,
  SOURCE_REGION_TAG,
  SOURCE_SNAPSHOT_TAG,
  SOURCE_VOLUME_TAG,
  type SourceSnapshot,
  type Tags,
  VELERO_BACKUP_TAG,
  VELERO_PV_TAG,
  VELERO_SCHEDULE_TAG,
  VELERO_STORAGE_LOCATION_TAG,
} from "./model.js";
import type {
  Admission,
  Clock,
  CopyState,
  Ledger,
  Log,
  OpenState,
  SnapshotCopier,
  SourceSnapshots,
} from "./ports.js";
import { backoffMs, plan } from "./scheduler.js";

export interface PlaneDeps {
  ledger: Ledger;
  copier: SnapshotCopier;
  sources: SourceSnapshots;
  clock: Clock;
  log: Log;
  random?: () => number;
}

/** A snapshot the plane was told about, keyed by whatever the caller needs to map outcomes back. */
export interface IngestRequest {
  key: string;
  snapshotId: string;
  region: string;
  /**
   * What a Velero backup's own files say of a snapshot that does not carry Velero's tags (a CSI
   * snapshot: the EBS CSI driver tags it `CSIVolumeSnapshotName`, not `velero.io/backup`), merged
   * over the snapshot's tags: the backup, the PV, the schedule. The copy is tagged with them too.
   */
  tags?: Tags;
}

/** A snapshot a Velero backup names in its files (volumeinfo) rather than by tags. */
export interface BackupSnapshot {
  snapshotId: string;
  pvName?: string;
}

export type IngestOutcome =
  | { status: "recorded" | "duplicate"; backup: string }
  | { status: "skipped"; reason: string }
  | { status: "retry"; reason: string };

export interface AdmitReport {
  admitted: string[];
  superseded: number;
  throttled: number;
  failed: number;
  lostRaces: number;
  inFlight: number;
  waiting: number;
}

export type CopyEventOutcome =
  | {
      status: "completed";
      record: SnapshotRecord;
      copySnapshotId: string;
      lagSeconds: number;
      incremental?: boolean;
    }
  | { status: "retrying" | "failed"; record: SnapshotRecord; reason: string }
  | { status: "flagged"; record: SnapshotRecord }
  | { status: "ignored"; reason: string };

/** Copy events of one batch, settled with one read of the open set and one transaction. */
export interface SettledCopies {
  outcomes: CopyEventOutcome[];
  /** The open set as it stands after settling: the admission that follows plans from it. */
  state: OpenState;
  /** Backups a copy of which settled here and that have no open record left (worth judging now). */
  drained: string[];
}

export interface SweepReport {
  /** Velero snapshots found in a source region that no event had announced (now recorded). */
  discovered: number;
  completedWithoutEvent: number;
  failedWithoutEvent: number;
  recoveredCopyIds: number;
  requeued: number;
  stuck: string[];
  counterDrift: number;
  /** The waiting counter minus the waiting records (0 unless something is wrong). */
  backlogDrift: number;
  admit: AdmitReport;
}

/** One look at the copies in flight while others wait for a slot (`poll`). */
export interface PollReport {
  /** Copies waited for a slot while others were in flight: worth looking again soon. */
  busy: boolean;
  /** Copies found finished (or failed) before their events, as settled. */
  settled: CopyEventOutcome[];
  /** Backups that have no open record left after settling (worth judging now). */
  drained: string[];
  admit?: AdmitReport;
}

export type CopyEvent = Extract<
  ClassifiedEvent,
  { kind: "snapshot-copied" | "copy-failed" | "copy-missed-deadline" }
>;

function emptyAdmitReport(): AdmitReport {
  return { admitted: [], superseded: 0, throttled: 0, failed: 0, lostRaces: 0, inFlight: 0, waiting: 0 };
}

/** AWS allows at most 50 tags per resource. */
const MAX_TAGS = 50;
/** A copy admitted this long ago without a noted copy id means the admitting invocation died. */
const LEASE_MS = 5 * 60_000;
/**
 * How far back the sweep looks for Velero snapshots whose createSnapshot event was lost: the whole
 * window once an hour, otherwise the recent part only. Listing a day of snapshots every 5 minutes
 * would cost ~100 DescribeSnapshots pages and ~1,000 BatchGetItem per sweep at 1,000 controllers
 * (and share EC2's DescribeSnapshots rate with `replicate`); a snapshot whose event was lost and that
 * started more than the short window ago (a long first snapshot) is found within the hour.
 */
export const DISCOVERY_WINDOW_MS = 24 * 60 * 60_000;
export const SHORT_DISCOVERY_WINDOW_MS = 2 * 60 * 60_000;
const FULL_DISCOVERY_EVERY_MS = 60 * 60_000;

/**
 * The copy's tags: every source tag (Velero's first) plus ours, within AWS's 50-tag limit.
 * `aws:`-prefixed tags are reserved and cannot be set.
 */
export function copyTags(source: { snapshotId: string; region: string; volumeId: string; tags: Tags }): Tags {
  const ours: Tags = {
    [SOURCE_SNAPSHOT_TAG]: source.snapshotId,
    [SOURCE_REGION_TAG]: source.region,
    [SOURCE_VOLUME_TAG]: source.volumeId,
  };
  const entries = Object.entries(source.tags).filter(
    ([k]) => !k.startsWith("aws:") && !Object.hasOwn(ours, k),
  );
  entries.sort(([a], [b]) => Number(!a.startsWith("velero.io/")) - Number(!b.startsWith("velero.io/")));
  const out: Tags = { ...ours };
  for (const [k, v] of entries.slice(0, MAX_TAGS - Object.keys(ours).length)) out[k] = v;
  return out;
}

/** Why a snapshot is not ours to copy, or undefined when it is. */
export function ineligibility(tags: Tags, config: Pick<ReplicationConfig, "includeTags" | "excludeTags">) {
  if (!tags[VELERO_BACKUP_TAG]) return `no ${VELERO_BACKUP_TAG} tag: not a Velero snapshot`;
  for (const [k, v] of Object.entries(config.includeTags)) {
    if (tags[k] !== v) return `excluded by configuration: tag ${k} is not "${v}"`;
  }
  for (const [k, v] of Object.entries(config.excludeTags)) {
    if (tags[k] === v) return `excluded by configuration: tag ${k} is "${v}"`;
  }
  return undefined;
}

function toRecord(s: SourceSnapshot, status: SnapshotRecord["status"], reason?: string): SnapshotRecord {
  const record: SnapshotRecord = {
    sourceSnapshotId: s.snapshotId,
    sourceRegion: s.region,
    volumeId: s.volumeId,
    backup: s.tags[VELERO_BACKUP_TAG] ?? "",
    startTime: s.startTime,
    status,
    tags: s.tags,
    attempts: 0,
  };
  const schedule = s.tags[VELERO_SCHEDULE_TAG];
  if (schedule) record.schedule = schedule;
  if (reason) record.reason = reason;
  return record;
}

/** EC2's clock and ours may differ by this much when telling a copy's attempt by its start time. */
const CLOCK_SKEW_MS = 5_000;

/**
 * Each copying record's copy among those found by our source tag: the copy of its current attempt.
 * Copies of earlier attempts (failed, and named in `failedCopies`) are never taken for it, nor is a
 * copy started before the record was admitted (5 s allowed for clock skew and EC2's whole-second
 * start times: a retry can start a second after its previous copy failed, so the id decides); of
 * the rest the newest that is not in error, else the newest. A record whose copy id the ledger
 * knows takes that copy only.
 */
export function attemptCopies(
  records: readonly SnapshotRecord[],
  found: readonly CopyState[],
): Map<string, CopyState> {
  const bySource = new Map<string, CopyState[]>();
  for (const c of found) {
    if (!c.sourceSnapshotId) continue;
    const copies = bySource.get(c.sourceSnapshotId);
    if (copies) copies.push(c);
    else bySource.set(c.sourceSnapshotId, [c]);
  }
  const out = new Map<string, CopyState>();
  for (const r of records) {
    const admitted = r.admittedAt ? Date.parse(r.admittedAt) - CLOCK_SKEW_MS : Number.NEGATIVE_INFINITY;
    const failed = new Set(r.failedCopies ?? []);
    const candidates = (bySource.get(r.sourceSnapshotId) ?? []).filter((c) =>
      r.copySnapshotId
        ? c.copySnapshotId === r.copySnapshotId
        : !failed.has(c.copySnapshotId) && (!c.startTime || Date.parse(c.startTime) >= admitted),
    );
    candidates.sort(
      (a, b) =>
        Number(a.state === "error") - Number(b.state === "error") ||
        (b.startTime ?? "").localeCompare(a.startTime ?? ""),
    );
    if (candidates[0]) out.set(r.sourceSnapshotId, candidates[0]);
  }
  return out;
}

/**
 * The replication plane's use cases: take in snapshots, admit copies within the budget, react to
 * copy outcomes, and sweep for what events missed. Talks to AWS only through its ports.
 */
export class ReplicationPlane {
  private readonly random: () => number;

  constructor(
    private readonly deps: PlaneDeps,
    readonly config: ReplicationConfig,
  ) {
    this.random = deps.random ?? Math.random;
  }

  /**
   * Records Velero's snapshots in the ledger. One DescribeSnapshots per source region for the
   * whole batch; a snapshot that cannot be read yet is retried, one that is not Velero's skipped.
   */
  async ingest(requests: readonly IngestRequest[]): Promise<Map<string, IngestOutcome>> {
    return (await this.take(requests, false)).outcomes;
  }

  /**
   * What `replicate` does with a batch of snapshot events: records the snapshots and, when nothing
   * waits and slots are free, starts their copies in the same ledger transaction (no read of the
   * open set). When the write finds a backlog with free slots, the scheduler runs as usual.
   */
  async intake(
    requests: readonly IngestRequest[],
  ): Promise<{ outcomes: Map<string, IngestOutcome>; admit?: AdmitReport }> {
    return this.take(requests, true);
  }

  private async take(
    requests: readonly IngestRequest[],
    admitNow: boolean,
  ): Promise<{ outcomes: Map<string, IngestOutcome>; admit?: AdmitReport }> {
    const { sources, ledger, log, clock } = this.deps;
    const outcomes = new Map<string, IngestOutcome>();
    const byRegion = new Map<string, IngestRequest[]>();
    for (const r of requests) {
      if (!this.config.sourceRegions.includes(r.region)) {
        outcomes.set(r.key, {
          status: "skipped",
          reason: `region ${r.region} is not a configured source region`,
        });
        continue;
      }
      byRegion.set(r.region, [...(byRegion.get(r.region) ?? []), r]);
    }
    const fresh = new Map<string, { record: SnapshotRecord; keys: string[] }>();
    for (const [region, reqs] of byRegion) {
      let found: Map<string, SourceSnapshot>;
      try {
        const ids = [...new Set(reqs.map((r) => r.snapshotId))];
        found = new Map((await sources.describe(region, ids)).map((s) => [s.snapshotId, s]));
      } catch (err) {
        const reason = classifyAwsError(err, `DescribeSnapshots in ${region}`).message;
        for (const r of reqs) outcomes.set(r.key, { status: "retry", reason });
        continue;
      }
      for (const r of reqs) {
        const verdict = await this.classify(r, found.get(r.snapshotId));
        if (!("record" in verdict)) {
          outcomes.set(r.key, verdict);
          continue;
        }
        const id = verdict.record.sourceSnapshotId;
        const f = fresh.get(id) ?? { record: verdict.record, keys: [] };
        f.keys.push(r.key);
        fresh.set(id, f);
      }
    }
    for (const [key, o] of outcomes) {
      if (o.status === "skipped") log.info("snapshot skipped", { key, reason: o.reason });
    }
    if (fresh.size === 0) return { outcomes };

    const now = clock.now();
    const records = [...fresh.values()].map((f) => f.record);
    // Planned over the new snapshots alone: the ledger admits them only if nothing else waits.
    const admit = admitNow
      ? plan({ open: records, startedBackups: new Set(), budget: this.config.copyBudget, now }).admit
      : [];
    const chosen = new Set(admit.map((r) => r.sourceSnapshotId));
    let written: Awaited<ReturnType<Ledger["recordMany"]>>;
    try {
      written = await ledger.recordMany(
        { admit, wait: records.filter((r) => !chosen.has(r.sourceSnapshotId)) },
        this.config.copyBudget,
        this.config.kmsKeyId,
        now,
      );
    } catch (err) {
      const reason = classifyAwsError(err, "ledger write").message;
      for (const f of fresh.values()) for (const k of f.keys) outcomes.set(k, { status: "retry", reason });
      return { outcomes };
    }
    const duplicates = new Set(written.duplicates);
    for (const [id, f] of fresh) {
      const status = duplicates.has(id) ? "duplicate" : "recorded";
      for (const k of f.keys) outcomes.set(k, { status, backup: f.record.backup });
    }
    if (!admitNow) return { outcomes };
    const report = emptyAdmitReport();
    await this.startCopies(written.admitted, report, now);
    const { inFlight, waiting } = written.control;
    if (waiting > 0 && inFlight < this.config.copyBudget) {
      // A backlog and free slots: the scheduler decides what goes first.
      const more = await this.admit();
      return { outcomes, admit: mergeReports(report, more) };
    }
    report.inFlight = Math.max(inFlight, report.admitted.length);
    report.waiting = written.waiting.length;
    return { outcomes, admit: report };
  }

  /**
   * A described snapshot's record to write (waiting), or why not; a failed one is recorded as
   * failed here.
   */
  /**
   * Records the snapshots a Velero backup names in its files but that carry no Velero tags (CSI
   * snapshots), as that backup's, and admits copies as `intake` does. Their region is not in the
   * files: each configured source region is asked (one DescribeSnapshots each, for the ids not found
   * yet). Idempotent: snapshots already recorded come back `duplicate`.
   */
  async intakeBackupSnapshots(
    backup: { name: string; schedule?: string; storageLocation?: string },
    snapshots: readonly BackupSnapshot[],
  ): Promise<{ outcomes: Map<string, IngestOutcome>; admit?: AdmitReport }> {
    const regionOf = new Map<string, string>();
    for (const region of this.config.sourceRegions) {
      const ids = snapshots.map((s) => s.snapshotId).filter((id) => !regionOf.has(id));
      if (ids.length === 0) break;
      for (const s of await this.deps.sources.describe(region, [...new Set(ids)]))
        regionOf.set(s.snapshotId, region);
    }
    const outcomes = new Map<string, IngestOutcome>();
    const requests: IngestRequest[] = [];
    for (const s of snapshots) {
      const region = regionOf.get(s.snapshotId);
      if (region === undefined) {
        outcomes.set(s.snapshotId, {
          status: "retry",
          reason: `snapshot ${s.snapshotId} of backup ${backup.name} not found in ${this.config.sourceRegions.join(", ")} (yet)`,
        });
        continue;
      }
      requests.push({
        key: s.snapshotId,
        snapshotId: s.snapshotId,
        region,
        tags: {
          [VELERO_BACKUP_TAG]: backup.name,
          ...(s.pvName ? { [VELERO_PV_TAG]: s.pvName } : {}),
          ...(backup.schedule ? { [VELERO_SCHEDULE_TAG]: backup.schedule } : {}),
          ...(backup.storageLocation ? { [VELERO_STORAGE_LOCATION_TAG]: backup.storageLocation } : {}),
        },
      });
    }
    const taken = await this.intake(requests);
    for (const [k, o] of taken.outcomes) outcomes.set(k, o);
    return { outcomes, ...(taken.admit ? { admit: taken.admit } : {}) };
  }

  private async classify(
    r: IngestRequest,
    found: SourceSnapshot | undefined,
  ): Promise<IngestOutcome | { record: SnapshotRecord }> {
    if (!found) return { status: "retry", reason: `snapshot ${r.snapshotId} not found in ${r.region} (yet)` };
    const s = r.tags ? { ...found, tags: { ...found.tags, ...r.tags } } : found;
    const why = ineligibility(s.tags, this.config);
    if (why) return { status: "skipped", reason: why };
    if (s.state === "error") {
      try {
        const status = await this.deps.ledger.recordSourceFailure(
          toRecord(s, "failed", "source snapshot in error state"),
        );
        return { status, backup: s.tags[VELERO_BACKUP_TAG] ?? "" };
      } catch (err) {
        return { status: "retry", reason: classifyAwsError(err, "ledger write").message };
      }
    }
    if (s.state !== "completed")
      return { status: "retry", reason: `snapshot ${s.snapshotId} is still ${s.state}` };
    return { record: toRecord(s, "waiting") };
  }

  /** Records a snapshot that failed in its region (from its createSnapshot event). Never copied. */
  async recordSourceFailure(
    ev: Extract<ClassifiedEvent, { kind: "snapshot-failed" }>,
  ): Promise<IngestOutcome> {
    // A describe failure propagates: the message is retried rather than the failure misfiled.
    const [s] = await this.deps.sources.describe(ev.region, [ev.snapshotId]);
    const tags = s?.tags ?? {};
    const why = ineligibility(tags, this.config);
    if (why) return { status: "skipped", reason: why };
    const snap: SourceSnapshot = s ?? {
      snapshotId: ev.snapshotId,
      region: ev.region,
      volumeId: ev.volumeId ?? "unknown",
      startTime: this.deps.clock.now().toISOString(),
      state: "error",
      encrypted: false,
      tags,
    };
    const status = await this.deps.ledger.recordSourceFailure(
      toRecord(snap, "failed", `source snapshot failed: ${ev.cause || "no cause given"}`),
    );
    return { status, backup: tags[VELERO_BACKUP_TAG] ?? "" };
  }

  /**
   * Supersedes stale backups and starts as many copies as the budget allows: one read of the open
   * set (unless the caller has it), one transaction to admit, one CopySnapshot per copy.
   */
  async admit(loaded?: OpenState): Promise<AdmitReport> {
    const { ledger, clock, log } = this.deps;
    const now = clock.now();
    const state = loaded ?? (await ledger.loadOpen());
    const p = plan({ ...state, budget: this.config.copyBudget, now });
    const report = emptyAdmitReport();
    report.inFlight = p.inFlight;
    report.waiting = p.waiting;
    const stale = new Map<string, { ids: string[]; by: string }>();
    for (const { record, by } of p.supersede) {
      const g = stale.get(record.backup) ?? { ids: [], by };
      g.ids.push(record.sourceSnapshotId);
      stale.set(record.backup, g);
    }
    for (const [backup, { ids, by }] of stale) {
      const n = await ledger.supersedeMany(backup, ids, by);
      report.superseded += n;
      if (n > 0) log.info("backup superseded", { backup, by, snapshots: n });
    }
    if (p.admit.length === 0) return report;
    const { admitted, lostRaces } = await ledger.admitMany(
      p.admit,
      this.config.copyBudget,
      this.config.kmsKeyId,
      now,
    );
    report.lostRaces = lostRaces.length;
    await this.startCopies(admitted, report, now);
    // Planned but not started (throttled, refused and retrying, or not tried after a throttle)
    // are still waiting; lost races were taken by another invocation.
    report.waiting += p.admit.length - report.admitted.length - report.failed - report.lostRaces;
    return report;
  }

  /** CopySnapshot for each admitted copy; a throttle releases it and the rest, backing off. */
  private async startCopies(admitted: readonly Admission[], report: AdmitReport, now: Date): Promise<void> {
    const { ledger, copier, log } = this.deps;
    for (const [i, { record, kmsKeyId }] of admitted.entries()) {
      try {
        const copySnapshotId = await copier.copy({
          sourceSnapshotId: record.sourceSnapshotId,
          sourceRegion: record.sourceRegion,
          volumeId: record.volumeId,
          tags: copyTags({
            snapshotId: record.sourceSnapshotId,
            region: record.sourceRegion,
            volumeId: record.volumeId,
            tags: record.tags,
          }),
          ...(kmsKeyId ? { kmsKeyId } : {}),
          ...(this.config.completionDurationMinutes
            ? { completionDurationMinutes: this.config.completionDurationMinutes }
            : {}),
          description: `Velero DR copy of ${record.sourceSnapshotId} (backup ${record.backup}, pv ${
            record.tags[VELERO_PV_TAG] ?? "?"
          }) from ${record.sourceRegion}`,
        });
        // The copy's id is not written here: its completion event carries it, and the sweep
        // finds a copy by our source tag if that event never comes.
        report.admitted.push(record.sourceSnapshotId);
        report.inFlight++;
        log.info("copy started", {
          sourceSnapshotId: record.sourceSnapshotId,
          copySnapshotId,
          backup: record.backup,
          volumeId: record.volumeId,
        });
      } catch (err) {
        const e = classifyAwsError(err, `CopySnapshot of ${record.sourceSnapshotId}`);
        if (e instanceof RetryableError) {
          const throttles = (record.throttles ?? 0) + 1;
          const notBefore = new Date(now.getTime() + backoffMs(throttles, this.random)).toISOString();
          await ledger.release(record, {
            status: "waiting",
            notBefore,
            reason: e.message,
            count: "throttles",
          });
          report.throttled++;
          log.warn("copy throttled, backing off", {
            sourceSnapshotId: record.sourceSnapshotId,
            notBefore,
            code: e.code,
          });
          // The API or the copy quota said "slow down": the rest of this round waits as well.
          for (const rest of admitted.slice(i + 1)) {
            await ledger.release(rest.record, {
              status: "waiting",
              notBefore,
              reason: `not started: ${e.message}`,
              count: "none",
            });
          }
          return;
        }
        // Refused for a reason retrying soon will not fix (source gone, bad key, a bug): counted
        // against the copy's attempts, like an asynchronous copy failure.
        const { outcome } = await this.failCopy(record, e.message);
        if (outcome.status === "failed") report.failed++;
      }
    }
  }

  /** Reacts to one copySnapshot outcome in the failover region (no admission). */
  async onCopyEvent(ev: CopyEvent): Promise<CopyEventOutcome> {
    const { outcomes } = await this.settleCopies([ev]);
    return outcomes[0] ?? { status: "ignored", reason: "no outcome" };
  }

  /**
   * Reacts to a batch of copySnapshot outcomes: the open set is read once (it holds every copying
   * record, so no read per event), completions share one transaction. Events for records that are
   * not open are checked against the ledger one by one (duplicates, late or foreign events).
   */
  async settleCopies(events: readonly CopyEvent[], loaded?: OpenState): Promise<SettledCopies> {
    const { ledger, clock, log } = this.deps;
    const state = loaded ?? (await ledger.loadOpen());
    const open = new Map(state.open.map((r) => [r.sourceSnapshotId, r]));
    const outcomes: CopyEventOutcome[] = [];
    const completions: Array<{ index: number; record: SnapshotRecord; ev: CopyEvent; completedAt: string }> =
      [];
    const settled = new Set<string>();
    const leave = (r: SnapshotRecord, after?: SnapshotRecord) => {
      open.delete(r.sourceSnapshotId);
      if (after) open.set(after.sourceSnapshotId, after);
      state.inFlightCounter--;
      if (after) state.waitingCounter++;
      settled.add(r.backup);
    };
    // An event whose record the open set does not show copying is a repeat, a late event (the
    // poller or the sweep settled its copy first) or not ours, unless the index read lagged behind
    // an admission: one consistent batch read tells, and only records still open are read again.
    const unseen = events.flatMap((ev) =>
      ev.region === this.config.failoverRegion &&
      ev.sourceSnapshotId &&
      open.get(ev.sourceSnapshotId)?.status !== "copying"
        ? [ev.sourceSnapshotId]
        : [],
    );
    const lagging = unseen.length > 0 ? await ledger.stillOpen([...new Set(unseen)]) : new Set<string>();
    for (const [index, ev] of events.entries()) {
      if (ev.region !== this.config.failoverRegion) {
        outcomes[index] = { status: "ignored", reason: `copy in ${ev.region}, not the failover region` };
        continue;
      }
      const sourceId = ev.sourceSnapshotId;
      if (!sourceId) {
        outcomes[index] = { status: "ignored", reason: "event names no source snapshot" };
        continue;
      }
      const cached = open.get(sourceId);
      const record =
        cached?.status === "copying"
          ? cached
          : lagging.has(sourceId)
            ? await ledger.get(sourceId)
            : undefined;
      if (!record) {
        outcomes[index] = {
          status: "ignored",
          reason: `source snapshot ${sourceId} has no open copy (a repeated or late event, or not ours)`,
        };
        continue;
      }
      if (record.copySnapshotId && record.copySnapshotId !== ev.snapshotId) {
        outcomes[index] = {
          status: "ignored",
          reason: `copy ${ev.snapshotId} is not ours (ours is ${record.copySnapshotId})`,
        };
        continue;
      }
      if (record.status !== "copying") {
        outcomes[index] = { status: "ignored", reason: `already ${record.status} (duplicate or late event)` };
        continue;
      }
      if (ev.kind === "copy-missed-deadline") {
        await ledger.flag(sourceId, "missedDeadline");
        log.warn("time-based copy missed its completion duration", {
          sourceSnapshotId: sourceId,
          copy: ev.snapshotId,
        });
        outcomes[index] = { status: "flagged", record };
      } else if (ev.kind === "snapshot-copied") {
        // The event's endTime is informational: never later than now (a clock or a bad value must
        // not make the copy lag negative or the completion lie in the future).
        const now = clock.now().toISOString();
        const completedAt = ev.endTime !== undefined && ev.endTime < now ? ev.endTime : now;
        completions.push({ index, record, ev, completedAt });
      } else {
        const { outcome, after } = await this.failCopy(
          record,
          `copy ${ev.snapshotId} failed: ${ev.cause || "no cause given"}`,
          ev.snapshotId,
        );
        if (outcome.status !== "ignored") leave(record, after);
        outcomes[index] = outcome;
      }
    }
    const done = await ledger.completeMany(
      completions.map(({ record, ev, completedAt }) => ({
        record,
        copySnapshotId: ev.snapshotId,
        completedAt,
        ...(ev.kind === "snapshot-copied" && ev.incremental !== undefined
          ? { incremental: ev.incremental }
          : {}),
      })),
    );
    for (const [i, { index, record, ev, completedAt }] of completions.entries()) {
      if (!done[i]) {
        outcomes[index] = { status: "ignored", reason: "lost a race with another delivery" };
        continue;
      }
      leave(record);
      const incremental = ev.kind === "snapshot-copied" ? ev.incremental : undefined;
      outcomes[index] = {
        status: "completed",
        record,
        copySnapshotId: ev.snapshotId,
        lagSeconds: Math.max(0, (Date.parse(completedAt) - Date.parse(record.startTime)) / 1000),
        ...(incremental === undefined ? {} : { incremental }),
      };
    }
    // A settled backup whose other open records are all copying may have been finished by a
    // concurrent invocation since the open set was read: read those again (consistently). Every
    // invocation reads after its own transaction, so the last one to settle sees the others'.
    const tail = [...open.values()].filter((r) => settled.has(r.backup));
    const busy = new Set(tail.filter((r) => r.status !== "copying").map((r) => r.backup));
    const recheck = tail.filter((r) => !busy.has(r.backup)).map((r) => r.sourceSnapshotId);
    if (recheck.length > 0) {
      const still = await ledger.stillOpen(recheck);
      for (const id of recheck) if (!still.has(id)) open.delete(id);
    }
    state.open = [...open.values()];
    const stillOpen = new Set(state.open.map((r) => r.backup));
    return { outcomes, state, drained: [...settled].filter((b) => !stillOpen.has(b)) };
  }

  /**
   * A copy failed: retry it later, a bounded number of times, then give up with the reason.
   * `after` is the record as it now waits (absent when it failed for good or lost a race).
   */
  private async failCopy(
    record: SnapshotRecord,
    reason: string,
    failedCopy?: string,
  ): Promise<{ outcome: CopyEventOutcome; after?: SnapshotRecord }> {
    const { ledger, clock, log } = this.deps;
    const attempts = record.attempts + 1;
    const copy = failedCopy ? { failedCopy } : {};
    const lost = { outcome: { status: "ignored" as const, reason: "lost a race with another delivery" } };
    if (attempts >= this.config.maxCopyAttempts) {
      const final = `${reason} (attempt ${attempts} of ${this.config.maxCopyAttempts}, giving up)`;
      if (!(await ledger.release(record, { status: "failed", reason: final, count: "attempts", ...copy })))
        return lost;
      log.error("copy failed for good", { sourceSnapshotId: record.sourceSnapshotId, reason: final });
      return { outcome: { status: "failed", record, reason: final } };
    }
    const notBefore = new Date(clock.now().getTime() + backoffMs(attempts, this.random)).toISOString();
    const again = `${reason} (attempt ${attempts} of ${this.config.maxCopyAttempts}, retrying after ${notBefore})`;
    if (
      !(await ledger.release(record, {
        status: "waiting",
        notBefore,
        reason: again,
        count: "attempts",
        ...copy,
      }))
    ) {
      return lost;
    }
    log.warn("copy failed, will retry", { sourceSnapshotId: record.sourceSnapshotId, reason: again });
    const after: SnapshotRecord = { ...record, status: "waiting", notBefore, attempts, reason: again };
    if (failedCopy) after.failedCopies = [...(record.failedCopies ?? []), failedCopy];
    delete after.copySnapshotId;
    delete after.admittedAt;
    return { outcome: { status: "retrying", record, reason: again }, after };
  }

  /**
   * Frees slots before the events do: while copies wait for a slot, finished copies are found by
   * our source tag (one DescribeSnapshots for every copy in flight) and settled as their events
   * would settle them, then the freed slots are filled. A copySnapshot event takes 2-20 s to arrive
   * and its queue batches for up to 5 s, and AWS frees the slot at completion, so under a backlog
   * each slot otherwise idles ~15 s per copy of ~80 s (bench/MODEL.md). Costs one small read when
   * nothing waits; the late events find their records settled and are ignored.
   */
  async poll(options: { busy?: boolean } = {}): Promise<PollReport> {
    const { ledger, copier, clock } = this.deps;
    const idle: PollReport = { busy: false, settled: [], drained: [] };
    // The counters decide whether to look at all, unless the previous look just found copies waiting.
    if (!options.busy) {
      const counters = await ledger.counters();
      if (counters.waiting === 0 || counters.inFlight === 0) return idle;
    }
    const state = await ledger.loadOpen();
    const copying = state.open.filter((r) => r.status === "copying");
    if (copying.length === 0 || !state.open.some((r) => r.status === "waiting")) return idle;
    const now = clock.now();
    const copies = attemptCopies(copying, await copier.findCopiesOf(copying.map((r) => r.sourceSnapshotId)));
    const events: CopyEvent[] = [];
    for (const r of copying) {
      const c = copies.get(r.sourceSnapshotId);
      const ev = c ? this.eventFor(r, c, now) : undefined;
      if (ev) events.push(ev);
    }
    if (events.length === 0) return { ...idle, busy: true };
    const settled = await this.settleCopies(events, state);
    const outcomes = settled.outcomes.filter((o) => o.status !== "ignored" && o.status !== "flagged");
    const admit = outcomes.length > 0 ? await this.admit(settled.state) : undefined;
    return {
      busy: (admit?.waiting ?? 1) > 0,
      settled: outcomes,
      drained: settled.drained,
      ...(admit ? { admit } : {}),
    };
  }

  /** The event a finished copy would have sent (none while it is still pending). */
  private eventFor(r: SnapshotRecord, c: CopyState, now: Date): CopyEvent | undefined {
    const base = { snapshotId: c.copySnapshotId, region: this.config.failoverRegion };
    const source = { sourceSnapshotId: r.sourceSnapshotId, sourceRegion: r.sourceRegion };
    if (c.state === "completed")
      return { kind: "snapshot-copied", ...base, ...source, endTime: now.toISOString() };
    if (c.state === "error")
      return { kind: "copy-failed", ...base, ...source, cause: c.stateMessage ?? "copy in error state" };
    return undefined;
  }

  /**
   * Reconciliation: EBS events are best effort, so look at every copy in flight, settle the ones
   * that finished without an event, flag the ones pending too long, find copies whose id the ledger
   * has not learnt yet (by our source tag), then admit. No lost event can stall the plane.
   */
  async sweep(): Promise<SweepReport> {
    const { ledger, copier, clock, log } = this.deps;
    const now = clock.now();
    const state = await ledger.loadOpen();
    const copying = state.open.filter((r) => r.status === "copying");
    const waiting = state.open.filter((r) => r.status === "waiting");
    const report: Omit<SweepReport, "admit"> = {
      discovered: await this.discover(now, state.fullDiscoveryAt),
      completedWithoutEvent: 0,
      failedWithoutEvent: 0,
      recoveredCopyIds: 0,
      requeued: 0,
      stuck: [],
      counterDrift: state.inFlightCounter - copying.length,
      backlogDrift: state.waitingCounter - waiting.length,
    };
    if (report.counterDrift !== 0 || report.backlogDrift !== 0) {
      log.warn("counters differ from the open records", {
        inFlightCounter: state.inFlightCounter,
        copying: copying.length,
        waitingCounter: state.waitingCounter,
        waiting: waiting.length,
      });
    }
    const found: Array<[SnapshotRecord, CopyState]> = [];
    const withId = copying.filter((r) => r.copySnapshotId);
    const states = new Map(
      (await copier.describeCopies(withId.map((r) => r.copySnapshotId ?? ""))).map((c) => [
        c.copySnapshotId,
        c,
      ]),
    );
    for (const r of withId) {
      const c = states.get(r.copySnapshotId ?? "");
      if (c) found.push([r, c]);
      else if (await this.requeue(r, `copy ${r.copySnapshotId} no longer exists`)) report.requeued++;
    }
    // Copies whose id the ledger has not learnt (it learns ids from completion events): found by
    // our source tag, one DescribeSnapshots for all of them.
    const unnoted = copying.filter((r) => !r.copySnapshotId);
    const bySource = attemptCopies(
      unnoted,
      await copier.findCopiesOf(unnoted.map((r) => r.sourceSnapshotId)),
    );
    for (const r of unnoted) {
      const c = bySource.get(r.sourceSnapshotId);
      if (!c) {
        // Within the lease the admitting invocation may still be about to call CopySnapshot.
        const expired = !r.admittedAt || now.getTime() - Date.parse(r.admittedAt) >= LEASE_MS;
        if (
          expired &&
          (await this.requeue(r, "admitted but no copy was made (the admitting invocation stopped)"))
        )
          report.requeued++;
        continue;
      }
      if (await ledger.noteCopyStarted(r.sourceSnapshotId, c.copySnapshotId, r.kmsKeyId)) {
        report.recoveredCopyIds++;
      }
      found.push([{ ...r, copySnapshotId: c.copySnapshotId }, c]);
    }
    const events: CopyEvent[] = [];
    for (const [r, c] of found) {
      const ev = this.eventFor(r, c, now);
      if (ev) {
        events.push(ev);
      } else if (
        r.admittedAt &&
        now.getTime() - Date.parse(r.admittedAt) > this.config.stuckAfterMinutes * 60_000
      ) {
        report.stuck.push(r.sourceSnapshotId);
        if (!r.stuck) {
          await ledger.flag(r.sourceSnapshotId, "stuck");
          log.warn("copy pending too long", {
            sourceSnapshotId: r.sourceSnapshotId,
            copySnapshotId: c.copySnapshotId,
            admittedAt: r.admittedAt,
          });
        }
      }
    }
    if (events.length > 0) {
      for (const o of (await this.settleCopies(events, state)).outcomes) {
        if (o.status === "completed") report.completedWithoutEvent++;
        else if (o.status === "retrying" || o.status === "failed") report.failedWithoutEvent++;
      }
    }
    // Read again: discovery recorded snapshots the open set above does not hold.
    const admit = await this.admit();
    return { ...report, admit };
  }

  /**
   * createSnapshot events are best effort too: records the recent Velero snapshots of each source
   * region that the ledger has never seen (one paginated DescribeSnapshots per region).
   */
  private async discover(now: Date, fullDiscoveryAt: string | undefined): Promise<number> {
    const { sources, ledger, log } = this.deps;
    const full = !fullDiscoveryAt || now.getTime() - Date.parse(fullDiscoveryAt) >= FULL_DISCOVERY_EVERY_MS;
    const since = new Date(now.getTime() - (full ? DISCOVERY_WINDOW_MS : SHORT_DISCOVERY_WINDOW_MS));
    let discovered = 0;
    for (const region of this.config.sourceRegions) {
      const recent = await sources.listVelero(region, since);
      const known = await ledger.known(recent.map((s) => s.snapshotId));
      const records: SnapshotRecord[] = [];
      for (const s of recent.filter((x) => !known.has(x.snapshotId))) {
        const verdict = await this.classify({ key: s.snapshotId, snapshotId: s.snapshotId, region }, s);
        if ("record" in verdict) records.push(verdict.record);
      }
      if (records.length === 0) continue;
      const written = await ledger.recordMany(
        { admit: [], wait: records },
        this.config.copyBudget,
        undefined,
        now,
      );
      for (const r of written.waiting) {
        discovered++;
        log.warn("snapshot found without its event", {
          sourceSnapshotId: r.sourceSnapshotId,
          region,
          backup: r.backup,
        });
      }
    }
    // Noted only once every region was listed: a failed listing leaves the next sweep a full one.
    if (full) await ledger.noteFullDiscovery(now.toISOString());
    return discovered;
  }

  private requeue(r: SnapshotRecord, reason: string): Promise<boolean> {
    this.deps.log.warn("copy requeued", { sourceSnapshotId: r.sourceSnapshotId, reason });
    return this.deps.ledger.release(r, {
      status: "waiting",
      notBefore: this.deps.clock.now().toISOString(),
      reason,
      count: "none",
    });
  }
}

/** Two admission rounds of one invocation, reported as one. */
function mergeReports(a: AdmitReport, b: AdmitReport): AdmitReport {
  return {
    admitted: [...a.admitted, ...b.admitted],
    superseded: a.superseded + b.superseded,
    throttled: a.throttled + b.throttled,
    failed: a.failed + b.failed,
    lostRaces: a.lostRaces + b.lostRaces,
    inFlight: b.inFlight,
    waiting: b.waiting,
  };
}
