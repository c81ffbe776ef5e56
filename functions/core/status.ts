import { recoveryPoint } from "./backup.js";
import type { SnapshotRecord } from "./model.js";
import type { StoredBackup } from "./ports.js";

/** Where the failover region stands: the recovery point, recent backups, copies in flight. */
export interface StatusReport {
  now: string;
  rpoTargetSeconds: number;
  recoveryPoint:
    | { backup: string; startTimestamp: string; ageSeconds: number; withinTarget: boolean }
    | { backup: null; reason: string };
  backups: Array<{
    name: string;
    schedule: string | null;
    phase: string | null;
    startTimestamp: string | null;
    copied: number;
    expected: number;
    verdict: string;
    reason: string;
    drReadyAt: string | null;
  }>;
  copies: { inFlight: number; waiting: number; budget: number };
}

/** Builds the report from the ledger's backups and open copies (pure: the clock is passed in). */
export function buildStatus(
  backups: readonly StoredBackup[],
  open: readonly SnapshotRecord[],
  o: { now: Date; rpoTargetMinutes: number; budget: number },
): StatusReport {
  const target = o.rpoTargetMinutes * 60;
  const ready = backups.filter(
    (b) => b.drReadyAt && (!b.expiration || Date.parse(b.expiration) > o.now.getTime()),
  );
  const rp = recoveryPoint(ready, o.now);
  return {
    now: o.now.toISOString(),
    rpoTargetSeconds: target,
    recoveryPoint: rp
      ? { ...rp, withinTarget: rp.ageSeconds <= target }
      : { backup: null, reason: "no DR-ready backup that has not expired" },
    backups: backups.map((b) => ({
      name: b.name,
      schedule: b.schedule ?? null,
      phase: b.phase ?? null,
      startTimestamp: b.startTimestamp ?? null,
      copied: b.copied ?? 0,
      expected: b.expectedCount ?? b.expected?.length ?? 0,
      verdict: b.verdict ?? "pending",
      reason: b.reason ?? "not evaluated yet",
      drReadyAt: b.drReadyAt ?? null,
    })),
    copies: {
      inFlight: open.filter((r) => r.status === "copying").length,
      waiting: open.filter((r) => r.status === "waiting").length,
      budget: o.budget,
    },
  };
}

const duration = (s: number) =>
  s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;

/** The report for humans. */
export function renderStatus(r: StatusReport): string {
  const rp = r.recoveryPoint;
  const lines = [
    rp.backup === null
      ? `recovery point: NONE (${rp.reason}); target ${duration(r.rpoTargetSeconds)}`
      : `recovery point: ${rp.backup}, started ${rp.startTimestamp}, age ${duration(rp.ageSeconds)} ` +
        `(target ${duration(r.rpoTargetSeconds)}: ${rp.withinTarget ? "OK" : "BREACHED"})`,
    `copies: ${r.copies.inFlight} in flight of a budget of ${r.copies.budget}, ${r.copies.waiting} waiting`,
    "",
    "recent backups:",
  ];
  if (r.backups.length === 0) lines.push("  (none registered)");
  for (const b of r.backups) {
    lines.push(
      `  ${b.name}  ${b.phase ?? "?"}  ${b.copied}/${b.expected} copied  ${b.verdict.toUpperCase()}: ${b.reason}`,
    );
  }
  return `${lines.join("\n")}\n`;
}
