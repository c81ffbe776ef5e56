import {
  CopySnapshotCommand,
  DeleteSnapshotCommand,
  DescribeSnapshotsCommand,
  type EC2Client,
  type Snapshot,
} from "@aws-sdk/client-ec2";
import { classifyAwsError } from "../core/errors.js";
import { SOURCE_SNAPSHOT_TAG, type SourceSnapshot, type Tags, VELERO_BACKUP_TAG } from "../core/model.js";
import type { CopyRequest, CopyState, SnapshotCopier, SourceSnapshots } from "../core/ports.js";
import { presignCopySnapshot } from "./presign-copy.js";

/** EC2 clients per region, created once per container and reused across invocations. */
export type Ec2ClientFor = (region: string) => EC2Client;

function tagsOf(s: Snapshot): Tags {
  const tags: Tags = {};
  for (const t of s.Tags ?? []) if (t.Key) tags[t.Key] = t.Value ?? "";
  return tags;
}

/**
 * DescribeSnapshots over many ids in few calls. The `snapshot-id` filter (rather than SnapshotIds)
 * tolerates ids that no longer exist instead of failing the whole call with InvalidSnapshot.NotFound.
 * `OwnerIds: self` keeps other accounts' public snapshots out (the emulator ignores it).
 */
async function describeByIds(client: EC2Client, ids: readonly string[]): Promise<Snapshot[]> {
  const out: Snapshot[] = [];
  for (let i = 0; i < ids.length; i += 200) {
    let token: string | undefined;
    do {
      const page = await client.send(
        new DescribeSnapshotsCommand({
          OwnerIds: ["self"],
          Filters: [{ Name: "snapshot-id", Values: ids.slice(i, i + 200) }],
          ...(token ? { NextToken: token } : {}),
        }),
      );
      out.push(...(page.Snapshots ?? []));
      token = page.NextToken;
    } while (token);
  }
  return out;
}

export class Ec2SourceSnapshots implements SourceSnapshots {
  constructor(private readonly clientFor: Ec2ClientFor) {}

  async describe(region: string, snapshotIds: readonly string[]): Promise<SourceSnapshot[]> {
    if (snapshotIds.length === 0) return [];
    const snaps = await describeByIds(this.clientFor(region), snapshotIds);
    return snaps.flatMap((s) => sourceSnapshot(s, region) ?? []);
  }

  async listVelero(region: string, since: Date): Promise<SourceSnapshot[]> {
    const out: SourceSnapshot[] = [];
    let token: string | undefined;
    do {
      const page = await this.clientFor(region).send(
        new DescribeSnapshotsCommand({
          OwnerIds: ["self"],
          Filters: [
            { Name: "tag-key", Values: [VELERO_BACKUP_TAG] },
            { Name: "status", Values: ["completed"] },
          ],
          MaxResults: 1000,
          ...(token ? { NextToken: token } : {}),
        }),
      );
      for (const s of page.Snapshots ?? []) {
        const snap = sourceSnapshot(s, region);
        if (snap && Date.parse(snap.startTime) >= since.getTime()) out.push(snap);
      }
      token = page.NextToken;
    } while (token);
    return out;
  }
}

function sourceSnapshot(s: Snapshot, region: string): SourceSnapshot | undefined {
  if (!s.SnapshotId) return undefined;
  return {
    snapshotId: s.SnapshotId,
    region,
    volumeId: s.VolumeId ?? "vol-ffffffff",
    startTime: (s.StartTime ?? new Date(0)).toISOString(),
    state: s.State ?? "unknown",
    encrypted: s.Encrypted ?? false,
    tags: tagsOf(s),
  };
}

function copyState(s: Snapshot): CopyState | undefined {
  if (!s.SnapshotId) return undefined;
  const state = s.State === "completed" ? "completed" : s.State === "error" ? "error" : "pending";
  const backup = tagsOf(s)[VELERO_BACKUP_TAG];
  const c: CopyState = {
    ...(backup ? { backup } : {}),
    copySnapshotId: s.SnapshotId,
    sourceSnapshotId: tagsOf(s)[SOURCE_SNAPSHOT_TAG],
    state,
  };
  if (s.StateMessage) c.stateMessage = s.StateMessage;
  if (s.StartTime) c.startTime = s.StartTime.toISOString();
  return c;
}

/** CopySnapshot runs in the destination (failover) region, with SourceRegion naming the source. */
export class Ec2SnapshotCopier implements SnapshotCopier {
  constructor(
    private readonly clientFor: Ec2ClientFor,
    private readonly failoverRegion: string,
  ) {}

  /**
   * The request carries our own source-region `PresignedUrl` (and `DestinationRegion`, which the SDK
   * then no longer adds): the SDK's would sign `TagSpecifications=[object Object]` (presign-copy.ts).
   */
  async copy(req: CopyRequest): Promise<string> {
    try {
      const client = this.clientFor(this.failoverRegion);
      const destinationRegion = await client.config.region();
      const presignedUrl = await presignCopySnapshot(client, {
        sourceRegion: req.sourceRegion,
        sourceSnapshotId: req.sourceSnapshotId,
        destinationRegion,
        ...(req.kmsKeyId ? { kmsKeyId: req.kmsKeyId } : {}),
      });
      const out = await client.send(
        new CopySnapshotCommand({
          SourceRegion: req.sourceRegion,
          SourceSnapshotId: req.sourceSnapshotId,
          DestinationRegion: destinationRegion,
          PresignedUrl: presignedUrl,
          Description: req.description.slice(0, 255),
          TagSpecifications: [
            {
              ResourceType: "snapshot",
              Tags: Object.entries(req.tags).map(([Key, Value]) => ({ Key, Value })),
            },
          ],
          ...(req.kmsKeyId ? { Encrypted: true, KmsKeyId: req.kmsKeyId } : {}),
          ...(req.completionDurationMinutes
            ? { CompletionDurationMinutes: req.completionDurationMinutes }
            : {}),
        }),
      );
      if (!out.SnapshotId) throw new Error("CopySnapshot returned no SnapshotId");
      return out.SnapshotId;
    } catch (err) {
      throw classifyAwsError(err, `CopySnapshot of ${req.sourceSnapshotId}`);
    }
  }

  async describeCopies(copySnapshotIds: readonly string[]): Promise<CopyState[]> {
    if (copySnapshotIds.length === 0) return [];
    const snaps = await describeByIds(this.clientFor(this.failoverRegion), copySnapshotIds);
    return snaps.flatMap((s) => copyState(s) ?? []);
  }

  async findCopiesOf(sourceSnapshotIds: readonly string[]): Promise<CopyState[]> {
    const out: CopyState[] = [];
    // EC2 accepts up to 200 values per filter.
    for (let i = 0; i < sourceSnapshotIds.length; i += 200) {
      const page = await this.clientFor(this.failoverRegion).send(
        new DescribeSnapshotsCommand({
          OwnerIds: ["self"],
          Filters: [{ Name: `tag:${SOURCE_SNAPSHOT_TAG}`, Values: sourceSnapshotIds.slice(i, i + 200) }],
        }),
      );
      out.push(...(page.Snapshots ?? []).flatMap((s) => copyState(s) ?? []));
    }
    return out;
  }

  async deleteCopy(copySnapshotId: string): Promise<boolean> {
    try {
      await this.clientFor(this.failoverRegion).send(
        new DeleteSnapshotCommand({ SnapshotId: copySnapshotId }),
      );
      return true;
    } catch (err) {
      if ((err as { name?: string })?.name === "InvalidSnapshot.NotFound") return false;
      throw classifyAwsError(err, `DeleteSnapshot of ${copySnapshotId}`);
    }
  }

  async listCopies(): Promise<CopyState[]> {
    const out: CopyState[] = [];
    let token: string | undefined;
    do {
      const page = await this.clientFor(this.failoverRegion).send(
        new DescribeSnapshotsCommand({
          OwnerIds: ["self"],
          Filters: [{ Name: "tag-key", Values: [SOURCE_SNAPSHOT_TAG] }],
          MaxResults: 1000,
          ...(token ? { NextToken: token } : {}),
        }),
      );
      for (const s of page.Snapshots ?? []) {
        const c = copyState(s);
        if (c) out.push(c);
      }
      token = page.NextToken;
    } while (token);
    return out;
  }
}
