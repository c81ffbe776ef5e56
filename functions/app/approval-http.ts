import { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { SFNClient } from "@aws-sdk/client-sfn";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import middy from "@middy/core";
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from "aws-lambda";
import { DynamoApprovalStore, DynamoTaskTokens } from "../adapters/approval-store.js";
import { SecretsManagerSecrets } from "../adapters/secrets.js";
import { SfnTaskCallback } from "../adapters/task-callback.js";
import {
  APPROVAL_ACTIONS,
  type ApprovalAction,
  type ApprovalClaims,
  type ApprovalEntry,
  type ApprovalRefusal,
  type ApprovalStore,
  type ApprovalSummary,
  approvalOutput,
  approverOf,
  type DecisionRecord,
  type DecisionRefusal,
  isFinal,
  parseSlackInteraction,
  rejectionCause,
  type Secrets,
  type SlackRefusal,
  type TaskCallback,
  type TaskTokens,
  verifyApproval,
  verifySlackRequest,
} from "../core/approval.js";
import {
  type ApprovalConfig,
  loadApprovalConfig,
  parseApprovalKeys,
  parseSlackSecret,
} from "../core/approval-config.js";
import { errorMessage, RetryableError } from "../core/errors.js";
import { REJECTED } from "../core/failover-machine.js";
import type { Clock } from "../core/ports.js";
import { systemClock } from "./runtime.js";

/**
 * The approval endpoint (a Lambda function URL, auth type NONE: the tokens and Slack's signature
 * are the authentication).
 *
 * - `GET /approval?execution=&action=&token=`: verifies the token and shows a confirmation page
 *   (backup, data-loss window, reason, expiry) with a POST form. A GET never decides: mail scanners
 *   and link previewers fetch links.
 * - `POST /approval` (form `execution`, `action`, `token`): verifies, records, resumes the workflow,
 *   answers a page naming the outcome.
 * - `POST /slack`: Slack's interactive request. Verifies `X-Slack-Signature` on the raw body (the
 *   function URL may base64-encode it), parses the payload, checks the user against SLACK_APPROVERS,
 *   verifies the button's token (channel `slack`, the button's action), records, resumes, answers
 *   JSON replacing the buttons. All of it is a few DynamoDB calls and one Step Functions call, well
 *   inside Slack's 3 s; the SFN client has short timeouts so a slow call fails instead of overrunning.
 *   (The answer carries `replace_original`; the parsed payload keeps `response_url`, restricted to
 *   hooks.slack.com, should the message need updating there.)
 *
 * Order, so that nothing forged or replayed has any effect: verify (signature, binding, expiry,
 * Slack's signature and allow list) -> record (a conditional write: the first final decision wins)
 * -> only then take the task token and call SendTaskSuccess/SendTaskFailure. Every refusal is a 4xx
 * with a short reason and no write and no callback. Tokens and secrets are never logged.
 */

/** Secrets as used: the HMAC keys (first signs, all verify) and Slack's signing secret. */
export interface ApprovalSecrets {
  keys: Buffer[];
  slackSigningSecret?: string;
}

export interface ApprovalRuntime {
  config: ApprovalConfig;
  store: ApprovalStore;
  tasks: TaskTokens;
  callback: TaskCallback;
  /** Fetched once per container (first request), retried on the next request if that failed. */
  secrets: () => Promise<ApprovalSecrets>;
  clock: Clock;
  logger: Logger;
}

export interface ApprovalRuntimeOptions {
  dynamo?: DynamoDBClient;
  sfn?: SFNClient;
  secretsManager?: SecretsManagerClient;
  /** Replaces Secrets Manager entirely (tests). */
  secrets?: Secrets;
  /** Replaces the Step Functions callback (tests: the emulator's executions do not run). */
  callback?: TaskCallback;
  clock?: Clock;
  logger?: Logger;
}

/** A memoised async load; a failed load is forgotten so the next call tries again. */
export function memoise<T>(load: () => Promise<T>): () => Promise<T> {
  let cached: Promise<T> | undefined;
  return () => {
    if (!cached) {
      cached = load();
      cached.catch(() => {
        cached = undefined;
      });
    }
    return cached;
  };
}

/** Reads and parses the secrets the configuration names. */
export async function loadApprovalSecrets(
  secrets: Secrets,
  config: ApprovalConfig,
): Promise<ApprovalSecrets> {
  const keys = parseApprovalKeys(await secrets.get(config.approvalSecretArn), config.approvalSecretArn);
  if (!config.slack) return { keys };
  const slackSigningSecret = parseSlackSecret(
    await secrets.get(config.slack.secretArn),
    config.slack.secretArn,
  );
  return { keys, slackSigningSecret };
}

/** Wires the endpoint: SDK clients created once per container and reused. */
export function makeApprovalRuntime(
  config: ApprovalConfig,
  options: ApprovalRuntimeOptions = {},
): ApprovalRuntime {
  const dynamo = options.dynamo ?? new DynamoDBClient({ region: config.region });
  const db = DynamoDBDocumentClient.from(dynamo, { marshallOptions: { removeUndefinedValues: true } });
  const secrets =
    options.secrets ??
    new SecretsManagerSecrets(options.secretsManager ?? new SecretsManagerClient({ region: config.region }));
  const callback =
    options.callback ??
    new SfnTaskCallback(
      options.sfn ??
        // Slack wants an answer within 3 s: fail a slow call rather than overrun (the decision stays recorded).
        new SFNClient({
          region: config.region,
          maxAttempts: 2,
          requestHandler: { connectionTimeout: 500, requestTimeout: 1000 },
        }),
    );
  return {
    config,
    store: new DynamoApprovalStore(db, config.ledgerTable),
    tasks: new DynamoTaskTokens(db, config.ledgerTable),
    callback,
    secrets: memoise(() => loadApprovalSecrets(secrets, config)),
    clock: options.clock ?? systemClock,
    logger: options.logger ?? new Logger({ serviceName: "velero-dr" }),
  };
}

/** The Lambda cold start: validate the environment (failing fast with the variable's name), then wire. */
export function approvalRuntimeFromEnv(
  env: Record<string, string | undefined> = process.env,
): ApprovalRuntime {
  return makeApprovalRuntime(loadApprovalConfig(env));
}

// --- HTTP ------------------------------------------------------------------------------------

type Result = APIGatewayProxyStructuredResultV2;

/** Bodies larger than this are refused unread (Slack's payload embeds the message: allow some room). */
const MAX_BODY_BYTES = 128 * 1024;

const SECURITY_HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  // the token is in the URL: never send it on as a Referer
  "referrer-policy": "no-referrer",
  // no framing (clickjacking), no scripts, forms post only back here
  "x-frame-options": "DENY",
  "content-security-policy":
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
};

const STATUS_OF: Record<ApprovalRefusal | SlackRefusal | DecisionRefusal | "not-allowed", number> = {
  "bad-format": 400,
  "missing-headers": 401,
  "bad-signature": 403,
  "stale-timestamp": 401,
  "not-allowed": 403,
  "wrong-channel": 403,
  "other-execution": 403,
  "wrong-action": 403,
  "unnamed-approver": 403,
  expired: 410,
  "not-waiting": 410,
  "already-decided": 409,
  "same-approver": 409,
};

const escapeHtml = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );

function page(statusCode: number, title: string, body: string): Result {
  return {
    statusCode,
    headers: { "content-type": "text/html; charset=utf-8", ...SECURITY_HEADERS },
    body: `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>${escapeHtml(title)}</title>
<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}dt{font-weight:600}
button{font-size:1.1em;padding:.5em 1.2em}</style></head>
<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`,
  };
}

function json(statusCode: number, body: object): Result {
  return {
    statusCode,
    headers: { "content-type": "application/json", ...SECURITY_HEADERS },
    body: JSON.stringify(body),
  };
}

/** The body's bytes exactly as sent (function URLs base64-encode some bodies). */
function rawBody(event: APIGatewayProxyEventV2): Buffer | "too-large" {
  const body = event.body ?? "";
  if (body.length > (event.isBase64Encoded ? Math.ceil((MAX_BODY_BYTES * 4) / 3) : MAX_BODY_BYTES)) {
    return "too-large";
  }
  return event.isBase64Encoded ? Buffer.from(body, "base64") : Buffer.from(body, "utf8");
}

/** One value per field: a repeated field (parameter pollution) counts as absent. */
function fields(params: URLSearchParams, names: readonly string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const n of names) {
    const all = params.getAll(n);
    out[n] = all.length === 1 ? all[0] : undefined;
  }
  return out;
}

const isAction = (a: string | undefined): a is ApprovalAction =>
  (APPROVAL_ACTIONS as readonly string[]).includes(a ?? "");

function minutes(seconds: number): string {
  const m = Math.round(seconds / 60);
  return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function summaryHtml(executionId: string, summary: ApprovalSummary | undefined, expiresAt?: Date): string {
  const rows: [string, string][] = [["Execution", executionId]];
  if (summary) {
    rows.push(["Backup", summary.backup]);
    rows.push(["Data-loss window", `${minutes(summary.dataLossSeconds)} (time since the backup started)`]);
    if (summary.reason) rows.push(["Reason", summary.reason]);
    if (summary.requestedBy) rows.push(["Requested by", summary.requestedBy]);
    if (summary.drill) rows.push(["Mode", "drill (no DNS switch)"]);
  }
  if (expiresAt) rows.push(["Link valid until", expiresAt.toISOString()]);
  return `<dl>${rows.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join("")}</dl>`;
}

type Decided =
  | { kind: "refused"; reason: DecisionRefusal; message: string }
  | { kind: "awaiting-second"; record: DecisionRecord }
  | { kind: "decided"; record: DecisionRecord; resumeError?: string };

/**
 * Records a verified attempt and, for the one attempt that made the decision final, resumes the
 * workflow. The store's conditional write is what makes this happen once per execution.
 */
async function decide(
  rt: ApprovalRuntime,
  executionId: string,
  entry: ApprovalEntry,
  now: Date,
): Promise<Decided> {
  const outcome = await rt.store.record(executionId, entry, { twoPersonRule: rt.config.twoPersonRule }, now);
  if (outcome.status === "refused") {
    rt.logger.warn("approval refused", { executionId, reason: outcome.reason, approver: entry.approver });
    return { kind: "refused", reason: outcome.reason, message: outcome.message };
  }
  const { record } = outcome;
  rt.logger.info("approval recorded", {
    executionId,
    status: record.status,
    approver: entry.approver,
    channel: entry.channel,
  });
  if (!outcome.final) return { kind: "awaiting-second", record };
  let resumeError: string | undefined;
  try {
    const taskToken = await rt.tasks.take(executionId);
    if (taskToken === undefined) throw new Error("the task token was already taken");
    if (record.status === "approved") await rt.callback.succeed(taskToken, approvalOutput(record));
    // REJECTED: the error name the workflow definition documents for a rejection.
    else await rt.callback.fail(taskToken, REJECTED, rejectionCause(record));
  } catch (err) {
    // Fail closed: the decision stands, the workflow is not resumed and times out on its own.
    resumeError = errorMessage(err);
    rt.logger.error("resuming the workflow failed", { executionId, error: resumeError });
  }
  try {
    await rt.store.noteResumed(executionId, rt.clock.now().toISOString(), resumeError);
  } catch (err) {
    rt.logger.warn("noting the resume failed", { executionId, error: errorMessage(err) });
  }
  return { kind: "decided", record, ...(resumeError === undefined ? {} : { resumeError }) };
}

function entryFor(
  claims: ApprovalClaims,
  event: APIGatewayProxyEventV2,
  now: Date,
  slackUser?: { userId: string; username?: string },
): ApprovalEntry {
  const http = event.requestContext?.http;
  return {
    action: claims.action,
    channel: claims.channel,
    ...approverOf(claims, slackUser),
    at: now.toISOString(),
    nonce: claims.nonce,
    ...(http?.sourceIp ? { sourceIp: http.sourceIp } : {}),
    ...(http?.userAgent ? { userAgent: http.userAgent } : {}),
  };
}

async function approvalPage(rt: ApprovalRuntime, event: APIGatewayProxyEventV2, now: Date): Promise<Result> {
  const f = fields(new URLSearchParams(event.rawQueryString ?? ""), ["execution", "action", "token"]);
  const { execution, action, token } = f;
  if (!execution || !isAction(action) || !token) {
    return page(
      400,
      "Invalid approval link",
      "<p>The link is incomplete. Use the link from the message.</p>",
    );
  }
  const { keys } = await rt.secrets();
  const verdict = verifyApproval(token, { channel: "email", executionId: execution, action }, keys, now);
  if (!verdict.ok) {
    rt.logger.warn("approval link refused", { route: "GET /approval", reason: verdict.reason });
    return page(STATUS_OF[verdict.reason], "Approval link refused", `<p>${escapeHtml(verdict.message)}.</p>`);
  }
  const { claims } = verdict;
  const decision = await rt.store.get(claims.executionId);
  if (decision && isFinal(decision.status)) {
    return page(409, "Already decided", `<p>This failover was already ${escapeHtml(decision.status)}.</p>`);
  }
  const pending = await rt.tasks.peek(claims.executionId);
  if (!pending || pending.expiresAt.getTime() <= now.getTime()) {
    return page(410, "No longer waiting", "<p>This execution is not waiting for approval any more.</p>");
  }
  const verb = claims.action === "approve" ? "Approve" : "Reject";
  const expires = new Date(claims.expiresAt * 1000);
  const hidden = Object.entries({ execution: claims.executionId, action: claims.action, token })
    .map(([k, v]) => `<input type="hidden" name="${k}" value="${escapeHtml(v)}">`)
    .join("");
  return page(
    200,
    `${verb} failover${pending.summary?.drill ? " drill" : ""}?`,
    `${summaryHtml(claims.executionId, pending.summary, expires)}
<form method="post" action="approval">${hidden}<button type="submit">${verb}</button></form>
<p>Nothing happens until you press the button. The first decision for this execution wins; the link works once.</p>`,
  );
}

async function approvalPost(rt: ApprovalRuntime, event: APIGatewayProxyEventV2, now: Date): Promise<Result> {
  const raw = rawBody(event);
  if (raw === "too-large") return page(413, "Request too large", "<p>The form is too large.</p>");
  const f = fields(new URLSearchParams(raw.toString("utf8")), ["execution", "action", "token"]);
  const { execution, action, token } = f;
  if (!execution || !isAction(action) || !token) {
    return page(400, "Invalid approval", "<p>The form is incomplete. Use the link from the message.</p>");
  }
  const { keys } = await rt.secrets();
  const verdict = verifyApproval(token, { channel: "email", executionId: execution, action }, keys, now);
  if (!verdict.ok) {
    rt.logger.warn("approval refused", { route: "POST /approval", reason: verdict.reason });
    return page(STATUS_OF[verdict.reason], "Approval refused", `<p>${escapeHtml(verdict.message)}.</p>`);
  }
  const { claims } = verdict;
  const d = await decide(rt, claims.executionId, entryFor(claims, event, now), now);
  if (d.kind === "refused") {
    return page(STATUS_OF[d.reason], "Approval refused", `<p>${escapeHtml(d.message)}.</p>`);
  }
  const summary = summaryHtml(claims.executionId, undefined);
  if (d.kind === "awaiting-second") {
    return page(
      200,
      "Approval recorded: a second approver is needed",
      `${summary}<p>The two-person rule applies.</p>`,
    );
  }
  if (d.resumeError !== undefined) {
    return page(
      502,
      `Failover ${d.record.status}, but the workflow could not be resumed`,
      `${summary}<p>The decision is recorded; the workflow will time out. Start a new request.</p>`,
    );
  }
  return page(
    200,
    d.record.status === "approved" ? "Failover approved" : "Failover rejected",
    `${summary}<p>Recorded at ${escapeHtml(now.toISOString())}; the workflow resumes.</p>`,
  );
}

async function slackPost(rt: ApprovalRuntime, event: APIGatewayProxyEventV2, now: Date): Promise<Result> {
  const slack = rt.config.slack;
  if (!slack) return json(404, { text: "Slack approvals are not configured" });
  const refused = (reason: keyof typeof STATUS_OF, message: string, log = true) => {
    if (log) rt.logger.warn("slack approval refused", { route: "POST /slack", reason });
    return json(STATUS_OF[reason], { response_type: "ephemeral", replace_original: false, text: message });
  };
  const raw = rawBody(event);
  if (raw === "too-large") return json(413, { text: "request too large" });
  const { keys, slackSigningSecret } = await rt.secrets();
  if (slackSigningSecret === undefined) throw new Error("Slack signing secret not loaded");
  const signed = verifySlackRequest(event.headers ?? {}, raw, slackSigningSecret, now);
  if (!signed.ok) return refused(signed.reason, signed.message);
  const parsed = parseSlackInteraction(raw);
  if (!parsed.ok) return refused(parsed.reason, parsed.message);
  const { interaction } = parsed;
  if (!slack.approvers.includes(interaction.userId)) {
    return refused("not-allowed", "you are not on the list of failover approvers");
  }
  const verdict = verifyApproval(
    interaction.token,
    { channel: "slack", action: interaction.action },
    keys,
    now,
  );
  if (!verdict.ok) return refused(verdict.reason, verdict.message);
  const { claims } = verdict;
  const user = {
    userId: interaction.userId,
    ...(interaction.username !== undefined ? { username: interaction.username } : {}),
  };
  const d = await decide(rt, claims.executionId, entryFor(claims, event, now, user), now);
  if (d.kind === "refused") return refused(d.reason, d.message, false);
  const at = now.toISOString();
  if (d.kind === "awaiting-second") {
    return json(200, {
      response_type: "in_channel",
      replace_original: false,
      text: `<@${interaction.userId}> approved failover ${claims.executionId} at ${at}; a second approver is needed.`,
    });
  }
  const outcome = d.record.status === "approved" ? "approved" : "rejected";
  const tail =
    d.resumeError === undefined
      ? "the workflow resumes."
      : "but the workflow could not be resumed and will time out; start a new request.";
  return json(d.resumeError === undefined ? 200 : 502, {
    response_type: "in_channel",
    replace_original: true,
    text: `Failover ${claims.executionId} ${outcome} by <@${interaction.userId}> at ${at}; ${tail}`,
  });
}

/** Routes one function URL request. Never throws: unexpected failures answer 5xx without details. */
export async function handleApprovalRequest(
  rt: ApprovalRuntime,
  event: APIGatewayProxyEventV2,
): Promise<Result> {
  const method = event.requestContext?.http?.method ?? "";
  const path = event.rawPath ?? "";
  const now = rt.clock.now();
  try {
    if (path === "/approval") {
      if (method === "GET") return await approvalPage(rt, event, now);
      if (method === "POST") return await approvalPost(rt, event, now);
      const r = page(405, "Method not allowed", "");
      return { ...r, headers: { ...r.headers, allow: "GET, POST" } };
    }
    if (path === "/slack") {
      if (method === "POST") return await slackPost(rt, event, now);
      return json(405, { text: "method not allowed" });
    }
    return json(404, { text: "not found" });
  } catch (err) {
    const retry = err instanceof RetryableError;
    rt.logger.error("approval request failed", { path, method, error: errorMessage(err) });
    return path === "/slack"
      ? json(retry ? 503 : 500, { text: "approval is unavailable; try again" })
      : page(retry ? 503 : 500, "Approval is unavailable", "<p>Try again in a moment.</p>");
  }
}

/** The Lambda handler: one function URL, structured logs with the request's context. */
export function makeApprovalHandler(rt: ApprovalRuntime) {
  return middy(
    async (event: APIGatewayProxyEventV2, _context: Context): Promise<Result> =>
      handleApprovalRequest(rt, event),
  ) // logEvent stays off whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event carries tokens.
    .use(injectLambdaContext(rt.logger, { logEvent: false }));
}
