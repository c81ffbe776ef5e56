import type { SnapshotRecord } from "./model.js";

/**
 * The copy scheduler: which waiting copies to start now, and which to skip as superseded.
 *
 * AWS runs at most 20 snapshot copies at once per destination region and copies of one volume
 * lineage one after another (https://docs.aws.amazon.com/ebs/latest/userguide/ebs-copy-snapshot.html).
 * When copies cannot keep up, stale work is skipped **per backup**, not per volume: a restore needs
 * every PV of one backup, and skipping each volume's older snapshot independently can leave no
 * backup ever complete. So, per schedule:
 *  - backups whose copies have started are driven to completion, oldest first;
 *  - then the newest backup of the schedule is next, even before the current one finishes if a
 *    slot and its volume are free (pipelining);
 *  - open backups between the two are superseded.
 * Ad-hoc (unscheduled) backups are never superseded.
 *
 * Pure: the caller loads the ledger's open records and enforces the plan with conditional writes,
 * so a plan computed from a stale read can lose a race but never exceed the budget.
 */
export interface PlanInput {
  /** Every open record: `waiting` and `copying`. */
  open: readonly SnapshotRecord[];
  /** Backups at least one of whose copies was ever admitted. */
  startedBackups: ReadonlySet<string>;
  budget: number;
  now: Date;
}

export interface Plan {
  /** Waiting records to admit, in priority order (no two of one volume, at most the free budget). */
  admit: SnapshotRecord[];
  /** Waiting records of backups skipped in favour of a newer backup of the same schedule. */
  supersede: Array<{ record: SnapshotRecord; by: string }>;
  inFlight: number;
  /** Waiting records that stay waiting: volume busy, backing off, or no free slot. */
  waiting: number;
}

interface BackupGroup {
  backup: string;
  time: string;
  records: SnapshotRecord[];
}

/** Backups of one schedule form one group; each unscheduled backup is its own group. */
function groupKey(r: SnapshotRecord): string {
  return r.schedule === undefined
    ? `backup\u0000${r.backup}`
    : `schedule\u0000${r.sourceRegion}\u0000${r.schedule}`;
}

function byTimeThenName(a: BackupGroup, b: BackupGroup): number {
  return a.time < b.time ? -1 : a.time > b.time ? 1 : a.backup.localeCompare(b.backup);
}

/** Computes the next admissions and supersessions. */
export function plan(input: PlanInput): Plan {
  const { open, startedBackups, budget, now } = input;
  const busyVolumes = new Set<string>();
  let inFlight = 0;
  const groups = new Map<string, Map<string, BackupGroup>>();
  for (const r of open) {
    if (r.status === "copying") {
      inFlight++;
      busyVolumes.add(r.volumeId);
    }
    const key = groupKey(r);
    const backups = groups.get(key) ?? new Map<string, BackupGroup>();
    groups.set(key, backups);
    const g = backups.get(r.backup);
    if (g) {
      g.records.push(r);
      if (r.startTime < g.time) g.time = r.startTime;
    } else {
      backups.set(r.backup, { backup: r.backup, time: r.startTime, records: [r] });
    }
  }

  const supersede: Plan["supersede"] = [];
  // [tier, backup time, record]: started backups (tier 0) before the next one (tier 1).
  const candidates: Array<[number, string, SnapshotRecord]> = [];
  for (const backups of groups.values()) {
    const ordered = [...backups.values()].sort(byTimeThenName);
    const newest = ordered[ordered.length - 1];
    for (const g of ordered) {
      const started = startedBackups.has(g.backup) || g.records.some((r) => r.status === "copying");
      if (!started && g !== newest) {
        for (const r of g.records) {
          if (r.status === "waiting") supersede.push({ record: r, by: newest?.backup ?? g.backup });
        }
        continue;
      }
      for (const r of g.records) {
        if (r.status === "waiting") candidates.push([started ? 0 : 1, g.time, r]);
      }
    }
  }
  candidates.sort(
    (a, b) =>
      a[0] - b[0] ||
      (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0) ||
      (a[2].startTime < b[2].startTime ? -1 : a[2].startTime > b[2].startTime ? 1 : 0) ||
      a[2].sourceSnapshotId.localeCompare(b[2].sourceSnapshotId),
  );

  // A lineage is copied in order: only each volume's oldest waiting snapshot may start (copying a
  // newer one first would make the older one's copy a full copy), even while that one backs off.
  const oldest = new Map<string, SnapshotRecord>();
  for (const [, , r] of candidates) {
    const o = oldest.get(r.volumeId);
    if (
      !o ||
      r.startTime < o.startTime ||
      (r.startTime === o.startTime && r.sourceSnapshotId < o.sourceSnapshotId)
    ) {
      oldest.set(r.volumeId, r);
    }
  }
  const admit: SnapshotRecord[] = [];
  let free = Math.max(0, budget - inFlight);
  const nowIso = now.toISOString();
  for (const [, , r] of candidates) {
    if (free === 0) break;
    if (busyVolumes.has(r.volumeId) || oldest.get(r.volumeId) !== r) continue;
    if (r.notBefore !== undefined && r.notBefore > nowIso) continue;
    admit.push(r);
    busyVolumes.add(r.volumeId);
    free--;
  }
  return { admit, supersede, inFlight, waiting: candidates.length - admit.length };
}

/**
 * Back-off before retrying a throttled or quota-limited copy: "full jitter"
 * (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), from 15 s doubling
 * per attempt, capped at 15 minutes; never less than 1 s so a retry storm cannot form.
 */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(15 * 60_000, 15_000 * 2 ** Math.max(0, attempt - 1));
  return Math.max(1_000, Math.floor(random() * ceiling));
}
