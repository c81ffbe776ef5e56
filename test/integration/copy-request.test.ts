import { DescribeSnapshotsCommand, EC2Client } from "@aws-sdk/client-ec2";
import { describe, expect, it } from "vitest";
import { LOCAL_CREDENTIALS } from "../../local/runtime.js";
import { makePlane, useMoto } from "../support/harness.js";

const moto = useMoto();
const KEY = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

describe("CopySnapshot as the plane issues it", () => {
  it("tags the copy with every source tag plus ours, uses the lineage's KMS key and the time-based duration", async () => {
    // arrange
    const requests: Record<string, unknown>[] = [];
    const { plane, primary } = await makePlane(moto(), {
      copyDelayMs: 1,
      config: { kmsKeyId: KEY, completionDurationMinutes: 30 },
      fault: (command, input) => {
        if (command === "CopySnapshotCommand") requests.push(input);
        return undefined;
      },
    });
    const [controller] = await primary.addControllers(1);
    const [snap] = await primary.takeBackup("cbci-dr-20261127120000", { schedule: "cbci-dr" });

    // act
    await plane.settle();

    // assert: the request
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatchObject({
      SourceRegion: "us-east-1",
      SourceSnapshotId: snap?.snapshotId,
      Encrypted: true,
      KmsKeyId: KEY,
      CompletionDurationMinutes: 30,
    });
    // assert: the copy as the failover region sees it
    const ec2 = new EC2Client({
      endpoint: moto().endpoint,
      region: "us-west-2",
      credentials: LOCAL_CREDENTIALS,
    });
    const record = await plane.rt.ledger.get(snap?.snapshotId ?? "");
    const out = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [record?.copySnapshotId ?? ""] }));
    const copy = out.Snapshots?.[0];
    const tags = Object.fromEntries((copy?.Tags ?? []).map((t) => [t.Key, t.Value]));
    expect(tags).toMatchObject({
      ...controller?.tags,
      "velero.io/backup": "cbci-dr-20261127120000",
      "velero.io/pv": controller?.pvName,
      "velero.io/schedule-name": "cbci-dr",
      "velero.io/storage-location": "default",
      "dr.velero.io/source-snapshot-id": snap?.snapshotId,
      "dr.velero.io/source-region": "us-east-1",
      "dr.velero.io/source-volume-id": snap?.volumeId,
    });
    expect(copy?.Encrypted).toBe(true);
    expect(copy?.KmsKeyId).toBe(KEY);
    expect(record).toMatchObject({ status: "completed", kmsKeyId: KEY });
  });

  it("keeps a lineage on the key it started with when the configured key changes (copies stay incremental)", async () => {
    // arrange: first copy of the volume under key A
    const keyB = KEY.replace("1234abcd", "5678efab");
    const seen: unknown[] = [];
    const { plane, primary } = await makePlane(moto(), {
      copyDelayMs: 1,
      config: { kmsKeyId: KEY },
      fault: (command, input) => {
        if (command === "CopySnapshotCommand") seen.push(input.KmsKeyId);
        return undefined;
      },
    });
    await primary.addControllers(1);
    await primary.takeBackup("adhoc-key-1");
    await plane.settle();

    // act: the operator switches to key B; the same volume's next snapshot is copied
    (plane.rt.config as { kmsKeyId?: string }).kmsKeyId = keyB;
    await primary.takeBackup("adhoc-key-2");
    await plane.settle();

    // assert
    expect(seen).toEqual([KEY, KEY]);
  });
});
