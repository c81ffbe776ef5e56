import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { runDrill } from "../../local/drill.js";
import { useMoto } from "../support/harness.js";

const moto = useMoto();

describe("local drill (npm start)", () => {
  it("20 controllers x 3 scheduled backups: 60 snapshots, 60 tagged copies, no duplicates, within the budget", async () => {
    // act
    const s = await runDrill({
      controllers: 20,
      backups: 3,
      budget: 16,
      copyDelayMs: 20,
      schedule: "cbci-dr",
      endpoint: moto().endpoint,
    });

    // assert
    expect(s).toMatchObject({
      sourceSnapshots: 60,
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
  });

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
