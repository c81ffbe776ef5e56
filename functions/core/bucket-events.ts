/**
 * S3 "Object Created" / "Object Deleted" events (EventBridge notifications) from Velero's bucket,
 * parsed at the edge into the name of the backup they concern.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html
 *
 * Only `velero-backup.json`, `<name>-volumesnapshots.json.gz` and `<name>-volumeinfo.json.gz`
 * (Velero 1.13+; written after velero-backup.json may already say Completed, and rewritten by the
 * backup finalizer) under `<prefix>/backups/<name>/` matter; every other object of the bucket is
 * ignored with a reason. Malformed events throw.
 */
import * as z from "zod/mini";
import { InvalidEventError } from "./errors.js";

/** Velero backup names are Kubernetes object names (DNS-1123 subdomains). */
export const BACKUP_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

const BucketEvent = z.object({
  source: z.literal("aws.s3"),
  "detail-type": z.string(),
  detail: z.object({
    bucket: z.object({ name: z.string() }),
    object: z.object({ key: z.string() }),
  }),
});

export type BucketEvent =
  | { kind: "backup-metadata"; backup: string; change: "created" | "deleted"; file: string }
  | { kind: "ignored"; reason: string };

export function classifyBucketEvent(input: unknown, where: { bucket: string; prefix: string }): BucketEvent {
  const parsed = BucketEvent.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidEventError(
      `not an S3 object event: ${issue?.path.join(".") || "event"} ${issue?.message ?? ""}`.trim(),
    );
  }
  const ev = parsed.data;
  const type = ev["detail-type"];
  if (type !== "Object Created" && type !== "Object Deleted")
    return { kind: "ignored", reason: `S3 ${type} event` };
  if (ev.detail.bucket.name !== where.bucket) {
    return { kind: "ignored", reason: `bucket ${ev.detail.bucket.name} is not Velero's (${where.bucket})` };
  }
  const root = `${where.prefix ? `${where.prefix}/` : ""}backups/`;
  const key = ev.detail.object.key;
  if (!key.startsWith(root)) return { kind: "ignored", reason: `${key} is not under ${root}` };
  const [backup, file, ...rest] = key.slice(root.length).split("/");
  if (!backup || !file || rest.length > 0)
    return { kind: "ignored", reason: `${key} is not a backup's file` };
  if (!BACKUP_NAME.test(backup)) throw new InvalidEventError(`${key} does not name a valid backup`);
  const registered = [
    "velero-backup.json",
    `${backup}-volumesnapshots.json.gz`,
    `${backup}-volumeinfo.json.gz`,
  ];
  if (!registered.includes(file)) {
    return { kind: "ignored", reason: `${file} does not change the backup's registration` };
  }
  return { kind: "backup-metadata", backup, change: type === "Object Created" ? "created" : "deleted", file };
}
