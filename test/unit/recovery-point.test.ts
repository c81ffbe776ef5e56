import { Logger } from "@aws-lambda-powertools/logger";
import { Metrics } from "@aws-lambda-powertools/metrics";
import type { Context } from "aws-lambda";
import { describe, expect, it, vi } from "vitest";
import { METRIC } from "../../functions/app/metrics.js";
import { makeRecoveryPointHandler, RECOVERY_POINT_WINDOW } from "../../functions/app/recovery-point.js";
import {
  ALL_SCHEDULES,
  isRecoverable,
  NO_SCHEDULE,
  type RecoveryCandidate,
  recoveryPoints,
} from "../../functions/core/backup.js";
import type { StoredBackup } from "../../functions/core/ports.js";
import { at, MINUTE, storedBackup } from "../support/backups.js";
import { captureStdout } from "../support/emf.js";
import { FakeClock } from "../support/harness.js";

/** A registered backup of the 15-minute schedule, started at `start`, with Velero's 1 h TTL. */
const backup = storedBackup;

/** The same, DR-ready: its failover metadata was published `readyAfterMin` minutes after it started. */
function ready(name: string, start: string, over: Partial<StoredBackup> = {}, readyAfterMin = 5) {
  return backup(name, start, {
    verdict: "dr-ready",
    drReadyAt: new Date(Date.parse(start) + readyAfterMin * MINUTE).toISOString(),
    ...over,
  });
}

describe("recoveryPoints (pure, fake clock)", () => {
  it("has no recovery point when no backup is registered at all", () => {
    const clock = new FakeClock();
    expect(recoveryPoints([], clock.now())).toEqual({
      all: { schedule: ALL_SCHEDULES, drReadyBackups: 0 },
      schedules: [],
    });
  });

  it("has no recovery point when no backup ever became DR-ready, and says so per schedule", () => {
    // arrange: one still copying, one PartiallyFailed, one Completed with a failed copy
    const clock = new FakeClock(Date.parse(at("12:50")));
    const backups = [
      backup("cbci-dr-1245", at("12:45"), { verdict: "pending", reason: "3 of 100 snapshots copied" }),
      backup("cbci-dr-1230", at("12:30"), { phase: "PartiallyFailed", verdict: "not-ready" }),
      backup("cbci-dr-1215", at("12:15"), { verdict: "not-ready", reason: "copy missing for good" }),
    ];
    // act
    const points = recoveryPoints(backups, clock.now());
    // assert: no `newest` anywhere, so no RecoveryPointAge is published
    expect(points.all).toEqual({ schedule: ALL_SCHEDULES, drReadyBackups: 0 });
    expect(points.schedules).toEqual([{ schedule: "cbci-dr", drReadyBackups: 0 }]);
  });

  it("ages the newest DR-ready backup from its start time, ignoring newer ones not ready yet", () => {
    // arrange
    const clock = new FakeClock(Date.parse(at("12:52")));
    const backups = [
      backup("cbci-dr-1245", at("12:45"), { verdict: "pending" }),
      ready("cbci-dr-1230", at("12:30")),
      ready("cbci-dr-1215", at("12:15")),
    ];
    // act
    const { all } = recoveryPoints(backups, clock.now());
    // assert: 12:52 - 12:30 = 22 minutes
    expect(all).toEqual({
      schedule: ALL_SCHEDULES,
      drReadyBackups: 2,
      newest: { backup: "cbci-dr-1230", startTimestamp: at("12:30"), ageSeconds: 22 * 60 },
    });
  });

  it("keeps ageing while nothing happens, then drops to the next backup once it is ready", () => {
    const clock = new FakeClock(Date.parse(at("12:40")));
    const backups = [ready("cbci-dr-1230", at("12:30"))];
    const ages: number[] = [];
    for (let minute = 0; minute < 3; minute++) {
      ages.push(recoveryPoints(backups, clock.now()).all.newest?.ageSeconds ?? -1);
      clock.advance(MINUTE);
    }
    expect(ages).toEqual([600, 660, 720]);
    // the 12:45 backup becomes DR-ready at 12:50
    clock.advance(7 * MINUTE);
    backups.unshift(ready("cbci-dr-1245", at("12:45")));
    expect(recoveryPoints(backups, clock.now()).all.newest).toEqual({
      backup: "cbci-dr-1245",
      startTimestamp: at("12:45"),
      ageSeconds: 5 * 60,
    });
  });

  it("ignores DR-ready backups that have expired, down to no recovery point at all", () => {
    // arrange: both expire one hour after they started (Velero's TTL)
    const clock = new FakeClock(Date.parse(at("13:10")));
    const backups = [ready("cbci-dr-1215", at("12:15")), ready("cbci-dr-1200", at("12:00"))];
    // act + assert: at 13:10 the 12:00 backup has expired, the 12:15 one has not
    expect(recoveryPoints(backups, clock.now()).all).toMatchObject({
      drReadyBackups: 1,
      newest: { backup: "cbci-dr-1215", ageSeconds: 55 * 60 },
    });
    // at 13:15 exactly the 12:15 backup expires too (expiration is not in the future)
    clock.advance(5 * MINUTE);
    expect(recoveryPoints(backups, clock.now()).all).toEqual({ schedule: ALL_SCHEDULES, drReadyBackups: 0 });
  });

  it("never counts a backup without drReadyAt, without a start time, or withdrawn by a later verdict", () => {
    const now = new Date(at("12:50"));
    const base: RecoveryCandidate = {
      name: "b",
      startTimestamp: at("12:30"),
      drReadyAt: at("12:35"),
      expiration: at("13:30"),
    };
    expect(isRecoverable(base, now)).toBe(true);
    expect(isRecoverable({ ...base, expiration: undefined }, now)).toBe(true); // no TTL: never expires
    const { drReadyAt: _ready, ...neverReady } = base;
    expect(isRecoverable(neverReady, now)).toBe(false);
    const { startTimestamp: _start, ...noStart } = base;
    expect(isRecoverable(noStart, now)).toBe(false);
    expect(isRecoverable({ ...base, startTimestamp: "yesterday" }, now)).toBe(false);
    expect(isRecoverable({ ...base, verdict: "not-ready" }, now)).toBe(false);
    expect(isRecoverable({ ...base, expiration: at("12:50") }, now)).toBe(false);
  });

  it("computes each schedule on its own (ad-hoc backups under 'none'), and overall the newest of all", () => {
    // arrange: a 15-minute schedule, an hourly one with nothing ready, a daily one, an ad-hoc backup
    const clock = new FakeClock(Date.parse(at("12:55")));
    const daily = (name: string, start: string) =>
      ready(name, start, { schedule: "nightly", expiration: "2026-12-27T02:00:00Z" });
    const backups = [
      backup("cbci-dr-1245", at("12:45"), { verdict: "pending" }),
      ready("cbci-dr-1230", at("12:30")),
      ready("cbci-dr-1215", at("12:15")),
      backup("hourly-1200", at("12:00"), { schedule: "hourly", verdict: "not-ready" }),
      ready("manual-before-upgrade", at("11:20"), {
        schedule: undefined,
        expiration: "2026-12-27T11:20:00Z",
      }),
      daily("nightly-20261127", "2026-11-27T02:00:00Z"),
      daily("nightly-20261126", "2026-11-26T02:00:00Z"),
    ];
    // act
    const points = recoveryPoints(backups, clock.now());
    // assert
    expect(points.schedules).toEqual([
      {
        schedule: "cbci-dr",
        drReadyBackups: 2,
        newest: { backup: "cbci-dr-1230", startTimestamp: at("12:30"), ageSeconds: 25 * 60 },
      },
      { schedule: "hourly", drReadyBackups: 0 },
      {
        schedule: "nightly",
        drReadyBackups: 2,
        newest: {
          backup: "nightly-20261127",
          startTimestamp: "2026-11-27T02:00:00Z",
          ageSeconds: (10 * 60 + 55) * 60,
        },
      },
      {
        schedule: NO_SCHEDULE,
        drReadyBackups: 1,
        newest: { backup: "manual-before-upgrade", startTimestamp: at("11:20"), ageSeconds: 95 * 60 },
      },
    ]);
    expect(points.all).toEqual({
      schedule: ALL_SCHEDULES,
      drReadyBackups: 5,
      newest: { backup: "cbci-dr-1230", startTimestamp: at("12:30"), ageSeconds: 25 * 60 },
    });
  });
});

/** The recovery-point handler's CloudWatch output (EMF lines on stdout, as in metrics.test.ts). */
describe("recovery-point handler", () => {
  interface Emf {
    _aws: {
      CloudWatchMetrics: Array<{
        Namespace: string;
        Dimensions: string[][];
        Metrics: Array<{ Name: string; Unit: string }>;
      }>;
    };
    [key: string]: unknown;
  }
  const stdout = captureStdout();
  const context = {
    functionName: "recovery-point",
    invokedFunctionArn: "arn:aws:lambda:us-west-2:123456789012:function:recovery-point",
    awsRequestId: "req-1",
    memoryLimitInMB: "256",
    getRemainingTimeInMillis: () => 30_000,
  } as unknown as Context;

  /** Data points as `<metric> <Schedule>` -> value, with each one's unit and dimension names. */
  function points() {
    const out = new Map<string, { value: unknown; unit: string; dimensions: string[][]; service: unknown }>();
    for (const line of stdout.text().split("\n")) {
      if (!line.trim().startsWith("{")) continue;
      const doc = JSON.parse(line) as Emf;
      if (!doc._aws) continue;
      for (const d of doc._aws.CloudWatchMetrics) {
        expect(d.Namespace).toBe("VeleroDR");
        for (const m of d.Metrics) {
          out.set(`${m.Name} ${String(doc.Schedule)}`, {
            value: doc[m.Name],
            unit: m.Unit,
            dimensions: d.Dimensions,
            service: doc.service,
          });
        }
      }
    }
    return out;
  }

  function handlerWith(backups: StoredBackup[], clock: FakeClock) {
    const listBackups = vi.fn(async (_limit?: number) => backups);
    const handler = makeRecoveryPointHandler({
      ledger: { listBackups },
      clock,
      logger: new Logger({ serviceName: "velero-dr", logLevel: "SILENT" }),
      metrics: new Metrics({ namespace: "VeleroDR", serviceName: "velero-dr" }),
    });
    return { handler, listBackups };
  }

  it("publishes no RecoveryPointAge but RecoveryPointMissing=1 when no backup ever became ready", async () => {
    // arrange
    const clock = new FakeClock(Date.parse(at("12:50")));
    const { handler, listBackups } = handlerWith(
      [backup("cbci-dr-1245", at("12:45"), { verdict: "pending" })],
      clock,
    );
    // act
    await handler({}, context);
    // assert
    expect(listBackups).toHaveBeenCalledWith(RECOVERY_POINT_WINDOW);
    const p = points();
    expect([...p.keys()].filter((k) => k.startsWith(METRIC.recoveryPointAge))).toEqual([]);
    for (const schedule of [ALL_SCHEDULES, "cbci-dr"]) {
      expect(p.get(`${METRIC.recoveryPointMissing} ${schedule}`)).toMatchObject({ value: 1, unit: "Count" });
      expect(p.get(`${METRIC.drReadyBackups} ${schedule}`)).toMatchObject({ value: 0, unit: "Count" });
    }
  });

  it("publishes the age per schedule and overall (service + Schedule dimensions) every minute, unchanged or not", async () => {
    // arrange
    const clock = new FakeClock(Date.parse(at("12:40")));
    const { handler } = handlerWith(
      [
        ready("cbci-dr-1230", at("12:30")),
        ready("nightly-20261127", "2026-11-27T02:00:00Z", {
          schedule: "nightly",
          expiration: "2026-12-27T02:00:00Z",
        }),
      ],
      clock,
    );
    // act: two runs a minute apart, nothing changed in between
    const ages: Array<Record<string, unknown>> = [];
    for (let run = 0; run < 2; run++) {
      stdout.clear();
      await handler({}, context);
      const p = points();
      ages.push({
        all: p.get(`${METRIC.recoveryPointAge} ${ALL_SCHEDULES}`)?.value,
        "cbci-dr": p.get(`${METRIC.recoveryPointAge} cbci-dr`)?.value,
        nightly: p.get(`${METRIC.recoveryPointAge} nightly`)?.value,
      });
      if (run === 0) {
        for (const [key, point] of p) {
          expect(point.dimensions, key).toEqual([["service", "Schedule"]]);
          expect(point.service, key).toBe("velero-dr");
        }
        expect(p.get(`${METRIC.recoveryPointAge} ${ALL_SCHEDULES}`)?.unit).toBe("Seconds");
        expect(p.get(`${METRIC.recoveryPointMissing} ${ALL_SCHEDULES}`)?.value).toBe(0);
        expect(p.get(`${METRIC.drReadyBackups} ${ALL_SCHEDULES}`)?.value).toBe(2);
      }
      clock.advance(MINUTE);
    }
    // assert
    expect(ages).toEqual([
      { all: 600, "cbci-dr": 600, nightly: (10 * 60 + 40) * 60 },
      { all: 660, "cbci-dr": 660, nightly: (10 * 60 + 41) * 60 },
    ]);
  });
});
