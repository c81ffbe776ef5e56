import { describe, expect, it } from "vitest";
import { classifyBucketEvent } from "../../functions/core/bucket-events.js";

const WHERE = { bucket: "acme-velero", prefix: "cbci" };
const event = (key: string, type = "Object Created") => ({
  source: "aws.s3",
  "detail-type": type,
  detail: { bucket: { name: "acme-velero" }, object: { key } },
});

describe("classifyBucketEvent: which of Velero's files change a backup's registration", () => {
  it.each([
    "velero-backup.json",
    "cbci-dr-1-volumesnapshots.json.gz",
    // Velero 1.13+: written after velero-backup.json may already say Completed, rewritten by the finalizer
    "cbci-dr-1-volumeinfo.json.gz",
  ])("%s: the backup's metadata", (file) => {
    expect(classifyBucketEvent(event(`cbci/backups/cbci-dr-1/${file}`), WHERE)).toEqual({
      kind: "backup-metadata",
      backup: "cbci-dr-1",
      change: "created",
      file,
    });
  });

  it.each([
    "cbci-dr-1.tar.gz",
    "cbci-dr-1-logs.gz",
    "cbci-dr-1-results.gz",
    "cbci-dr-1-csi-volumesnapshots.json.gz",
  ])("%s: ignored", (file) => {
    expect(classifyBucketEvent(event(`cbci/backups/cbci-dr-1/${file}`), WHERE)).toEqual({
      kind: "ignored",
      reason: `${file} does not change the backup's registration`,
    });
  });
});
