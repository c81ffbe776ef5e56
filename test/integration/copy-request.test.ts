import { DescribeSnapshotsCommand, EC2Client } from "@aws-sdk/client-ec2";
import { describe, expect, it } from "vitest";
import { LOCAL_CREDENTIALS } from "../../local/runtime.js";
import { makePlane, useMoto } from "../support/harness.js";

const moto = useMoto();
const KEY = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const SOURCE_KEY = "arn:aws:kms:us-east-1:123456789012:key/9876fedc-98fe-76dc-54ba-9876543210fe";

/** Records the form body of every CopySnapshot an EC2 client sends (as serialised, before the wire). */
function recordCopyBodies(bodies: string[]) {
  return (client: unknown) => {
    if (!(client instanceof EC2Client)) return;
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if ((context as { commandName?: string }).commandName === "CopySnapshotCommand")
          bodies.push(String((args.request as { body?: unknown }).body));
        return next(args);
      },
      { step: "finalizeRequest", name: "recordCopySnapshotBody" },
    );
  };
}

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

  it("copies an encrypted source with our presigned URL and DestinationRegion in the request", async () => {
    // arrange: a controller whose volume (so its snapshot) is encrypted in the primary region
    const bodies: string[] = [];
    const { plane, primary } = await makePlane(moto(), {
      copyDelayMs: 1,
      config: { kmsKeyId: KEY },
      instrument: { client: recordCopyBodies(bodies) },
    });
    await primary.addControllers(1, { kmsKeyId: SOURCE_KEY });
    const [snap] = await primary.takeBackup("cbci-dr-20261127121500", { schedule: "cbci-dr" });
    const source = await primary.ec2.send(
      new DescribeSnapshotsCommand({ SnapshotIds: [snap?.snapshotId ?? ""] }),
    );
    expect(source.Snapshots?.[0]?.Encrypted).toBe(true);

    // act
    await plane.settle();

    // assert: the request carried one PresignedUrl for the source region, and our DestinationRegion
    expect(bodies).toHaveLength(1);
    const body = bodies[0] ?? "";
    const form = new URLSearchParams(body);
    expect(body.split("&").filter((kv) => kv.startsWith("PresignedUrl="))).toHaveLength(1);
    expect(form.getAll("DestinationRegion")).toEqual(["us-west-2"]);
    expect(form.get("TagSpecification.1.ResourceType")).toBe("snapshot");
    const url = new URL(form.get("PresignedUrl") ?? "");
    expect(url.origin).toBe(new URL(moto().endpoint).origin);
    expect(Object.fromEntries([...url.searchParams].filter(([k]) => !k.startsWith("X-Amz-")))).toEqual({
      Action: "CopySnapshot",
      Version: "2016-11-15",
      SourceRegion: "us-east-1",
      SourceSnapshotId: snap?.snapshotId,
      DestinationRegion: "us-west-2",
      Encrypted: "true",
      KmsKeyId: KEY,
    });
    expect(url.searchParams.get("X-Amz-Credential")).toMatch(/^local\/\d{8}\/us-east-1\/ec2\/aws4_request$/);
    // assert: the copy exists in the failover region, encrypted under the lineage's key
    const record = await plane.rt.ledger.get(snap?.snapshotId ?? "");
    expect(record).toMatchObject({ status: "completed", kmsKeyId: KEY });
    const ec2 = new EC2Client({
      endpoint: moto().endpoint,
      region: "us-west-2",
      credentials: LOCAL_CREDENTIALS,
    });
    const out = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [record?.copySnapshotId ?? ""] }));
    expect(out.Snapshots?.[0]).toMatchObject({ Encrypted: true, KmsKeyId: KEY });
  });
});
