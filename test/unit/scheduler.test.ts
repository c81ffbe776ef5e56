import { describe, expect, it, vi } from "vitest";
import type { SnapshotRecord } from "../../functions/core/model.js";
import { backoffMs, type Plan, plan } from "../../functions/core/scheduler.js";

/** The fake clock: every plan in this file is computed "now". */
const NOW = new Date("2026-11-27T12:00:00.000Z");
const iso = (offsetMs: number) => new Date(NOW.getTime() + offsetMs).toISOString();
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

interface RecordOptions {
  status?: SnapshotRecord["status"];
  schedule?: string | undefined;
  region?: string;
  /** Offset of the snapshot's start time from NOW (negative: in the past). */
  at?: number;
  notBefore?: string;
}

/** One ledger record: snapshot `snap-<backup>-<volume>` of `vol-<volume>`, scheduled "hourly" unless told. */
function rec(backup: string, volume: string, o: RecordOptions = {}): SnapshotRecord {
  const r: SnapshotRecord = {
    sourceSnapshotId: `snap-${backup}-${volume}`,
    sourceRegion: o.region ?? "us-east-1",
    volumeId: `vol-${volume}`,
    backup,
    startTime: iso(o.at ?? -HOUR),
    status: o.status ?? "waiting",
    tags: {},
    attempts: 0,
  };
  const schedule = "schedule" in o ? o.schedule : "hourly";
  if (schedule !== undefined) r.schedule = schedule;
  if (o.notBefore !== undefined) r.notBefore = o.notBefore;
  return r;
}

/** One backup of several volumes, all captured at the same time. */
function backup(name: string, volumes: string[], o: RecordOptions = {}): SnapshotRecord[] {
  return volumes.map((v) => rec(name, v, o));
}

function planFor(open: SnapshotRecord[], budget: number, started: string[] = [], now = NOW): Plan {
  return plan({ open, startedBackups: new Set(started), budget, now });
}

const ids = (rs: readonly SnapshotRecord[]) => rs.map((r) => r.sourceSnapshotId);
const supersededIds = (p: Plan) => p.supersede.map((s) => s.record.sourceSnapshotId).sort();

describe("plan: the copy budget", () => {
  it("admits at most the budget minus the copies in flight", () => {
    // arrange: 3 copying, 6 admissible waiting on other volumes, budget 5
    const open = [
      ...backup("b1", ["a", "b", "c"], { status: "copying" }),
      ...backup("b1", ["d", "e", "f", "g", "h", "i"]),
    ];
    // act
    const p = planFor(open, 5, ["b1"]);
    // assert
    expect(p.admit).toHaveLength(2);
    expect(p.inFlight).toBe(3);
    expect(p.waiting).toBe(4);
  });

  it("admits nothing when the budget is full", () => {
    // arrange
    const open = [...backup("b1", ["a", "b"], { status: "copying" }), ...backup("b1", ["c", "d"])];
    // act
    const p = planFor(open, 2, ["b1"]);
    // assert
    expect(p.admit).toEqual([]);
    expect(p.inFlight).toBe(2);
    expect(p.waiting).toBe(2);
  });

  it("admits nothing when more are in flight than the budget (budget lowered while copying)", () => {
    // arrange
    const open = [...backup("b1", ["a", "b", "c"], { status: "copying" }), rec("b1", "d")];
    // act
    const p = planFor(open, 1, ["b1"]);
    // assert
    expect(p.admit).toEqual([]);
  });

  it("admits every admissible record when the budget has room for all", () => {
    // arrange
    const open = backup("b1", ["a", "b", "c"]);
    // act
    const p = planFor(open, 16);
    // assert
    expect(ids(p.admit)).toEqual(["snap-b1-a", "snap-b1-b", "snap-b1-c"]);
    expect(p.waiting).toBe(0);
  });
});

describe("plan: one copy per volume", () => {
  it("gives no admission to a volume that has a copy in flight", () => {
    // arrange: b1 copies vol-a; newest b2 also has a snapshot of vol-a
    const open = [
      rec("b1", "a", { status: "copying", at: -2 * HOUR }),
      rec("b1", "b", { at: -2 * HOUR }),
      ...backup("b2", ["a", "c"], { at: -HOUR }),
    ];
    // act
    const p = planFor(open, 10, ["b1"]);
    // assert
    expect(ids(p.admit)).toEqual(["snap-b1-b", "snap-b2-c"]);
  });

  it("admits only the oldest of two waiting snapshots of one volume (both backups started)", () => {
    // arrange
    const open = [rec("b2", "a", { at: -HOUR }), rec("b1", "a", { at: -2 * HOUR })];
    // act
    const p = planFor(open, 10, ["b1", "b2"]);
    // assert
    expect(ids(p.admit)).toEqual(["snap-b1-a"]);
    expect(p.waiting).toBe(1);
  });

  it("admits only the oldest of two waiting snapshots of one volume (ad-hoc backups)", () => {
    // arrange
    const open = [
      rec("adhoc-2", "a", { schedule: undefined, at: -HOUR }),
      rec("adhoc-1", "a", { schedule: undefined, at: -2 * HOUR }),
    ];
    // act
    const p = planFor(open, 10);
    // assert
    expect(ids(p.admit)).toEqual(["snap-adhoc-1-a"]);
  });
});

describe("plan: back-off (notBefore)", () => {
  it("does not admit a record backing off until a future time, and gives its slot to the next", () => {
    // arrange
    const open = [rec("b1", "a", { notBefore: iso(MINUTE) }), rec("b1", "b")];
    // act
    const p = planFor(open, 1, ["b1"]);
    // assert
    expect(ids(p.admit)).toEqual(["snap-b1-b"]);
    expect(p.waiting).toBe(1);
  });

  it("admits a record whose back-off has passed", () => {
    // arrange
    const open = [rec("b1", "a", { notBefore: iso(-1) })];
    // act
    const p = planFor(open, 1, ["b1"]);
    // assert
    expect(ids(p.admit)).toEqual(["snap-b1-a"]);
  });

  it("admits a record whose back-off ends exactly now", () => {
    // arrange
    const open = [rec("b1", "a", { notBefore: iso(0) })];
    // act
    const p = planFor(open, 1, ["b1"]);
    // assert
    expect(ids(p.admit)).toEqual(["snap-b1-a"]);
  });

  it("reads the time from the clock it is given", () => {
    // arrange: the same record, planned one second before and one second after its notBefore
    const open = [rec("b1", "a", { notBefore: iso(10 * MINUTE) })];
    // act
    const before = planFor(open, 1, ["b1"], new Date(NOW.getTime() + 10 * MINUTE - 1000));
    const after = planFor(open, 1, ["b1"], new Date(NOW.getTime() + 10 * MINUTE + 1000));
    // assert
    expect(before.admit).toEqual([]);
    expect(ids(after.admit)).toEqual(["snap-b1-a"]);
  });
});

describe("plan: whole-backup supersession per schedule", () => {
  it("supersedes every waiting record of backups that are neither started nor the newest", () => {
    // arrange
    const open = [
      ...backup("b1", ["a", "b"], { at: -3 * HOUR }),
      ...backup("b2", ["a", "b"], { at: -2 * HOUR }),
      ...backup("b3", ["a", "b"], { at: -HOUR }),
    ];
    // act
    const p = planFor(open, 10);
    // assert
    expect(supersededIds(p)).toEqual(["snap-b1-a", "snap-b1-b", "snap-b2-a", "snap-b2-b"]);
    expect(p.supersede.every((s) => s.by === "b3")).toBe(true);
    expect(ids(p.admit)).toEqual(["snap-b3-a", "snap-b3-b"]);
  });

  it("never supersedes a backup listed as started, and drives it before the newest", () => {
    // arrange: b1 started (nothing in flight), b2 open, b3 newest; budget for two copies
    const open = [
      ...backup("b1", ["a", "b"], { at: -3 * HOUR }),
      ...backup("b2", ["c", "d"], { at: -2 * HOUR }),
      ...backup("b3", ["e", "f"], { at: -HOUR }),
    ];
    // act
    const p = planFor(open, 2, ["b1"]);
    // assert
    expect(supersededIds(p)).toEqual(["snap-b2-c", "snap-b2-d"]);
    expect(ids(p.admit)).toEqual(["snap-b1-a", "snap-b1-b"]);
  });

  it("treats a backup with a copy in flight as started even when the started set misses it", () => {
    // arrange
    const open = [
      rec("b1", "a", { status: "copying", at: -3 * HOUR }),
      rec("b1", "b", { at: -3 * HOUR }),
      ...backup("b2", ["c"], { at: -2 * HOUR }),
      ...backup("b3", ["d"], { at: -HOUR }),
    ];
    // act
    const p = planFor(open, 2);
    // assert
    expect(supersededIds(p)).toEqual(["snap-b2-c"]);
    expect(ids(p.admit)).toEqual(["snap-b1-b"]);
  });

  it("drives started backups oldest first, then the newest", () => {
    // arrange: b2 and b1 started (listed newest first), b3 newest and not started
    const open = [
      ...backup("b3", ["e"], { at: -HOUR }),
      ...backup("b2", ["c"], { at: -2 * HOUR }),
      ...backup("b1", ["a"], { at: -3 * HOUR }),
    ];
    // act
    const p = planFor(open, 10, ["b2", "b1"]);
    // assert
    expect(ids(p.admit)).toEqual(["snap-b1-a", "snap-b2-c", "snap-b3-e"]);
    expect(p.supersede).toEqual([]);
  });

  it("never lists a copying record as superseded", () => {
    // arrange: b2 has a copy in flight, so only its waiting sibling is open work; b1 is stale
    const open = [
      rec("b1", "a", { at: -3 * HOUR }),
      rec("b2", "b", { status: "copying", at: -2 * HOUR }),
      rec("b2", "c", { at: -2 * HOUR }),
      rec("b3", "d", { at: -HOUR }),
    ];
    // act
    const p = planFor(open, 10);
    // assert
    expect(supersededIds(p)).toEqual(["snap-b1-a"]);
    expect(p.supersede.every((s) => s.record.status === "waiting")).toBe(true);
  });

  it("never supersedes the newest backup, even when older started backups hold every slot", () => {
    // arrange
    const open = [...backup("b1", ["a", "b"], { status: "copying", at: -2 * HOUR }), rec("b2", "c")];
    // act
    const p = planFor(open, 2, ["b1"]);
    // assert
    expect(p.supersede).toEqual([]);
    expect(p.admit).toEqual([]);
    expect(p.waiting).toBe(1);
  });

  it("orders backups by the earliest start time of their open snapshots, not by name", () => {
    // arrange: "b-z" is older than "b-a"
    const open = [rec("b-z", "a", { at: -2 * HOUR }), rec("b-a", "b", { at: -HOUR })];
    // act
    const p = planFor(open, 10);
    // assert
    expect(p.supersede).toEqual([{ record: open[0], by: "b-a" }]);
    expect(ids(p.admit)).toEqual(["snap-b-a-b"]);
  });
});

describe("plan: pipelining", () => {
  it("gives free slots to the newest backup when the started one has nothing admissible", () => {
    // arrange: b1's remaining copies are in flight; b2 is the newest
    const open = [
      ...backup("b1", ["a", "b"], { status: "copying", at: -2 * HOUR }),
      ...backup("b2", ["a", "b", "c", "d"], { at: -HOUR }),
    ];
    // act
    const p = planFor(open, 4, ["b1"]);
    // assert
    expect(ids(p.admit)).toEqual(["snap-b2-c", "snap-b2-d"]);
    expect(p.supersede).toEqual([]);
  });

  it("gives the slot of a started backup's backing-off record to the newest backup", () => {
    // arrange
    const open = [
      rec("b1", "a", { status: "copying", at: -2 * HOUR }),
      rec("b1", "b", { at: -2 * HOUR, notBefore: iso(5 * MINUTE) }),
      ...backup("b2", ["c"], { at: -HOUR }),
    ];
    // act
    const p = planFor(open, 3, ["b1"]);
    // assert
    expect(ids(p.admit)).toEqual(["snap-b2-c"]);
  });
});

describe("plan: ad-hoc (unscheduled) backups", () => {
  it("never supersedes unscheduled backups, however many are open", () => {
    // arrange: 8 ad-hoc backups of the same two volumes, none started
    const open = Array.from({ length: 8 }, (_, i) =>
      backup(`adhoc-${i}`, ["a", "b"], { schedule: undefined, at: -(8 - i) * HOUR }),
    ).flat();
    // act
    const p = planFor(open, 16);
    // assert
    expect(p.supersede).toEqual([]);
    expect(ids(p.admit)).toEqual(["snap-adhoc-0-a", "snap-adhoc-0-b"]);
    expect(p.waiting).toBe(14);
  });

  it("does not let an ad-hoc backup supersede a scheduled one or be superseded by it", () => {
    // arrange
    const open = [
      rec("sched-1", "a", { at: -3 * HOUR }),
      rec("adhoc-1", "b", { schedule: undefined, at: -2 * HOUR }),
      rec("sched-2", "c", { at: -HOUR }),
    ];
    // act
    const p = planFor(open, 10);
    // assert
    expect(p.supersede).toEqual([{ record: open[0], by: "sched-2" }]);
    expect(ids(p.admit).sort()).toEqual(["snap-adhoc-1-b", "snap-sched-2-c"]);
  });
});

describe("plan: separate schedules", () => {
  it("supersedes within each schedule only", () => {
    // arrange
    const open = [
      rec("hourly-1", "a", { schedule: "hourly", at: -3 * HOUR }),
      rec("hourly-2", "a", { schedule: "hourly", at: -HOUR }),
      rec("daily-1", "b", { schedule: "daily", at: -4 * HOUR }),
      rec("daily-2", "b", { schedule: "daily", at: -2 * HOUR }),
      rec("weekly-1", "c", { schedule: "weekly", at: -5 * HOUR }),
    ];
    // act
    const p = planFor(open, 10);
    // assert
    expect(p.supersede.map((s) => [s.record.backup, s.by]).sort()).toEqual([
      ["daily-1", "daily-2"],
      ["hourly-1", "hourly-2"],
    ]);
    expect(ids(p.admit).sort()).toEqual(["snap-daily-2-b", "snap-hourly-2-a", "snap-weekly-1-c"]);
  });

  it("keeps a schedule of the same name in another source region apart", () => {
    // arrange
    const open = [
      rec("east-1", "a", { region: "us-east-1", at: -2 * HOUR }),
      rec("west-1", "b", { region: "us-west-2", at: -HOUR }),
    ];
    // act
    const p = planFor(open, 10);
    // assert
    expect(p.supersede).toEqual([]);
    expect(p.admit).toHaveLength(2);
  });
});

describe("plan: determinism", () => {
  /** A small deterministic shuffle (LCG) so every run sees the same permutations. */
  function shuffled<T>(xs: readonly T[], seed: number): T[] {
    const out = [...xs];
    let s = seed;
    for (let i = out.length - 1; i > 0; i--) {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      const j = s % (i + 1);
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  }

  it("computes the same plan whatever the order of the ledger's records", () => {
    // arrange
    const open = [
      ...backup("b1", ["a", "b", "c"], { at: -4 * HOUR }),
      rec("b2", "d", { status: "copying", at: -3 * HOUR }),
      ...backup("b2", ["e", "f"], { at: -3 * HOUR }),
      ...backup("b3", ["a", "b"], { at: -2 * HOUR }),
      ...backup("b4", ["a", "b", "c", "g"], { at: -HOUR }),
      ...backup("adhoc", ["h", "i"], { schedule: undefined, at: -90 * MINUTE }),
    ];
    const reference = planFor(open, 5);
    // act
    const others = [1, 2, 3, 4, 5, 6, 7, 8].map((seed) => planFor(shuffled(open, seed), 5));
    // assert
    expect(ids(reference.admit)).toEqual(["snap-b2-e", "snap-b2-f", "snap-adhoc-h", "snap-adhoc-i"]);
    for (const p of others) {
      expect(ids(p.admit)).toEqual(ids(reference.admit));
      expect(supersededIds(p)).toEqual(supersededIds(reference));
      expect(p.waiting).toBe(reference.waiting);
    }
  });

  it("breaks start-time ties by source snapshot id", () => {
    // arrange: same start time, listed in reverse id order
    const open = [rec("b1", "c"), rec("b1", "b"), rec("b1", "a")];
    // act
    const p = planFor(open, 2, ["b1"]);
    // assert
    expect(ids(p.admit)).toEqual(["snap-b1-a", "snap-b1-b"]);
  });
});

describe("plan: invariants over varied ledgers", () => {
  it("never exceeds the budget, never admits a busy volume twice, never admits what it supersedes", () => {
    // arrange: 300 pseudo-random ledgers (fixed seed)
    let s = 42;
    const rand = (n: number) => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return s % n;
    };
    for (let round = 0; round < 300; round++) {
      const open: SnapshotRecord[] = [];
      const started: string[] = [];
      const backups = 1 + rand(6);
      for (let b = 0; b < backups; b++) {
        const name = `r${round}-b${b}`;
        const schedule = rand(4) === 0 ? undefined : ["hourly", "daily"][rand(2)];
        if (rand(3) === 0) started.push(name);
        for (let v = 0; v < 1 + rand(5); v++) {
          const status = rand(5) === 0 ? "copying" : "waiting";
          const notBefore = rand(4) === 0 ? iso((rand(3) - 1) * MINUTE) : undefined;
          open.push(
            rec(name, String(rand(6)), {
              schedule,
              status,
              at: -(backups - b) * HOUR,
              ...(notBefore === undefined ? {} : { notBefore }),
            }),
          );
        }
      }
      const budget = 1 + rand(4);
      // act
      const p = planFor(open, budget, started);
      // assert
      const copying = open.filter((r) => r.status === "copying");
      const busy = new Set(copying.map((r) => r.volumeId));
      const admittedVolumes = p.admit.map((r) => r.volumeId);
      const superseded = new Set(p.supersede.map((x) => x.record));
      expect(p.inFlight).toBe(copying.length);
      expect(p.admit.length).toBeLessThanOrEqual(Math.max(0, budget - copying.length));
      expect(new Set(admittedVolumes).size).toBe(admittedVolumes.length);
      expect(admittedVolumes.filter((v) => busy.has(v))).toEqual([]);
      expect(p.admit.filter((r) => r.status !== "waiting" || superseded.has(r))).toEqual([]);
      expect(p.admit.filter((r) => r.notBefore !== undefined && r.notBefore > NOW.toISOString())).toEqual([]);
      expect(p.supersede.filter((x) => started.includes(x.record.backup) || !x.record.schedule)).toEqual([]);
    }
  });
});

describe("backoffMs", () => {
  it("grows with the attempt number", () => {
    // arrange
    const half = () => 0.5;
    // act
    const delays = [1, 2, 3, 4, 5].map((a) => backoffMs(a, half));
    // assert
    expect(delays).toEqual([7_500, 15_000, 30_000, 60_000, 120_000]);
  });

  it("is capped at 15 minutes however many attempts", () => {
    // arrange
    const almostOne = () => 0.999_999;
    // act
    const delays = [7, 8, 20, 1_000, 5_000].map((a) => backoffMs(a, almostOne));
    // assert
    for (const d of delays) {
      expect(d).toBeLessThanOrEqual(15 * MINUTE);
      expect(d).toBeGreaterThan(15 * MINUTE - 1_000);
    }
  });

  it("is never below one second", () => {
    // arrange
    const zero = () => 0;
    // act
    const delays = [-1, 0, 1, 2, 10, 100].map((a) => backoffMs(a, zero));
    // assert
    expect(delays).toEqual([1_000, 1_000, 1_000, 1_000, 1_000, 1_000]);
  });

  it("draws its jitter from the injected random source", () => {
    // arrange
    const random = vi.fn(() => 0.25);
    // act
    const d = backoffMs(3, random);
    // assert
    expect(random).toHaveBeenCalledTimes(1);
    expect(d).toBe(15_000);
  });

  it("uses Math.random when no source is injected", () => {
    // arrange
    const spy = vi.spyOn(Math, "random").mockReturnValue(0.1);
    // act
    const d = backoffMs(2);
    const calls = spy.mock.calls.length;
    spy.mockRestore();
    // assert
    expect(calls).toBe(1);
    expect(d).toBe(3_000);
  });
});

/*
 * Saturation: a pure discrete-event simulation driven only by plan() (or, for contrast, by a naive
 * per-volume policy). Budget 2, 10 volumes, one schedule; a backup of all 10 volumes every T while
 * each copy takes 3T/4, so a backup needs 3.75 T of copying and copies cannot keep up.
 */
const SIM = {
  budget: 2,
  volumes: 10,
  backups: 30,
  interval: HOUR,
  copyMs: (3 * HOUR) / 4,
  epoch: Date.parse("2026-11-01T00:00:00.000Z"),
};

interface Decision {
  admit: readonly SnapshotRecord[];
  supersede: readonly SnapshotRecord[];
}
type Policy = (open: SnapshotRecord[], started: ReadonlySet<string>, now: Date) => Decision;

const scheduler: Policy = (open, started, now) => {
  const p = plan({ open, startedBackups: started, budget: SIM.budget, now });
  return { admit: p.admit, supersede: p.supersede.map((s) => s.record) };
};

/** The naive policy the design warns about: each volume copies only its newest waiting snapshot. */
const naivePerVolume: Policy = (open) => {
  const busy = new Set(open.filter((r) => r.status === "copying").map((r) => r.volumeId));
  const newest = new Map<string, SnapshotRecord>();
  const supersede: SnapshotRecord[] = [];
  for (const r of open.filter((x) => x.status === "waiting")) {
    const cur = newest.get(r.volumeId);
    if (!cur || r.startTime > cur.startTime) {
      if (cur) supersede.push(cur);
      newest.set(r.volumeId, r);
    } else {
      supersede.push(r);
    }
  }
  const candidates = [...newest.values()]
    .filter((r) => !busy.has(r.volumeId))
    .sort((a, b) => a.startTime.localeCompare(b.startTime) || a.volumeId.localeCompare(b.volumeId));
  return { admit: candidates.slice(0, Math.max(0, SIM.budget - busy.size)), supersede };
};

interface BackupOutcome {
  completed: number;
  superseded: number;
  open: number;
}

interface SimResult {
  /** Per backup, in arrival order, when the last backup arrived (and was planned). */
  atLastArrival: BackupOutcome[];
  /** Per backup, after the copies in flight and the open work drained. */
  drained: BackupOutcome[];
  maxCopying: number;
  /** Anything a policy did that breaks the plane's rules, described. */
  violations: string[];
}

function simulate(policy: Policy): SimResult {
  const records = new Map<string, SnapshotRecord>();
  const started = new Set<string>();
  const completions: Array<{ at: number; id: string }> = [];
  const violations: string[] = [];
  const names = Array.from({ length: SIM.backups }, (_, k) => `hourly-${String(k).padStart(2, "0")}`);
  let maxCopying = 0;
  let atLastArrival: BackupOutcome[] = [];

  const outcomes = (): BackupOutcome[] =>
    names.map((name) => {
      const rs = [...records.values()].filter((r) => r.backup === name);
      return {
        completed: rs.filter((r) => r.status === "completed").length,
        superseded: rs.filter((r) => r.status === "superseded").length,
        open: rs.filter((r) => r.status === "waiting" || r.status === "copying").length,
      };
    });

  let nextArrival = 0;
  for (let step = 0; step < 10_000; step++) {
    const arrivalAt = nextArrival < SIM.backups ? SIM.epoch + nextArrival * SIM.interval : Infinity;
    const completionAt = Math.min(Infinity, ...completions.map((c) => c.at));
    const t = Math.min(arrivalAt, completionAt);
    if (t === Infinity) break;
    // completions first, then arrivals, then one plan
    for (const c of completions.filter((x) => x.at === t)) {
      const r = records.get(c.id);
      if (r) r.status = "completed";
    }
    completions.splice(0, completions.length, ...completions.filter((x) => x.at !== t));
    if (arrivalAt === t) {
      const name = names[nextArrival] ?? "";
      for (let v = 0; v < SIM.volumes; v++) {
        const r: SnapshotRecord = {
          sourceSnapshotId: `snap-${name}-${v}`,
          sourceRegion: "us-east-1",
          volumeId: `vol-${v}`,
          backup: name,
          schedule: "hourly",
          startTime: new Date(t - (SIM.volumes - v) * 1000).toISOString(),
          status: "waiting",
          tags: {},
          attempts: 0,
        };
        records.set(r.sourceSnapshotId, r);
      }
      nextArrival++;
    }
    const open = [...records.values()]
      .filter((r) => r.status === "waiting" || r.status === "copying")
      .map((r) => ({ ...r }));
    const decision = policy(open, new Set(started), new Date(t));
    for (const s of decision.supersede) {
      const r = records.get(s.sourceSnapshotId);
      if (r?.status !== "waiting") violations.push(`superseded ${s.sourceSnapshotId} while ${r?.status}`);
      else r.status = "superseded";
    }
    for (const a of decision.admit) {
      const r = records.get(a.sourceSnapshotId);
      if (r?.status !== "waiting") violations.push(`admitted ${a.sourceSnapshotId} while ${r?.status}`);
      else {
        r.status = "copying";
        started.add(r.backup); // as the ledger does: a backup is started once any copy is admitted
        completions.push({ at: t + SIM.copyMs, id: r.sourceSnapshotId });
      }
    }
    const copying = [...records.values()].filter((r) => r.status === "copying");
    maxCopying = Math.max(maxCopying, copying.length);
    if (copying.length > SIM.budget)
      violations.push(`${copying.length} copying at ${new Date(t).toISOString()}`);
    if (new Set(copying.map((r) => r.volumeId)).size !== copying.length) {
      violations.push(`two copies of one volume at ${new Date(t).toISOString()}`);
    }
    if (arrivalAt === t && nextArrival === SIM.backups) atLastArrival = outcomes();
  }
  return { atLastArrival, drained: outcomes(), maxCopying, violations };
}

const fullyCompleted = (os: BackupOutcome[]) => os.filter((o) => o.completed === SIM.volumes).length;
/** Some copies completed, the rest skipped: a backup that can never be restored, its copies wasted. */
const abandonedPartway = (os: BackupOutcome[]) =>
  os.filter((o) => o.completed > 0 && o.completed < SIM.volumes && o.open === 0).length;

describe("saturation simulation (plan only, fake clock)", () => {
  it("keeps the budget and the one-copy-per-volume rule at every step", () => {
    // arrange / act
    const r = simulate(scheduler);
    // assert
    expect(r.violations).toEqual([]);
    expect(r.maxCopying).toBe(SIM.budget);
  });

  it("never leaves a backup partly completed and abandoned, while the newest is still being copied", () => {
    // arrange / act
    const { atLastArrival } = simulate(scheduler);
    // assert: each backup is fully copied, untouched, or still in progress (not yet abandoned)
    for (const o of atLastArrival) {
      const ok =
        o.completed === SIM.volumes ||
        o.completed === 0 ||
        (o.open > 0 && o.superseded === 0 && o.completed + o.open === SIM.volumes);
      expect(ok, JSON.stringify(o)).toBe(true);
    }
    expect(abandonedPartway(atLastArrival)).toBe(0);
    const newest = atLastArrival[SIM.backups - 1];
    expect(newest?.superseded).toBe(0);
    expect((newest?.open ?? 0) + (newest?.completed ?? 0)).toBe(SIM.volumes);
  });

  it("drains to backups that are each either fully copied or fully skipped, the newest copied", () => {
    // arrange / act
    const { drained } = simulate(scheduler);
    // assert
    for (const o of drained) {
      expect([SIM.volumes, 0], JSON.stringify(o)).toContain(o.completed);
      expect(o.open).toBe(0);
      expect(o.completed + o.superseded).toBe(SIM.volumes);
    }
    expect(drained[SIM.backups - 1]?.completed).toBe(SIM.volumes);
    expect(drained[0]?.completed).toBe(SIM.volumes);
  });

  it("makes progress: more than three backups fully copied while saturated", () => {
    // arrange / act
    const { atLastArrival } = simulate(scheduler);
    // assert
    expect(fullyCompleted(atLastArrival)).toBeGreaterThan(3);
  });

  it("contrast: the naive per-volume policy copies as much yet leaves (almost) no backup complete", () => {
    // arrange / act
    const naive = simulate(naivePerVolume);
    const ours = simulate(scheduler);
    // assert: the same arrival pattern and budget, but whole backups are what a restore needs
    expect(naive.violations).toEqual([]);
    expect(fullyCompleted(naive.drained)).toBeLessThanOrEqual(1);
    expect(abandonedPartway(naive.drained)).toBeGreaterThan(10);
    expect(fullyCompleted(ours.drained)).toBeGreaterThan(fullyCompleted(naive.drained) + 3);
    const copies = (os: BackupOutcome[]) => os.reduce((n, o) => n + o.completed, 0);
    expect(copies(naive.drained)).toBeGreaterThan(0.9 * copies(ours.drained));
  });
});

describe("plan: a lineage is copied in order", () => {
  it("does not start a newer snapshot of a volume while its older one backs off", () => {
    // arrange: started b1's snapshot of vol-b is backing off; newest b2 also has vol-b (and vol-c)
    const open = [
      rec("b1", "b", { at: -2 * HOUR, notBefore: iso(10 * MINUTE) }),
      ...backup("b2", ["b", "c"], { at: -HOUR }),
    ];
    // act
    const p = planFor(open, 4, ["b1"]);
    // assert: vol-b waits for its older snapshot; vol-c is free to go
    expect(ids(p.admit)).toEqual(["snap-b2-c"]);
  });

  it("starts an older ad-hoc snapshot of a volume before a newer scheduled one, whatever the tiers", () => {
    // arrange: an unstarted ad-hoc backup (tier 1) older than a started scheduled backup (tier 0)
    const open = [
      rec("adhoc", "a", { at: -3 * HOUR, schedule: undefined }),
      rec("b1", "a", { at: -HOUR }),
      rec("b1", "z", { at: -HOUR }),
    ];
    // act
    const p = planFor(open, 4, ["b1"]);
    // assert
    expect(ids(p.admit).sort()).toEqual(["snap-adhoc-a", "snap-b1-z"]);
  });
});
