import { describe, expect, it } from "vitest";
import { type BackupState, evaluateBackup, phaseRank, recoveryPoint } from "../../functions/core/backup.js";
import type { SnapshotRecord } from "../../functions/core/model.js";

const NOW = new Date("2026-11-27T12:00:00Z");
const options = { now: NOW, allowedWarnings: 0 };

function backup(o: Partial<BackupState> = {}): BackupState {
  return {
    name: "cbci-dr-20261127114500",
    schedule: "cbci-dr",
    phase: "Completed",
    startTimestamp: "2026-11-27T11:45:00Z",
    completionTimestamp: "2026-11-27T11:46:30Z",
    expiration: "2026-11-27T12:45:00Z",
    errors: 0,
    warnings: 0,
    volumeSnapshotsAttempted: 2,
    expected: [
      { pvName: "pvc-a", sourceSnapshotId: "snap-0000000000000000a", volumeAZ: "us-east-1a" },
      { pvName: "pvc-b", sourceSnapshotId: "snap-0000000000000000b", volumeAZ: "us-east-1b" },
    ],
    ...o,
  };
}

function copy(id: string, status: SnapshotRecord["status"], reason?: string): [string, SnapshotRecord] {
  return [
    id,
    {
      sourceSnapshotId: id,
      sourceRegion: "us-east-1",
      volumeId: "vol-00000001",
      backup: "cbci-dr-20261127114500",
      startTime: "2026-11-27T11:45:00Z",
      status,
      tags: {},
      attempts: 0,
      ...(status === "completed" ? { copySnapshotId: `snap-copy${id.slice(-1)}` } : {}),
      ...(reason ? { reason } : {}),
    },
  ];
}

const allCopied = new Map([
  copy("snap-0000000000000000a", "completed"),
  copy("snap-0000000000000000b", "completed"),
]);

describe("evaluateBackup: DR-ready", () => {
  it("is ready when Completed, clean, unexpired and every snapshot has a completed copy", () => {
    const e = evaluateBackup(backup(), allCopied, options);
    expect(e).toEqual({ verdict: "dr-ready", reason: "all 2 snapshots copied", copied: 2, expectedCount: 2 });
  });

  it("allows warnings only up to the configured allowance", () => {
    expect(evaluateBackup(backup({ warnings: 1 }), allCopied, options).verdict).toBe("not-ready");
    expect(
      evaluateBackup(backup({ warnings: 1 }), allCopied, { ...options, allowedWarnings: 1 }).verdict,
    ).toBe("dr-ready");
  });
});

describe("evaluateBackup: never DR-ready", () => {
  it.each([
    ["PartiallyFailed", { phase: "PartiallyFailed" }, /Velero phase PartiallyFailed/],
    ["Failed", { phase: "Failed" }, /Velero phase Failed/],
    ["FailedValidation", { phase: "FailedValidation" }, /Velero phase FailedValidation/],
    ["with errors", { errors: 2 }, /2 error\(s\)/],
    ["with a warning", { warnings: 1 }, /1 warning\(s\), 0 allowed/],
    ["expired", { expiration: "2026-11-27T11:59:59Z" }, /expired at 2026-11-27T11:59:59Z/],
  ] as const)("%s: not-ready, with the reason", (_, change, reason) => {
    const e = evaluateBackup(backup(change), allCopied, options);
    expect(e.verdict).toBe("not-ready");
    expect(e.reason).toMatch(reason);
  });

  it("a copy that failed or was superseded makes it not-ready for good, naming the snapshot and PV", () => {
    const copies = new Map([
      copy("snap-0000000000000000a", "completed"),
      copy("snap-0000000000000000b", "failed", "copy failed: key not accessible"),
    ]);
    const e = evaluateBackup(backup(), copies, options);
    expect(e.verdict).toBe("not-ready");
    expect(e.reason).toMatch(/snap-0000000000000000b \(pv pvc-b\): failed, copy failed: key not accessible/);
    const superseded = new Map([
      copy("snap-0000000000000000a", "superseded"),
      copy("snap-0000000000000000b", "completed"),
    ]);
    expect(evaluateBackup(backup(), superseded, options).reason).toMatch(/pvc-a\): superseded/);
  });
});

describe("evaluateBackup: pending", () => {
  it("waits while copies are outstanding, counting them", () => {
    const copies = new Map([
      copy("snap-0000000000000000a", "completed"),
      copy("snap-0000000000000000b", "copying"),
    ]);
    const e = evaluateBackup(backup(), copies, options);
    expect(e).toMatchObject({ verdict: "pending", copied: 1, expectedCount: 2 });
    expect(e.reason).toMatch(
      /1 of 2 snapshots copied; waiting: snap-0000000000000000b \(pv pvc-b\): copying/,
    );
  });

  it("waits for a snapshot the ledger has not seen yet", () => {
    const e = evaluateBackup(backup(), new Map([copy("snap-0000000000000000a", "completed")]), options);
    expect(e.reason).toMatch(/pvc-b\): not seen/);
    expect(e.verdict).toBe("pending");
  });

  it("waits while Velero is still working, and for the snapshot list", () => {
    expect(evaluateBackup(backup({ phase: "InProgress" }), allCopied, options).verdict).toBe("pending");
    const noList = backup();
    delete noList.expected;
    expect(evaluateBackup(noList, allCopied, options)).toMatchObject({
      verdict: "pending",
      reason: "volume snapshot list not read yet",
    });
    expect(evaluateBackup({ ...noList, volumeSnapshotsAttempted: 0 }, new Map(), options).verdict).toBe(
      "dr-ready",
    );
  });
});

describe("phaseRank", () => {
  it("orders Velero's phases from new to final", () => {
    const order = ["New", "InProgress", "WaitingForPluginOperations", "Finalizing", "Completed"];
    const ranks = order.map(phaseRank);
    expect([...ranks].sort((a, b) => a - b)).toEqual(ranks);
    expect(new Set(ranks).size).toBe(order.length);
    expect(phaseRank("PartiallyFailed")).toBe(phaseRank("Completed"));
  });
});

describe("recoveryPoint", () => {
  it("is the newest ready backup's start, and its age against the fake clock", () => {
    const rp = recoveryPoint(
      [
        { name: "b1", startTimestamp: "2026-11-27T11:30:00Z" },
        { name: "b2", startTimestamp: "2026-11-27T11:45:00Z" },
      ],
      NOW,
    );
    expect(rp).toEqual({ backup: "b2", startTimestamp: "2026-11-27T11:45:00Z", ageSeconds: 900 });
  });

  it("is undefined when no backup ever became ready", () => {
    expect(recoveryPoint([], NOW)).toBeUndefined();
  });
});
