/**
 * The dashboard and the alarms against what the functions really emit. The handlers run against the
 * emulator (the local plane: replicate, copy-completed, register, the sweep, the copy poller and the
 * recovery point), their EMF lines are caught on stdout, and every widget's metric or SEARCH
 * expression and every alarm on our namespace must find at least one emitted metric (namespace,
 * name, exact dimension set and values), as CloudWatch would. AWS's own metrics (AWS/SQS, AWS/Lambda,
 * AWS/States) are AWS's to emit and are not checked here. The emulator emits no EBS events and
 * completes copies at once: copies are held and their events played by the local emitter.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { METRIC } from "../../functions/app/metrics.js";
import { pollCopies } from "../../functions/app/poll.js";
import { makeRecoveryPointHandler } from "../../functions/app/recovery-point.js";
import type { VeleroConfig } from "../../functions/core/config.js";
import type { TakenSnapshot } from "../../local/primary.js";
import { type LocalPlane, lambdaContext, putEvents, snapshotArn } from "../../local/runtime.js";
import { SimulatedVelero } from "../../local/velero.js";
import { METRICS_NAMESPACE } from "../../stacks/Replication.js";
import { synthRegion } from "../../stacks/synth.js";
import { type Resource, resources } from "../stacks/cfn.js";
import { type DashboardBody, dashboardBodyText, parseDashboardBody } from "../stacks/dashboard.js";
import {
  alarmQueries,
  captureStdout,
  type EmittedMetric,
  emittedMetrics,
  type MetricQuery,
  unmatched,
  widgetQueries,
} from "../support/emf.js";
import { FakeClock, makePlane, useMoto } from "../support/harness.js";

const moto = useMoto();
const SCHEDULE = "cbci-dr";
const VELERO: VeleroConfig = {
  bucket: "velero-dashboard-test",
  prefix: "",
  failoverBucket: "velero-dashboard-test-failover",
  failoverPrefix: "failover",
  zoneMap: { "us-east-1a": "us-west-2b" },
  allowedWarnings: 0,
  combinedIds: false,
};
/** The deployment the dashboard is synthesized for: the same bucket, so every widget is drawn. */
const SETTINGS = {
  DR_SOURCE_REGIONS: "us-east-1",
  DR_FAILOVER_REGION: "us-west-2",
  DR_VELERO_BUCKET: VELERO.bucket,
  DR_FAILOVER_BUCKET: VELERO.failoverBucket,
  DR_ZONE_MAP: "us-east-1a=us-west-2b",
};

const stdout = captureStdout();
const emitted = (): EmittedMetric[] => emittedMetrics(stdout.text());

let dashboard: DashboardBody;
let alarms: Resource[];
beforeAll(async () => {
  const stacks = await synthRegion("us-west-2", { env: SETTINGS });
  const replication = stacks.find((s) => s.stackName.endsWith("-Replication"));
  if (!replication) throw new Error(`no Replication stack in ${stacks.map((s) => s.stackName).join(", ")}`);
  const [board] = resources(replication.template, "AWS::CloudWatch::Dashboard");
  if (!board) throw new Error("the Replication stack has no dashboard");
  dashboard = parseDashboardBody(dashboardBodyText(board, "us-west-2"));
  alarms = resources(replication.template, "AWS::CloudWatch::Alarm");
});

async function world(config: { copyBudget?: number } = {}) {
  const clock = new FakeClock(Date.now()); // moved past a failed copy's back-off
  const made = await makePlane(moto(), { copyDelayMs: "held", clock, config: { velero: VELERO, ...config } });
  const velero = new SimulatedVelero(made.plane.clients.s3, VELERO);
  /** Velero's files for a backup whose snapshots were taken (registration follows their events). */
  const writeFiles = (name: string, snaps: readonly TakenSnapshot[]) =>
    velero.writeBackup(
      {
        name,
        schedule: SCHEDULE,
        start: new Date(Date.now() - 600_000),
        controllers: made.primary.controllers,
      },
      snaps,
      "us-east-1a",
    );
  return { ...made, writeFiles, clock };
}

/** EBS's "missed completion duration" event for a copy in flight (AWS sends it in the failover region). */
async function missedDeadline(plane: LocalPlane, copySnapshotId: string, source: string) {
  await putEvents(plane.clients.events, [
    {
      Source: "aws.ec2",
      DetailType: "EBS Copy Snapshot Missed Completion Duration",
      EventBusName: "default",
      Detail: JSON.stringify({
        missedCompletionDurationCause: "Snapshot copy took longer than the requested duration",
        snapshot_id: snapshotArn("us-west-2", copySnapshotId),
        source: snapshotArn("us-east-1", source),
      }),
    },
  ]);
}

const ours = (qs: MetricQuery[]) => qs.filter((q) => q.namespace === METRICS_NAMESPACE);

describe("the dashboard and alarms find what the functions emit", () => {
  it("every widget's metric or SEARCH and every alarm on VeleroDR matches a metric the handlers emitted", async () => {
    // arrange: a backup whose copies meet a missed deadline, a failed attempt, then complete
    const { plane, primary, writeFiles, clock } = await world();
    await primary.addControllers(3);
    const snaps = await primary.takeBackup("cbci-dr-20261203120000", { schedule: SCHEDULE });
    await writeFiles("cbci-dr-20261203120000", snaps);

    // act: every handler that emits, as deployed
    await plane.drain(); // replicate admits 3 copies; register sees the backup (not ready yet)
    const [first] = plane.emitter.held;
    await missedDeadline(plane, first?.copySnapshotId ?? "", first?.sourceSnapshotId ?? "");
    await plane.drain(); // copy-completed flags it
    await plane.emitter.release(1, { result: "failed" });
    await plane.drain(); // copy-completed retries it after a back-off: the sweep admits it again
    clock.advance(5 * 60_000);
    for (
      let round = 0;
      round < 5 && plane.emitter.inFlight + (await plane.sweep()).admit.waiting > 0;
      round++
    ) {
      await plane.emitter.release();
      await plane.drain(); // the copies complete; the last one makes the backup DR-ready
    }
    await pollCopies(plane.rt, { sleep: async () => {} });
    await makeRecoveryPointHandler(plane.rt)(undefined, lambdaContext("recovery-point", "us-west-2"));

    // assert: the run did what it should, so the metrics below are the real ones
    expect(await plane.rt.ledger.getBackup("cbci-dr-20261203120000")).toMatchObject({ verdict: "dr-ready" });
    const metrics = emitted();
    const names = new Set(metrics.map((m) => m.name));
    for (const name of [METRIC.copiesMissedDeadline, METRIC.copiesRetried, METRIC.backupReplicationLag])
      expect(names, name).toContain(name);
    // every widget row and alarm on our namespace finds a metric
    const widgets = ours(widgetQueries(dashboard));
    const alarmed = ours(alarmQueries(alarms));
    expect(widgets.length).toBeGreaterThanOrEqual(15);
    expect(alarmed.map((q) => q.where).sort()).toEqual([
      "alarm velero-dr-test-copies-stuck",
      "alarm velero-dr-test-copy-failures",
      "alarm velero-dr-test-recovery-point-age",
    ]);
    expect(unmatched(widgets, metrics, METRICS_NAMESPACE)).toEqual([]);
    expect(unmatched(alarmed, metrics, METRICS_NAMESPACE)).toEqual([]);

    // and the check can fail: a widget whose dimension set differs from what is emitted finds nothing
    const changed = structuredClone(dashboard);
    for (const w of changed.widgets) {
      const rows = w.properties.metrics;
      if (!Array.isArray(rows)) continue;
      for (const row of rows) {
        if (!Array.isArray(row)) continue;
        const last = row[row.length - 1];
        if (typeof last === "object" && last !== null && !Array.isArray(last)) {
          const options = last as { expression?: string };
          if (options.expression?.includes("BackupReplicationLag"))
            options.expression = options.expression.replace(
              "{VeleroDR,Schedule,service}",
              "{VeleroDR,service}",
            );
        }
        if (row[1] === METRIC.copiesInFlight) row.splice(2, 0, "Schedule", "all");
      }
    }
    expect(unmatched(ours(widgetQueries(changed)), metrics, METRICS_NAMESPACE)).toEqual([
      'widget "Backup replication lag (s): completed -> DR-ready" row 0',
      'widget "Copies in flight against the budget" row 0',
    ]);
  });

  it("BackupReplicationLag, with its Schedule, from every path that makes a backup DR-ready", async () => {
    // arrange: 2 controllers, a budget of 2 (so copies of a second backup wait and the poller looks)
    const { plane, primary, writeFiles } = await world({ copyBudget: 2 });
    await primary.addControllers(2);
    const lags = () =>
      emitted().filter((m) => m.name === METRIC.backupReplicationLag && m.dimensions.Schedule === SCHEDULE)
        .length;
    const take = async (name: string) => {
      const snaps = await primary.takeBackup(name, { schedule: SCHEDULE });
      await writeFiles(name, snaps);
      await plane.drain();
    };

    // act + assert: the copy poller (its copies finished without events while others waited)
    await take("cbci-dr-20261203120000");
    await take("cbci-dr-20261203121500"); // waits for the budget
    await plane.emitter.release(2, { emit: false });
    await pollCopies(plane.rt, { sleep: async () => {} });
    expect(await plane.rt.ledger.getBackup("cbci-dr-20261203120000")).toMatchObject({ verdict: "dr-ready" });
    expect(lags()).toBe(1);

    // the sweep (copies finished, their events lost)
    await plane.emitter.release(2, { emit: false });
    await plane.sweep();
    expect(await plane.rt.ledger.getBackup("cbci-dr-20261203121500")).toMatchObject({ verdict: "dr-ready" });
    expect(lags()).toBe(2);

    // a copy event (the usual path)
    await take("cbci-dr-20261203123000");
    await plane.emitter.release();
    await plane.drain();
    expect(await plane.rt.ledger.getBackup("cbci-dr-20261203123000")).toMatchObject({ verdict: "dr-ready" });
    expect(lags()).toBe(3);

    // registration (Velero's files land after the copies completed)
    const snaps = await primary.takeBackup("cbci-dr-20261203124500", { schedule: SCHEDULE });
    await plane.drain();
    await plane.emitter.release();
    await plane.drain();
    expect(lags()).toBe(3);
    await writeFiles("cbci-dr-20261203124500", snaps);
    await plane.drain();
    expect(await plane.rt.ledger.getBackup("cbci-dr-20261203124500")).toMatchObject({ verdict: "dr-ready" });
    expect(lags()).toBe(4);
  });
});
