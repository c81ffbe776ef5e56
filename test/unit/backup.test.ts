import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { veleroCodec } from "../../functions/app/velero-codec.js";
import {
  type BackupState,
  type BackupVolume,
  type EvaluateOptions,
  evaluateBackup,
  phaseRank,
  recoveryPoint,
  snapshotsToCopy,
} from "../../functions/core/backup.js";
import type { ReplicationConfig } from "../../functions/core/config.js";
import type { SnapshotRecord } from "../../functions/core/model.js";
import { backupFiles, type VeleroPv } from "../../local/velero-files.js";

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
    // Velero writes the list (null) even without native snapshots, after a velero-backup.json that
    // may already say Completed: it waits for it, whatever the count says
    const none = { ...noList, volumeSnapshotsAttempted: 0, volumeSnapshotsCompleted: 0 };
    expect(evaluateBackup(none, new Map(), options).verdict).toBe("pending");
    expect(evaluateBackup({ ...none, expected: [] }, new Map(), options)).toMatchObject({
      verdict: "dr-ready",
      reason: "Completed with no volume snapshots",
    });
  });
});

describe("phaseRank", () => {
  it("orders Velero's phases from new to final", () => {
    const order = ["New", "InProgress", "WaitingForPluginOperations", "Finalizing", "Completed"];
    const ranks = order.map(phaseRank);
    expect([...ranks].sort((a, b) => a - b)).toEqual(ranks);
    expect(new Set(ranks).size).toBe(order.length);
    expect(phaseRank("PartiallyFailed")).toBe(phaseRank("Completed"));
    // Velero after 1.17 queues backups before they start: as new as New, never final
    expect(phaseRank("Queued")).toBe(phaseRank("New"));
    expect(phaseRank("ReadyToStart")).toBe(phaseRank("New"));
  });
});

// ---------------------------------------------------------------------------------------------
// Every rule of the verdict, at its edge and just past it (issue 11, point 6)

const ready = (b: BackupState, copies = allCopied, o: EvaluateOptions = options) =>
  evaluateBackup(b, copies, o);

describe("evaluateBackup at each edge: errors, warnings, expiration", () => {
  it("errors: none is ready, exactly one is not", () => {
    expect(ready(backup({ errors: 0 })).verdict).toBe("dr-ready");
    expect(ready(backup({ errors: 1 }))).toMatchObject({
      verdict: "not-ready",
      reason: "backup has 1 error(s)",
    });
  });

  it.each([0, 1, 5])("warnings: %i allowed is ready at %i, not-ready one over", (allowed) => {
    const o = { ...options, allowedWarnings: allowed };
    expect(ready(backup({ warnings: allowed }), allCopied, o).verdict).toBe("dr-ready");
    expect(ready(backup({ warnings: allowed + 1 }), allCopied, o)).toMatchObject({
      verdict: "not-ready",
      reason: `backup has ${allowed + 1} warning(s), ${allowed} allowed`,
    });
  });

  it("expiration: 1 ms after now is ready; at now (Velero's GC deletes a backup whose expiration is not after now) and 1 ms before, expired", () => {
    const at = (ms: number) => new Date(NOW.getTime() + ms).toISOString();
    expect(ready(backup({ expiration: at(1) })).verdict).toBe("dr-ready");
    expect(ready(backup({ expiration: at(0) }))).toMatchObject({
      verdict: "not-ready",
      reason: `expired at ${at(0)}`,
    });
    expect(ready(backup({ expiration: at(-1) })).verdict).toBe("not-ready");
    // no expiration (a TTL of 0 is never written; an absent one never expires)
    const forever = backup();
    delete forever.expiration;
    expect(ready(forever).verdict).toBe("dr-ready");
  });

  it("expiration wins over a phase still running: an expired backup is not-ready whatever Velero does next", () => {
    expect(ready(backup({ phase: "InProgress", expiration: NOW.toISOString() })).verdict).toBe("not-ready");
  });
});

describe("evaluateBackup at each edge: Velero's phases", () => {
  it.each([
    ["", "unknown"],
    ["New", "New"],
    ["Queued", "Queued"],
    ["ReadyToStart", "ReadyToStart"],
    ["InProgress", "InProgress"],
    ["WaitingForPluginOperations", "WaitingForPluginOperations"],
    ["Finalizing", "Finalizing"],
  ])("%j: pending, Velero is still working", (phase, shown) => {
    expect(ready(backup({ phase }))).toMatchObject({
      verdict: "pending",
      reason: `Velero phase ${shown}: backup not finished`,
    });
  });

  it("no phase at all: pending", () => {
    const b = backup();
    delete b.phase;
    expect(ready(b).verdict).toBe("pending");
  });

  it.each([
    ["WaitingForPluginOperationsPartiallyFailed", /ends PartiallyFailed/],
    ["FinalizingPartiallyFailed", /ends PartiallyFailed/],
    ["PartiallyFailed", /^Velero phase PartiallyFailed$/],
    ["Failed", /^Velero phase Failed$/],
    ["FailedValidation", /^Velero phase FailedValidation$/],
    ["Deleting", /^Velero phase Deleting$/],
    ["completed", /^Velero phase completed$/], // phases are case-sensitive
    ["Bogus", /^Velero phase Bogus$/],
  ])("%s: not-ready", (phase, reason) => {
    const e = ready(backup({ phase }));
    expect(e.verdict).toBe("not-ready");
    expect(e.reason).toMatch(reason);
  });
});

describe("evaluateBackup at each edge: the status's counts against the files", () => {
  it.each([
    [{ volumeSnapshotsAttempted: 2, volumeSnapshotsCompleted: 2 }, "dr-ready", ""],
    [
      { volumeSnapshotsAttempted: 3 },
      "not-ready",
      "status.volumeSnapshotsAttempted is 3 but the snapshot list has 2",
    ],
    [
      { volumeSnapshotsAttempted: 1 },
      "not-ready",
      "status.volumeSnapshotsAttempted is 1 but the snapshot list has 2",
    ],
    [
      { volumeSnapshotsCompleted: 1 },
      "not-ready",
      "status.volumeSnapshotsCompleted is 1 but the snapshot list has 2",
    ],
    [
      { volumeSnapshotsCompleted: 3 },
      "not-ready",
      "status.volumeSnapshotsCompleted is 3 but the snapshot list has 2",
    ],
    // registered before the completed count was recorded: not checked
    [{ volumeSnapshotsCompleted: undefined }, "dr-ready", ""],
  ] as const)("native %o: %s", (counts, verdict, reason) => {
    const e = ready(backup({ ...counts }));
    expect(e.verdict).toBe(verdict);
    if (reason) expect(e.reason).toContain(reason);
  });

  it.each([
    [0, 0, "dr-ready"],
    [1, 0, "not-ready"],
    [0, 1, "not-ready"],
  ] as const)(
    "CSI, no CSI volume in volumeinfo: attempted %i, completed %i: %s",
    (attempted, completed, verdict) => {
      const e = ready(
        backup({
          volumes: [],
          csiVolumeSnapshotsAttempted: attempted,
          csiVolumeSnapshotsCompleted: completed,
        }),
      );
      expect(e.verdict).toBe(verdict);
      if (verdict === "not-ready")
        expect(e.reason).toMatch(
          /status\.csiVolumeSnapshots\w+ is 1 but volumeinfo lists 0 CSI snapshot\(s\)/,
        );
    },
  );

  it.each([
    [2, 2, "dr-ready"],
    [3, 2, "not-ready"],
    [1, 1, "not-ready"],
    [2, 1, "not-ready"],
    [2, 3, "not-ready"],
  ] as const)(
    "CSI, once CSI snapshots are copied, two CSI volumes: attempted %i, completed %i: %s",
    (attempted, completed, verdict) => {
      const b = backup({
        volumes: [csi("pvc-c", "snap-0000000000000000c"), csi("pvc-d", "snap-0000000000000000d")],
        csiVolumeSnapshotsAttempted: attempted,
        csiVolumeSnapshotsCompleted: completed,
      });
      const copies = new Map([
        ...allCopied,
        copy("snap-0000000000000000c", "completed"),
        copy("snap-0000000000000000d", "completed"),
      ]);
      const e = ready(b, copies, { ...options, csiSnapshotsCopied: true });
      expect(e.verdict).toBe(verdict);
      if (verdict === "dr-ready")
        expect(e).toMatchObject({ reason: "all 4 snapshots copied", copied: 4, expectedCount: 4 });
      else
        expect(e.reason).toMatch(
          /status\.csiVolumeSnapshots(Attempted|Completed) is \d but volumeinfo lists 2 CSI snapshot\(s\)/,
        );
    },
  );
});

const csi = (pvName: string, handle: string): BackupVolume => ({
  method: "csi",
  pvName,
  snapshotHandle: handle,
  driver: "ebs.csi.aws.com",
});

/** A Completed backup whose volumes are all CSI snapshots: no snapshot list records, the CSI counts. */
const csiOnly = (n = 2) =>
  backup({
    volumeSnapshotsAttempted: 0,
    volumeSnapshotsCompleted: 0,
    expected: [],
    csiVolumeSnapshotsAttempted: n,
    csiVolumeSnapshotsCompleted: n,
    volumes: Array.from({ length: n }, (_, i) => csi(`pvc-csi-${i + 1}`, `snap-00000000000000c0${i + 1}`)),
  });

describe("evaluateBackup: volumes that are not native snapshots (volumeinfo, Velero 1.13+)", () => {
  it("a Completed backup of CSI snapshots only is not DR-ready, naming each volume and its snapshot", () => {
    const e = ready(csiOnly(), new Map());
    expect(e).toMatchObject({ verdict: "not-ready", copied: 0, expectedCount: 0 });
    expect(e.reason).toBe(
      "CSI snapshot snap-00000000000000c01 of pv pvc-csi-1: its copy is made, but the failover metadata does not name CSI copies yet, so a restore would use the source-region snapshot; " +
        "CSI snapshot snap-00000000000000c02 of pv pvc-csi-2: its copy is made, but the failover metadata does not name CSI copies yet, so a restore would use the source-region snapshot",
    );
  });

  it("one CSI volume among copied native ones is enough, and it is final even while native copies wait", () => {
    const b = backup({
      volumes: [csi("pvc-c", "snap-0000000000000000c")],
      csiVolumeSnapshotsAttempted: 1,
      csiVolumeSnapshotsCompleted: 1,
    });
    expect(ready(b).verdict).toBe("not-ready");
    const waiting = new Map([copy("snap-0000000000000000a", "copying")]);
    expect(ready(b, waiting)).toMatchObject({ verdict: "not-ready", copied: 0, expectedCount: 2 });
  });

  it("without volumeinfo, CSI snapshots the status counts keep it from DR-ready too (and none keeps today's rule)", () => {
    const b = backup({ csiVolumeSnapshotsAttempted: 2, csiVolumeSnapshotsCompleted: 2 });
    expect(ready(b)).toMatchObject({
      verdict: "not-ready",
      reason:
        "status counts 2 CSI volume snapshot(s) and no volumeinfo names them, so they cannot be found and copied",
    });
    expect(ready(backup({ csiVolumeSnapshotsAttempted: 0 }))).toMatchObject({
      verdict: "dr-ready",
      reason: "all 2 snapshots copied",
    });
    // once CSI snapshots are copied, it waits for volumeinfo to name them
    expect(ready(b, allCopied, { ...options, csiSnapshotsCopied: true }).verdict).toBe("pending");
  });

  it("designed for CSI copies: with csiSnapshotsCopied, a CSI volume counts once its snapshot's copy completed", () => {
    const b = csiOnly(1);
    const o = { ...options, csiSnapshotsCopied: true };
    expect(snapshotsToCopy(b, o)).toEqual([
      { pvName: "pvc-csi-1", sourceSnapshotId: "snap-00000000000000c01" },
    ]);
    expect(snapshotsToCopy(b)).toEqual([]);
    expect(ready(b, new Map([copy("snap-00000000000000c01", "copying")]), o)).toMatchObject({
      verdict: "pending",
      copied: 0,
      expectedCount: 1,
    });
    expect(ready(b, new Map([copy("snap-00000000000000c01", "completed")]), o)).toMatchObject({
      verdict: "dr-ready",
      reason: "all 1 snapshots copied",
    });
    expect(ready(b, new Map([copy("snap-00000000000000c01", "failed", "no key")]), o).reason).toMatch(
      /copy missing for good: snap-00000000000000c01 \(pv pvc-csi-1\): failed, no key/,
    );
  });

  it.each([
    ["fs-backup", "file-system backup (PodVolumeBackup)"],
    ["data-mover", "the data mover (DataUpload)"],
  ] as const)(
    "%s volumes: not DR-ready with the reason, unless the user replicates the backup repository",
    (method, how) => {
      const volume: BackupVolume = {
        method,
        pvName: "pvc-fs",
        snapshotHandle: "0123456789abcdef0123456789abcdef",
      };
      const b = backup({ volumes: [volume] });
      const e = ready(b);
      expect(e.verdict).toBe("not-ready");
      expect(e.reason).toBe(
        `pv pvc-fs was backed up by ${how} into Velero's backup repository, which this pipeline does not ` +
          "replicate (DR_BACKUP_REPOSITORY_REPLICATED=true says you replicate it yourself)",
      );
      // the setting on: ready once the native snapshots are copied, saying what it relies on
      const o = { ...options, backupRepositoryReplicated: true };
      expect(ready(b, allCopied, o)).toMatchObject({
        verdict: "dr-ready",
        reason: `all 2 snapshots copied; 1 volume(s) in the backup repository, replicated by you (DR_BACKUP_REPOSITORY_REPLICATED): pv pvc-fs by ${how}`,
      });
      expect(ready(b, new Map([copy("snap-0000000000000000a", "completed")]), o).verdict).toBe("pending");
    },
  );

  it("a file-system backup of a pod volume that is not a claim is named by its pod", () => {
    const b = backup({ volumes: [{ method: "fs-backup", podVolume: "cbci/cjoc-0/cache" }] });
    expect(ready(b).reason).toMatch(/^pod volume cbci\/cjoc-0\/cache was backed up by file-system backup/);
  });

  it("a volume Velero says failed, whatever its method and the setting, is not DR-ready", () => {
    const b = backup({ volumes: [{ method: "fs-backup", pvName: "pvc-fs", failed: true }] });
    expect(ready(b, allCopied, { ...options, backupRepositoryReplicated: true })).toMatchObject({
      verdict: "not-ready",
      reason: "Velero's backup of pv pvc-fs (fs-backup) failed",
    });
  });

  it("a skipped volume has no data in the backup to copy: noted, not blocking", () => {
    const b = backup({
      volumes: [{ method: "skipped", pvName: "pvc-tmp", detail: "excluded by volume policy" }],
    });
    expect(ready(b)).toMatchObject({
      verdict: "dr-ready",
      reason: "all 2 snapshots copied; 1 volume(s) skipped by Velero: pv pvc-tmp (excluded by volume policy)",
    });
  });

  it("an unknown method, or a native snapshot missing from the snapshot list, is not DR-ready", () => {
    expect(
      ready(backup({ volumes: [{ method: "unknown", pvName: "pvc-x", detail: "Teleport" }] })).reason,
    ).toBe('pv pvc-x: unknown backup method "Teleport" in volumeinfo');
    expect(
      ready(
        backup({
          volumes: [{ method: "native", pvName: "pvc-z", snapshotHandle: "snap-0000000000000000z" }],
        }),
      ).reason,
    ).toBe(
      "native snapshot snap-0000000000000000z of pv pvc-z is in volumeinfo but not in the snapshot list",
    );
    // one that is in the list is judged by its copy
    const listed = backup({
      volumes: [{ method: "native", pvName: "pvc-a", snapshotHandle: "snap-0000000000000000a" }],
    });
    expect(ready(listed).verdict).toBe("dr-ready");
  });

  it("names at most five problems, then how many more", () => {
    const e = ready(csiOnly(8), new Map());
    expect(e.reason.split("; ")).toHaveLength(6);
    expect(e.reason).toMatch(/; and 3 more$/);
  });

  it("a backup without volumeinfo (Velero 1.12 and older) keeps the snapshot-list rule", () => {
    expect(ready(backup())).toEqual({
      verdict: "dr-ready",
      reason: "all 2 snapshots copied",
      copied: 2,
      expectedCount: 2,
    });
  });
});

describe("the registry's view of Velero's files (veleroCodec.toState), judged", () => {
  const codec = veleroCodec({
    sourceRegions: ["us-east-1"],
    failoverRegion: "us-west-2",
  } as ReplicationConfig);
  const pv = (i: number, method: VeleroPv["method"]): VeleroPv => ({
    name: `pvc-0000000${i}-0000-4000-a000-00000000000${i}`,
    claim: `jenkins-home-mc-${i}-0`,
    zone: "us-east-1a",
    volumeId: `vol-000000000000000${i}`,
    sourceSnapshotId: method === "fs-backup" ? `${i}`.repeat(32) : `snap-000000000000000${i}`,
    kind: "csi",
    volumeType: "gp3",
    iops: 3000,
    size: "50Gi",
    method,
  });
  const state = (pvs: VeleroPv[]) => {
    const files = backupFiles({
      name: "cbci-dr-20261127114500",
      phase: "Completed",
      start: "2026-11-27T11:45:00Z",
      completion: "2026-11-27T11:46:30Z",
      region: "us-east-1",
      pvs,
    });
    const json = (f: string) => JSON.parse((files[f] ?? Buffer.alloc(0)).toString("utf8"));
    const gz = (f: string) => JSON.parse(gunzipSync(files[f] ?? Buffer.alloc(0)).toString("utf8"));
    return codec.toState("cbci-dr-20261127114500", {
      backupJson: json("velero-backup.json"),
      modified: "2026-11-27T11:46:31.000Z",
      volumeSnapshots: gz("cbci-dr-20261127114500-volumesnapshots.json.gz"),
      volumeInfo: gz("cbci-dr-20261127114500-volumeinfo.json.gz"),
    });
  };

  it("reads volumeinfo and the CSI counts; keeps only the volumes the snapshot list does not cover", () => {
    const s = state([pv(1, "native"), pv(2, "csi"), pv(3, "fs-backup")]);
    expect(s).toMatchObject({
      volumeSnapshotsAttempted: 1,
      volumeSnapshotsCompleted: 1,
      csiVolumeSnapshotsAttempted: 1,
      csiVolumeSnapshotsCompleted: 1,
      expected: [{ pvName: pv(1, "native").name, sourceSnapshotId: "snap-0000000000000001" }],
    });
    expect(s.volumes).toEqual([
      {
        method: "csi",
        pvName: pv(2, "csi").name,
        snapshotHandle: "snap-0000000000000002",
        driver: "ebs.csi.aws.com",
      },
      { method: "fs-backup", pvName: pv(3, "fs-backup").name, snapshotHandle: "3".repeat(32) },
    ]);
  });

  it("a CSI-only backup as Velero writes it is not DR-ready; native-only, with its copies, is", () => {
    const csiOnlyState = state([pv(1, "csi"), pv(2, "csi")]);
    const e = evaluateBackup(csiOnlyState, new Map(), { ...options, now: new Date("2026-11-27T12:00:00Z") });
    expect(e.verdict).toBe("not-ready");
    expect(e.reason).toContain(
      `CSI snapshot snap-0000000000000001 of pv ${pv(1, "csi").name}: its copy is made`,
    );
    const native = state([pv(1, "native"), pv(2, "native")]);
    expect(native.volumes).toEqual([]);
    const copies = new Map([
      copy("snap-0000000000000001", "completed"),
      copy("snap-0000000000000002", "completed"),
    ]);
    expect(evaluateBackup(native, copies, options)).toMatchObject({
      verdict: "dr-ready",
      reason: "all 2 snapshots copied",
    });
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
