import { DescribeSnapshotsCommand, EC2Client } from "@aws-sdk/client-ec2";
import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, beforeEach } from "vitest";
import { SOURCE_SNAPSHOT_TAG } from "../../functions/core/model.js";
import type { Clock } from "../../functions/core/ports.js";
import { type Moto, startMoto } from "../../local/moto.js";
import { SimulatedPrimary } from "../../local/primary.js";
import { LOCAL_CREDENTIALS, LocalPlane, type LocalPlaneOptions } from "../../local/runtime.js";

/**
 * One emulator per test file (files run in parallel, each on its own free port), reset before each
 * test: every test builds its own plane, and the sweep's discovery reads the whole source region.
 */
export function useMoto(): () => Moto {
  let moto: Moto | undefined;
  beforeAll(async () => {
    moto = await startMoto();
  });
  beforeEach(async () => {
    await moto?.reset();
  });
  afterAll(async () => {
    await moto?.stop();
  });
  return () => {
    if (!moto) throw new Error("moto is not running");
    return moto;
  };
}

/** A clock the test moves by hand. */
export class FakeClock implements Clock {
  constructor(private t = Date.parse("2026-11-27T12:00:00Z")) {}
  now(): Date {
    return new Date(this.t);
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** A deterministic random source, so jitter and fault injection repeat run to run (the simulation's). */
export { seeded } from "../../bench/engine.js";

let counter = 0;

/** A fresh local plane (own table, bus and queues) plus a simulated primary feeding it. */
export async function makePlane(
  moto: Moto,
  options: Omit<LocalPlaneOptions, "endpoint"> = {},
): Promise<{ plane: LocalPlane; primary: SimulatedPrimary }> {
  const plane = await LocalPlane.create({
    endpoint: moto.endpoint,
    prefix: `t${process.pid}-${++counter}`,
    logLevel: "SILENT",
    ...options,
  });
  const primary = new SimulatedPrimary(
    moto.endpoint,
    plane.rt.config.sourceRegions[0] ?? "us-east-1",
    plane.clients.events,
    plane.resources.busName,
  );
  return { plane, primary };
}

/** Copies in the failover region per source snapshot id (read from the emulator, not the ledger). */
export async function copiesBySource(moto: Moto, region: string): Promise<Map<string, string[]>> {
  const ec2 = new EC2Client({ endpoint: moto.endpoint, region, credentials: LOCAL_CREDENTIALS });
  const out = await ec2.send(
    new DescribeSnapshotsCommand({ Filters: [{ Name: "tag-key", Values: [SOURCE_SNAPSHOT_TAG] }] }),
  );
  const by = new Map<string, string[]>();
  for (const s of out.Snapshots ?? []) {
    const src = s.Tags?.find((t) => t.Key === SOURCE_SNAPSHOT_TAG)?.Value ?? "?";
    by.set(src, [...(by.get(src) ?? []), s.SnapshotId ?? "?"]);
  }
  return by;
}

/** Messages in a queue (visible plus in flight). */
export async function depth(plane: LocalPlane, url: string): Promise<number> {
  const a = await plane.clients.sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: url,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    }),
  );
  return (
    Number(a.Attributes?.ApproximateNumberOfMessages ?? 0) +
    Number(a.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
  );
}

export function shuffle<T>(items: T[], random: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}
