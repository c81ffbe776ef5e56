import { describe, expect, it } from "vitest";
import { AWS_LIMITS } from "../../bench/aws.js";
import { HOUR } from "../../bench/engine.js";
import { SchedulerPolicy } from "../../bench/policies/scheduler.js";
import { type RunOptions, simulateDay } from "../../bench/run.js";

/** A short day: small enough for a unit test, busy enough (N=60 every 5 min) to hit the copy quota. */
const OPTIONS: RunOptions = {
  controllers: 60,
  hours: 3,
  seed: 7,
  intervalMinutes: 5,
  warmLineages: true,
  warmupHours: 0.5,
  sweepMinutes: 1,
  sampleSeconds: 10,
};

describe("copy simulation", async () => {
  const day = await simulateDay(OPTIONS);
  const run = (name: string) => {
    const r = day.runs.find((x) => x.policy === name);
    if (!r) throw new Error(`no ${name} run`);
    return r;
  };
  const naive = run("naive");
  const ours = run("scheduler");
  const bound = run("bound");

  it("never has more than 20 copies in flight in the simulated AWS", () => {
    expect(naive.aws?.maxActive).toBeLessThanOrEqual(AWS_LIMITS.concurrentCopies);
    expect(ours.aws?.maxActive).toBeLessThanOrEqual(AWS_LIMITS.concurrentCopies);
    // The naive policy does hit the quota here, so the check above is not vacuous.
    expect(naive.aws?.resourceLimitExceeded).toBeGreaterThan(0);
  });

  it("keeps ours within its budget, one copy per volume at a time", () => {
    const policy = ours.policyObject;
    if (!(policy instanceof SchedulerPolicy)) throw new Error("not the scheduler");
    expect(ours.aws?.maxActive).toBeLessThanOrEqual(policy.copyBudget);
    expect(ours.aws?.lineageQueued).toBe(0);
    // Overlap check from the copies themselves: per volume, each copy starts after the previous ended.
    const byVolume = new Map<number, Array<{ start: number; end: number }>>();
    for (const c of policy.aws.copies.values()) {
      const list = byVolume.get(c.v) ?? [];
      list.push({ start: c.requestedAt, end: c.doneAt ?? Number.POSITIVE_INFINITY });
      byVolume.set(c.v, list);
    }
    for (const list of byVolume.values()) {
      list.sort((a, b) => a.start - b.start);
      for (let i = 1; i < list.length; i++) {
        expect(list[i]?.start).toBeGreaterThanOrEqual(list[i - 1]?.end ?? 0);
      }
    }
    expect(policy.ledger.inFlightCounter).toBe(
      [...policy.ledger.all()].filter((r) => r.status === "copying").length,
    );
  });

  it("declares a backup DR-ready only when every one of its copies has completed", () => {
    for (const r of [naive, ours]) {
      const aws = r.policyObject?.aws;
      if (!aws) throw new Error("no aws");
      expect(r.readyLog?.length).toBeGreaterThan(0);
      for (const { j, at } of r.readyLog ?? []) {
        const copies = [...aws.copies.values()].filter((c) => c.j === j && c.state === "completed");
        // Every volume had a completed copy by the time the backup was declared ready.
        const doneBy = new Set(copies.filter((c) => (c.doneAt ?? Infinity) <= at).map((c) => c.v));
        expect(doneBy.size).toBe(OPTIONS.controllers);
      }
    }
  });

  it("pointwise bound's age is at most each policy's age at every sample", () => {
    const b = bound.pointwise?.value;
    if (!b) throw new Error("no pointwise bound");
    for (const r of [naive, ours]) {
      expect(r.age.t).toEqual(bound.age.t);
      r.age.value.forEach((age, i) => {
        expect(b[i] as number, `${r.policy} at ${(r.age.t[i] as number) / HOUR} h`).toBeLessThanOrEqual(age);
      });
    }
    // And the reference single-chain policy is never better than the bound either.
    bound.reference?.value.forEach((age, i) => {
      expect(b[i] as number).toBeLessThanOrEqual(age);
    });
  });

  it("chain bound's p50, p99 and max are at most each policy's, and attained by one chain", () => {
    const figure = (name: string) => {
      const f = day.figures.find((x) => x.policy === name);
      if (!f) throw new Error(`no ${name} figures`);
      return f;
    };
    const b = figure("bound");
    const stats = [
      "p50RecoveryPointAgeSeconds",
      "p99RecoveryPointAgeSeconds",
      "maxRecoveryPointAgeSeconds",
    ] as const;
    for (const name of ["naive", "scheduler"]) {
      const f = figure(name);
      for (const s of stats) expect(b[s], `${name} ${s}`).toBeLessThanOrEqual(f[s]);
    }
    // Not below the pointwise bound's (a chain's age is never below it), not above the single-chain
    // fluid reference's (itself one chain, with later ready times than the relaxation gives it).
    expect(b.p50RecoveryPointAgeSeconds).toBeGreaterThanOrEqual(
      b.pointwiseP50RecoveryPointAgeSeconds ?? Infinity,
    );
    expect(b.p99RecoveryPointAgeSeconds).toBeGreaterThanOrEqual(
      b.pointwiseP99RecoveryPointAgeSeconds ?? Infinity,
    );
    expect(b.maxRecoveryPointAgeSeconds).toBeGreaterThanOrEqual(
      b.pointwiseMaxRecoveryPointAgeSeconds ?? Infinity,
    );
    expect(b.p50RecoveryPointAgeSeconds).toBeLessThanOrEqual(
      b.fluidNewestNextP50RecoveryPointAgeSeconds ?? 0,
    );
    expect(b.p99RecoveryPointAgeSeconds).toBeLessThanOrEqual(
      b.fluidNewestNextP99RecoveryPointAgeSeconds ?? 0,
    );
    // The series reported for the bound is a chain attaining the p99 bound exactly.
    const warmup = OPTIONS.warmupHours * HOUR;
    const ages = [...bound.age.value]
      .filter((_, i) => (bound.age.t[i] as number) >= warmup)
      .sort((x, y) => x - y);
    expect(ages[Math.ceil(0.99 * ages.length) - 1]).toBe(b.p99RecoveryPointAgeSeconds);
    expect(bound.policyDetail?.coarsened).toBe(0);
  });

  it("runs the copy poller as deployed, and it shortens the recovery point at saturation", async () => {
    // arrange: the same workload without the poller (events and the sweep only)
    const policy = ours.policyObject as SchedulerPolicy;
    const off = await simulateDay({ ...OPTIONS, pollSeconds: 0 });
    const withPoller = day.figures.find((f) => f.policy === "scheduler");
    const without = off.figures.find((f) => f.policy === "scheduler");
    // assert: the poller looked, settled copies before their events, and the age only got shorter
    expect(policy.invocations.pollLooks).toBeGreaterThan(0);
    expect(withPoller?.pollSeconds).toBe(10);
    expect(without?.pollSeconds).toBe(0);
    expect(withPoller?.p50RecoveryPointAgeSeconds).toBeLessThan(without?.p50RecoveryPointAgeSeconds ?? 0);
    expect(withPoller?.p99RecoveryPointAgeSeconds).toBeLessThanOrEqual(
      without?.p99RecoveryPointAgeSeconds ?? 0,
    );
  });

  it("is deterministic for a seed", async () => {
    const again = await simulateDay(OPTIONS);
    const strip = (f: (typeof day.figures)[number]) => ({ ...f, wallSeconds: 0 });
    expect(again.figures.map(strip)).toEqual(day.figures.map(strip));
    const other = await simulateDay({ ...OPTIONS, seed: 8 });
    expect(other.figures.map(strip)).not.toEqual(day.figures.map(strip));
  });
});
