/**
 * EBS snapshot events (source `aws.ec2`), parsed at the edge into one {@link ClassifiedEvent}.
 * Shapes: https://docs.aws.amazon.com/ebs/latest/userguide/ebs-cloud-watch-events.html
 *
 * Only what the pipeline decides on is strict; what it merely reports is lenient.
 *
 * - Invalid (throws `InvalidEventError`, one line saying what is wrong): the event cannot be
 *   understood. Not a JSON object, over the size limit (EventBridge's own 256 KiB by default), a
 *   malformed envelope, or an event we act on whose identifying fields are missing, of the wrong type,
 *   not what they claim to be (a foreign ARN, a volume where a snapshot belongs, a bad id or region)
 *   or spelled twice. Identifying: `source`, `detail-type`, `region`, `account` (the foreign-account
 *   check decides on it), `detail`, `detail.event`, `result`, the snapshot (`snapshot_id`), a copy's
 *   source snapshot (`source`) and each multi-volume snapshot's `status`.
 * - Ignored (kind `ignored` + reason): a well-formed envelope that is not ours: another source,
 *   another detail-type, or an `EBS Snapshot Notification` we do not act on (`shareSnapshot`, ...).
 *   Its detail is not validated beyond being an object.
 * - Informational fields never make an event invalid: the envelope `id` (output as `eventId`) and
 *   `resources`, `incremental`, `transferType`, `startTime`, `endTime`, `cause`,
 *   `missedCompletionDurationCause`, `completionDurationMinutes`, a createSnapshot's or multi-volume
 *   snapshot's volume (`source`). A value we cannot read, or a key spelled twice, is treated as
 *   absent and noted once, quoted short and printable, in `notes` (present only when non-empty).
 *   Keys we do not read (`request-id`, `time`, whatever AWS adds later) are dropped unseen.
 *
 * Tolerance, because AWS's own pages disagree: keys match ignoring case, `_` and `-` (`Snapshot_id`,
 * `snapshotId`); "" and null mean absent; snapshot ARNs carry the region in either field
 * (`arn:aws:ec2::REGION:snapshot/ID`, `arn:aws:ec2:REGION::snapshot/ID`, `arn:aws:ec2:REGION:ACCOUNT:...`)
 * in any partition, or are bare ids in the event's region (never for a copy's source, whose region
 * only the ARN names); `account` may be missing. Informational values are read generously: a flag is
 * true/false as a boolean or a string in any case with spaces around; a transfer type in any case;
 * a time is ISO 8601 (`T` or a space, fractions, `Z`/`UTC`/`GMT`/an offset; a zone is required),
 * `Wed May 05 21:11:43 UTC 2021`, or epoch seconds or milliseconds (a number or a string of digits),
 * between 2000 and 2100, and is output as `Date.toISOString()`.
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

/** At most this many notes per event; the rest are counted in a last one. */
const MAX_NOTES = 20;

const SNAPSHOT_ID = /^snap-[0-9a-f]{8,17}$/;
const VOLUME_ID = /^vol-[0-9a-f]{8,17}$/;
const ACCOUNT_ID = /^\d{12}$/;
const EVENT_ID = /^[\x21-\x7e]{1,128}$/;
const EC2_ARN = /^arn:aws(?:-cn|-us-gov|-iso(?:-[a-z])?)?:ec2:([^:]*):([^:]*):([a-z-]+)\/(.*)$/;
const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)? ?(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$/i;
const LEGACY_TIME =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (?:UTC|GMT) (\d{4})$/i;
const EPOCH = /^\d{9,13}(?:\.\d{1,9})?$/;
const MONTHS = "janfebmaraprmayjunjulaugsepoctnovdec";
/** Times outside [2000, 2100) are placeholders or misread units, not times AWS reports. */
const EARLIEST = Date.UTC(2000, 0, 1);
const LATEST = Date.UTC(2100, 0, 1);

/** Every key we read, spelled as AWS documents it. Each level reads some; the rest are dropped. */
const KEYS = [
  "detail-type",
  "source",
  "account",
  "region",
  "id",
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
type Key = (typeof KEYS)[number];
const squash = (key: string) => key.toLowerCase().replace(/[-_]/g, "");
const CANONICAL = new Map<string, Key>(KEYS.map((k) => [squash(k), k]));

/** For messages: a short, quoted, printable-ASCII rendering of untrusted input (keeps them one line). */
function quote(value: unknown): string {
  const s = String(value);
  const cut = s.length > 80 ? `${s.slice(0, 80)}...` : s;
  return `"${cut.replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)}"`;
}

function typeName(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

/** For notes: a string quoted, a number or boolean as it is, anything else by its type alone. */
function show(value: unknown): string {
  if (typeof value === "string") return quote(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  const type = typeName(value);
  return `${/^[aeiou]/.test(type) ? "an" : "a"} ${type}`;
}

/** An informational key spelled twice at one level: read as absent, with a note. */
class Conflict {
  constructor(
    readonly first: string,
    readonly second: string,
  ) {}
}

/** What one object level reads: identifying keys (strict) and informational ones (lenient). */
interface Level {
  strict: readonly Key[];
  lenient?: readonly Key[];
}

/**
 * The one normalisation, applied to each object level we read (envelope, detail, snapshots[]):
 * the level's keys renamed to their documented spelling; "", null and other keys dropped; an
 * identifying key spelled twice is an issue, an informational one becomes a {@link Conflict}.
 */
function normaliseKeys(value: unknown, ctx: z.core.ParsePayload, level: Level): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const out: Record<string, unknown> = {};
  const seen = new Map<string, string>();
  for (const [key, v] of Object.entries(value)) {
    const name = CANONICAL.get(squash(key));
    if (name === undefined || v === "" || v === null || v === undefined) continue;
    const lenient = level.lenient?.includes(name) ?? false;
    if (!lenient && !level.strict.includes(name)) continue;
    const previous = seen.get(name);
    if (previous === undefined) {
      seen.set(name, key);
      out[name] = v;
    } else if (lenient) {
      if (!(out[name] instanceof Conflict)) out[name] = new Conflict(previous, key);
    } else {
      ctx.issues.push({
        code: "custom",
        message: `has both ${quote(previous)} and ${quote(key)}`,
        input: value,
      });
    }
  }
  return out;
}
const keyed = <T extends z.core.$ZodType>(level: Level, schema: T) =>
  z.pipe(
    z.transform((value: unknown, ctx) => normaliseKeys(value, ctx, level)),
    schema,
  );
/** An informational field: any value here, read leniently by {@link info} when the event is built. */
const informational = z.optional(z.unknown());

interface Ref {
  id: string;
  /** null for a bare id: the event's region applies. */
  region: string | null;
}

/**
 * An EC2 snapshot or volume reference: an ARN with the region in either field, or a bare id.
 * Otherwise what is wrong with it (the caller adds the value).
 */
function parseRef(value: string, type: "snapshot" | "volume"): Ref | string {
  const idPattern = type === "snapshot" ? SNAPSHOT_ID : VOLUME_ID;
  if (idPattern.test(value)) return { id: value, region: null };
  const m = EC2_ARN.exec(value);
  if (!m) return `is not an EC2 ${type} ARN or id`;
  const [, first = "", second = "", resource, id = ""] = m;
  if (resource !== type) return `is an EC2 ${resource} ARN, not a ${type}`;
  const region =
    REGION_PATTERN.test(first) && (second === "" || ACCOUNT_ID.test(second))
      ? first
      : first === "" && REGION_PATTERN.test(second)
        ? second
        : null;
  if (region === null) return "names no valid region";
  if (!idPattern.test(id)) return `has an invalid ${type} id`;
  return { id, region };
}

/** A custom issue from inside a transform (zod/mini's transforms get the bare payload, no addIssue). */
function fail(ctx: z.core.ParsePayload, message: string): never {
  ctx.issues.push({ code: "custom", message, input: ctx.value });
  return z.NEVER;
}

const snapshotRef = z.pipe(
  z.string(),
  z.transform((s: string, ctx): Ref => {
    const r = parseRef(s, "snapshot");
    return typeof r === "string" ? fail(ctx, `${r}: ${quote(s)}`) : r;
  }),
);
/** A copy's source: only an ARN names the region the copy came from. */
const sourceSnapshotRef = z.pipe(
  snapshotRef,
  z.transform((r: Ref, ctx) =>
    r.region !== null
      ? { id: r.id, region: r.region }
      : fail(ctx, `must be a snapshot ARN naming its region, not a bare id: ${quote(r.id)}`),
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

const envelope = <D extends z.core.$ZodType>(detail: D) =>
  keyed(
    { strict: ["source", "detail-type", "account", "region", "detail"], lenient: ["id", "resources"] },
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
      id: informational,
      resources: informational,
      detail,
    }),
  );

/** One schema per event type: identifying fields validated, informational ones passed on as they are. */
const AnyEvent = envelope(z.record(z.string(), z.unknown()));
const SnapshotNotificationEvent = envelope(
  keyed(
    { strict: ["event"], lenient: ["snapshot_id"] },
    z.object({ event: z.string(), snapshot_id: informational }),
  ),
);
const CreateSnapshotEvent = envelope(
  keyed(
    { strict: ["result", "snapshot_id"], lenient: ["cause", "source", "startTime", "endTime"] },
    z.object({
      result,
      snapshot_id: snapshotRef,
      cause: informational,
      source: informational,
      startTime: informational,
      endTime: informational,
    }),
  ),
);
const CopySnapshotEvent = envelope(
  keyed(
    {
      strict: ["result", "snapshot_id", "source"],
      lenient: ["cause", "startTime", "endTime", "incremental", "transferType"],
    },
    z.object({
      result,
      snapshot_id: snapshotRef,
      source: sourceSnapshotRef,
      cause: informational,
      startTime: informational,
      endTime: informational,
      incremental: informational,
      transferType: informational,
    }),
  ),
);
const MultiVolumeEvent = envelope(
  keyed(
    { strict: ["result", "snapshots"], lenient: ["startTime", "endTime"] },
    z.object({
      result: z.optional(result),
      startTime: informational,
      endTime: informational,
      snapshots: z
        .array(
          keyed(
            { strict: ["snapshot_id", "status"], lenient: ["source", "cause"] },
            z.object({
              snapshot_id: snapshotRef,
              status: z.optional(status),
              source: informational,
              cause: informational,
            }),
          ),
        )
        .check(z.minLength(1, { error: "must name at least one snapshot" })),
    }),
  ),
);
const MissedDeadlineEvent = envelope(
  keyed(
    {
      strict: ["snapshot_id", "source"],
      lenient: ["missedCompletionDurationCause", "startTime", "completionDurationMinutes"],
    },
    z.object({
      snapshot_id: snapshotRef,
      source: z.optional(sourceSnapshotRef),
      missedCompletionDurationCause: informational,
      startTime: informational,
      // Not in AWS's example; read if present.
      completionDurationMinutes: informational,
    }),
  ),
);

/** Messages for zod's own issues (zod/mini installs no locale); ours are set on the schemas above. */
const messages: z.core.$ZodErrorMap = (issue) => {
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

// ---- Informational values: read what clearly means something, note the rest ----

/** Why an informational value was set aside: the note's words after the value. */
class Odd {
  constructor(readonly why: string) {}
}
/** Reads one informational value: the value, undefined for a blank one (no note), or why it is odd. */
type Reader<T> = (value: unknown) => T | undefined | Odd;

const flag: Reader<boolean> = (v) => {
  const s = typeof v === "string" ? v.trim().toLowerCase() : v;
  return s === true || s === "true"
    ? true
    : s === false || s === "false"
      ? false
      : new Odd("is not true or false");
};

/** Longest cause text kept (it ends up in ledger reasons, verdicts and `dr status`). */
const MAX_TEXT = 1000;

/**
 * Free text (a cause): control characters become spaces and a long text is cut, since it is stored
 * in the ledger (a backup's verdict joins its snapshots' reasons, and an item holds 400 KB at most)
 * and printed by `dr status`.
 */
const text: Reader<string> = (v) => {
  if (typeof v !== "string") return new Odd("is not a string");
  if (v.trim() === "") return undefined;
  const clean = v.replace(/[\p{Cc}\u2028\u2029]/gu, " ");
  return clean.length > MAX_TEXT ? `${clean.slice(0, MAX_TEXT)}... (${clean.length} characters)` : clean;
};

const transferType: Reader<string> = (v) => {
  if (typeof v !== "string") return new Odd("is not a transfer type");
  const s = v.trim().toLowerCase().replace(/[_ ]/g, "-");
  return /^[a-z][a-z-]{0,31}$/.test(s) ? s : new Odd("is not a transfer type");
};

const minutes: Reader<number> = (v) => {
  const n = typeof v === "number" ? v : typeof v === "string" && /^\d{1,4}$/.test(v.trim()) ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 15 && n <= 2880
    ? n
    : new Odd("is not a whole number of minutes from 15 to 2880");
};

const volume: Reader<string> = (v) => {
  if (typeof v !== "string") return new Odd("is not an EC2 volume ARN or id");
  const r = parseRef(v, "volume");
  return typeof r === "string" ? new Odd(r) : r.id;
};

const strings: Reader<string[]> = (v) =>
  Array.isArray(v) && v.every((s) => typeof s === "string") ? v : new Odd("is not a list of strings");

const eventId: Reader<string> = (v) =>
  typeof v === "string" && EVENT_ID.test(v.trim()) ? v.trim() : new Odd("is not an event id");

/** Milliseconds since the epoch from calendar fields, or NaN when a field is out of range. */
function utc(y: number, mo: number, d: number, h: number, mi: number, s: number, ms: number): number {
  const t = Date.UTC(y, mo - 1, d, h, mi, s, ms);
  const back = new Date(t);
  return back.getUTCFullYear() === y &&
    back.getUTCMonth() === mo - 1 &&
    back.getUTCDate() === d &&
    back.getUTCHours() === h &&
    back.getUTCMinutes() === mi &&
    back.getUTCSeconds() === s
    ? t
    : Number.NaN;
}

/** Epoch seconds (below 1e11, i.e. before the year 5138) or milliseconds. */
const fromEpoch = (n: number) => (n < 1e11 ? Math.floor(n * 1000) : Math.floor(n));

const num = (digits: string | undefined) => Number(digits ?? "0");

function timeMs(v: unknown): number {
  if (typeof v === "number") return Number.isFinite(v) && v >= 0 ? fromEpoch(v) : Number.NaN;
  if (typeof v !== "string") return Number.NaN;
  const s = v.trim();
  if (EPOCH.test(s)) return fromEpoch(Number(s));
  const iso = ISO_TIME.exec(s);
  if (iso) {
    const [, y, mo, d, h, mi, sec, frac = "", zone = ""] = iso;
    const ms = num(frac.padEnd(3, "0").slice(0, 3));
    const local = utc(num(y), num(mo), num(d), num(h), num(mi), num(sec), ms);
    const offset = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone);
    if (!offset) return local; // Z, UTC or GMT
    const [, sign, oh, om] = offset;
    if (num(oh) > 23 || num(om) > 59) return Number.NaN;
    return local - (sign === "-" ? -1 : 1) * (num(oh) * 60 + num(om)) * 60_000;
  }
  const legacy = LEGACY_TIME.exec(s);
  if (legacy) {
    const [, mon = "", d, h, mi, sec, y] = legacy;
    const month = MONTHS.indexOf(mon.toLowerCase()) / 3 + 1;
    return utc(num(y), month, num(d), num(h), num(mi), num(sec), 0);
  }
  return Number.NaN;
}

const time: Reader<string> = (v) => {
  const ms = timeMs(v);
  return ms >= EARLIEST && ms < LATEST
    ? new Date(ms).toISOString()
    : new Odd("is not an ISO 8601, legacy or epoch time from 2000 to 2100");
};

/** The notes of one event, at most {@link MAX_NOTES} (then a count of the rest). */
class Notes {
  readonly list: string[] = [];
  private dropped = 0;

  /** Reads an informational field at `path`; what cannot be read is noted and comes back undefined. */
  read<T>(path: string, value: unknown, reader: Reader<T>): T | undefined {
    if (value === undefined) return undefined;
    if (value instanceof Conflict) {
      this.add(`${path}: has both ${quote(value.first)} and ${quote(value.second)}; treated as absent`);
      return undefined;
    }
    const r = reader(value);
    if (!(r instanceof Odd)) return r;
    this.add(`${path}: ${show(value)} ${r.why}; treated as absent`);
    return undefined;
  }

  private add(note: string): void {
    if (this.list.length < MAX_NOTES) this.list.push(note);
    else this.dropped++;
  }

  done(): string[] {
    return this.dropped > 0 ? [...this.list, `and ${this.dropped} more notes`] : this.list;
  }
}

// ---- Classification ----

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
 * returns kind `ignored` with a reason for well-formed events that are not ours. Informational
 * values that cannot be read are left out and described in `notes`.
 */
export function classifyEvent(
  input: unknown,
  opts: {
    maxBytes?: number;
    /**
     * Our account: a well-formed event naming another (its `account` in any key spelling) is
     * ignored as foreign; the bus should never route one here, so seeing one is worth a log line.
     */
    account?: string;
  } = {},
): ClassifiedEvent {
  const maxBytes = opts.maxBytes ?? EVENT_MAX_BYTES;
  const bytes = serializedBytes(input);
  if (bytes > maxBytes) {
    throw new InvalidEventError(`event is ${bytes} bytes, over the ${maxBytes}-byte limit`);
  }
  const event = parse(AnyEvent, input);
  const notes = new Notes();
  const id = notes.read("id", event.id, eventId);
  notes.read("resources", event.resources, strings);
  const mine = classify(input, event, notes);
  const foreign = opts.account !== undefined && event.account !== undefined && event.account !== opts.account;
  const classified: ClassifiedEvent = foreign
    ? {
        kind: "ignored",
        reason: `event from foreign account ${event.account}`,
        snapshotId: null,
        region: null,
      }
    : mine;
  const list = notes.done();
  return {
    ...classified,
    ...(id !== undefined ? { eventId: id } : {}),
    ...(list.length ? { notes: list } : {}),
  };
}

function classify(input: unknown, event: z.output<typeof AnyEvent>, notes: Notes): ClassifiedEvent {
  const ignored = (reason: string, snapshot?: Ref): ClassifiedEvent => ({
    kind: "ignored",
    reason,
    ...(snapshot ? located(snapshot, event.region) : { snapshotId: null, region: event.region }),
  });
  if (event.source !== "aws.ec2") return ignored(`source ${quote(event.source)} is not aws.ec2`);
  switch (event["detail-type"]) {
    case DETAIL_TYPES.snapshot:
      return snapshotNotification(input, notes, ignored);
    case DETAIL_TYPES.multiVolume:
      return multiVolume(parse(MultiVolumeEvent, input), notes);
    case DETAIL_TYPES.missedDeadline:
      return missedDeadline(parse(MissedDeadlineEvent, input), notes);
    default:
      return ignored(`detail-type ${quote(event["detail-type"])} is not an EBS snapshot event we act on`);
  }
}

function snapshotNotification(
  input: unknown,
  notes: Notes,
  ignored: (reason: string, snapshot?: Ref) => ClassifiedEvent,
): ClassifiedEvent {
  const { detail } = parse(SnapshotNotificationEvent, input);
  switch (detail.event.toLowerCase()) {
    case "createsnapshot":
      return created(parse(CreateSnapshotEvent, input), notes);
    case "copysnapshot":
      return copied(parse(CopySnapshotEvent, input), notes);
    case "createsnapshots":
      return multiVolume(parse(MultiVolumeEvent, input), notes);
    default: {
      const snapshot = z.safeParse(snapshotRef, detail.snapshot_id);
      return ignored(
        `${DETAIL_TYPES.snapshot} event ${quote(detail.event)} is not one we act on`,
        snapshot.success ? snapshot.data : undefined,
      );
    }
  }
}

function created({ detail: d, region }: z.output<typeof CreateSnapshotEvent>, notes: Notes): ClassifiedEvent {
  const snapshot = located(d.snapshot_id, region);
  const volumeId = notes.read("detail.source", d.source, volume);
  const startTime = notes.read("detail.startTime", d.startTime, time);
  const endTime = notes.read("detail.endTime", d.endTime, time);
  const cause = notes.read("detail.cause", d.cause, text);
  return prune(
    d.result === "failed"
      ? { kind: "snapshot-failed", ...snapshot, volumeId, cause: cause ?? NO_CAUSE }
      : { kind: "snapshot-created", ...snapshot, volumeId, startTime, endTime },
  );
}

function copied({ detail: d, region }: z.output<typeof CopySnapshotEvent>, notes: Notes): ClassifiedEvent {
  const copy = {
    ...located(d.snapshot_id, region),
    sourceSnapshotId: d.source.id,
    sourceRegion: d.source.region,
  };
  const cause = notes.read("detail.cause", d.cause, text);
  const startTime = notes.read("detail.startTime", d.startTime, time);
  const endTime = notes.read("detail.endTime", d.endTime, time);
  const incremental = notes.read("detail.incremental", d.incremental, flag);
  const transfer = notes.read("detail.transferType", d.transferType, transferType);
  return prune(
    d.result === "failed"
      ? { kind: "copy-failed", ...copy, cause: cause ?? NO_CAUSE }
      : { kind: "snapshot-copied", ...copy, incremental, transferType: transfer, startTime, endTime },
  );
}

function multiVolume(
  { detail: d, region }: z.output<typeof MultiVolumeEvent>,
  notes: Notes,
): ClassifiedEvent {
  const snapshots = d.snapshots.map((s, i) => {
    const outcome = s.status ?? d.result;
    if (outcome === undefined) throw new InvalidEventError(`detail.snapshots[${i}].status is required`);
    const succeeded = outcome === "completed" || outcome === "succeeded";
    const volumeId = notes.read(`detail.snapshots[${i}].source`, s.source, volume);
    const cause = notes.read(`detail.snapshots[${i}].cause`, s.cause, text);
    return prune({
      ...located(s.snapshot_id, region),
      volumeId,
      succeeded,
      cause: succeeded ? undefined : (cause ?? `status ${outcome}`),
    });
  });
  return prune({
    kind: "multi-volume",
    snapshotId: null,
    region,
    snapshots,
    startTime: notes.read("detail.startTime", d.startTime, time),
    endTime: notes.read("detail.endTime", d.endTime, time),
  });
}

function missedDeadline(
  { detail: d, region }: z.output<typeof MissedDeadlineEvent>,
  notes: Notes,
): ClassifiedEvent {
  return prune({
    kind: "copy-missed-deadline",
    ...located(d.snapshot_id, region),
    sourceSnapshotId: d.source?.id,
    sourceRegion: d.source?.region,
    completionDurationMinutes: notes.read(
      "detail.completionDurationMinutes",
      d.completionDurationMinutes,
      minutes,
    ),
    cause: notes.read("detail.missedCompletionDurationCause", d.missedCompletionDurationCause, text),
    startTime: notes.read("detail.startTime", d.startTime, time),
  });
}
