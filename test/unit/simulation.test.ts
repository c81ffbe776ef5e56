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

  it("bound's age is at most each policy's age at every sample", () => {
    const b = bound.age.value;
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

  it("is deterministic for a seed", async () => {
    const again = await simulateDay(OPTIONS);
    const strip = (f: (typeof day.figures)[number]) => ({ ...f, wallSeconds: 0 });
    expect(again.figures.map(strip)).toEqual(day.figures.map(strip));
    const other = await simulateDay({ ...OPTIONS, seed: 8 });
    expect(other.figures.map(strip)).not.toEqual(day.figures.map(strip));
  });
});
