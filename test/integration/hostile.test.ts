import { describe, expect, it, vi } from "vitest";
import { processCopyMessages } from "../../functions/app/copy-completed.js";
import { processSnapshotMessages } from "../../functions/app/replicate.js";
import { type MessageOutcome, toBatchResponse } from "../../functions/app/sqs.js";
import { asEvent, LOCAL_ACCOUNT, sqsEvent } from "../../local/runtime.js";
import { eventNames, loadEvent } from "../events/fixtures.js";
import { copiesBySource, makePlane, useMoto } from "../support/harness.js";

const moto = useMoto();

describe("replicate: malformed and hostile events", () => {
  it("gives each bad record a clear reason and processes the rest of its batch", async () => {
    // arrange: every hostile fixture, plus non-JSON, an oversized event and events of foreign
    // regions and accounts, interleaved with four genuine snapshot events, in SQS-sized batches
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1 });
    await primary.addControllers(4);
    const good = await primary.takeBackup("adhoc-hostile", { emit: false });
    const goodBodies = good.map((s) => JSON.stringify(asEvent(primary.createdEvent(s), primary.region)));
    const created = asEvent(
      primary.createdEvent(good[0] ?? { snapshotId: "snap-0", volumeId: "vol-0" }),
      "us-east-1",
    );
    const bad: Array<[string, string]> = [
      ...eventNames("hostile").map((n): [string, string] => [n, JSON.stringify(loadEvent(n))]),
      ["not json", "{ this is not json"],
      ["empty body", ""],
      ["oversized", JSON.stringify({ ...created, padding: "x".repeat(300 * 1024) })],
      [
        "foreign region",
        JSON.stringify({
          ...created,
          region: "eu-west-1",
          detail: {
            ...(created.detail as object),
            snapshot_id: "arn:aws:ec2::eu-west-1:snapshot/snap-0123456789abcdef0",
          },
        }),
      ],
      ["foreign account", JSON.stringify({ ...created, account: "999999999999" })],
      // keys match in any case, so the account check must too
      [
        "foreign account, capitalised key",
        JSON.stringify({
          ...Object.fromEntries(Object.entries(created).filter(([k]) => k !== "account")),
          Account: "999999999999",
        }),
      ],
    ];
    expect(bad.length).toBeGreaterThanOrEqual(12);
    const bodies = [...bad.map(([, body]) => body), ...goodBodies];
    const order = bodies.map((_, i) => i).sort((x, y) => ((x * 7919) % 97) - ((y * 7919) % 97));

    // act
    const outcomes: Array<MessageOutcome & { index: number }> = [];
    for (let i = 0; i < order.length; i += 10) {
      const idx = order.slice(i, i + 10);
      const event = sqsEvent(
        idx.map((j) => bodies[j] ?? ""),
        plane.resources.snapshotQueue.arn,
        "us-west-2",
      );
      const { outcomes: o } = await processSnapshotMessages(plane.rt, event.Records, "123456789012");
      const indexOf = new Map(event.Records.map((r, k) => [r.messageId, idx[k] ?? -1]));
      outcomes.push(...o.map((x) => ({ ...x, index: indexOf.get(x.messageId) ?? -1 })));
    }
    await plane.settle();

    // assert: every bad record has a specific reason and was not copied
    for (const [i, [name]] of bad.entries()) {
      const o = outcomes.find((x) => x.index === i);
      expect(o, name).toBeDefined();
      expect(["invalid", "ignored", "skipped"], name).toContain(o?.outcome);
      expect(o?.reason, name).toMatch(/\w{3,}/);
    }
    const reasonOf = (name: string) =>
      outcomes.find((x) => x.index === bad.findIndex(([n]) => n === name))?.reason;
    expect(reasonOf("not json")).toMatch(/not JSON/);
    expect(reasonOf("oversized")).toMatch(/too large|bytes|size/i);
    expect(reasonOf("foreign region")).toMatch(/eu-west-1 is not a configured source region/);
    expect(reasonOf("foreign account")).toMatch(/foreign account 999999999999/);
    expect(reasonOf("foreign account, capitalised key")).toMatch(/foreign account 999999999999/);
    // the genuine ones in the same batches were recorded and copied
    for (let i = bad.length; i < bodies.length; i++) {
      expect(outcomes.find((x) => x.index === i)?.outcome).toBe("recorded");
    }
    const copies = await copiesBySource(moto(), plane.rt.config.failoverRegion);
    expect(new Set(copies.keys())).toEqual(new Set(good.map((s) => s.snapshotId)));
    // invalid records are reported as failed (so they reach the DLQ after retries); the rest are not
    const failed = toBatchResponse(outcomes).batchItemFailures.map((f) => f.itemIdentifier);
    expect(new Set(failed)).toEqual(
      new Set(outcomes.filter((o) => o.outcome === "invalid").map((o) => o.messageId)),
    );
    expect(failed.length).toBeGreaterThanOrEqual(12);
  });

  it("skips snapshots that are not Velero's or are excluded by configuration, with the reason", async () => {
    // arrange
    const { plane, primary } = await makePlane(moto(), {
      copyDelayMs: 1,
      config: { excludeTags: { "velero.io/storage-location": "default" } },
    });
    await primary.addControllers(1);
    const [velero] = await primary.takeBackup("adhoc-excluded", { emit: false });
    const { ec2 } = primary;
    const { CreateSnapshotCommand } = await import("@aws-sdk/client-ec2");
    const plain = await ec2.send(new CreateSnapshotCommand({ VolumeId: velero?.volumeId ?? "" }));
    const bodies = [
      JSON.stringify(
        asEvent(primary.createdEvent(velero ?? { snapshotId: "", volumeId: "" }), primary.region),
      ),
      JSON.stringify(
        asEvent(
          primary.createdEvent({ snapshotId: plain.SnapshotId ?? "", volumeId: velero?.volumeId ?? "" }),
          primary.region,
        ),
      ),
    ];

    // act
    const { outcomes } = await processSnapshotMessages(
      plane.rt,
      sqsEvent(bodies, plane.resources.snapshotQueue.arn, "us-west-2").Records,
    );

    // assert
    expect(outcomes.map((o) => [o.outcome, o.reason])).toEqual([
      ["skipped", 'excluded by configuration: tag velero.io/storage-location is "default"'],
      ["skipped", "no velero.io/backup tag: not a Velero snapshot"],
    ]);
    expect(plane.emitter.copies).toHaveLength(0);
  });
});

describe("copy-completed: a genuine event with odd informational fields", () => {
  it('settles a copy whose event says "incremental": "True", and logs its note once with the event id', async () => {
    // arrange: one snapshot copying, its copy finished in "AWS"; its event spells incremental
    // "True" and carries a transfer type that is not one (a note, not a reason to reject it)
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: "held" });
    await primary.addControllers(1);
    const [snap] = await primary.takeBackup("adhoc-odd-fields", { emit: false });
    if (!snap) throw new Error("one snapshot expected");
    const { outcomes: recorded } = await plane.rt.plane.intake([
      { key: snap.snapshotId, snapshotId: snap.snapshotId, region: primary.region },
    ]);
    expect([...recorded.values()].map((o) => o.status)).toEqual(["recorded"]);
    const [copy] = await plane.emitter.release(1, { emit: false });
    if (!copy) throw new Error("one copy expected");
    const region = plane.rt.config.failoverRegion;
    const event = asEvent(plane.emitter.copyEvent(copy, "succeeded"), region);
    const detail = { ...(event.detail as Record<string, unknown>), incremental: "True", transferType: 42 };
    const records = sqsEvent(
      [JSON.stringify({ ...event, detail })],
      plane.resources.copyQueue.arn,
      region,
    ).Records;
    const messageId = records[0]?.messageId;
    const warn = vi.spyOn(plane.rt.logger, "warn");

    // act
    const { outcomes } = await processCopyMessages(plane.rt, records, LOCAL_ACCOUNT);

    // assert: settled (no batch item failure), incremental recorded, the note logged once
    expect(outcomes).toEqual([{ messageId, outcome: "completed" }]);
    expect(toBatchResponse(outcomes).batchItemFailures).toEqual([]);
    const record = await plane.rt.ledger.get(snap.snapshotId);
    expect(record).toMatchObject({
      status: "completed",
      copySnapshotId: copy.copySnapshotId,
      incremental: true,
    });
    expect(warn.mock.calls.filter(([message]) => message === "event field ignored")).toEqual([
      [
        "event field ignored",
        {
          eventId: event.id,
          messageId,
          notes: ["detail.transferType: 42 is not a transfer type; treated as absent"],
        },
      ],
    ]);
  });
});
