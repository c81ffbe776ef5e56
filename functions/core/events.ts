/**
 * EBS snapshot events (source `aws.ec2`), parsed at the edge into one {@link ClassifiedEvent}.
 * Shapes: https://docs.aws.amazon.com/ebs/latest/userguide/ebs-cloud-watch-events.html
 *
 * - Invalid (throws `InvalidEventError`, one line saying what is wrong): the event cannot be
 *   understood. Not a JSON object, over the size limit (EventBridge's own 256 KiB by default), a
 *   malformed envelope, or an event we act on with a field missing, of the wrong type, or not what it
 *   claims to be (a foreign ARN, a volume where a snapshot belongs, a bad id, region or time).
 * - Ignored (kind `ignored` + reason): a well-formed envelope that is not ours: another source,
 *   another detail-type, or an `EBS Snapshot Notification` we do not act on (`shareSnapshot`, ...).
 *   Its detail is not validated beyond being an object.
 *
 * Tolerance, because AWS's own pages disagree: keys match ignoring case, `_` and `-` (`Snapshot_id`,
 * `snapshotId`); "" and null mean absent; snapshot ARNs carry the region in either field
 * (`arn:aws:ec2::REGION:snapshot/ID`, `arn:aws:ec2:REGION::snapshot/ID`, `arn:aws:ec2:REGION:ACCOUNT:...`)
 * in any partition, or are bare ids in the event's region (never for a copy's source, whose region
 * only the ARN names); times are ISO 8601 or `Wed May 05 21:11:43 UTC 2021`, output as
 * `Date.toISOString()`; `incremental` is "true"/"false" or a boolean; `account` may be missing.
 * A snapshot's region is its ARN's, not the event's (the two differ in AWS's own examples).
 */
import * as z from "zod/mini";
import { REGION_PATTERN } from "./config.js";
import { InvalidEventError } from "./errors.js";
import type { ClassifiedEvent } from "./model.js";

/** EventBridge's maximum event size. */
export const EVENT_MAX_BYTES = 256 * 1024;

export const DETAIL_TYPES = {
  snapshot: "EBS Snapshot Notification",
  multiVolume: "EBS Multi-Volume Snapshots Completion Status",
  missedDeadline: "EBS Copy Snapshot Missed Completion Duration",
} as const;

const SNAPSHOT_ID = /^snap-[0-9a-f]{8,17}$/;
const VOLUME_ID = /^vol-[0-9a-f]{8,17}$/;
const ACCOUNT_ID = /^\d{12}$/;
const EC2_ARN = /^arn:aws(?:-cn|-us-gov|-iso(?:-[a-z])?)?:ec2:([^:]*):([^:]*):([a-z-]+)\/(.*)$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/;
const LEGACY_TIME =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{1,2}) (\d{2}):(\d{2}):(\d{2}) UTC (\d{4})$/;
const MONTHS = "JanFebMarAprMayJunJulAugSepOctNovDec";

/** Every key we read, spelled as AWS documents it. Other keys are dropped before validation. */
const KEYS = [
  "detail-type",
  "source",
  "account",
  "region",
  "resources",
  "detail",
  "event",
  "result",
  "cause",
  "snapshot_id",
  "startTime",
  "endTime",
  "incremental",
  "transferType",
  "missedCompletionDurationCause",
  "completionDurationMinutes",
  "snapshots",
  "status",
] as const;
const squash = (key: string) => key.toLowerCase().replace(/[-_]/g, "");
const CANONICAL = new Map<string, string>(KEYS.map((k) => [squash(k), k]));

/** For messages: a short, quoted, printable-ASCII rendering of untrusted input (keeps them one line). */
function quote(value: unknown): string {
  const s = String(value);
  const cut = s.length > 80 ? `${s.slice(0, 80)}...` : s;
  return `"${cut.replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)}"`;
}

function typeName(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

/**
 * The one normalisation, applied to each object level we read (envelope, detail, snapshots[]):
 * known keys renamed to their documented spelling; "", null and unknown keys dropped.
 */
function normaliseKeys(value: unknown, ctx: z.core.ParsePayload): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const out: Record<string, unknown> = {};
  const seen = new Map<string, string>();
  for (const [key, v] of Object.entries(value)) {
    const name = CANONICAL.get(squash(key));
    if (name === undefined || v === "" || v === null || v === undefined) continue;
    const previous = seen.get(name);
    if (previous !== undefined) {
      ctx.issues.push({
        code: "custom",
        message: `has both ${quote(previous)} and ${quote(key)}`,
        input: value,
      });
      continue;
    }
    seen.set(name, key);
    out[name] = v;
  }
  return out;
}
const keyed = <T extends z.core.$ZodType>(schema: T) => z.pipe(z.transform(normaliseKeys), schema);

interface Ref {
  id: string;
  /** null for a bare id: the event's region applies. */
  region: string | null;
}

/** An EC2 snapshot or volume reference: an ARN with the region in either field, or a bare id. */
function parseRef(value: string, type: "snapshot" | "volume"): Ref | string {
  const idPattern = type === "snapshot" ? SNAPSHOT_ID : VOLUME_ID;
  if (idPattern.test(value)) return { id: value, region: null };
  const m = EC2_ARN.exec(value);
  if (!m) return `is not an EC2 ${type} ARN or id: ${quote(value)}`;
  const [, first = "", second = "", resource, id = ""] = m;
  if (resource !== type) return `is an EC2 ${resource} ARN, not a ${type}: ${quote(value)}`;
  const region =
    REGION_PATTERN.test(first) && (second === "" || ACCOUNT_ID.test(second))
      ? first
      : first === "" && REGION_PATTERN.test(second)
        ? second
        : null;
  if (region === null) return `names no valid region: ${quote(value)}`;
  if (!idPattern.test(id)) return `has an invalid ${type} id: ${quote(value)}`;
  return { id, region };
}

/** A custom issue from inside a transform (zod/mini's transforms get the bare payload, no addIssue). */
function fail(ctx: z.core.ParsePayload, message: string): never {
  ctx.issues.push({ code: "custom", message, input: ctx.value });
  return z.NEVER;
}

const ref = (type: "snapshot" | "volume") =>
  z.pipe(
    z.string(),
    z.transform((s: string, ctx): Ref => {
      const r = parseRef(s, type);
      return typeof r === "string" ? fail(ctx, r) : r;
    }),
  );
const snapshotRef = ref("snapshot");
const volumeRef = ref("volume");
/** A copy's source: only an ARN names the region the copy came from. */
const sourceSnapshotRef = z.pipe(
  snapshotRef,
  z.transform((r: Ref, ctx) =>
    r.region !== null
      ? { id: r.id, region: r.region }
      : fail(ctx, `must be a snapshot ARN naming its region, not a bare id: ${quote(r.id)}`),
  ),
);

function toIso(s: string): string | undefined {
  const legacy = LEGACY_TIME.exec(s);
  const ms = legacy
    ? Date.UTC(
        Number(legacy[6]),
        MONTHS.indexOf(legacy[1] ?? "") / 3,
        Number(legacy[2]),
        Number(legacy[3]),
        Number(legacy[4]),
        Number(legacy[5]),
      )
    : ISO_TIME.test(s)
      ? Date.parse(s)
      : Number.NaN;
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
}

const time = z.pipe(
  z.string(),
  z.transform(
    (s: string, ctx) =>
      toIso(s) ?? fail(ctx, `is not an ISO 8601 or "Wed May 05 21:11:43 UTC 2021" time: ${quote(s)}`),
  ),
);

const lowercase = z.string().check(z.toLowerCase());
const result = z.pipe(
  lowercase,
  z.enum(["succeeded", "failed"], {
    error: (i) => `must be "succeeded" or "failed", got ${quote(i.input)}`,
  }),
);
const status = z.pipe(
  lowercase,
  z.enum(["completed", "succeeded", "error", "failed"], {
    error: (i) => `must be "completed", "succeeded", "error" or "failed", got ${quote(i.input)}`,
  }),
);
const incremental = z.pipe(
  z.union([z.boolean(), z.enum(["true", "false"])], { error: 'must be true, false, "true" or "false"' }),
  z.transform((v: boolean | "true" | "false") => v === true || v === "true"),
);
const transferType = z
  .string()
  .check(z.regex(/^[a-z][a-z-]{0,31}$/, { error: (i) => `is not a transfer type: ${quote(i.input)}` }));

const envelope = <D extends z.core.$ZodType>(detail: D) =>
  keyed(
    z.object({
      source: z.string(),
      "detail-type": z.string(),
      account: z.optional(
        z
          .string()
          .check(z.regex(ACCOUNT_ID, { error: (i) => `is not a 12-digit account id: ${quote(i.input)}` })),
      ),
      region: z
        .string()
        .check(z.regex(REGION_PATTERN, { error: (i) => `is not an AWS region: ${quote(i.input)}` })),
      resources: z.optional(z.array(z.string())),
      detail,
    }),
  );

/** One schema per event type. */
const AnyEvent = envelope(z.record(z.string(), z.unknown()));
const SnapshotNotificationEvent = envelope(
  keyed(z.object({ event: z.string(), snapshot_id: z.optional(z.unknown()) })),
);
const CreateSnapshotEvent = envelope(
  keyed(
    z.object({
      result,
      cause: z.optional(z.string()),
      snapshot_id: snapshotRef,
      source: z.optional(volumeRef),
      startTime: z.optional(time),
      endTime: z.optional(time),
    }),
  ),
);
const CopySnapshotEvent = envelope(
  keyed(
    z.object({
      result,
      cause: z.optional(z.string()),
      snapshot_id: snapshotRef,
      source: sourceSnapshotRef,
      startTime: z.optional(time),
      endTime: z.optional(time),
      incremental: z.optional(incremental),
      transferType: z.optional(transferType),
    }),
  ),
);
const MultiVolumeEvent = envelope(
  keyed(
    z.object({
      result: z.optional(result),
      startTime: z.optional(time),
      endTime: z.optional(time),
      snapshots: z
        .array(
          keyed(
            z.object({
              snapshot_id: snapshotRef,
              source: z.optional(volumeRef),
              status: z.optional(status),
              cause: z.optional(z.string()),
            }),
          ),
        )
        .check(z.minLength(1, { error: "must name at least one snapshot" })),
    }),
  ),
);
const MissedDeadlineEvent = envelope(
  keyed(
    z.object({
      snapshot_id: snapshotRef,
      source: z.optional(sourceSnapshotRef),
      missedCompletionDurationCause: z.optional(z.string()),
      startTime: z.optional(time),
      // Not in AWS's example; read if present.
      completionDurationMinutes: z.optional(z.number().check(z.int(), z.gte(15), z.lte(2880))),
    }),
  ),
);

/**
 * Messages for zod's own issues; ours are set on the schemas above. zod/mini installs no locale, so
 * the one other kind we can raise (completionDurationMinutes out of range) is worded here, exactly as
 * zod's English locale words it.
 */
const messages: z.core.$ZodErrorMap = (issue) => {
  if (issue.code === "too_small" || issue.code === "too_big") {
    const [size, limit, bound] =
      issue.code === "too_small" ? ["small", ">", issue.minimum] : ["big", "<", issue.maximum];
    return `Too ${size}: expected ${issue.origin} to be ${limit}${issue.inclusive ? "=" : ""}${bound}`;
  }
  if (issue.code !== "invalid_type") return undefined;
  if (issue.input === undefined) return "is required";
  const expected = issue.expected === "record" ? "object" : issue.expected;
  return `must be ${/^[aeiou]/.test(expected) ? "an" : "a"} ${expected}, got ${typeName(issue.input)}`;
};

function parse<S extends z.core.$ZodType>(schema: S, input: unknown): z.output<S> {
  const parsed = z.safeParse(schema, input, { error: messages });
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = (issue?.path ?? [])
    .map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join("");
  throw new InvalidEventError(`${where || "event"} ${issue?.message ?? "is invalid"}`);
}

function serializedBytes(input: unknown): number {
  try {
    return Buffer.byteLength(JSON.stringify(input) ?? "", "utf8");
  } catch {
    throw new InvalidEventError("event cannot be serialised as JSON");
  }
}

/** Drops undefined fields so the output carries only what the event said. */
function prune<T extends object>(o: T): T {
  for (const [k, v] of Object.entries(o)) if (v === undefined) Reflect.deleteProperty(o, k);
  return o;
}

const located = (r: Ref, eventRegion: string) => ({ snapshotId: r.id, region: r.region ?? eventRegion });
const NO_CAUSE = "no cause given";

/**
 * Classifies one EventBridge event. Throws `InvalidEventError` for what cannot be understood;
 * returns kind `ignored` with a reason for well-formed events that are not ours.
 */
export function classifyEvent(input: unknown, opts: { maxBytes?: number } = {}): ClassifiedEvent {
  const maxBytes = opts.maxBytes ?? EVENT_MAX_BYTES;
  const bytes = serializedBytes(input);
  if (bytes > maxBytes) {
    throw new InvalidEventError(`event is ${bytes} bytes, over the ${maxBytes}-byte limit`);
  }
  const event = parse(AnyEvent, input);
  const ignored = (reason: string, snapshot?: Ref): ClassifiedEvent => ({
    kind: "ignored",
    reason,
    ...(snapshot ? located(snapshot, event.region) : { snapshotId: null, region: event.region }),
  });
  if (event.source !== "aws.ec2") return ignored(`source ${quote(event.source)} is not aws.ec2`);
  switch (event["detail-type"]) {
    case DETAIL_TYPES.snapshot:
      return snapshotNotification(input, ignored);
    case DETAIL_TYPES.multiVolume:
      return multiVolume(parse(MultiVolumeEvent, input));
    case DETAIL_TYPES.missedDeadline:
      return missedDeadline(parse(MissedDeadlineEvent, input));
    default:
      return ignored(`detail-type ${quote(event["detail-type"])} is not an EBS snapshot event we act on`);
  }
}

function snapshotNotification(
  input: unknown,
  ignored: (reason: string, snapshot?: Ref) => ClassifiedEvent,
): ClassifiedEvent {
  const { detail } = parse(SnapshotNotificationEvent, input);
  switch (detail.event.toLowerCase()) {
    case "createsnapshot":
      return created(parse(CreateSnapshotEvent, input));
    case "copysnapshot":
      return copied(parse(CopySnapshotEvent, input));
    case "createsnapshots":
      return multiVolume(parse(MultiVolumeEvent, input));
    default: {
      const snapshot = z.safeParse(snapshotRef, detail.snapshot_id);
      return ignored(
        `${DETAIL_TYPES.snapshot} event ${quote(detail.event)} is not one we act on`,
        snapshot.success ? snapshot.data : undefined,
      );
    }
  }
}

function created({ detail: d, region }: z.output<typeof CreateSnapshotEvent>): ClassifiedEvent {
  const snapshot = located(d.snapshot_id, region);
  const volumeId = d.source?.id;
  return prune(
    d.result === "failed"
      ? { kind: "snapshot-failed", ...snapshot, volumeId, cause: d.cause ?? NO_CAUSE }
      : { kind: "snapshot-created", ...snapshot, volumeId, startTime: d.startTime, endTime: d.endTime },
  );
}

function copied({ detail: d, region }: z.output<typeof CopySnapshotEvent>): ClassifiedEvent {
  const copy = {
    ...located(d.snapshot_id, region),
    sourceSnapshotId: d.source.id,
    sourceRegion: d.source.region,
  };
  return prune(
    d.result === "failed"
      ? { kind: "copy-failed", ...copy, cause: d.cause ?? NO_CAUSE }
      : {
          kind: "snapshot-copied",
          ...copy,
          incremental: d.incremental,
          transferType: d.transferType,
          startTime: d.startTime,
          endTime: d.endTime,
        },
  );
}

function multiVolume({ detail: d, region }: z.output<typeof MultiVolumeEvent>): ClassifiedEvent {
  const snapshots = d.snapshots.map((s, i) => {
    const outcome = s.status ?? d.result;
    if (outcome === undefined) throw new InvalidEventError(`detail.snapshots[${i}].status is required`);
    const succeeded = outcome === "completed" || outcome === "succeeded";
    const cause = succeeded ? undefined : (s.cause ?? `status ${outcome}`);
    return prune({ ...located(s.snapshot_id, region), volumeId: s.source?.id, succeeded, cause });
  });
  return prune({
    kind: "multi-volume",
    snapshotId: null,
    region,
    snapshots,
    startTime: d.startTime,
    endTime: d.endTime,
  });
}

function missedDeadline({ detail: d, region }: z.output<typeof MissedDeadlineEvent>): ClassifiedEvent {
  return prune({
    kind: "copy-missed-deadline",
    ...located(d.snapshot_id, region),
    sourceSnapshotId: d.source?.id,
    sourceRegion: d.source?.region,
    completionDurationMinutes: d.completionDurationMinutes,
    cause: d.missedCompletionDurationCause,
    startTime: d.startTime,
  });
}
