import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { DescribeSnapshotsResult, EC2Client } from "@aws-sdk/client-ec2";
import type { S3Client } from "@aws-sdk/client-s3";
import type { Context } from "aws-lambda";
import { afterEach, describe, expect, it } from "vitest";
import { processCopyMessages } from "../../functions/app/copy-completed.js";
import { makePollHandler, pollCopies } from "../../functions/app/poll.js";
import type { VeleroConfig } from "../../functions/core/config.js";
import type { PollReport } from "../../functions/core/plane.js";
import type { TakenSnapshot } from "../../local/primary.js";
import {
  asEvent,
  type Copy,
  LOCAL_ACCOUNT,
  type LocalPlane,
  type LocalPlaneOptions,
  sqsEvent,
} from "../../local/runtime.js";
import { SimulatedVelero } from "../../local/velero.js";
import { copiesBySource, makePlane, useMoto } from "../support/harness.js";

const moto = useMoto();

/**
 * Every AWS call the handlers' SDK clients make (DynamoDB, S3, EC2 in each region), seen by SDK
 * middleware, plus copy states faked client-side: moto completes copies at once and cannot put a
 * snapshot in error, so a test that needs an errored copy rewrites DescribeSnapshots' answer.
 */
class Spy {
  readonly calls: string[] = [];
  /** SourceSnapshotId of every CopySnapshot sent. */
  readonly copyRequests: string[] = [];
  /** Copies DescribeSnapshots reports in error state (with this message). */
  readonly errored = new Map<string, string>();

  attach = (client: DynamoDBClient | S3Client | EC2Client): void => {
    (client as EC2Client).middlewareStack.add(
      (next, context) => async (args) => {
        const service = String(context.clientName).replace(/Client$/, "");
        const op = String(context.commandName).replace(/Command$/, "");
        this.calls.push(`${service} ${op}`);
        if (op === "CopySnapshot")
          this.copyRequests.push(String((args.input as { SourceSnapshotId?: string }).SourceSnapshotId));
        const out = await next(args);
        if (op === "DescribeSnapshots") {
          for (const s of (out.output as DescribeSnapshotsResult).Snapshots ?? []) {
            const message = s.SnapshotId ? this.errored.get(s.SnapshotId) : undefined;
            if (message !== undefined) {
              s.State = "error";
              s.StateMessage = message;
            }
          }
        }
        return out;
      },
      { step: "initialize", name: "pollTestSpy" },
    );
  };

  reset(): void {
    this.calls.length = 0;
  }
}

/** The simulated copies' timers must not fire into the next test's (reset) emulator. */
const planes: LocalPlane[] = [];
afterEach(async () => {
  for (const p of planes.splice(0)) await copiesFinished(p);
});

/**
 * A plane with `controllers` volumes and a spy on its clients. Copies complete at once in moto
 * (copyDelayMs 1: the emitter's copySnapshot events then sit in the copy queue, unconsumed, as
 * late events would) unless "held": held copies look pending to DescribeSnapshots (the emitter's
 * SDK middleware rewrites their State, since moto has no pending copies) until released.
 */
async function setup(controllers: number, options: Omit<LocalPlaneOptions, "endpoint" | "instrument"> = {}) {
  const spy = new Spy();
  const { plane, primary } = await makePlane(moto(), {
    copyDelayMs: 1,
    ...options,
    instrument: { client: spy.attach },
  });
  planes.push(plane);
  await primary.addControllers(controllers);
  return { plane, primary, spy, rt: plane.rt };
}

/** Records snapshots the way replicate does (intake: admits at once while slots are free). */
async function intake(plane: LocalPlane, snaps: readonly TakenSnapshot[], region = "us-east-1") {
  const { outcomes } = await plane.rt.plane.intake(
    snaps.map((s) => ({ key: s.snapshotId, snapshotId: s.snapshotId, region })),
  );
  for (const o of outcomes.values()) expect(o.status).toBe("recorded");
}

/**
 * A sleep that records how long it was asked to wait and, given a plane, lets the copies started
 * meanwhile complete in "AWS" (the emitter shows a copy pending until its 1 ms delay has run):
 * the interval between two looks is when copies finish.
 */
function fakeSleep(plane?: LocalPlane) {
  const waits: number[] = [];
  const sleep = async (ms: number) => {
    waits.push(ms);
    if (plane) await copiesFinished(plane);
  };
  return { waits, sleep };
}

/** Waits until every copy started with a delay has completed (and its event was sent). */
async function copiesFinished(plane: LocalPlane): Promise<void> {
  while (plane.emitter.busy) await new Promise((r) => setTimeout(r, 5));
}

/** Open records by status, read from the ledger. */
async function openCounts(plane: LocalPlane) {
  const { open } = await plane.rt.ledger.loadOpen();
  return {
    copying: open.filter((r) => r.status === "copying").length,
    waiting: open.filter((r) => r.status === "waiting").length,
  };
}

/** Late copySnapshot events for these copies, as the copy-events queue delivers them. */
function lateEvents(plane: LocalPlane, copies: readonly Copy[]) {
  const region = plane.rt.config.failoverRegion;
  const bodies = copies.map((c) => JSON.stringify(asEvent(plane.emitter.copyEvent(c, "succeeded"), region)));
  return sqsEvent(bodies, plane.resources.copyQueue.arn, region).Records;
}

describe("copy poller (settles finished copies while others wait for a slot)", () => {
  it("drains a backlog round after round within the budget: one copy per snapshot, stops when nothing waits", async () => {
    // arrange: budget 2, five snapshots of five volumes -> 2 copying, 3 waiting
    const { plane, primary, spy, rt } = await setup(5, { config: { copyBudget: 2 } });
    const snaps = await primary.takeBackup("adhoc-backlog", { emit: false });
    await intake(plane, snaps);
    expect(await openCounts(plane)).toEqual({ copying: 2, waiting: 3 });
    // after each look: what the ledger holds (never more copying than the budget)
    const looks: Array<{ copying: number; waiting: number; busy: boolean }> = [];
    const poll = rt.plane.poll.bind(rt.plane);
    rt.plane.poll = async (...args: Parameters<typeof poll>): Promise<PollReport> => {
      const r = await poll(...args);
      looks.push({ ...(await openCounts(plane)), busy: r.busy });
      return r;
    };
    const { waits, sleep } = fakeSleep(plane);
    await copiesFinished(plane);

    // act: both copies completed (moto completes them at once); no event is consumed: only the
    // poller frees slots
    const run = await pollCopies(rt, { sleep });

    // assert
    // look 1 settles 2 and admits 2 (1 still waits), look 2 settles 2 and admits the last: nothing
    // waits any more, so the run stops after 2 looks instead of running all 6 of its window
    expect(run).toEqual({ polls: 2, settled: 4, admitted: 3, busy: false });
    expect(looks).toEqual([
      { copying: 2, waiting: 1, busy: true },
      { copying: 1, waiting: 0, busy: false },
    ]);
    expect(await rt.ledger.counters()).toEqual({ inFlight: 1, waiting: 0 });
    expect(waits).toEqual([rt.config.pollSeconds * 1000]);
    // exactly one CopySnapshot per source snapshot, and one copy of each in us-west-2 carrying our
    // source tag (read from the emulator, not the ledger)
    const ids = snaps.map((s) => s.snapshotId).sort();
    expect([...spy.copyRequests].sort()).toEqual(ids);
    const copies = await copiesBySource(moto(), rt.config.failoverRegion);
    expect([...copies.keys()].sort()).toEqual(ids);
    for (const id of ids) expect(copies.get(id)).toHaveLength(1);
    // the four settled records hold their copy's id; the last copy is left to its event (the
    // poller only runs while something waits)
    const records = await rt.ledger.getSnapshots(ids);
    const completed = [...records.values()].filter((r) => r.status === "completed");
    expect(completed).toHaveLength(4);
    for (const r of completed) expect(r.copySnapshotId).toBe(copies.get(r.sourceSnapshotId)?.[0]);
    expect([...records.values()].filter((r) => r.status === "copying")).toHaveLength(1);

    // act: the copySnapshot events arrive (4 late ones and the last copy's)
    await plane.drain();

    // assert: every snapshot ends copied with its copy, still one copy each
    const after = await rt.ledger.getSnapshots(ids);
    for (const id of ids) {
      expect(after.get(id)).toMatchObject({ status: "completed", copySnapshotId: copies.get(id)?.[0] });
    }
    expect(spy.copyRequests).toHaveLength(5);
    expect(await rt.ledger.counters()).toEqual({ inFlight: 0, waiting: 0 });
  });

  it.each([
    { case: "an empty ledger", snapshots: 0 },
    { case: "copies in flight but none waiting", snapshots: 2 },
  ])("is idle with $case: one look, one DynamoDB GetItem and no EC2 call", async ({ snapshots }) => {
    // arrange
    const { plane, primary, spy, rt } = await setup(2, { config: { copyBudget: 2 } });
    if (snapshots > 0) {
      await intake(plane, await primary.takeBackup("adhoc-idle", { emit: false }));
      expect(await openCounts(plane)).toEqual({ copying: 2, waiting: 0 });
    }
    const { waits, sleep } = fakeSleep();
    spy.reset();

    // act: the deployed handler (middy, Lambda context)
    const run = await makePollHandler(rt, { sleep })(undefined, lambdaContext());

    // assert: nothing waits for a slot, so nothing is worth a DescribeSnapshots
    expect(run).toEqual({ polls: 1, settled: 0, admitted: 0, busy: false });
    expect(spy.calls).toEqual(["DynamoDB GetItem"]);
    expect(waits).toEqual([]);
  });

  it("does nothing at all with pollSeconds 0 (poller disabled)", async () => {
    // arrange: a backlog it would otherwise work on
    const { plane, primary, spy, rt } = await setup(3, { config: { copyBudget: 1, pollSeconds: 0 } });
    await intake(plane, await primary.takeBackup("adhoc-disabled", { emit: false }));
    spy.reset();

    // act
    const run = await pollCopies(rt, { sleep: fakeSleep().sleep });

    // assert
    expect(run).toEqual({ polls: 0, settled: 0, admitted: 0, busy: false });
    expect(spy.calls).toEqual([]);
    expect(await openCounts(plane)).toEqual({ copying: 1, waiting: 2 });
  });

  it("leaves pending copies alone: settles nothing, admits nothing, stays busy for its whole window", async () => {
    // arrange: budget 2, three snapshots -> 2 copying, 1 waiting. Moto has no pending copies: the
    // copies are "held", which makes the emitter's SDK middleware rewrite their DescribeSnapshots
    // State to "pending" (client-side, as AWS would report them)
    const { plane, primary, spy, rt } = await setup(3, { copyDelayMs: "held", config: { copyBudget: 2 } });
    const snaps = await primary.takeBackup("adhoc-pending", { emit: false });
    await intake(plane, snaps);
    const before = await rt.ledger.getSnapshots(snaps.map((s) => s.snapshotId));
    const { waits, sleep } = fakeSleep();
    spy.reset();

    // act
    const run = await pollCopies(rt, { sleep });

    // assert: every look of the 50 s window (10 s apart) found the copies pending, with one
    // DescribeSnapshots each (every copy in flight at once) and no other EC2 call
    expect(run).toEqual({ polls: 6, settled: 0, admitted: 0, busy: true });
    expect(spy.calls.filter((c) => c.startsWith("EC2"))).toEqual(Array(6).fill("EC2 DescribeSnapshots"));
    expect(waits).toEqual(Array(5).fill(rt.config.pollSeconds * 1000));
    expect(await rt.ledger.getSnapshots(snaps.map((s) => s.snapshotId))).toEqual(before);
    expect(await openCounts(plane)).toEqual({ copying: 2, waiting: 1 });
    expect(spy.copyRequests).toHaveLength(2);

    // act: one copy completes (no event); the next look settles it and fills its slot
    const [done] = await plane.emitter.release(1, { emit: false });
    const report = await rt.plane.poll();

    // assert
    expect(report.settled.map((o) => o.status)).toEqual(["completed"]);
    expect(report.admit?.admitted).toHaveLength(1);
    expect(report.busy).toBe(false);
    expect(await rt.ledger.get(done?.sourceSnapshotId ?? "")).toMatchObject({
      status: "completed",
      copySnapshotId: done?.copySnapshotId,
    });
    expect(spy.copyRequests).toHaveLength(3);
  });

  it("stops looking when the function's time runs short", async () => {
    // arrange: copies pending, one waiting (as above)
    const { plane, primary, rt } = await setup(3, { copyDelayMs: "held", config: { copyBudget: 2 } });
    await intake(plane, await primary.takeBackup("adhoc-timeout", { emit: false }));
    const { waits, sleep } = fakeSleep();

    // act: 17 s left: not enough for another look (10 s interval + 8 s reserve)
    const run = await pollCopies(rt, { sleep, remainingMs: () => 17_000 });

    // assert
    expect(run).toMatchObject({ polls: 1, busy: true });
    expect(waits).toEqual([]);
  });

  it("ignores the late copySnapshot events of copies it settled: no second settlement, no admission", async () => {
    // arrange: budget 2, five snapshots; the first two copies complete without their events yet
    const { plane, primary, spy, rt } = await setup(5, { copyDelayMs: "held", config: { copyBudget: 2 } });
    const snaps = await primary.takeBackup("adhoc-late", { emit: false });
    await intake(plane, snaps);
    const first = await plane.emitter.release(2, { emit: false });
    // the poller settles them and admits two more (held: pending), one snapshot still waits
    const run = await pollCopies(rt, { sleep: fakeSleep().sleep });
    expect(run).toMatchObject({ settled: 2, admitted: 2, busy: true });
    const ids = snaps.map((s) => s.snapshotId);
    const before = await rt.ledger.getSnapshots(ids);
    for (const c of first) {
      expect(before.get(c.sourceSnapshotId)).toMatchObject({
        status: "completed",
        copySnapshotId: c.copySnapshotId,
      });
    }
    spy.reset();

    // act: their events arrive after all (twice, as SQS may deliver them)
    const result = await processCopyMessages(rt, lateEvents(plane, [...first, ...first]), LOCAL_ACCOUNT);

    // assert: each is ignored as a late event; had one settled again, its slot would have been
    // freed twice and the waiting snapshot admitted beyond the budget
    expect(result.outcomes).toHaveLength(4);
    for (const o of result.outcomes) {
      expect(o).toMatchObject({ outcome: "ignored", reason: expect.stringMatching(/late event/) });
    }
    expect(result.admit).toBeUndefined();
    expect(await rt.ledger.getSnapshots(ids)).toEqual(before);
    expect(await rt.ledger.counters()).toEqual({ inFlight: 2, waiting: 1 });
    expect(spy.calls).not.toContain("EC2 CopySnapshot");
    expect(spy.copyRequests).toHaveLength(4);
  });

  it("races copy-completed for the same finished copies: each settles once, the budget holds", async () => {
    // arrange: budget 4, twelve snapshots of twelve volumes: 4 copying, 8 waiting; the 4 copies
    // finish, and their events arrive at the moment the poller looks
    const { plane, primary, spy, rt } = await setup(12, { copyDelayMs: "held", config: { copyBudget: 4 } });
    const snaps = await primary.takeBackup("adhoc-race-events", { emit: false });
    await intake(plane, snaps);
    const finished = await plane.emitter.release(4, { emit: false });
    const events = lateEvents(plane, finished);

    // act: both at once, three times over (each admits into the slots the other freed)
    const [run, ...handled] = await Promise.all([
      pollCopies(rt, { sleep: fakeSleep().sleep }),
      processCopyMessages(rt, events, LOCAL_ACCOUNT),
      processCopyMessages(rt, events, LOCAL_ACCOUNT),
    ]);

    // assert: each copy settled exactly once, by one of them; no slot freed twice
    const completions = [
      run?.settled ?? 0,
      ...handled.map((h) => h.outcomes.filter((o) => o.outcome === "completed").length),
    ].reduce((a, b) => a + b, 0);
    expect(completions).toBe(4);
    const records = await rt.ledger.getSnapshots(snaps.map((s) => s.snapshotId));
    for (const c of finished) expect(records.get(c.sourceSnapshotId)?.status).toBe("completed");
    const counts = await openCounts(plane);
    expect(counts.copying).toBeLessThanOrEqual(4);
    expect(await rt.ledger.counters()).toEqual({ inFlight: counts.copying, waiting: counts.waiting });
    expect(counts.copying + counts.waiting).toBe(8);
    // one CopySnapshot per snapshot admitted so far, never two for one source
    expect(new Set(spy.copyRequests).size).toBe(spy.copyRequests.length);
    expect(spy.copyRequests).toHaveLength(4 + counts.copying);
  });

  it("releases a copy found in error state for a retry, and fills its slot meanwhile", async () => {
    // arrange: budget 1, two snapshots -> 1 copying, 1 waiting; random 0.99 -> a ~15 s back-off
    const { plane, primary, spy, rt } = await setup(2, {
      config: { copyBudget: 1 },
      random: () => 0.99,
    });
    const snaps = await primary.takeBackup("adhoc-error", { emit: false });
    await intake(plane, snaps);
    const [failing] = plane.emitter.copies;
    if (!failing) throw new Error("one copy expected");
    const other = snaps.find((s) => s.snapshotId !== failing.sourceSnapshotId);
    // moto cannot fail a copy: DescribeSnapshots reports it in error (client-side rewrite)
    spy.errored.set(failing.copySnapshotId, "simulated: the KMS key is disabled");
    const started = Date.now();
    await copiesFinished(plane);

    // act
    const run = await pollCopies(rt, { sleep: fakeSleep(plane).sleep });

    // assert
    // look 1: the failed copy is released and the other snapshot admitted; look 2: that copy
    // completed; look 3: only the backing-off record waits, nothing is in flight: stop
    expect(run).toEqual({ polls: 3, settled: 2, admitted: 1, busy: false });
    const record = await rt.ledger.get(failing.sourceSnapshotId);
    expect(record).toMatchObject({ status: "waiting", attempts: 1 });
    expect(record?.reason).toMatch(
      new RegExp(
        `^copy ${failing.copySnapshotId} failed: simulated: the KMS key is disabled \\(attempt 1 of 3, retrying after `,
      ),
    );
    expect(record?.copySnapshotId).toBeUndefined();
    expect(Date.parse(record?.notBefore ?? "")).toBeGreaterThan(started + 10_000);
    expect(await rt.ledger.get(other?.snapshotId ?? "")).toMatchObject({ status: "completed" });
    // not retried at once: one CopySnapshot each so far
    expect([...spy.copyRequests].sort()).toEqual(snaps.map((s) => s.snapshotId).sort());
    expect(await rt.ledger.counters()).toEqual({ inFlight: 0, waiting: 1 });
  });

  it("makes a registered Completed Velero backup DR-ready in the run that settles its last copy", async () => {
    // arrange: backup A (2 volumes, written to Velero's bucket and registered) copying at budget 2,
    // an ad-hoc snapshot B waiting behind it (the poller only runs while something waits)
    const { plane, primary, rt } = await setup(3, {
      copyDelayMs: "held",
      config: { copyBudget: 2, velero: VELERO },
    });
    const name = "cbci-dr-20261127140000";
    const controllersOfA = primary.controllers.slice(0, 2);
    const a = await primary.takeBackup(name, {
      schedule: "cbci-dr",
      controllers: controllersOfA,
      emit: false,
    });
    const b = await primary.takeBackup("adhoc-behind", {
      controllers: primary.controllers.slice(2),
      emit: false,
    });
    await new SimulatedVelero(plane.clients.s3, VELERO).writeBackup(
      { name, schedule: "cbci-dr", start: new Date(Date.now() - 60_000), controllers: controllersOfA },
      a,
      "us-east-1a",
    );
    await intake(plane, a);
    await intake(plane, b);
    await plane.drain(); // registers A (no copy event is consumed: the copies are held)
    expect(await openCounts(plane)).toEqual({ copying: 2, waiting: 1 });
    expect((await rt.ledger.getBackup(name))?.verdict).not.toBe("dr-ready");
    // both copies complete in "AWS", their events not yet sent
    await plane.emitter.release(2, { emit: false });

    // act
    const run = await pollCopies(rt, { sleep: fakeSleep().sleep });

    // assert: DR-ready now, with no sweep and no copy event handled
    expect(run).toMatchObject({ settled: 2, admitted: 1 });
    expect(await rt.ledger.getBackup(name)).toMatchObject({
      verdict: "dr-ready",
      copied: 2,
      expectedCount: 2,
    });
    expect(plane.mappings.copyCompleted.invocations).toBe(0);
  });
});

const VELERO: VeleroConfig = {
  bucket: "velero-poll-test",
  prefix: "",
  failoverBucket: "velero-poll-test-failover",
  failoverPrefix: "failover",
  zoneMap: { "us-east-1a": "us-west-2b" },
  allowedWarnings: 0,
  combinedIds: false,
};

/** The parts of Lambda's context the handler's middleware reads. */
function lambdaContext(): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: "poll",
    functionVersion: "$LATEST",
    invokedFunctionArn: `arn:aws:lambda:us-west-2:${LOCAL_ACCOUNT}:function:poll`,
    memoryLimitInMB: "256",
    awsRequestId: "poll-test",
    logGroupName: "/aws/lambda/poll",
    logStreamName: "local",
    getRemainingTimeInMillis: () => 60_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

describe("copy poller: which copy belongs to the attempt it settles", () => {
  it("does not charge a retried record with its previous attempt's failed copy", async () => {
    // arrange: budget 2, copies held pending; A's first copy fails fast (faked: moto cannot put a
    // snapshot in error) and the poller releases A to retry after the shortest back-off (1 s)
    const { plane, primary, spy, rt } = await setup(4, {
      copyDelayMs: "held",
      config: { copyBudget: 2 },
      random: () => 0,
    });
    const snaps = await primary.takeBackup("adhoc-race", { emit: false });
    await intake(plane, snaps);
    const [a, b] = plane.emitter.copies;
    if (!a || !b) throw new Error("expected two copies in flight");
    spy.errored.set(a.copySnapshotId, "simulated: quick KMS failure");
    await rt.plane.poll();
    expect(await rt.ledger.get(a.sourceSnapshotId)).toMatchObject({ status: "waiting", attempts: 1 });
    await new Promise((r) => setTimeout(r, 1_100));
    // another invocation settles B and admits A's retry; its CopySnapshot has not returned yet
    await plane.emitter.release(1, { emit: false });
    await rt.plane.settleCopies([
      {
        kind: "snapshot-copied",
        snapshotId: b.copySnapshotId,
        region: "us-west-2",
        sourceSnapshotId: b.sourceSnapshotId,
        sourceRegion: "us-east-1",
      },
    ]);
    const waitingA = await rt.ledger.get(a.sourceSnapshotId);
    if (!waitingA) throw new Error("A is not in the ledger");
    const { admitted } = await rt.ledger.admitMany([waitingA], 2, undefined, new Date());
    expect(admitted).toHaveLength(1);
    // act: the poller looks meanwhile and finds only the first attempt's failed copy
    await rt.plane.poll();
    // assert: that copy started before this attempt's admission, so the attempt stands
    expect(await rt.ledger.get(a.sourceSnapshotId)).toMatchObject({ status: "copying", attempts: 1 });
  });
});
