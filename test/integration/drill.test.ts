import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runDrill } from "../../local/drill.js";
import { renderedDom } from "../support/chromium.js";
import { useMoto } from "../support/harness.js";

const moto = useMoto();

describe("local drill (npm start)", () => {
  it("20 controllers (5 on CSI) x 3 scheduled backups: 60 snapshots, 60 tagged copies, no duplicates, within the budget, all DR-ready, every record and CSI handle verified", async () => {
    // act
    const report = join(mkdtempSync(join(tmpdir(), "drill-")), "report.html");
    const s = await runDrill({
      controllers: 20,
      backups: 3,
      budget: 16,
      copyDelayMs: 20,
      schedule: "cbci-dr",
      csi: 5, // 5 of the 20 controllers' volumes snapshotted through CSI, the rest natively
      endpoint: moto().endpoint,
      reportPath: report,
    });

    // assert
    expect(s).toMatchObject({
      sourceSnapshots: 60,
      csiSnapshots: 15,
      csiCopies: 15,
      copies: 60,
      duplicateCopies: 0,
      superseded: 0,
      failed: 0,
      waiting: 0,
      copying: 0,
      taggedCopies: 60,
      budget: 16,
    });
    expect(s.maxInFlight).toBeGreaterThan(0);
    expect(s.maxInFlight).toBeLessThanOrEqual(16);
    // issue 3: every Completed backup DR-ready, its published records naming copies of its own PVs
    expect(s).toMatchObject({
      backups: 3,
      drReadyBackups: 3,
      notReady: [],
      failoverRecords: 60,
      failoverRecordsVerified: 60,
      failoverMetadataObjects: 33, // 11 files per backup, its CSI lists included
      rpoTargetSeconds: 3600,
    });
    // the drill ends one schedule interval after the newest backup started
    expect(s.recoveryPointAgeSeconds).toBe(15 * 60 - 1);

    // the HTML report, rendered by headless Chromium: the browser draws the chart from its data
    const dom = renderedDom(report);
    expect(dom).toMatch(/<svg id="rpo-chart"[^>]*data-rendered="true"/);
    const points = /<polyline id="rpo-age"[^>]*points="([^"]+)"/.exec(dom)?.[1]?.trim().split(/\s+/) ?? [];
    expect(points.length).toBe(Number(/data-points="(\d+)"/.exec(dom)?.[1]));
    expect(points.length).toBe(6); // after each backup, and just before the next (and at the end)
    expect(dom).toMatch(/<line id="rpo-target"/);
    expect(dom).toMatch(/RPO target 60 min/);

    // issue 4: a failover drill, then a failover, through the local runner (the real definition),
    // each approved by following the emailed link over HTTP, against the Kubernetes API stand-in
    expect(s.standIn).toMatch(/STAND-IN/);
    const common = {
      status: "SUCCEEDED",
      approvedBy: "email:oncall@example.com",
      backup: expect.stringMatching(/^cbci-dr-\d{14}$/),
      nodegroupDesired: 3,
      restorePhase: "Completed",
      failure: null,
    };
    expect(s.drill).toMatchObject({
      ...common,
      approvalHttp: { page: "200 Approve failover drill?", decision: "200 Failover approved" },
      restoreName: expect.stringMatching(/^drill-/),
      nodegroupDesiredAfter: 0, // scaled back
      dnsTarget: s.primaryTarget, // the drill leaves DNS alone
    });
    expect(s.failover).toMatchObject({
      ...common,
      approvalHttp: { page: "200 Approve failover?", decision: "200 Failover approved" },
      restoreName: expect.stringMatching(/^failover-/),
      nodegroupDesiredAfter: 3,
      dnsTarget: s.failoverTarget,
    });
    expect(s.failoverTarget).toMatch(/^dualstack\.cbci-failover-.*\.us-west-2\.elb\.amazonaws\.com\.$/);
    expect(s.primaryTarget).toMatch(/\.us-east-1\.elb\.amazonaws\.com\.$/);
    // both restore the newest backup, losing what changed since it started (drill time: ~15 min)
    expect(s.failover.backup).toBe(s.drill.backup);
    for (const run of [s.drill, s.failover]) {
      expect(run.dataLossSeconds).toBeGreaterThanOrEqual(15 * 60 - 1);
      expect(run.dataLossSeconds).toBeLessThan(15 * 60 + 60);
      expect(Object.keys(run.stepSeconds).sort()).toEqual(
        [
          "preflight",
          "requestApproval",
          "scaleNodegroup",
          "waitNodegroup",
          "startRestore",
          "waitRestore",
          "switchDns",
          "scaleBack",
          "report",
        ].sort(),
      );
      for (const seconds of Object.values(run.stepSeconds)) expect(seconds).toBeGreaterThanOrEqual(0);
    }
  }, 120_000);

  it("prints the summary as one JSON object on the last line of stdout (starting its own emulator)", () => {
    // act: the command a user runs, starting and stopping its own moto_server
    const run = spawnSync(
      "npx",
      ["tsx", "local/drill.ts", "--controllers", "2", "--backups", "1", "--json"],
      {
        encoding: "utf8",
        timeout: 120_000,
      },
    );

    // assert
    expect(run.status, run.stderr).toBe(0);
    const last = run.stdout.trim().split("\n").at(-1) ?? "";
    const summary = JSON.parse(last) as Record<string, unknown>;
    for (const key of [
      "sourceSnapshots",
      "copies",
      "duplicateCopies",
      "superseded",
      "failed",
      "taggedCopies",
      "maxInFlight",
      "budget",
      "seconds",
    ]) {
      expect(summary, key).toHaveProperty(key);
    }
    expect(summary).toMatchObject({ sourceSnapshots: 2, copies: 2, duplicateCopies: 0, taggedCopies: 2 });
  });

  it("rejects a bad option with a clear message", () => {
    const run = spawnSync("npx", ["tsx", "local/drill.ts", "--controllers", "zero"], { encoding: "utf8" });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/--controllers must be an integer 1..1000, got "zero"/);
  });
});
