import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { describe, expect, it } from "vitest";
import { DynamoLedger } from "../../functions/adapters/dynamo-ledger.js";
import type { SnapshotRecord } from "../../functions/core/model.js";
import type { Ledger } from "../../functions/core/ports.js";
import { MemoryLedger } from "../../local/memory-ledger.js";
import { createLedgerTable } from "../../local/resources.js";
import { LOCAL_CREDENTIALS } from "../../local/runtime.js";
import { useMoto } from "../support/harness.js";

/**
 * The simulation (bench/) runs the plane on the in-memory ledger; the functions run it on
 * DynamoDB. This runs one script of ledger operations, covering every condition the batched
 * writes check, against both and requires the same answers and the same open state, so the
 * simulation's ledger cannot drift from the deployed one.
 */
const moto = useMoto();
const NOW = new Date("2026-11-27T12:00:00Z");
const BUDGET = 3;

function rec(id: string, volume: string, backup: string, minute: number): SnapshotRecord {
  return {
    sourceSnapshotId: id,
    sourceRegion: "us-east-1",
    volumeId: volume,
    backup,
    schedule: "cbci-dr",
    startTime: new Date(NOW.getTime() + minute * 60_000).toISOString(),
    status: "waiting",
    tags: { "velero.io/backup": backup },
    attempts: 0,
  };
}

const ids = (xs: ReadonlyArray<{ sourceSnapshotId: string } | { record: { sourceSnapshotId: string } }>) =>
  xs.map((x) => ("record" in x ? x.record.sourceSnapshotId : x.sourceSnapshotId)).sort();

/** The script; returns every answer and the open state after each step. */
async function script(ledger: Ledger): Promise<unknown[]> {
  const out: unknown[] = [];
  const open = async () => {
    const s = await ledger.loadOpen();
    return {
      open: s.open.map((r) => `${r.sourceSnapshotId}:${r.status}`).sort(),
      started: [...s.startedBackups].sort(),
      inFlight: s.inFlightCounter,
      waiting: s.waitingCounter,
      // the poller's cheap read must agree with the full one
      counters: await ledger.counters(),
    };
  };
  const a1 = rec("snap-a1", "vol-a", "b1", 0);
  const b1 = rec("snap-b1", "vol-b", "b1", 0);
  const c1 = rec("snap-c1", "vol-c", "b1", 0);
  const d1 = rec("snap-d1", "vol-d", "b1", 0);
  // 1. No backlog: three start at once, the fourth exceeds the budget and waits.
  const r1 = await ledger.recordMany({ admit: [a1, b1, c1, d1], wait: [] }, BUDGET, "key-1", NOW);
  out.push(["record", ids(r1.admitted), ids(r1.waiting), r1.duplicates, r1.admitted.map((a) => a.kmsKeyId)]);
  out.push(await open());
  // 2. Redelivery of a1 and a new snapshot of a busy volume: the duplicate is named, and with a
  //    backlog (d1 waits) nothing new starts.
  const a2 = rec("snap-a2", "vol-a", "b2", 15);
  const r2 = await ledger.recordMany({ admit: [a1, a2], wait: [] }, BUDGET, "key-1", NOW);
  out.push(["record", ids(r2.admitted), ids(r2.waiting), r2.duplicates, r2.control]);
  out.push(await open());
  // 3. The budget is full: admitting d1 loses.
  const x = await ledger.admitMany([d1], BUDGET, "key-1", NOW);
  out.push(["admit-full", ids(x.admitted), ids(x.lostRaces)]);
  // 4. Completions: a1 and b1 (b1 twice in one batch, and once more later with another copy id).
  const done = await ledger.completeMany([
    { record: a1, copySnapshotId: "snap-copy-a1", completedAt: NOW.toISOString() },
    { record: b1, copySnapshotId: "snap-copy-b1", completedAt: NOW.toISOString() },
    { record: b1, copySnapshotId: "snap-copy-b1", completedAt: NOW.toISOString() },
  ]);
  const again = await ledger.completeMany([
    { record: b1, copySnapshotId: "snap-other", completedAt: NOW.toISOString() },
  ]);
  out.push(["complete", done, again]);
  out.push(await open());
  // 5. Two slots free: d1 and a2 are admitted (a2's volume is free again), in that order.
  const y = await ledger.admitMany([d1, a2], BUDGET, "key-2", NOW);
  out.push([
    "admit",
    ids(y.admitted),
    ids(y.lostRaces),
    Object.fromEntries(y.admitted.map((a) => [a.record.sourceSnapshotId, a.kmsKeyId])),
  ]);
  // 6. A failed copy goes back to waiting, another fails for good.
  out.push([
    "release",
    await ledger.release(c1, {
      status: "waiting",
      notBefore: NOW.toISOString(),
      reason: "x",
      count: "attempts",
      failedCopy: "snap-copy-c1-attempt-1",
    }),
    await ledger.release(d1, {
      status: "failed",
      reason: "y",
      count: "attempts",
      failedCopy: "snap-copy-d1",
    }),
    await ledger.release(d1, { status: "failed", reason: "y", count: "attempts" }),
  ]);
  out.push(await open());
  // the failed attempts' copies are kept, so the poller never takes one for a later attempt
  const c1Failed = await ledger.get("snap-c1");
  const d1Failed = await ledger.get("snap-d1");
  out.push(["failedCopies", c1Failed?.failedCopies, c1Failed?.attempts, d1Failed?.failedCopies]);
  // 7. Supersession: never for a started backup (b1), yes for one that never started (b3).
  const e3 = rec("snap-e3", "vol-e", "b3", 30);
  const f3 = rec("snap-f3", "vol-f", "b3", 30);
  await ledger.recordMany({ admit: [], wait: [e3, f3] }, BUDGET, undefined, NOW);
  out.push([
    "supersede",
    await ledger.supersedeMany("b1", ["snap-c1"], "b3"),
    await ledger.supersedeMany("b3", ["snap-e3", "snap-f3", "snap-e3"], "b4"),
  ]);
  out.push(await open());
  out.push(["stillOpen", [...(await ledger.stillOpen(["snap-a1", "snap-a2", "snap-c1", "snap-e3"]))].sort()]);
  out.push(["known", [...(await ledger.known(["snap-a1", "snap-zz", "snap-f3"]))].sort()]);
  await ledger.noteFullDiscovery(NOW.toISOString());
  out.push(["fullDiscoveryAt", (await ledger.loadOpen()).fullDiscoveryAt]);
  const a1After = await ledger.get("snap-a1");
  out.push(["a1", a1After?.status, a1After?.copySnapshotId, a1After?.kmsKeyId]);
  return out;
}

describe("ledger contract: the in-memory ledger (simulation) answers as the DynamoDB ledger", () => {
  it("gives the same answers and open state for the same operations", async () => {
    // arrange
    const dynamo = new DynamoDBClient({
      endpoint: moto().endpoint,
      region: "us-west-2",
      credentials: LOCAL_CREDENTIALS,
    });
    await createLedgerTable(dynamo, "contract-ledger");
    const db = DynamoDBDocumentClient.from(dynamo, { marshallOptions: { removeUndefinedValues: true } });

    // act
    const inDynamo = await script(new DynamoLedger(db, "contract-ledger"));
    const inMemory = await script(new MemoryLedger());

    // assert: identical, and right (spot checks of what the script is about)
    expect(inMemory).toEqual(inDynamo);
    expect(inDynamo[0]).toEqual([
      "record",
      ["snap-a1", "snap-b1", "snap-c1"],
      ["snap-d1"],
      [],
      ["key-1", "key-1", "key-1"],
    ]);
    expect(inDynamo[2]).toEqual(["record", [], ["snap-a2"], ["snap-a1"], { inFlight: 3, waiting: 1 }]);
    expect(inDynamo[5]).toEqual(["complete", [true, true, false], [false]]);
    // vol-a's lineage keeps the key its first copy pinned, although the configuration changed
    expect(inDynamo[7]).toEqual([
      "admit",
      ["snap-a2", "snap-d1"],
      [],
      { "snap-a2": "key-1", "snap-d1": "key-2" },
    ]);
    expect(inDynamo[10]).toEqual(["failedCopies", ["snap-copy-c1-attempt-1"], 1, ["snap-copy-d1"]]);
    expect(inDynamo[11]).toEqual(["supersede", 0, 2]);
    expect(inDynamo[12]).toMatchObject({ inFlight: 1, waiting: 1 });
    expect(inDynamo).toContainEqual(["fullDiscoveryAt", NOW.toISOString()]);
  });
});
