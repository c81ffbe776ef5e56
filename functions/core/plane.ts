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
} from "./model.js";
import type { Clock, CopyState, Ledger, Log, SnapshotCopier, SourceSnapshots } from "./ports.js";
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

export interface SweepReport {
  /** Velero snapshots found in a source region that no event had announced (now recorded). */
  discovered: number;
  completedWithoutEvent: number;
  failedWithoutEvent: number;
  recoveredCopyIds: number;
  requeued: number;
  stuck: string[];
  counterDrift: number;
  admit: AdmitReport;
}

/** AWS allows at most 50 tags per resource. */
const MAX_TAGS = 50;
/** A copy admitted this long ago without a noted copy id means the admitting invocation died. */
const LEASE_MS = 5 * 60_000;
/** How far back the sweep looks for Velero snapshots whose createSnapshot event was lost. */
export const DISCOVERY_WINDOW_MS = 24 * 60 * 60_000;

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
    const { sources, log } = this.deps;
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
        outcomes.set(r.key, await this.recordOne(r, found.get(r.snapshotId)));
      }
    }
    for (const [key, o] of outcomes) {
      if (o.status === "skipped") log.info("snapshot skipped", { key, reason: o.reason });
    }
    return outcomes;
  }

  private async recordOne(r: IngestRequest, s: SourceSnapshot | undefined): Promise<IngestOutcome> {
    if (!s) return { status: "retry", reason: `snapshot ${r.snapshotId} not found in ${r.region} (yet)` };
    const why = ineligibility(s.tags, this.config);
    if (why) return { status: "skipped", reason: why };
    if (s.state === "error") {
      const status = await this.deps.ledger.recordSourceFailure(
        toRecord(s, "failed", "source snapshot in error state"),
      );
      return { status: status, backup: s.tags[VELERO_BACKUP_TAG] ?? "" };
    }
    if (s.state !== "completed")
      return { status: "retry", reason: `snapshot ${s.snapshotId} is still ${s.state}` };
    try {
      const status = await this.deps.ledger.recordSource(toRecord(s, "waiting"));
      return { status, backup: s.tags[VELERO_BACKUP_TAG] ?? "" };
    } catch (err) {
      return { status: "retry", reason: classifyAwsError(err, "ledger write").message };
    }
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

  /** Supersedes stale backups and starts as many copies as the budget allows. */
  async admit(): Promise<AdmitReport> {
    const { ledger, copier, clock, log } = this.deps;
    const now = clock.now();
    const state = await ledger.loadOpen();
    const p = plan({ ...state, budget: this.config.copyBudget, now });
    const report: AdmitReport = {
      admitted: [],
      superseded: 0,
      throttled: 0,
      failed: 0,
      lostRaces: 0,
      inFlight: p.inFlight,
      waiting: p.waiting,
    };
    for (const { record, by } of p.supersede) {
      if (await ledger.supersede(record.sourceSnapshotId, record.backup, by)) {
        report.superseded++;
        log.info("copy superseded", { sourceSnapshotId: record.sourceSnapshotId, backup: record.backup, by });
      }
    }
    for (const record of p.admit) {
      const lease = await ledger.admit(record, this.config.copyBudget, this.config.kmsKeyId, now);
      if (!lease) {
        report.lostRaces++;
        continue;
      }
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
          ...(lease.kmsKeyId ? { kmsKeyId: lease.kmsKeyId } : {}),
          ...(this.config.completionDurationMinutes
            ? { completionDurationMinutes: this.config.completionDurationMinutes }
            : {}),
          description: `Velero DR copy of ${record.sourceSnapshotId} (backup ${record.backup}, pv ${
            record.tags[VELERO_PV_TAG] ?? "?"
          }) from ${record.sourceRegion}`,
        });
        await ledger.noteCopyStarted(record.sourceSnapshotId, copySnapshotId, lease.kmsKeyId);
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
          break; // the API or the copy quota said "slow down": stop admitting for this round
        }
        // Refused for a reason retrying soon will not fix (source gone, bad key, a bug): counted
        // against the copy's attempts, like an asynchronous copy failure.
        const outcome = await this.failCopy({ ...record, status: "copying" }, e.message);
        if (outcome.status === "failed") report.failed++;
      }
    }
    // Planned but not started (throttled, refused and retrying, or not tried after a throttle)
    // are still waiting; lost races were taken by another invocation.
    report.waiting += p.admit.length - report.admitted.length - report.failed - report.lostRaces;
    return report;
  }

  /** Reacts to a copySnapshot outcome in the failover region (event or sweep). */
  async onCopyEvent(
    ev: Extract<ClassifiedEvent, { kind: "snapshot-copied" | "copy-failed" | "copy-missed-deadline" }>,
  ): Promise<CopyEventOutcome> {
    const { ledger, clock, log } = this.deps;
    if (ev.region !== this.config.failoverRegion) {
      return { status: "ignored", reason: `copy in ${ev.region}, not the failover region` };
    }
    const sourceId = ev.sourceSnapshotId;
    if (!sourceId) return { status: "ignored", reason: "event names no source snapshot" };
    const record = await ledger.get(sourceId);
    if (!record) return { status: "ignored", reason: `source snapshot ${sourceId} is not in the ledger` };
    if (record.copySnapshotId && record.copySnapshotId !== ev.snapshotId) {
      return {
        status: "ignored",
        reason: `copy ${ev.snapshotId} is not ours (ours is ${record.copySnapshotId})`,
      };
    }
    if (record.status !== "copying") {
      return { status: "ignored", reason: `already ${record.status} (duplicate or late event)` };
    }
    if (ev.kind === "copy-missed-deadline") {
      await ledger.flag(sourceId, "missedDeadline");
      log.warn("time-based copy missed its completion duration", {
        sourceSnapshotId: sourceId,
        copy: ev.snapshotId,
      });
      return { status: "flagged", record };
    }
    if (ev.kind === "snapshot-copied") {
      const completedAt = ev.endTime ?? clock.now().toISOString();
      const done = await ledger.complete(record, {
        copySnapshotId: ev.snapshotId,
        completedAt,
        ...(ev.incremental === undefined ? {} : { incremental: ev.incremental }),
      });
      if (!done) return { status: "ignored", reason: "lost a race with another delivery" };
      const lagSeconds = Math.max(0, (Date.parse(completedAt) - Date.parse(record.startTime)) / 1000);
      return {
        status: "completed",
        record,
        copySnapshotId: ev.snapshotId,
        lagSeconds,
        ...(ev.incremental === undefined ? {} : { incremental: ev.incremental }),
      };
    }
    return this.failCopy(record, `copy ${ev.snapshotId} failed: ${ev.cause || "no cause given"}`);
  }

  /** A copy failed: retry it later, a bounded number of times, then give up with the reason. */
  private async failCopy(record: SnapshotRecord, reason: string): Promise<CopyEventOutcome> {
    const { ledger, clock, log } = this.deps;
    const attempts = record.attempts + 1;
    if (attempts >= this.config.maxCopyAttempts) {
      const final = `${reason} (attempt ${attempts} of ${this.config.maxCopyAttempts}, giving up)`;
      if (
        !(await ledger.release(record, {
          status: "failed",
          reason: final,
          count: "attempts",
        }))
      ) {
        return { status: "ignored", reason: "lost a race with another delivery" };
      }
      log.error("copy failed for good", { sourceSnapshotId: record.sourceSnapshotId, reason: final });
      return { status: "failed", record, reason: final };
    }
    const notBefore = new Date(clock.now().getTime() + backoffMs(attempts, this.random)).toISOString();
    const again = `${reason} (attempt ${attempts} of ${this.config.maxCopyAttempts}, retrying after ${notBefore})`;
    if (
      !(await ledger.release(record, {
        status: "waiting",
        notBefore,
        reason: again,
        count: "attempts",
      }))
    ) {
      return { status: "ignored", reason: "lost a race with another delivery" };
    }
    log.warn("copy failed, will retry", { sourceSnapshotId: record.sourceSnapshotId, reason: again });
    return { status: "retrying", record, reason: again };
  }

  /**
   * Reconciliation: EBS events are best effort, so look at every copy in flight, settle the ones
   * that finished without an event, flag the ones pending too long, recover copies whose id was
   * never noted, then admit. No lost event can stall the plane.
   */
  async sweep(): Promise<SweepReport> {
    const { ledger, copier, clock, log } = this.deps;
    const now = clock.now();
    const state = await ledger.loadOpen();
    const copying = state.open.filter((r) => r.status === "copying");
    const report: Omit<SweepReport, "admit"> = {
      discovered: await this.discover(now),
      completedWithoutEvent: 0,
      failedWithoutEvent: 0,
      recoveredCopyIds: 0,
      requeued: 0,
      stuck: [],
      counterDrift: state.inFlightCounter - copying.length,
    };
    if (report.counterDrift !== 0) {
      log.warn("in-flight counter differs from copying records", {
        counter: state.inFlightCounter,
        copying: copying.length,
      });
    }
    const withId = copying.filter((r) => r.copySnapshotId);
    const states = new Map(
      (await copier.describeCopies(withId.map((r) => r.copySnapshotId ?? ""))).map((c) => [
        c.copySnapshotId,
        c,
      ]),
    );
    for (const r of withId) {
      const c = states.get(r.copySnapshotId ?? "");
      if (!c) {
        if (await this.requeue(r, `copy ${r.copySnapshotId} no longer exists`)) report.requeued++;
        continue;
      }
      await this.settle(r, c, now, report);
    }
    for (const r of copying.filter((x) => !x.copySnapshotId)) {
      if (!r.admittedAt || now.getTime() - Date.parse(r.admittedAt) < LEASE_MS) continue;
      const found = (await copier.findCopiesOf(r.sourceSnapshotId)).sort((a, b) =>
        (a.startTime ?? "").localeCompare(b.startTime ?? ""),
      )[0];
      if (!found) {
        if (await this.requeue(r, "admitted but no copy was made (the admitting invocation stopped)"))
          report.requeued++;
        continue;
      }
      if (await ledger.noteCopyStarted(r.sourceSnapshotId, found.copySnapshotId, r.kmsKeyId)) {
        report.recoveredCopyIds++;
      }
      await this.settle({ ...r, copySnapshotId: found.copySnapshotId }, found, now, report);
    }
    const admit = await this.admit();
    return { ...report, admit };
  }

  /**
   * createSnapshot events are best effort too: records the recent Velero snapshots of each source
   * region that the ledger has never seen (one paginated DescribeSnapshots per region).
   */
  private async discover(now: Date): Promise<number> {
    const { sources, ledger, log } = this.deps;
    let discovered = 0;
    for (const region of this.config.sourceRegions) {
      const recent = await sources.listVelero(region, new Date(now.getTime() - DISCOVERY_WINDOW_MS));
      const known = await ledger.known(recent.map((s) => s.snapshotId));
      for (const s of recent.filter((x) => !known.has(x.snapshotId))) {
        const o = await this.recordOne({ key: s.snapshotId, snapshotId: s.snapshotId, region }, s);
        if (o.status === "recorded") {
          discovered++;
          log.warn("snapshot found without its event", {
            sourceSnapshotId: s.snapshotId,
            region,
            backup: o.backup,
          });
        }
      }
    }
    return discovered;
  }

  private async settle(r: SnapshotRecord, c: CopyState, now: Date, report: Omit<SweepReport, "admit">) {
    const base = { snapshotId: c.copySnapshotId, region: this.config.failoverRegion };
    const source = { sourceSnapshotId: r.sourceSnapshotId, sourceRegion: r.sourceRegion };
    if (c.state === "completed") {
      const o = await this.onCopyEvent({
        kind: "snapshot-copied",
        ...base,
        ...source,
        endTime: now.toISOString(),
      });
      if (o.status === "completed") report.completedWithoutEvent++;
    } else if (c.state === "error") {
      const o = await this.onCopyEvent({
        kind: "copy-failed",
        ...base,
        ...source,
        cause: c.stateMessage ?? "copy in error state",
      });
      if (o.status === "retrying" || o.status === "failed") report.failedWithoutEvent++;
    } else if (
      r.admittedAt &&
      now.getTime() - Date.parse(r.admittedAt) > this.config.stuckAfterMinutes * 60_000
    ) {
      report.stuck.push(r.sourceSnapshotId);
      if (!r.stuck) {
        await this.deps.ledger.flag(r.sourceSnapshotId, "stuck");
        this.deps.log.warn("copy pending too long", {
          sourceSnapshotId: r.sourceSnapshotId,
          copySnapshotId: c.copySnapshotId,
          admittedAt: r.admittedAt,
        });
      }
    }
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
