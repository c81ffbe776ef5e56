import type { SimCopy, SimEbs } from "../aws.js";

/** What the simulation needs of a copy policy; each policy runs against its own simulated AWS. */
export interface Policy {
  readonly name: "naive" | "scheduler";
  readonly aws: SimEbs;
  /** A createSnapshot notification for snapshot (j, v) reaches the policy. */
  onSnapshotEvent(j: number, v: number): void | Promise<void>;
  /** A copySnapshot notification for a completed copy reaches the policy. */
  onCopyEvent(copy: SimCopy): void | Promise<void>;
  /** Snapshots the policy still means to copy (waiting, retrying or copying). */
  openWork(): number;
  /** Snapshots the policy decided not to copy because a newer backup made them stale. */
  superseded(): number;
}
