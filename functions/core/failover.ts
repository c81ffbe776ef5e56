import { createHash } from "node:crypto";
import * as z from "zod/mini";
import { REGION_PATTERN } from "./config.js";
import { type Env, integer, oneOf, optional, required, requiredInteger } from "./env.js";
import { ConfigError, DrError } from "./errors.js";
import type { StoredBackup } from "./ports.js";

/**
 * The failover plane's domain (DESIGN.md section 3): what a failover request is, which backup it
 * restores and what it will lose, the names that make every step idempotent, and the final report.
 * Pure: no SDK, no Lambda, no network; the clock is passed in.
 */

// --- Errors the state machine catches (names are set explicitly: bundles are minified) -----------

/** Preflight refused: no usable backup, or the standby side is not ready. Terminal, before approval. */
export class PreflightFailed extends DrError {
  constructor(
    message: string,
    readonly reasons: string[],
  ) {
    super(message);
    this.name = "PreflightFailed";
  }
}

/** A step that cannot succeed by waiting: the node group update failed, the Restore Failed... */
export class StepFailed extends DrError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StepFailed";
  }
}

/**
 * A wait step ran out of its time in this invocation and nothing failed: the state machine retries
 * the same step (Retry on `StillWaiting` with an interval), which picks the wait up where it was.
 */
export class StillWaiting extends DrError {
  constructor(message: string) {
    super(message);
    this.name = "StillWaiting";
  }
}

/** Error names for the state machine's Retry and Catch clauses. */
export const FAILOVER_ERRORS = {
  preflightFailed: "PreflightFailed",
  stepFailed: "StepFailed",
  stillWaiting: "StillWaiting",
  /** From classifyAwsError (functions/core/errors.ts): throttling, 5xx, network. */
  retryable: "RetryableError",
  terminal: "TerminalError",
} as const;

// --- Requests, plans, step results ---------------------------------------------------------------

/** The steps, in order. Scale-up (+ its wait) and the restore (+ its wait) may run in parallel. */
export const STEPS = [
  "preflight",
  "scaleNodegroup",
  "waitNodegroup",
  "startRestore",
  "waitRestore",
  "switchDns",
  "scaleBack",
  "report",
] as const;
export type StepName = (typeof STEPS)[number];

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;
const isoTime = () => z.string().check(z.regex(ISO_TIME, "must be an ISO 8601 time"));
const count = () => z.number().check(z.int(), z.gte(0));

export const FailoverRequestSchema = z.object({
  /** The Step Functions execution (ARN or name): every idempotency key derives from it. */
  executionId: z.string().check(z.minLength(1), z.maxLength(2048)),
  reason: z.string().check(z.minLength(1), z.maxLength(4096)),
  requestedBy: z.string().check(z.minLength(1), z.maxLength(512)),
  drill: z.boolean(),
  requestedAt: isoTime(),
});
export type FailoverRequest = z.infer<typeof FailoverRequestSchema>;

export const ScalingSchema = z.object({ min: count(), max: count(), desired: count() });
/** A node group's scaling configuration. */
export type Scaling = z.infer<typeof ScalingSchema>;

export const AliasTargetSchema = z.object({
  dnsName: z.string().check(z.minLength(1)),
  hostedZoneId: z.string().check(z.minLength(1)),
  evaluateTargetHealth: z.optional(z.boolean()),
});
/** A Route 53 alias target. */
export type AliasTarget = z.infer<typeof AliasTargetSchema>;

export const ChosenBackupSchema = z.object({
  name: z.string().check(z.minLength(1)),
  schedule: z.optional(z.string()),
  startTimestamp: isoTime(),
  completionTimestamp: z.optional(z.string()),
  expiration: z.optional(z.string()),
  warnings: count(),
  drReadyAt: z.optional(z.string()),
});
export type ChosenBackup = z.infer<typeof ChosenBackupSchema>;

export const FailoverPlanSchema = z.object({
  executionId: z.string(),
  drill: z.boolean(),
  plannedAt: isoTime(),
  backup: ChosenBackupSchema,
  /** Seconds between the backup's start and the plan: what a restore of it loses, at least. */
  dataLossSeconds: z.number().check(z.gte(0)),
  /** Newer backups passed over, with why (at most a few). */
  passedOver: z.array(z.object({ name: z.string(), reason: z.string() })),
  cluster: z.string(),
  nodegroup: z.object({ name: z.string(), current: ScalingSchema, target: ScalingSchema }),
  restore: z.object({
    name: z.string(),
    veleroNamespace: z.string(),
    includedNamespaces: z.array(z.string()),
    namespaceMapping: z.optional(z.record(z.string(), z.string())),
  }),
  dns: z.object({
    hostedZoneId: z.string(),
    recordName: z.string(),
    recordType: z.string(),
    current: z.optional(AliasTargetSchema),
    failover: AliasTargetSchema,
    /** False in a drill: the record is left alone. */
    switch: z.boolean(),
  }),
  loadBalancer: z.object({ arn: z.string(), name: z.string(), dnsName: z.string() }),
  plugin: z.object({ checked: z.boolean(), present: z.optional(z.boolean()), detail: z.string() }),
});
/** What preflight decided: everything the later steps act on. */
export type FailoverPlan = z.infer<typeof FailoverPlanSchema>;

export const OUTCOMES = ["succeeded", "unchanged", "skipped", "partially-failed"] as const;
/**
 * succeeded: the step did its work now; unchanged: it found the work already done (a re-run);
 * skipped: nothing to do in this mode (DNS in a drill, scale-back outside one);
 * partially-failed: the Restore ended PartiallyFailed and configuration lets the failover go on.
 */
export type StepOutcome = (typeof OUTCOMES)[number];

const StepTimingSchema = z.looseObject({
  step: z.string(),
  outcome: z.enum(OUTCOMES),
  startedAt: isoTime(),
  endedAt: isoTime(),
  seconds: z.number(),
  detail: z.optional(z.string()),
});
/** What every step returns (plus its own fields); the state machine keeps it at `$.steps.<step>`. */
export type StepTiming = z.infer<typeof StepTimingSchema>;

/**
 * The document every step receives: the request, and each earlier step's output under `steps`.
 * Other keys (the approval, ...) are allowed and ignored.
 */
export const FailoverStateSchema = z.looseObject({
  request: FailoverRequestSchema,
  steps: z.optional(z.record(z.string(), z.unknown())),
});
export type FailoverState = z.infer<typeof FailoverStateSchema>;

/** zod/mini has no English messages: name the path and what was wrong. */
const messages: z.core.$ZodErrorMap = (issue) => {
  if (issue.code === "invalid_type") {
    return issue.input === undefined ? "is required" : `must be ${issue.expected}`;
  }
  if (issue.code === "too_small") return `must be at least ${issue.minimum}`;
  if (issue.code === "too_big") return `must be at most ${issue.maximum}`;
  if (issue.code === "invalid_value") return `must be one of ${issue.values.join(", ")}`;
  return undefined;
};

/** Parses a step's input or a stored value; throws StepFailed naming what is wrong (never retried). */
export function parseWith<S extends z.core.$ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const parsed = z.safeParse(schema, input, { error: messages });
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = (issue?.path ?? []).map(String).join(".");
  throw new StepFailed(`${what}: ${path ? `${path} ` : ""}${issue?.message ?? "is invalid"}`);
}

// --- Preflight: which backup --------------------------------------------------------------------

export interface PreflightOptions {
  /** Warnings a usable backup may carry (the verdict's allowance, ALLOWED_WARNINGS). */
  allowedWarnings: number;
  /** Only backups of this Velero schedule are candidates (default: any schedule, and ad-hoc ones). */
  schedule?: string;
}

export type PreflightChoice =
  | {
      ok: true;
      backup: ChosenBackup;
      dataLossSeconds: number;
      passedOver: Array<{ name: string; reason: string }>;
    }
  | { ok: false; reason: string; passedOver: Array<{ name: string; reason: string }> };

/** Why a backup cannot be restored now, or undefined when it can. */
export function unusableBecause(b: StoredBackup, now: Date, o: PreflightOptions): string | undefined {
  if (b.retiredAt) return `retired at ${b.retiredAt} (Velero deleted it)`;
  if (!b.drReadyAt) return `not DR-ready (${b.verdict ?? "pending"}: ${b.reason ?? "not evaluated yet"})`;
  if (b.verdict === "not-ready") return `DR-ready verdict withdrawn: ${b.reason ?? "no reason recorded"}`;
  if (b.phase !== "Completed") return `Velero phase ${b.phase ?? "unknown"}`;
  if (b.errors > 0) return `${b.errors} error(s)`;
  if (b.warnings > o.allowedWarnings) return `${b.warnings} warning(s), ${o.allowedWarnings} allowed`;
  if (b.expiration && Date.parse(b.expiration) <= now.getTime()) return `expired at ${b.expiration}`;
  if (!b.startTimestamp || !ISO_TIME.test(b.startTimestamp)) return "no start time";
  return undefined;
}

/**
 * Picks the newest backup a failover can restore (DR-ready, Completed, unexpired, no errors,
 * warnings within the allowance, not retired; of the configured schedule if one is) and the
 * data-loss window: now minus its start, in seconds (what changed since the backup began is lost).
 * Otherwise a refusal naming why, with the newest candidates' reasons.
 */
export function preflightPlan(
  backups: readonly StoredBackup[],
  now: Date,
  o: PreflightOptions,
): PreflightChoice {
  const candidates = backups
    .filter((b) => o.schedule === undefined || b.schedule === o.schedule)
    .sort((a, b) => Date.parse(b.startTimestamp ?? "") - Date.parse(a.startTimestamp ?? "") || 0);
  const passedOver: Array<{ name: string; reason: string }> = [];
  for (const b of candidates) {
    const why = unusableBecause(b, now, o);
    if (why !== undefined) {
      passedOver.push({ name: b.name, reason: why });
      continue;
    }
    const start = b.startTimestamp as string;
    const backup: ChosenBackup = { name: b.name, startTimestamp: start, warnings: b.warnings };
    if (b.schedule !== undefined) backup.schedule = b.schedule;
    if (b.completionTimestamp !== undefined) backup.completionTimestamp = b.completionTimestamp;
    if (b.expiration !== undefined) backup.expiration = b.expiration;
    if (b.drReadyAt !== undefined) backup.drReadyAt = b.drReadyAt;
    return {
      ok: true,
      backup,
      dataLossSeconds: Math.max(0, Math.round((now.getTime() - Date.parse(start)) / 1000)),
      passedOver: passedOver.slice(0, 5),
    };
  }
  const of = o.schedule === undefined ? "" : ` of schedule ${o.schedule}`;
  const newest = passedOver
    .slice(0, 3)
    .map((p) => `${p.name}: ${p.reason}`)
    .join("; ");
  const reason =
    candidates.length === 0
      ? `no backup${of} is registered`
      : `no backup${of} can be restored (DR-ready, Completed, unexpired, no errors, at most ` +
        `${o.allowedWarnings} warning(s), not retired); newest: ${newest}`;
  return { ok: false, reason, passedOver: passedOver.slice(0, 5) };
}

// --- Deterministic names --------------------------------------------------------------------------

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/**
 * The idempotency token of one step of one execution (EKS clientRequestToken): a re-run of the step
 * sends the same token, so EKS answers with the update it already started instead of a second one.
 */
export function requestTokenFor(executionId: string, step: StepName): string {
  const h = sha256(`${executionId}\n${step}`);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/**
 * The Velero Restore's name for an execution: `failover-` or `drill-`, the execution's name made a
 * DNS-1123 label, and a hash of the whole id. At most 63 characters, because Velero labels every
 * restored object with `velero.io/restore-name` (label values are limited to 63), and the
 * inject-metadata plugin sets RESTORED_FROM_BACKUP to it.
 */
export function restoreNameFor(executionId: string, drill: boolean): string {
  const prefix = drill ? "drill" : "failover";
  const hash = sha256(executionId).slice(0, 10);
  const last = executionId.split(":").pop() ?? "";
  const slug = last
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-|-$/g, "")
    .replace(new RegExp(`^${prefix}-`), "") // "drill-..." executions: not "drill-drill-..."
    .slice(0, 63 - prefix.length - hash.length - 2)
    .replace(/-$/, "");
  return slug ? `${prefix}-${slug}-${hash}` : `${prefix}-${hash}`;
}

/** Drills restore into `<ns><suffix>` so they never touch the namespaces a failover would use. */
export function namespaceMappingFor(
  namespaces: readonly string[],
  drill: boolean,
  suffix: string,
): Record<string, string> | undefined {
  if (!drill) return undefined;
  return Object.fromEntries(namespaces.map((ns) => [ns, `${ns}${suffix}`]));
}

// --- Route 53 alias targets -------------------------------------------------------------------------

/** `dualstack.<dns>.` as Route 53 aliases to an ELB are written (lower case, trailing dot). */
export function aliasTargetFor(lb: { dnsName: string; canonicalHostedZoneId: string }): AliasTarget {
  const dns = lb.dnsName.toLowerCase().replace(/\.$/, "");
  return {
    dnsName: `${dns.startsWith("dualstack.") ? dns : `dualstack.${dns}`}.`,
    hostedZoneId: lb.canonicalHostedZoneId,
    evaluateTargetHealth: true,
  };
}

const bareDns = (s: string) =>
  s
    .toLowerCase()
    .replace(/\.$/, "")
    .replace(/^dualstack\./, "");

/** Same load balancer (with or without `dualstack.`, any case or trailing dot) and the same zone. */
export function sameAliasTarget(a: AliasTarget | undefined, b: AliasTarget): boolean {
  return a !== undefined && bareDns(a.dnsName) === bareDns(b.dnsName) && a.hostedZoneId === b.hostedZoneId;
}

/** A record name as Route 53 returns it: lower case, trailing dot, `\052` for a leading `*`. */
export function normaliseRecordName(name: string): string {
  const n = name.trim().toLowerCase().replace(/\\052/g, "*");
  return n.endsWith(".") ? n : `${n}.`;
}

/** Hosted zone ids come as `Z123` or `/hostedzone/Z123`. */
export const bareZoneId = (id: string) => id.replace(/^\/?hostedzone\//, "");

// --- Report ---------------------------------------------------------------------------------------

export interface FailoverReport {
  executionId: string;
  drill: boolean;
  reason: string;
  requestedBy: string;
  requestedAt: string;
  generatedAt: string;
  backup: ChosenBackup | null;
  /** As computed at preflight (now minus the backup's start). */
  dataLossSeconds: number | null;
  steps: Array<Pick<StepTiming, "step" | "outcome" | "startedAt" | "endedAt" | "seconds" | "detail">>;
  /**
   * The recovery time: from the start of the first recovery step (scale-up or restore, i.e. after
   * preflight and approval) to the end of the last one before the report. Null before any ran.
   */
  rtoSeconds: number | null;
  /** From the request to the end of the last step before the report (includes the approval wait). */
  sinceRequestSeconds: number | null;
  restore: { name: string; phase: string; warnings: number; errors: number } | null;
  dns: { switched: boolean; target: string | null; previous: string | null; changeId: string | null };
  nodegroup: { target: Scaling | null; previous: Scaling | null; scaledBack: boolean };
  /** Set by the report step: how the execution ended (failed: the error the workflow caught). */
  outcome?: "succeeded" | "failed";
  error?: { error: string; cause: string };
  /** Set by the report step from the state's `approval`, when an approver decided. */
  approvedBy?: string;
}

const num = (v: unknown) => (typeof v === "number" ? v : null);
const str = (v: unknown) => (typeof v === "string" ? v : null);
const rec = (v: unknown): Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const scalingOf = (v: unknown): Scaling | null => {
  const p = z.safeParse(ScalingSchema, v);
  return p.success ? p.data : null;
};
const seconds = (ms: number) => Math.round(ms) / 1000;

/**
 * The final report: per step its start, end, duration and outcome (steps that did not run are
 * absent), the RTO, the backup, the data-loss window and whether it was a drill. Pure over the
 * state document, so a re-run builds the same report.
 */
export function buildReport(
  request: FailoverRequest,
  steps: Readonly<Record<string, unknown>>,
  plan: FailoverPlan | undefined,
  now: Date,
): FailoverReport {
  const timings: FailoverReport["steps"] = [];
  for (const name of STEPS) {
    const parsed = z.safeParse(StepTimingSchema, steps[name]);
    if (!parsed.success) continue;
    const t = parsed.data;
    const row: FailoverReport["steps"][number] = {
      step: name,
      outcome: t.outcome,
      startedAt: t.startedAt,
      endedAt: t.endedAt,
      seconds: t.seconds,
    };
    if (t.detail !== undefined) row.detail = t.detail;
    timings.push(row);
  }
  const recovery = timings.filter((t) => t.step !== "preflight" && t.step !== "report");
  const first = Math.min(...recovery.map((t) => Date.parse(t.startedAt)));
  const last = Math.max(...timings.filter((t) => t.step !== "report").map((t) => Date.parse(t.endedAt)));
  const restore = rec(steps.waitRestore);
  const started = rec(steps.startRestore);
  const dns = rec(steps.switchDns);
  const scale = rec(steps.scaleNodegroup);
  const back = rec(steps.scaleBack);
  const restoreName = str(restore.restoreName) ?? str(started.restoreName);
  return {
    executionId: request.executionId,
    drill: request.drill,
    reason: request.reason,
    requestedBy: request.requestedBy,
    requestedAt: request.requestedAt,
    generatedAt: now.toISOString(),
    backup: plan?.backup ?? null,
    dataLossSeconds: plan?.dataLossSeconds ?? null,
    steps: timings,
    rtoSeconds: recovery.length > 0 ? seconds(last - first) : null,
    sinceRequestSeconds: Number.isFinite(last) ? seconds(last - Date.parse(request.requestedAt)) : null,
    restore: restoreName
      ? {
          name: restoreName,
          phase: str(restore.phase) ?? "not finished",
          warnings: num(restore.warnings) ?? 0,
          errors: num(restore.errors) ?? 0,
        }
      : null,
    dns: {
      switched: !request.drill && (dns.outcome === "succeeded" || dns.outcome === "unchanged"),
      target: str(rec(dns.target).dnsName) ?? plan?.dns.failover.dnsName ?? null,
      previous: str(rec(dns.previousTarget).dnsName) ?? plan?.dns.current?.dnsName ?? null,
      changeId: str(dns.changeId),
    },
    nodegroup: {
      target: scalingOf(scale.target) ?? plan?.nodegroup.target ?? null,
      previous: scalingOf(scale.previous) ?? plan?.nodegroup.current ?? null,
      scaledBack: back.outcome === "succeeded" || back.outcome === "unchanged",
    },
  };
}

const duration = (s: number | null) =>
  s === null ? "n/a" : s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
const size = (s: Scaling | null) => (s ? `${s.desired} (min ${s.min}, max ${s.max})` : "n/a");

/** The report for humans (SNS email, Slack). */
export function renderReport(r: FailoverReport): string {
  const lines = [
    `${r.drill ? "DR DRILL" : "FAILOVER"} ${r.executionId}`,
    `requested by ${r.requestedBy} at ${r.requestedAt}: ${r.reason}`,
    ...(r.approvedBy ? [`approved by ${r.approvedBy}`] : []),
    ...(r.outcome === "failed"
      ? [`outcome: FAILED${r.error ? ` (${r.error.error}: ${r.error.cause})` : ""}`]
      : r.outcome
        ? [`outcome: ${r.outcome}`]
        : []),
    r.backup
      ? `backup: ${r.backup.name} (started ${r.backup.startTimestamp}); data-loss window ${duration(r.dataLossSeconds)}`
      : "backup: none chosen",
    `recovery time (RTO): ${duration(r.rtoSeconds)}; since the request ${duration(r.sinceRequestSeconds)}`,
    `restore: ${r.restore ? `${r.restore.name} ${r.restore.phase} (warnings ${r.restore.warnings}, errors ${r.restore.errors})` : "not started"}`,
    r.drill
      ? `DNS: left on ${r.dns.previous ?? "its target"} (drill)`
      : `DNS: ${r.dns.switched ? `now ${r.dns.target}` : "NOT switched"}${r.dns.previous ? ` (was ${r.dns.previous})` : ""}`,
    `node group: ${size(r.nodegroup.target)}${r.drill ? `; ${r.nodegroup.scaledBack ? "scaled back to" : "NOT yet scaled back to"} ${size(r.nodegroup.previous)}` : ""}`,
    "",
    "steps:",
    ...r.steps.map(
      (s) =>
        `  ${s.step.padEnd(15)} ${s.outcome.padEnd(16)} ${duration(s.seconds).padStart(9)}  ${s.startedAt}${s.detail ? `  ${s.detail}` : ""}`,
    ),
  ];
  return `${lines.join("\n")}\n`;
}

// --- Ports ----------------------------------------------------------------------------------------

export interface NodegroupState {
  status: string;
  scaling: Scaling;
  /** Health issues EKS reports (code: message). */
  health: string[];
}

/** The standby EKS cluster and its node group (adapter: functions/adapters/eks.ts). */
export interface StandbyCluster {
  /** The cluster's status, or undefined when it does not exist. */
  clusterStatus(): Promise<string | undefined>;
  /** The node group's status and scaling, or undefined when it does not exist. */
  nodegroup(): Promise<NodegroupState | undefined>;
  /** Scales to `target` unless already there (then no call); `token` is the clientRequestToken. */
  scale(target: Scaling, token: string): Promise<{ changed: boolean; updateId?: string }>;
  /** Waits (bounded) until the node group is ACTIVE at `target`; throws StillWaiting or StepFailed. */
  waitFor(
    target: Scaling,
    updateId: string | undefined,
    o: { timeoutMs: number; pollMs: number },
  ): Promise<{ via: "DescribeUpdate" | "DescribeNodegroup"; polls: number; updateStatus?: string }>;
}

/** The failover load balancer (adapter: functions/adapters/elbv2.ts). */
export interface LoadBalancerLookup {
  find(): Promise<{ arn: string; name: string; dnsName: string; canonicalHostedZoneId: string }>;
}

/** The alias record users reach the CI at (adapter: functions/adapters/route53.ts). */
export interface DnsSwitch {
  /** The record's alias target, or undefined when the record does not exist (or is not an alias). */
  current(): Promise<AliasTarget | undefined>;
  /** UPSERTs the alias to `target` unless it already is that target (then no change). */
  switchTo(
    target: AliasTarget,
    comment: string,
  ): Promise<{ changed: boolean; changeId?: string; previous?: AliasTarget }>;
  /** Waits (bounded) for the change to be INSYNC; throws StillWaiting when it is not yet. */
  waitInSync(changeId: string, o: { timeoutMs: number; pollMs: number }): Promise<string>;
}

/** A Velero Restore as the standby cluster reports it. */
export interface RestoreStatus {
  name: string;
  backupName: string;
  phase: string;
  warnings: number;
  errors: number;
  failureReason?: string;
  validationErrors?: string[];
}

export interface RestoreRequest {
  name: string;
  backupName: string;
  includedNamespaces: string[];
  namespaceMapping?: Record<string, string>;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** Velero in the standby cluster (adapter: functions/adapters/k8s.ts). */
export interface VeleroRestores {
  /** Creates the Restore; when one of that name exists (409) returns it instead: `created` false. */
  ensure(r: RestoreRequest): Promise<{ created: boolean; restore: RestoreStatus }>;
  /** The Restore, or undefined when there is none of that name. */
  get(name: string): Promise<RestoreStatus | undefined>;
  /** Is the inject-metadata plugin installed in Velero? (What is checked: see the adapter.) */
  pluginCheck(): Promise<{ present: boolean; detail: string }>;
  /**
   * Does the standby cluster have a VolumeSnapshotClass for this CSI driver? A backup's CSI volumes
   * are restored by re-provisioning their PVCs from VolumeSnapshots, which needs one.
   */
  snapshotClassCheck(driver: string): Promise<{ present: boolean; detail: string }>;
}

/**
 * Small facts a step must find again when it runs again (first write wins): the node group's size
 * before the scale-up, the DNS change and the target it replaced, the plan. Kept per execution.
 */
export interface ExecutionMemo {
  /** Stores `value` under (execution, key) unless something is stored there; returns what is stored. */
  remember(executionId: string, key: string, value: unknown): Promise<unknown>;
  recall(executionId: string, key: string): Promise<unknown>;
}

/**
 * One audit record per execution: the final report (with its outcome). Write-once, except that a
 * succeeded record replaces a failed one (a re-run that completed); never the reverse.
 */
export interface FailoverAudit {
  /** Returns "written" when this record was stored, "kept" when the stored one stands. */
  record(report: FailoverReport & { outcome: "succeeded" | "failed" }): Promise<"written" | "kept">;
  read(executionId: string): Promise<FailoverReport | undefined>;
}

/**
 * The SNS message attribute that routes a message on the approvers' topic: each approver's email
 * subscription has the filter policy `{"approver": ["<address>", "all"]}`, so a message with
 * `approver` = an address reaches that approver only, and one with {@link ALL_APPROVERS} reaches all.
 */
export const APPROVER_ATTRIBUTE = "approver";
export const ALL_APPROVERS = "all";

/** Where reports go (SNS topic, Slack webhook). */
export interface Notifier {
  /**
   * `to.approver`: the one approver (an email address) an SNS message is for; absent: everyone on
   * the topic ({@link ALL_APPROVERS}). Channels that are not the approvers' topic ignore it.
   */
  publish(subject: string, text: string, json: unknown, to?: { approver?: string }): Promise<string>;
}

// --- Configuration --------------------------------------------------------------------------------

export interface FailoverConfig {
  failoverRegion: string;
  ledgerTable: string;
  allowedWarnings: number;
  schedule?: string;
  clusterName: string;
  nodegroupName: string;
  scaling: Scaling;
  hostedZoneId: string;
  recordName: string;
  recordType: "A" | "AAAA";
  loadBalancer: { name: string } | { tag: { key: string; value: string } };
  namespaces: string[];
  drillSuffix: string;
  veleroNamespace: string;
  /** API server URL override (local mode, a private endpoint reached another way); default: DescribeCluster. */
  k8sEndpoint?: string;
  /** A bearer token instead of the EKS token (local mode; prefer the EKS token in AWS). */
  k8sToken?: string;
  requirePlugin: boolean;
  /** What a PartiallyFailed Restore does: the failover goes on (reported), or the step fails. */
  partialRestore: "continue" | "fail";
  waits: { pollMs: number; nodegroupMs: number; restoreMs: number; dnsMs: number };
  topicArn?: string;
  /** A plain webhook URL: local mode and tests only (in AWS the URL is a secret). */
  slackWebhookUrl?: string;
  /** Secrets Manager secret `{"webhookUrl": ...}`: stage messages and the report also go to Slack. */
  slackWebhookSecretArn?: string;
}

export const FAILOVER_ENV = {
  failoverRegion: "FAILOVER_REGION",
  ledgerTable: "LEDGER_TABLE",
  allowedWarnings: "ALLOWED_WARNINGS",
  schedule: "FAILOVER_SCHEDULE",
  clusterName: "FAILOVER_CLUSTER_NAME",
  nodegroupName: "FAILOVER_NODEGROUP_NAME",
  min: "FAILOVER_NODEGROUP_MIN",
  desired: "FAILOVER_NODEGROUP_DESIRED",
  max: "FAILOVER_NODEGROUP_MAX",
  hostedZoneId: "FAILOVER_HOSTED_ZONE_ID",
  recordName: "FAILOVER_RECORD_NAME",
  recordType: "FAILOVER_RECORD_TYPE",
  lbName: "FAILOVER_LB_NAME",
  lbTag: "FAILOVER_LB_TAG",
  namespaces: "FAILOVER_NAMESPACES",
  drillSuffix: "FAILOVER_DRILL_NAMESPACE_SUFFIX",
  veleroNamespace: "FAILOVER_VELERO_NAMESPACE",
  k8sEndpoint: "FAILOVER_K8S_ENDPOINT",
  k8sToken: "FAILOVER_K8S_TOKEN",
  requirePlugin: "FAILOVER_REQUIRE_INJECT_METADATA",
  partialRestore: "FAILOVER_PARTIAL_RESTORE",
  pollSeconds: "FAILOVER_POLL_SECONDS",
  nodegroupWaitSeconds: "FAILOVER_NODEGROUP_WAIT_SECONDS",
  restoreWaitSeconds: "FAILOVER_RESTORE_WAIT_SECONDS",
  dnsWaitSeconds: "FAILOVER_DNS_WAIT_SECONDS",
  topicArn: "FAILOVER_TOPIC_ARN",
  slackWebhookUrl: "FAILOVER_SLACK_WEBHOOK_URL",
  slackWebhookSecretArn: "SLACK_WEBHOOK_SECRET_ARN",
} as const;

/** A Kubernetes namespace name (DNS-1123 label). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const CLUSTER_NAME = /^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$/;
const ZONE_ID = /^(\/hostedzone\/)?[A-Z0-9]{1,32}$/;
const RECORD_NAME = /^(\*\.)?([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?\.)+[a-zA-Z]{2,63}\.?$/;
const TOPIC_ARN = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/;

/**
 * The failover steps' settings, read once at cold start and validated; a missing or malformed value
 * fails with its variable's name. Defaults: namespaces `cbci`, drill suffix `-drill`, Velero in
 * `velero`, record type A, inject-metadata plugin required, PartiallyFailed restores go on,
 * polls every 10 s, waits of 600 s (node group, restore) and 300 s (DNS) per invocation.
 */
export function loadFailoverConfig(env: Env): FailoverConfig {
  const e = FAILOVER_ENV;
  const failoverRegion = required(env, e.failoverRegion);
  if (!REGION_PATTERN.test(failoverRegion)) {
    throw new ConfigError(`${e.failoverRegion} has an invalid AWS region "${failoverRegion}"`);
  }
  const clusterName = required(env, e.clusterName);
  if (!CLUSTER_NAME.test(clusterName))
    throw new ConfigError(`${e.clusterName} is not an EKS cluster name: "${clusterName}"`);
  const nodegroupName = required(env, e.nodegroupName);
  if (!CLUSTER_NAME.test(nodegroupName))
    throw new ConfigError(`${e.nodegroupName} is not a node group name: "${nodegroupName}"`);
  const scaling = {
    min: requiredInteger(env, e.min, 0, 1000),
    desired: requiredInteger(env, e.desired, 0, 1000),
    max: requiredInteger(env, e.max, 1, 1000),
  };
  if (scaling.min > scaling.desired || scaling.desired > scaling.max) {
    throw new ConfigError(
      `${e.min} <= ${e.desired} <= ${e.max} must hold, got ${scaling.min}, ${scaling.desired}, ${scaling.max}`,
    );
  }
  if (scaling.desired === 0) throw new ConfigError(`${e.desired} must be at least 1 to run the restored CI`);
  const hostedZoneId = required(env, e.hostedZoneId);
  if (!ZONE_ID.test(hostedZoneId))
    throw new ConfigError(`${e.hostedZoneId} is not a hosted zone id: "${hostedZoneId}"`);
  const recordName = required(env, e.recordName);
  if (!RECORD_NAME.test(recordName))
    throw new ConfigError(`${e.recordName} is not a DNS name: "${recordName}"`);
  const lbName = optional(env, e.lbName);
  const lbTag = optional(env, e.lbTag);
  if ((lbName === undefined) === (lbTag === undefined)) {
    throw new ConfigError(`exactly one of ${e.lbName} and ${e.lbTag} must be set`);
  }
  let loadBalancer: FailoverConfig["loadBalancer"];
  if (lbName !== undefined) {
    if (!/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$/.test(lbName))
      throw new ConfigError(`${e.lbName} is not a load balancer name: "${lbName}"`);
    loadBalancer = { name: lbName };
  } else {
    const tag = lbTag as string;
    const i = tag.indexOf("=");
    if (i <= 0) throw new ConfigError(`${e.lbTag} must look like key=value, got "${tag}"`);
    loadBalancer = { tag: { key: tag.slice(0, i).trim(), value: tag.slice(i + 1).trim() } };
  }
  const drillSuffix = optional(env, e.drillSuffix) ?? "-drill";
  const namespaces = (optional(env, e.namespaces) ?? "cbci")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (namespaces.length === 0) throw new ConfigError(`${e.namespaces} names no namespace`);
  for (const ns of namespaces) {
    if (!DNS_LABEL.test(ns)) throw new ConfigError(`${e.namespaces} has an invalid namespace "${ns}"`);
    if (!DNS_LABEL.test(`${ns}${drillSuffix}`)) {
      throw new ConfigError(`${e.drillSuffix} makes an invalid namespace "${ns}${drillSuffix}"`);
    }
  }
  const veleroNamespace = optional(env, e.veleroNamespace) ?? "velero";
  if (!DNS_LABEL.test(veleroNamespace))
    throw new ConfigError(`${e.veleroNamespace} is not a namespace: "${veleroNamespace}"`);
  const k8sEndpoint = optional(env, e.k8sEndpoint);
  if (k8sEndpoint !== undefined && !/^https?:\/\/[^/\s]+\/?$/.test(k8sEndpoint)) {
    throw new ConfigError(`${e.k8sEndpoint} must be an http(s) URL without a path, got "${k8sEndpoint}"`);
  }
  const topicArn = optional(env, e.topicArn);
  if (topicArn !== undefined) {
    if (!TOPIC_ARN.test(topicArn))
      throw new ConfigError(`${e.topicArn} is not an SNS topic ARN: "${topicArn}"`);
    if (topicArn.split(":")[3] !== failoverRegion) {
      throw new ConfigError(`${e.topicArn} must be a topic in the failover region ${failoverRegion}`);
    }
  }
  const slackWebhookUrl = optional(env, e.slackWebhookUrl);
  if (
    slackWebhookUrl !== undefined &&
    !/^https:\/\/hooks\.slack\.com\/services\/\S+$/.test(slackWebhookUrl)
  ) {
    throw new ConfigError(`${e.slackWebhookUrl} must be a https://hooks.slack.com/services/... URL`);
  }
  const slackWebhookSecretArn = optional(env, e.slackWebhookSecretArn);
  if (
    slackWebhookSecretArn !== undefined &&
    !/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:\S+$/.test(slackWebhookSecretArn)
  ) {
    throw new ConfigError(
      `${e.slackWebhookSecretArn} must be a Secrets Manager secret ARN, got "${slackWebhookSecretArn}"`,
    );
  }
  const schedule = optional(env, e.schedule);
  const k8sToken = optional(env, e.k8sToken);
  const config: FailoverConfig = {
    failoverRegion,
    ledgerTable: required(env, e.ledgerTable),
    allowedWarnings: integer(env, e.allowedWarnings, 0, 1_000_000, 0),
    clusterName,
    nodegroupName,
    scaling,
    hostedZoneId: bareZoneId(hostedZoneId),
    recordName: normaliseRecordName(recordName),
    recordType: oneOf(env, e.recordType, ["A", "AAAA"] as const, "A"),
    loadBalancer,
    namespaces,
    drillSuffix,
    veleroNamespace,
    requirePlugin: oneOf(env, e.requirePlugin, ["true", "false"] as const, "true") === "true",
    partialRestore: oneOf(env, e.partialRestore, ["continue", "fail"] as const, "continue"),
    waits: {
      pollMs: integer(env, e.pollSeconds, 1, 300, 10) * 1000,
      nodegroupMs: integer(env, e.nodegroupWaitSeconds, 10, 840, 600) * 1000,
      restoreMs: integer(env, e.restoreWaitSeconds, 10, 840, 600) * 1000,
      dnsMs: integer(env, e.dnsWaitSeconds, 10, 840, 300) * 1000,
    },
  };
  if (schedule !== undefined) config.schedule = schedule;
  if (k8sEndpoint !== undefined) config.k8sEndpoint = k8sEndpoint.replace(/\/$/, "");
  if (k8sToken !== undefined) config.k8sToken = k8sToken;
  if (topicArn !== undefined) config.topicArn = topicArn;
  if (slackWebhookUrl !== undefined) config.slackWebhookUrl = slackWebhookUrl;
  if (slackWebhookSecretArn !== undefined) config.slackWebhookSecretArn = slackWebhookSecretArn;
  return config;
}
