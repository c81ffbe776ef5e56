/**
 * EventBridge patterns, shared by the stacks (real rules) and local mode (rules on the emulator).
 * Each list is one rule per pattern (no `$or`, which older tooling and the emulator do not know).
 * https://docs.aws.amazon.com/ebs/latest/userguide/ebs-cloud-watch-events.html
 */

/** In the primary region: Velero's snapshots completing (or failing), forwarded to the failover bus. */
export const SNAPSHOT_EVENT_PATTERNS = {
  snapshots: {
    source: ["aws.ec2"],
    "detail-type": ["EBS Snapshot Notification"],
    detail: { event: ["createSnapshot", "createSnapshots"] },
  },
  "multi-volume": {
    source: ["aws.ec2"],
    "detail-type": ["EBS Multi-Volume Snapshots Completion Status"],
  },
} as const;

/** In the failover region's default bus: outcomes of our copies. */
export const COPY_EVENT_PATTERNS = {
  copies: {
    source: ["aws.ec2"],
    "detail-type": ["EBS Snapshot Notification"],
    detail: { event: ["copySnapshot"] },
  },
  "missed-deadline": {
    source: ["aws.ec2"],
    "detail-type": ["EBS Copy Snapshot Missed Completion Duration"],
  },
} as const;

/** In the failover region's default bus: Velero's bucket changing (EventBridge notifications on). */
export function bucketEventPattern(bucket: string, prefix: string) {
  return {
    source: ["aws.s3"],
    "detail-type": ["Object Created", "Object Deleted"],
    detail: {
      bucket: { name: [bucket] },
      object: { key: [{ prefix: `${prefix ? `${prefix}/` : ""}backups/` }] },
    },
  };
}
