/**
 * Failover approval: capabilities that cannot be forged, replayed or reused (pure: no SDK, no I/O).
 *
 * **Tokens.** An approve or reject link (email) or button (Slack) carries a token
 * `<payload>.<mac>`, both base64url: the payload is the JSON of {@link ApprovalClaims} in a fixed key
 * order (`v`, `e`, `a`, `c`, `n`, `x`, then `s` when present), the MAC is HMAC-SHA256 over
 * `velero-dr/approval/v1\n` + the payload *exactly as transmitted*. The verifier never re-serialises
 * (so there is no canonicalisation to get wrong) and reads the claims only after the MAC matched.
 * A token binds one execution, one action, one channel and an expiry; its 128-bit nonce makes every
 * token unique and is recorded with the decision. Keys rotate: the first key signs, every key
 * verifies. Comparison is `crypto.timingSafeEqual` on fixed-length digests.
 *
 * **Single use** is not a property of the token but of the execution: the decision store
 * (functions/adapters/approval-store.ts) lets the first final decision for an execution win with a
 * conditional write, and refuses every later one. {@link nextDecision} holds the rules.
 *
 * **Slack.** Requests are authenticated with Slack's signing secret ({@link verifySlackRequest});
 * the button's value is an approval token as above (channel `slack`), so a Slack click is bound to
 * the execution, the action and the expiry too, and is single-use by the same store.
 * https://api.slack.com/authentication/verifying-requests-from-slack
 *
 * Verification never throws for bad input: it answers a typed refusal with a short reason.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import * as z from "zod/mini";

export const APPROVAL_ACTIONS = ["approve", "reject"] as const;
export type ApprovalAction = (typeof APPROVAL_ACTIONS)[number];

export const APPROVAL_CHANNELS = ["email", "slack"] as const;
export type ApprovalChannel = (typeof APPROVAL_CHANNELS)[number];

/** How long a link stays valid unless configured otherwise (APPROVAL_TTL_MINUTES). */
export const DEFAULT_APPROVAL_TTL_MINUTES = 60;
/** Shortest HMAC key accepted: 256 bits, HMAC-SHA256's block-size-independent strength. */
export const MIN_KEY_BYTES = 32;
/** Longer input is refused before any work (a real token is about 250 characters). */
export const MAX_TOKEN_LENGTH = 1024;
/** Slack's replay window: requests whose timestamp is more than this far from now are refused. */
export const SLACK_MAX_SKEW_SECONDS = 300;

/**
 * A Step Functions execution name (1-80 of `A-Za-z0-9_-` in practice) or its full ARN: one
 * execution's id everywhere (token, store key, task token).
 */
export const EXECUTION_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,255}$/;
/** A named approver in a per-recipient link: an email address, as SNS subscriptions name them. */
export const APPROVER_EMAIL = /^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,189}\.[A-Za-z]{2,24}$/;
/** Slack user ids: `U...` (or `W...` for Enterprise Grid). */
export const SLACK_USER_ID = /^[UW][A-Z0-9]{2,20}$/;

const MAC_CONTEXT = "velero-dr/approval/v1\n";
const TOKEN_VERSION = 1;
const NONCE_BYTES = 16;
const MAC_BYTES = 32;
const B64URL = /^[A-Za-z0-9_-]+$/;
const NONCE = /^[A-Za-z0-9_-]{22}$/;

/** What a token grants. */
export interface ApprovalClaims {
  /** The execution it decides (see {@link EXECUTION_ID}). */
  executionId: string;
  action: ApprovalAction;
  /** Where it was sent: an email token is refused on the Slack endpoint and vice versa. */
  channel: ApprovalChannel;
  /** 128 random bits, base64url (22 characters). */
  nonce: string;
  /** Unix time, seconds: the token is refused from this second on. */
  expiresAt: number;
  /**
   * The recipient, for per-approver email links (one SNS message per approver, delivered through a
   * subscription filter policy). Absent for links sent to the whole approvers' topic, whose clicker
   * is then not individually identified (see {@link approverOf}).
   */
  approver?: string;
}

/** HMAC keys: the first signs, all verify (rotation: prepend the new key, drop the old one later). */
export type ApprovalKeys = readonly (string | Uint8Array)[];

export type ApprovalRefusal =
  | "bad-format"
  | "bad-signature"
  | "wrong-channel"
  | "other-execution"
  | "wrong-action"
  | "expired";

export type Verified<T, R extends string> = ({ ok: true } & T) | { ok: false; reason: R; message: string };

export type ApprovalVerdict = Verified<{ claims: ApprovalClaims }, ApprovalRefusal>;

/** What the request says it is for; a token bound to anything else is refused. */
export interface ApprovalExpectation {
  channel: ApprovalChannel;
  /** The execution the link or form names (absent: whichever the token names). */
  executionId?: string;
  /** The action the link, form or Slack button names (absent: whichever the token names). */
  action?: ApprovalAction;
}

const keyBytes = (k: string | Uint8Array): Uint8Array => (typeof k === "string" ? Buffer.from(k, "utf8") : k);

function mac(key: string | Uint8Array, payload: string): Buffer {
  return createHmac("sha256", keyBytes(key)).update(MAC_CONTEXT).update(payload).digest();
}

function checkKeys(keys: ApprovalKeys): void {
  if (keys.length === 0) throw new Error("no approval key configured");
  for (const k of keys) {
    if (keyBytes(k).length < MIN_KEY_BYTES)
      throw new Error(`approval keys must be ${MIN_KEY_BYTES} bytes or more`);
  }
}

const claimsSchema = z.object({
  v: z.literal(TOKEN_VERSION),
  e: z.string().check(z.regex(EXECUTION_ID)),
  a: z.enum(APPROVAL_ACTIONS),
  c: z.enum(APPROVAL_CHANNELS),
  n: z.string().check(z.regex(NONCE)),
  x: z.int().check(z.positive()),
  s: z.optional(z.string().check(z.regex(APPROVER_EMAIL))),
});

/** Signs fully formed claims. Throws on claims we could never verify (a bug in the caller, not input). */
export function signApproval(claims: ApprovalClaims, keys: ApprovalKeys): string {
  checkKeys(keys);
  const wire = {
    v: TOKEN_VERSION,
    e: claims.executionId,
    a: claims.action,
    c: claims.channel,
    n: claims.nonce,
    x: claims.expiresAt,
    ...(claims.approver !== undefined ? { s: claims.approver } : {}),
  };
  const checked = claimsSchema.safeParse(wire);
  if (!checked.success) throw new Error(`invalid approval claims: ${z.prettifyError(checked.error)}`);
  const payload = Buffer.from(JSON.stringify(wire), "utf8").toString("base64url");
  const [signing] = keys as [string | Uint8Array];
  return `${payload}.${mac(signing, payload).toString("base64url")}`;
}

export interface IssueOptions {
  now: Date;
  /** Default {@link DEFAULT_APPROVAL_TTL_MINUTES}. */
  ttlMinutes?: number;
  /** Randomness for the nonce (tests); default `crypto.randomBytes`. */
  random?: (bytes: number) => Uint8Array;
}

/** Mints a token: fresh 128-bit nonce, expiry `now + ttl`. The request step calls this per link. */
export function issueApproval(
  grant: { executionId: string; action: ApprovalAction; channel: ApprovalChannel; approver?: string },
  keys: ApprovalKeys,
  options: IssueOptions,
): { token: string; claims: ApprovalClaims } {
  const ttl = options.ttlMinutes ?? DEFAULT_APPROVAL_TTL_MINUTES;
  const nonce = Buffer.from((options.random ?? randomBytes)(NONCE_BYTES)).toString("base64url");
  const claims: ApprovalClaims = {
    ...grant,
    nonce,
    expiresAt: Math.floor(options.now.getTime() / 1000) + ttl * 60,
  };
  return { token: signApproval(claims, keys), claims };
}

/** Decodes base64url only in its canonical form (so one signature has one spelling). */
function strictBase64url(s: string): Buffer | undefined {
  if (!B64URL.test(s)) return undefined;
  const bytes = Buffer.from(s, "base64url");
  return bytes.toString("base64url") === s ? bytes : undefined;
}

const refuse = <R extends string>(reason: R, message: string) => ({ ok: false as const, reason, message });

/**
 * Verifies a token against what the request says it is for, at `now`. In order: shape (bad-format),
 * MAC under any key (bad-signature, compared in constant time), then the signed claims: channel,
 * execution, action, expiry. Never throws; the claims are returned only when everything holds.
 */
export function verifyApproval(
  token: unknown,
  expected: ApprovalExpectation,
  keys: ApprovalKeys,
  now: Date,
): ApprovalVerdict {
  if (typeof token !== "string" || token.length === 0) return refuse("bad-format", "no token");
  if (token.length > MAX_TOKEN_LENGTH) return refuse("bad-format", "token too long");
  const parts = token.split(".");
  const [payload, sig] = parts;
  if (parts.length !== 2 || !payload || !sig) return refuse("bad-format", "token is not payload.signature");
  const given = strictBase64url(sig);
  if (!strictBase64url(payload) || given?.length !== MAC_BYTES) {
    return refuse("bad-format", "token is not base64url");
  }
  let matched = false;
  for (const key of keys) {
    // every key is tried (no early exit): the time taken does not depend on which one matched
    if (timingSafeEqual(mac(key, payload), given)) matched = true;
  }
  if (!matched) return refuse("bad-signature", "token signature does not verify");

  let wire: unknown;
  try {
    wire = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
  } catch {
    return refuse("bad-format", "token payload is not JSON");
  }
  const parsed = claimsSchema.safeParse(wire);
  if (!parsed.success) return refuse("bad-format", "token claims are malformed");
  const w = parsed.data;
  const claims: ApprovalClaims = {
    executionId: w.e,
    action: w.a,
    channel: w.c,
    nonce: w.n,
    expiresAt: w.x,
    ...(w.s !== undefined ? { approver: w.s } : {}),
  };
  if (claims.channel !== expected.channel) {
    return refuse("wrong-channel", `token was issued for ${claims.channel}, not ${expected.channel}`);
  }
  if (expected.executionId !== undefined && claims.executionId !== expected.executionId) {
    return refuse("other-execution", "token belongs to another execution");
  }
  if (expected.action !== undefined && claims.action !== expected.action) {
    return refuse("wrong-action", `token is for ${claims.action}, not ${expected.action}`);
  }
  if (now.getTime() >= claims.expiresAt * 1000) {
    return refuse("expired", `token expired at ${new Date(claims.expiresAt * 1000).toISOString()}`);
  }
  return { ok: true, claims };
}

/** An approval link: the execution and action in clear (the page can say what it does), bound by the token. */
export function approvalLink(baseUrl: string, token: string, claims: ApprovalClaims): string {
  const q = new URLSearchParams({ execution: claims.executionId, action: claims.action, token });
  return `${baseUrl.replace(/\/+$/, "")}/approval?${q.toString()}`;
}

/** The Slack actions block: one button per action, `action_id` naming it, `value` its token. */
export function slackApprovalButtons(tokens: { approve: string; reject: string }) {
  return {
    type: "actions",
    block_id: "dr-approval",
    elements: [
      {
        type: "button",
        action_id: "approve",
        style: "danger",
        text: { type: "plain_text", text: "Approve failover" },
        value: tokens.approve,
      },
      {
        type: "button",
        action_id: "reject",
        text: { type: "plain_text", text: "Reject" },
        value: tokens.reject,
      },
    ],
  };
}

// --- Slack -----------------------------------------------------------------------------------

export type SlackRefusal = "missing-headers" | "bad-format" | "bad-signature" | "stale-timestamp";

function header(headers: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  const want = name.toLowerCase();
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === want) return v;
  return undefined;
}

/**
 * Slack's request signature: `X-Slack-Signature` = `v0=` + hex HMAC-SHA256(signing secret,
 * `v0:{X-Slack-Request-Timestamp}:{raw body}`), over the body's bytes as received (never a re-encoded
 * parse). A timestamp more than {@link SLACK_MAX_SKEW_SECONDS} from `now`, in either direction, is
 * refused (a captured request cannot be replayed later). Several secrets may be given (rotation).
 */
export function verifySlackRequest(
  headers: Readonly<Record<string, string | undefined>>,
  rawBody: string | Uint8Array,
  signingSecrets: string | readonly string[],
  now: Date,
): Verified<Record<never, never>, SlackRefusal> {
  const ts = header(headers, "x-slack-request-timestamp");
  const sig = header(headers, "x-slack-signature");
  if (!ts || !sig) return refuse("missing-headers", "Slack signature headers missing");
  if (!/^\d{1,12}$/.test(ts)) return refuse("bad-format", "Slack timestamp is not a number");
  const m = /^v0=([0-9a-fA-F]{64})$/.exec(sig);
  if (!m?.[1]) return refuse("bad-format", "Slack signature is not v0=<hex>");
  if (Math.abs(now.getTime() / 1000 - Number(ts)) > SLACK_MAX_SKEW_SECONDS) {
    return refuse("stale-timestamp", `Slack timestamp is more than ${SLACK_MAX_SKEW_SECONDS} s off`);
  }
  const given = Buffer.from(m[1], "hex");
  const body = typeof rawBody === "string" ? Buffer.from(rawBody, "utf8") : rawBody;
  let matched = false;
  for (const secret of typeof signingSecrets === "string" ? [signingSecrets] : signingSecrets) {
    const expected = createHmac("sha256", secret).update(`v0:${ts}:`).update(body).digest();
    if (timingSafeEqual(expected, given)) matched = true;
  }
  return matched ? { ok: true } : refuse("bad-signature", "Slack signature does not verify");
}

/** Signs a Slack request the way Slack does (tests and the local drill play Slack with it). */
export function slackSignature(
  signingSecret: string,
  timestamp: number,
  rawBody: string | Uint8Array,
): string {
  const body = typeof rawBody === "string" ? Buffer.from(rawBody, "utf8") : rawBody;
  return `v0=${createHmac("sha256", signingSecret).update(`v0:${timestamp}:`).update(body).digest("hex")}`;
}

/** The parts of a Slack `block_actions` interaction we use. */
export interface SlackInteraction {
  userId: string;
  username?: string;
  teamId?: string;
  action: ApprovalAction;
  /** The button's value: an approval token (unverified until {@link verifyApproval}). */
  token: string;
  /** Where a replacement message may be POSTed; only Slack's own hooks host is accepted. */
  responseUrl?: string;
}

const slackPayloadSchema = z.object({
  type: z.literal("block_actions", { error: "is not a block_actions interaction" }),
  user: z.object({
    id: z.string().check(z.regex(SLACK_USER_ID, { error: "is not a Slack user id" })),
    username: z.optional(z.string().check(z.maxLength(120))),
    name: z.optional(z.string().check(z.maxLength(120))),
  }),
  team: z.optional(z.object({ id: z.optional(z.string().check(z.maxLength(40))) })),
  actions: z
    .array(
      z.object({
        action_id: z.enum(APPROVAL_ACTIONS, { error: "is not approve or reject" }),
        value: z.string().check(z.maxLength(MAX_TOKEN_LENGTH)),
      }),
    )
    .check(z.minLength(1, { error: "names no action" }), z.maxLength(1, { error: "names several actions" })),
  response_url: z.optional(
    z.string().check(z.startsWith("https://hooks.slack.com/", { error: "is not a Slack hooks URL" })),
  ),
});

/**
 * Parses Slack's interactive request body: `application/x-www-form-urlencoded` with one `payload`
 * field holding JSON (user.id, user.username, actions[0].action_id/value, response_url). Only
 * `block_actions` with exactly one `approve` or `reject` action is accepted. Never throws.
 */
export function parseSlackInteraction(
  rawBody: string | Uint8Array,
): Verified<{ interaction: SlackInteraction }, "bad-format"> {
  const text = typeof rawBody === "string" ? rawBody : Buffer.from(rawBody).toString("utf8");
  const fields = new URLSearchParams(text).getAll("payload");
  if (fields.length !== 1 || !fields[0]) return refuse("bad-format", "body has no single payload field");
  let json: unknown;
  try {
    json = JSON.parse(fields[0]);
  } catch {
    return refuse("bad-format", "payload is not JSON");
  }
  const parsed = slackPayloadSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join(".") || "payload";
    return refuse("bad-format", `Slack payload ${where} ${issue?.message ?? "is invalid"}`);
  }
  const p = parsed.data;
  const [act] = p.actions as [{ action_id: ApprovalAction; value: string }];
  const username = p.user.username ?? p.user.name;
  return {
    ok: true,
    interaction: {
      userId: p.user.id,
      action: act.action_id,
      token: act.value,
      ...(username !== undefined ? { username } : {}),
      ...(p.team?.id !== undefined ? { teamId: p.team.id } : {}),
      ...(p.response_url !== undefined ? { responseUrl: p.response_url } : {}),
    },
  };
}

// --- Decisions -------------------------------------------------------------------------------

/** One counted approve or reject: who, how, when, from where, with which token. */
export interface ApprovalEntry {
  action: ApprovalAction;
  channel: ApprovalChannel;
  /** `slack:<user id>`, `email:<address>` (per-approver link) or {@link TOPIC_APPROVER}. */
  approver: string;
  /** Display name (the Slack username), when known. */
  approverName?: string;
  /** True when the identity is individually verified (a Slack user, a per-approver link). */
  named: boolean;
  /** ISO 8601. */
  at: string;
  /** The token's nonce: which link or button was used. */
  nonce: string;
  sourceIp?: string;
  userAgent?: string;
}

/** The approver of a link sent to the whole approvers' topic: any recipient, not individually known. */
export const TOPIC_APPROVER = "email:approvers-topic";

/** Who is deciding, from verified claims (and, for Slack, the verified Slack user). */
export function approverOf(
  claims: ApprovalClaims,
  slackUser?: { userId: string; username?: string },
): Pick<ApprovalEntry, "approver" | "approverName" | "named"> {
  if (claims.channel === "slack") {
    if (!slackUser) return { approver: "slack:unknown", named: false };
    return {
      approver: `slack:${slackUser.userId}`,
      named: true,
      ...(slackUser.username !== undefined ? { approverName: slackUser.username } : {}),
    };
  }
  if (claims.approver !== undefined) return { approver: `email:${claims.approver}`, named: true };
  return { approver: TOPIC_APPROVER, named: false };
}

export type DecisionStatus = "awaiting-second" | "approved" | "rejected";

/** The decision for one execution, as stored (pk `APPROVAL#<executionId>`, sk `DECISION`). */
export interface DecisionRecord {
  executionId: string;
  status: DecisionStatus;
  /** Every attempt that counted, in order. */
  entries: ApprovalEntry[];
  /** When the status became final. */
  decidedAt?: string;
  /** Optimistic concurrency: every write requires the version it read. */
  version: number;
  /** When the workflow was resumed (SendTaskSuccess/Failure), or why that failed. */
  resumedAt?: string;
  resumeError?: string;
}

export type DecisionRefusal = "already-decided" | "same-approver" | "unnamed-approver" | "not-waiting";

export interface ApprovalRules {
  /** Approve needs two distinct, individually identified approvers; one reject suffices. */
  twoPersonRule: boolean;
}

export const isFinal = (s: DecisionStatus) => s === "approved" || s === "rejected";

const who = (e: ApprovalEntry) => (e.approverName ? `${e.approverName} (${e.approver})` : e.approver);

/**
 * The rules, applied to what the store holds: the first final decision wins and every later attempt
 * is refused (replay, reuse, the other button, a second approver). Without the two-person rule the
 * first approve or reject is final. With it, a reject is final at once (one veto), an approve needs
 * two distinct named approvers: the first is recorded as `awaiting-second`, the second completes;
 * an unnamed approver (a link to the whole topic) cannot count toward two people.
 */
export function nextDecision(
  current: DecisionRecord | undefined,
  entry: ApprovalEntry,
  executionId: string,
  rules: ApprovalRules,
):
  | { ok: true; record: DecisionRecord; final: boolean }
  | { ok: false; reason: DecisionRefusal; message: string } {
  if (current && isFinal(current.status)) {
    const last = current.entries[current.entries.length - 1];
    const by = last ? ` by ${who(last)} at ${last.at}` : "";
    return { ok: false, reason: "already-decided", message: `already ${current.status}${by}` };
  }
  const entries = [...(current?.entries ?? []), entry];
  const version = (current?.version ?? 0) + 1;
  const final = (status: "approved" | "rejected") => ({
    ok: true as const,
    record: { executionId, status, entries, decidedAt: entry.at, version },
    final: true,
  });
  if (entry.action === "reject") return final("rejected");
  if (!rules.twoPersonRule) return final("approved");
  if (!entry.named) {
    return {
      ok: false,
      reason: "unnamed-approver",
      message: "the two-person rule needs an identified approver (Slack or a personal link)",
    };
  }
  if (current?.entries.some((e) => e.action === "approve" && e.approver === entry.approver)) {
    return {
      ok: false,
      reason: "same-approver",
      message: "already approved by you; a second approver is needed",
    };
  }
  if (!current)
    return { ok: true, record: { executionId, status: "awaiting-second", entries, version }, final: false };
  return final("approved");
}

/** The approval task's output (SendTaskSuccess): who approved, on which channel, when. */
export function approvalOutput(record: DecisionRecord): {
  approvedBy: string;
  channel: ApprovalChannel;
  at: string;
  approvals: { approvedBy: string; channel: ApprovalChannel; at: string }[];
} {
  const approvals = record.entries
    .filter((e) => e.action === "approve")
    .map((e) => ({ approvedBy: who(e), channel: e.channel, at: e.at }));
  const last = approvals[approvals.length - 1];
  if (!last || record.status !== "approved")
    throw new Error(`execution ${record.executionId} is not approved`);
  return {
    approvedBy: approvals.map((a) => a.approvedBy).join(" and "),
    channel: last.channel,
    at: last.at,
    approvals,
  };
}

/** The reject's SendTaskFailure cause. */
export function rejectionCause(record: DecisionRecord): string {
  const e = record.entries.find((x) => x.action === "reject");
  return e ? `rejected by ${who(e)} via ${e.channel} at ${e.at}` : "rejected";
}

// --- Ports -----------------------------------------------------------------------------------

export type RecordOutcome =
  | { status: "recorded"; record: DecisionRecord; final: boolean }
  | { status: "refused"; reason: DecisionRefusal; message: string; record?: DecisionRecord };

/** Decisions, one per execution; every write conditional (functions/adapters/approval-store.ts). */
export interface ApprovalStore {
  /**
   * Applies {@link nextDecision} atomically: the write happens only if the decision is still the one
   * the rules were applied to and the execution still waits for approval (its task token is stored
   * and unexpired); otherwise nothing is written and the refusal says why.
   */
  record(executionId: string, entry: ApprovalEntry, rules: ApprovalRules, now: Date): Promise<RecordOutcome>;
  get(executionId: string): Promise<DecisionRecord | undefined>;
  /** Notes that the workflow was resumed (or why it could not be); audit only. */
  noteResumed(executionId: string, at: string, error?: string): Promise<void>;
}

/** What the confirmation page shows; the request step stores it with the task token. */
export interface ApprovalSummary {
  backup: string;
  /** Time since the backup started: what a failover now would lose. */
  dataLossSeconds: number;
  reason?: string;
  requestedBy?: string;
  drill?: boolean;
}

/**
 * Step Functions task tokens, kept server side (never in a link): the request step puts one per
 * execution, the approval endpoint takes it once a decision is final.
 */
export interface TaskTokens {
  put(executionId: string, taskToken: string, expiresAt: Date, summary?: ApprovalSummary): Promise<void>;
  /** Removes and returns the token (atomically: only one caller ever gets it). */
  take(executionId: string): Promise<string | undefined>;
  /** The pending approval without its token (for the confirmation page). */
  peek(executionId: string): Promise<{ expiresAt: Date; summary?: ApprovalSummary } | undefined>;
}

/** Resumes the waiting workflow (Step Functions SendTaskSuccess / SendTaskFailure). */
export interface TaskCallback {
  succeed(taskToken: string, output: object): Promise<void>;
  fail(taskToken: string, error: string, cause: string): Promise<void>;
}

/** A secret store (Secrets Manager); values are never logged. */
export interface Secrets {
  get(secretId: string): Promise<string>;
}
