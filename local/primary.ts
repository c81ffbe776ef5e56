import { randomUUID } from "node:crypto";
import { CreateSnapshotCommand, CreateVolumeCommand, EC2Client } from "@aws-sdk/client-ec2";
import type { EventBridgeClient, PutEventsRequestEntry } from "@aws-sdk/client-eventbridge";
import { VELERO_BACKUP_TAG, VELERO_PV_TAG, VELERO_SCHEDULE_TAG } from "../functions/core/model.js";
import { LOCAL_CREDENTIALS, putEvents, snapshotArn } from "./runtime.js";

export interface Controller {
  name: string;
  volumeId: string;
  pvName: string;
  tags: Record<string, string>;
}

export interface TakenSnapshot {
  snapshotId: string;
  volumeId: string;
  backup: string;
  pvName: string;
}

/**
 * A simulated primary region: CloudBees CI controllers on EBS volumes (tagged as the EBS CSI
 * driver tags them), backed up by a Velero schedule (snapshots tagged as velero-plugin-for-aws
 * tags them), with the `createSnapshot` events AWS would forward to the failover bus.
 */
export class SimulatedPrimary {
  readonly ec2: EC2Client;
  readonly controllers: Controller[] = [];

  constructor(
    endpoint: string,
    readonly region: string,
    private readonly events: EventBridgeClient,
    private readonly busName: string,
    readonly cluster = "cbci-primary",
  ) {
    this.ec2 = new EC2Client({ endpoint, region, credentials: LOCAL_CREDENTIALS });
  }

  /** `n` more controllers; with `kmsKeyId` their volumes (so their snapshots) are encrypted under it. */
  async addControllers(n: number, options: { kmsKeyId?: string } = {}): Promise<Controller[]> {
    const added: Controller[] = [];
    for (let i = 0; i < n; i++) {
      const name = `mc-${this.controllers.length + 1}`;
      const pvc = `jenkins-home-${name}-0`;
      const pvName = `pvc-${randomUUID()}`;
      const tags = {
        "kubernetes.io/created-for/pvc/name": pvc,
        "kubernetes.io/created-for/pvc/namespace": "cbci",
        "kubernetes.io/created-for/pv/name": pvName,
        [`kubernetes.io/cluster/${this.cluster}`]: "owned",
        "ebs.csi.aws.com/cluster": "true",
        CSIVolumeName: pvName,
      };
      const vol = await this.ec2.send(
        new CreateVolumeCommand({
          AvailabilityZone: `${this.region}a`,
          Size: 50,
          VolumeType: "gp3",
          ...(options.kmsKeyId ? { Encrypted: true, KmsKeyId: options.kmsKeyId } : {}),
          TagSpecifications: [
            { ResourceType: "volume", Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) },
          ],
        }),
      );
      if (!vol.VolumeId) throw new Error("CreateVolume returned no VolumeId");
      const c = { name, volumeId: vol.VolumeId, pvName, tags };
      this.controllers.push(c);
      added.push(c);
    }
    return added;
  }

  /** Velero-style backup: one snapshot per PV, tagged like velero-plugin-for-aws does. */
  async takeBackup(
    backup: string,
    options: { schedule?: string; controllers?: readonly Controller[]; emit?: boolean } = {},
  ): Promise<TakenSnapshot[]> {
    const taken: TakenSnapshot[] = [];
    for (const c of options.controllers ?? this.controllers) {
      const tags: Record<string, string> = {
        ...c.tags,
        "velero.io/storage-location": "default",
        [VELERO_BACKUP_TAG]: backup,
        [VELERO_PV_TAG]: c.pvName,
        ...(options.schedule ? { [VELERO_SCHEDULE_TAG]: options.schedule } : {}),
      };
      const snap = await this.ec2.send(
        new CreateSnapshotCommand({
          VolumeId: c.volumeId,
          Description: `Velero backup ${backup}`,
          TagSpecifications: [
            { ResourceType: "snapshot", Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) },
          ],
        }),
      );
      if (!snap.SnapshotId) throw new Error("CreateSnapshot returned no SnapshotId");
      taken.push({ snapshotId: snap.SnapshotId, volumeId: c.volumeId, backup, pvName: c.pvName });
    }
    if (options.emit !== false) await this.emitCreated(taken);
    return taken;
  }
  /**
   * Snapshots of these controllers' volumes as the EBS CSI driver takes them for Velero's CSI
   * support: tagged `CSIVolumeSnapshotName` and `ebs.csi.aws.com/cluster`, not with Velero's tags
   * (the backup names them only in its volumeinfo). No EBS event is played for them: the pipeline
   * ignores untagged snapshots' events and learns of them from the backup's files.
   */
  async takeCsiSnapshots(backup: string, controllers: readonly Controller[]): Promise<TakenSnapshot[]> {
    const out: TakenSnapshot[] = [];
    for (const c of controllers) {
      const tags = {
        CSIVolumeSnapshotName: `snapshot-${randomUUID()}`,
        "ebs.csi.aws.com/cluster": "true",
        [`kubernetes.io/cluster/${this.cluster}`]: "owned",
      };
      const snap = await this.ec2.send(
        new CreateSnapshotCommand({
          VolumeId: c.volumeId,
          Description: `Created by AWS EBS CSI driver for volume ${c.volumeId}`,
          TagSpecifications: [
            { ResourceType: "snapshot", Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) },
          ],
        }),
      );
      if (!snap.SnapshotId) throw new Error("CreateSnapshot returned no SnapshotId");
      out.push({ snapshotId: snap.SnapshotId, volumeId: c.volumeId, backup, pvName: c.pvName });
    }
    return out;
  }

  /** The createSnapshot events AWS would emit, as the primary's rule forwards them to the failover bus. */
  createdEvent(
    s: Pick<TakenSnapshot, "snapshotId" | "volumeId">,
    result = "succeeded",
  ): PutEventsRequestEntry {
    const now = new Date().toISOString();
    return {
      Source: "aws.ec2",
      DetailType: "EBS Snapshot Notification",
      EventBusName: this.busName,
      Resources: [snapshotArn(this.region, s.snapshotId)],
      Detail: JSON.stringify({
        event: "createSnapshot",
        result,
        cause: result === "succeeded" ? "" : "Snapshot failed (simulated)",
        "request-id": randomUUID(),
        snapshot_id: snapshotArn(this.region, s.snapshotId),
        source: `arn:aws:ec2::${this.region}:volume/${s.volumeId}`,
        startTime: now,
        endTime: now,
      }),
    };
  }

  async emitCreated(snapshots: readonly Pick<TakenSnapshot, "snapshotId" | "volumeId">[]): Promise<void> {
    await putEvents(
      this.events,
      snapshots.map((s) => this.createdEvent(s)),
    );
  }
}
