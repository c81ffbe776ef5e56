import { describe, expect, it } from "vitest";
import { main } from "../../cli/dr.js";
import type { VeleroConfig } from "../../functions/core/config.js";
import type { StatusReport } from "../../functions/core/status.js";
import { SimulatedVelero } from "../../local/velero.js";
import { makePlane, useMoto } from "../support/harness.js";
import { captureIo } from "../support/io.js";

const moto = useMoto();
// The command takes credentials the usual way (environment, profile, role); the emulator takes any.
process.env.AWS_ACCESS_KEY_ID ??= "local";
process.env.AWS_SECRET_ACCESS_KEY ??= "local";

const VELERO: VeleroConfig = {
  bucket: "velero-status-test",
  prefix: "",
  failoverBucket: "velero-status-test-failover",
  failoverPrefix: "failover",
  zoneMap: { "us-east-1a": "us-west-2a" },
  allowedWarnings: 0,
  combinedIds: false,
};

describe("dr status", () => {
  it("reports no recovery point, each backup's verdict with its reason, and copies in flight", async () => {
    // arrange: one PartiallyFailed backup, one Completed whose copies are still pending
    const { plane, primary } = await makePlane(moto(), {
      copyDelayMs: "held",
      config: { velero: VELERO, copyBudget: 1 },
    });
    await primary.addControllers(2);
    const velero = new SimulatedVelero(plane.clients.s3, VELERO);
    const failed = await primary.takeBackup("cbci-dr-20261127120000", { schedule: "cbci-dr", emit: false });
    await velero.writeBackup(
      {
        name: "cbci-dr-20261127120000",
        schedule: "cbci-dr",
        start: new Date(Date.now() - 60_000),
        phase: "PartiallyFailed",
      },
      failed,
      "us-east-1a",
    );
    const pending = await primary.takeBackup("cbci-dr-20261127121500", { schedule: "cbci-dr" });
    await velero.writeBackup(
      { name: "cbci-dr-20261127121500", schedule: "cbci-dr", start: new Date() },
      pending,
      "us-east-1a",
    );
    await plane.drain();
    const args = [
      "status",
      "--table",
      plane.rt.config.ledgerTable,
      "--region",
      "us-west-2",
      "--endpoint",
      moto().endpoint,
    ];

    // act
    const json = captureIo();
    const jsonCode = await main([...args, "--json"], json.io);
    const human = captureIo();
    const humanCode = await main(args, human.io);

    // assert
    expect([jsonCode, humanCode], json.out.stderr + human.out.stderr).toEqual([0, 0]);
    const report = JSON.parse(json.out.stdout) as StatusReport;
    expect(report.recoveryPoint).toEqual({ backup: null, reason: "no DR-ready backup that has not expired" });
    expect(report.copies).toEqual({ inFlight: 1, waiting: 1, budget: 16 });
    expect(report.backups.map((b) => [b.name, b.verdict])).toEqual([
      ["cbci-dr-20261127121500", "pending"],
      ["cbci-dr-20261127120000", "not-ready"],
    ]);
    expect(report.backups[0]?.reason).toMatch(/0 of 2 snapshots copied/);
    expect(report.backups[1]?.reason).toBe("Velero phase PartiallyFailed");
    expect(human.out.stdout).toMatch(/recovery point: NONE/);
    expect(human.out.stdout).toMatch(
      /cbci-dr-20261127120000 +PartiallyFailed +0\/2 copied +NOT-READY: Velero phase PartiallyFailed/,
    );
  });

  it("says what it needs when the table is not given", async () => {
    const { io, out } = captureIo();
    const saved = process.env.LEDGER_TABLE;
    delete process.env.LEDGER_TABLE;
    const code = await main(["status", "--region", "us-west-2"], io);
    if (saved !== undefined) process.env.LEDGER_TABLE = saved;
    expect(code).toBe(64);
    expect(out.stderr).toMatch(/needs --table \(or LEDGER_TABLE\)/);
  });
});
