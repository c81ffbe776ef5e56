import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Logger } from "@aws-lambda-powertools/logger";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { CreateSecretCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { CreateTopicCommand, PublishCommand, SNSClient } from "@aws-sdk/client-sns";
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from "aws-lambda";
import { StateMachine } from "aws-local-stepfunctions";
import * as z from "zod/mini";
import { handleApprovalRequest, makeApprovalRuntime } from "../functions/app/approval-http.js";
import {
  type FailoverClient,
  type FailoverService,
  makeFailoverRuntime,
  makeFailoverSteps,
} from "../functions/app/failover-steps.js";
import {
  makeRequestApprovalHandler,
  makeRequestApprovalRuntime,
  type RequestApprovalClient,
  type RequestApprovalService,
} from "../functions/app/request-approval.js";
import type { TaskCallback } from "../functions/core/approval.js";
import { loadApprovalConfig, loadRequestApprovalConfig } from "../functions/core/approval-config.js";
import { errorMessage } from "../functions/core/errors.js";
import {
  APPROVER_ATTRIBUTE,
  type FailoverConfig,
  type FailoverReport,
  type FailoverRequest,
  FailoverRequestSchema,
} from "../functions/core/failover.js";
import {
  DEFAULT_MACHINE_OPTIONS,
  type FailoverTask,
  failoverDefinition,
  type MachineOptions,
  STATE_OF,
} from "../functions/core/failover-machine.js";
import type { Clock } from "../functions/core/ports.js";
import { awsError, LOCAL_ACCOUNT, LOCAL_CREDENTIALS } from "./runtime.js";

/**
 * Local mode's Step Functions: runs the REAL failover definition (functions/core/failover-machine.ts,
 * the document the stack deploys) with aws-local-stepfunctions, each Task state bound to the real
 * handler in-process, and plays the AWS parts around it that the emulator cannot:
 *
 * - **Task bindings.** Every Task state of the definition, in the Parallel branches too, is found by
 *   walking the definition: a state whose Resource is a step's Lambda ARN is bound (by state name,
 *   `overrides.taskResourceLocalHandlers`) to that step's handler from functions/app/failover-steps.ts;
 *   the `lambda:invoke.waitForTaskToken` state (RequestApproval) to a function that invokes the
 *   real request-approval handler with the `Payload` its Parameters built, then waits for the task
 *   token's callback. A Task state left unbound is an error. Invocations go through JSON both ways,
 *   as Lambda's do; an error keeps its name (Lambda's errorType), which is what Retry and Catch match.
 * - **Task tokens and callbacks.** aws-local-stepfunctions puts no `Task.Token` in the Context
 *   Object and has no SendTaskSuccess/SendTaskFailure. The Context Object given to each execution
 *   has a `Task.Token` getter: every evaluation of `$$.Task.Token` (each attempt of the state, as
 *   Step Functions issues a token per attempt) mints a new token with {@link LocalTaskCallbacks},
 *   which then plays the two APIs behind the TaskCallback port: succeed resolves the waiting task
 *   with the output, fail rejects it with an error named as given (`Rejected`: the Catch sends it
 *   to ReportFailure); a token that timed out, was superseded or already answered gets
 *   TaskTimedOut, an unknown one InvalidToken, as from AWS. The state's own TimeoutSeconds (the
 *   approval timeout) is the library's, and closes the token too.
 * - **The function URL.** A small HTTP server ({@link LocalFunctionUrl}) turns each request into an
 *   APIGatewayProxyEventV2 (payload 2.0, form bodies base64-encoded as function URLs do) and calls
 *   the real handleApprovalRequest; its address is APPROVAL_BASE_URL.
 * - **Email.** SNS email subscriptions deliver nothing on the emulator: every SNS Publish of the
 *   runner's clients is captured by SDK middleware after it succeeded ({@link Mailbox}), so a local
 *   approver can read the approval email and follow its link over HTTP ({@link followApprovalLink}).
 *
 * Every SDK client (steps, request, endpoint) is made through one factory pinned to the failover
 * region, pointed at the emulator (or as `clientConfig` says), and handed to `onClient`.
 */

/** Local defaults: the approval may take 5 minutes, wait steps retry every second. */
export const LOCAL_MACHINE_OPTIONS: MachineOptions = {
  ...DEFAULT_MACHINE_OPTIONS,
  approvalTimeoutSeconds: 300,
  taskTimeoutSeconds: 120,
  waitIntervalSeconds: 1,
  waitMaxAttempts: 120,
};

export type LocalService = FailoverService | RequestApprovalService;
export type LocalClient = FailoverClient | RequestApprovalClient;

export interface LocalFailoverOptions {
  /** The emulator. */
  endpoint: string;
  /** The failover steps' settings (what their Lambda functions read from FAILOVER_*). */
  failover: FailoverConfig;
  /**
   * The approval side; what is absent is created on the emulator (a generated key, a topic).
   * `approverEmails`: the request step's APPROVER_EMAILS (one message per approver, links naming
   * them); absent: one message to the whole topic.
   */
  approval?: {
    secretArn?: string;
    topicArn?: string;
    ttlMinutes?: number;
    twoPersonRule?: boolean;
    approverEmails?: string[];
  };
  machine?: Partial<MachineOptions>;
  clock?: Clock;
  /** Client settings per service and region (default: the emulator, local credentials). */
  clientConfig?: (
    service: LocalService,
    region: string,
  ) => { endpoint?: string; credentials?: typeof LOCAL_CREDENTIALS; maxAttempts?: number };
  onClient?: (client: LocalClient, service: LocalService) => void;
  logLevel?: "DEBUG" | "INFO" | "WARN" | "ERROR" | "SILENT";
  /** Where execution records are kept (`dr failover status --local` reads them); default: memory only. */
  stateDir?: string;
}

// --- Task tokens -----------------------------------------------------------------------------

interface PendingTask {
  executionId: string;
  state: "open" | "succeeded" | "failed" | "timed-out" | "superseded" | "closed";
  promise: Promise<object>;
  resolve: (output: object) => void;
  reject: (err: Error) => void;
  timer?: ReturnType<typeof setTimeout>;
}

/** Step Functions' task tokens and SendTaskSuccess/SendTaskFailure, in memory (see the file's comment). */
export class LocalTaskCallbacks implements TaskCallback {
  private readonly tasks = new Map<string, PendingTask>();
  /** Every callback received, in order (tests: how many resumed the workflow). */
  readonly calls: Array<{
    kind: "succeed" | "fail";
    executionId?: string;
    accepted: boolean;
    error?: string;
  }> = [];

  /** A new token for an attempt of a task of `executionId` (the `$$.Task.Token` getter calls this). */
  mint(executionId: string): string {
    const token = `local-task-token.${randomBytes(48).toString("base64url")}`;
    let resolve: (o: object) => void = () => {};
    let reject: (e: Error) => void = () => {};
    const promise = new Promise<object>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => {}); // a token nobody waits on must not be an unhandled rejection
    this.tasks.set(token, { executionId, state: "open", promise, resolve, reject });
    return token;
  }

  /**
   * The outcome of `token`'s task: the callback's output or error. After `timeoutMs` the token is
   * closed (TaskTimedOut for later callbacks); the state's own TimeoutSeconds fails the state then.
   * Other open tokens of the same execution are superseded: only the newest attempt can be resumed.
   */
  wait(token: string, timeoutMs: number): Promise<object> {
    const t = this.tasks.get(token);
    if (!t) throw new Error("the task token was not issued by this runner");
    for (const [other, o] of this.tasks) {
      if (other !== token && o.executionId === t.executionId && o.state === "open")
        this.close(other, "superseded");
    }
    t.timer = setTimeout(() => {
      if (t.state !== "open") return;
      t.state = "timed-out";
      const err = new Error("the task timed out waiting for its callback");
      err.name = "States.Timeout";
      t.reject(err);
    }, timeoutMs);
    return t.promise;
  }

  /** Closes a token (its invocation failed, a newer attempt began, the execution ended). */
  close(token: string, state: "superseded" | "closed" = "closed"): void {
    const t = this.tasks.get(token);
    if (t?.state !== "open") return;
    t.state = state;
    clearTimeout(t.timer);
  }

  closeExecution(executionId: string): void {
    for (const [token, t] of this.tasks) if (t.executionId === executionId) this.close(token);
  }

  private take(token: string, kind: "succeed" | "fail"): PendingTask {
    const t = this.tasks.get(token);
    if (!t) {
      this.calls.push({ kind, accepted: false, error: "InvalidToken" });
      throw awsError("InvalidToken", "Invalid Token: the task token was not issued");
    }
    if (t.state !== "open") {
      this.calls.push({ kind, executionId: t.executionId, accepted: false, error: "TaskTimedOut" });
      throw awsError("TaskTimedOut", `Task Timed Out: the task is ${t.state}`);
    }
    clearTimeout(t.timer);
    this.calls.push({ kind, executionId: t.executionId, accepted: true });
    return t;
  }

  async succeed(taskToken: string, output: object): Promise<void> {
    const t = this.take(taskToken, "succeed");
    t.state = "succeeded";
    t.resolve(JSON.parse(JSON.stringify(output)) as object);
  }

  async fail(taskToken: string, error: string, cause: string): Promise<void> {
    const t = this.take(taskToken, "fail");
    t.state = "failed";
    const err = new Error(cause);
    err.name = error;
    t.reject(err);
  }
}

// --- Email -----------------------------------------------------------------------------------

export interface CapturedMessage {
  topicArn: string;
  subject: string;
  message: string;
  /** The SNS message attribute `approver`: whom the message is for (an address, or `all`). */
  approver?: string;
  messageId: string;
  at: string;
}

/** What SNS would have emailed: every successful Publish of the runner's clients. */
export class Mailbox {
  readonly messages: CapturedMessage[] = [];
  private waiters: Array<() => void> = [];

  /** SDK middleware on an SNS client: records each Publish once the emulator accepted it. */
  attach(client: SNSClient): void {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const out = await next(args);
        if ((context as { commandName?: string }).commandName === PublishCommand.name) {
          const input = args.input as {
            TopicArn?: string;
            Subject?: string;
            Message?: string;
            MessageAttributes?: Record<string, { StringValue?: string }>;
          };
          const approver = input.MessageAttributes?.[APPROVER_ATTRIBUTE]?.StringValue;
          this.messages.push({
            topicArn: input.TopicArn ?? "",
            subject: input.Subject ?? "",
            message: input.Message ?? "",
            ...(approver !== undefined ? { approver } : {}),
            messageId: (out.output as { MessageId?: string }).MessageId ?? "",
            at: new Date().toISOString(),
          });
          for (const w of this.waiters.splice(0)) w();
        }
        return out;
      },
      { step: "initialize", name: "localMailbox" },
    );
  }

  /** The first message (from the `after`-th on) matching `match`, waiting for it up to `timeoutMs`. */
  async waitFor(
    match: (m: CapturedMessage) => boolean,
    timeoutMs = 30_000,
    after = 0,
  ): Promise<CapturedMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(after).find(match);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /**
   * The approval request emailed for `executionId` (the next one after `after` messages): the one
   * addressed to `approver` (its SNS attribute), or else the first one sent, which with per-approver
   * messages (APPROVER_EMAILS) is the first approver's.
   */
  approvalRequest(
    executionId: string,
    timeoutMs?: number,
    after = 0,
    approver?: string,
  ): Promise<CapturedMessage> {
    const q = `execution=${encodeURIComponent(executionId)}&`;
    return this.waitFor(
      (m) =>
        m.message.includes("/approval?") &&
        m.message.includes(q) &&
        (approver === undefined || m.approver === approver),
      timeoutMs,
      after,
    );
  }
}

/** The approve or reject link of an approval email. */
export function approvalLinkIn(message: string, action: "approve" | "reject"): string {
  const links = message.match(/https?:\/\/[^\s]+\/approval\?[^\s]+/g) ?? [];
  const link = links.find((l) => new URL(l).searchParams.get("action") === action);
  if (!link) throw new Error(`the message has no ${action} link`);
  return link;
}

// --- The function URL ------------------------------------------------------------------------

type HttpResult = APIGatewayProxyStructuredResultV2;

/** Content types a function URL hands over as text; any other body arrives base64-encoded. */
const TEXT_BODY = /^(text\/|application\/(json|xml|javascript))/;

/**
 * Plays a Lambda function URL on 127.0.0.1: each request becomes an APIGatewayProxyEventV2
 * (payload format 2.0) for `handler`, its result the HTTP response.
 */
export class LocalFunctionUrl {
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(
    handler: (event: APIGatewayProxyEventV2) => Promise<HttpResult>,
  ): Promise<LocalFunctionUrl> {
    const server = createServer((req, res) => {
      void serve(req, res, handler).catch((err: unknown) => {
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`local function URL: ${errorMessage(err)}`);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return new LocalFunctionUrl(server, `http://127.0.0.1:${port}`);
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}

async function serve(
  req: IncomingMessage,
  res: ServerResponse,
  handler: (event: APIGatewayProxyEventV2) => Promise<HttpResult>,
): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const raw = Buffer.concat(chunks);
  const url = new URL(req.url ?? "/", `http://${req.headers.host ?? "127.0.0.1"}`);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v !== undefined && k !== "cookie") headers[k.toLowerCase()] = Array.isArray(v) ? v.join(",") : v;
  }
  const text = TEXT_BODY.test(headers["content-type"] ?? "");
  const now = new Date();
  const query: Record<string, string> = {};
  for (const [k, v] of url.searchParams) query[k] = query[k] === undefined ? v : `${query[k]},${v}`;
  const event: APIGatewayProxyEventV2 = {
    version: "2.0",
    routeKey: "$default",
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    ...(req.headers.cookie ? { cookies: req.headers.cookie.split(/;\s*/) } : {}),
    ...(url.search ? { queryStringParameters: query } : {}),
    requestContext: {
      accountId: "anonymous",
      apiId: "local",
      domainName: url.host,
      domainPrefix: "local",
      http: {
        method: req.method ?? "GET",
        path: url.pathname,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: req.socket.remoteAddress ?? "127.0.0.1",
        userAgent: headers["user-agent"] ?? "",
      },
      requestId: randomUUID(),
      routeKey: "$default",
      stage: "$default",
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
    },
    isBase64Encoded: raw.length > 0 && !text,
    ...(raw.length > 0 ? { body: text ? raw.toString("utf8") : raw.toString("base64") } : {}),
  };
  const r = await handler(event);
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(r.headers ?? {})) out[k] = String(v);
  if (r.cookies?.length) out["set-cookie"] = r.cookies;
  const body = r.body === undefined ? "" : r.isBase64Encoded ? Buffer.from(r.body, "base64") : r.body;
  res.writeHead(r.statusCode ?? 200, out);
  res.end(body);
}

// --- The local approver ----------------------------------------------------------------------

export interface FollowedLink {
  /** The confirmation page (GET). */
  page: { status: number; title: string };
  /** The decision (POST of the page's form), absent when the page offered no form. */
  decision?: { status: number; title: string; body: string };
}

const unescapeHtml = (s: string) =>
  s.replace(
    /&(amp|lt|gt|quot|#39);/g,
    (_, e: string) => ({ amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'" })[e] ?? "",
  );
const titleOf = (html: string) => unescapeHtml(/<h1>([^<]*)<\/h1>/.exec(html)?.[1] ?? "");

/**
 * What an approver does with the link in the email: opens it (GET: the confirmation page), then
 * presses the page's button (POST of its form, with the form's own fields, to its action resolved
 * against the page's URL). Plain HTTP, no shortcut into the handler.
 */
export async function followApprovalLink(
  link: string,
  o: { userAgent?: string } = {},
): Promise<FollowedLink> {
  const headers = { "user-agent": o.userAgent ?? "velero-dr-local-approver/1 (local drill)" };
  const got = await fetch(link, { headers, redirect: "manual" });
  const html = await got.text();
  const page = { status: got.status, title: titleOf(html) };
  const form = /<form method="post" action="([^"]*)">([\s\S]*?)<\/form>/.exec(html);
  if (got.status !== 200 || !form) return { page };
  const fields = new URLSearchParams();
  for (const m of (form[2] ?? "").matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
    fields.append(unescapeHtml(m[1] ?? ""), unescapeHtml(m[2] ?? ""));
  }
  const posted = await fetch(new URL(unescapeHtml(form[1] ?? ""), link), {
    method: "POST",
    headers: { ...headers, "content-type": "application/x-www-form-urlencoded" },
    body: fields.toString(),
    redirect: "manual",
  });
  const body = await posted.text();
  return { page, decision: { status: posted.status, title: titleOf(body), body } };
}

/**
 * Runs one execution the way people do: starts it, waits for its approval email, has the local
 * approver follow the `decide` link over HTTP (or nobody, with "none"), and waits for the end. When
 * the execution ends before any email (preflight refused), there is nothing to follow. The approver
 * reads the first approval message (with per-approver messages, the first approver's); with
 * `approvers`, each named approver in turn follows the link of the message addressed to them
 * (`followed` is the last one's, `followedBy` every one's).
 */
export async function runWithApprover(
  runner: LocalFailoverRunner,
  request: FailoverRequest,
  decide: "approve" | "reject" | "none",
  o: { emailTimeoutMs?: number; approvers?: string[] } = {},
): Promise<{
  record: LocalExecutionRecord;
  email?: CapturedMessage;
  followed?: FollowedLink;
  followedBy?: Array<{ approver: string; email: CapturedMessage; followed: FollowedLink }>;
}> {
  const after = runner.mailbox.messages.length;
  const timeoutMs = o.emailTimeoutMs ?? 30_000;
  const execution = runner.start(request);
  const [first] = o.approvers ?? [];
  const mail = runner.mailbox.approvalRequest(request.executionId, timeoutMs, after, first);
  mail.catch(() => {});
  const email = await Promise.race([execution.done.then(() => undefined), mail]);
  let followed: FollowedLink | undefined;
  let followedBy: Array<{ approver: string; email: CapturedMessage; followed: FollowedLink }> | undefined;
  if (email && decide !== "none") {
    if (o.approvers?.length) {
      followedBy = [];
      for (const approver of o.approvers) {
        const own = await runner.mailbox.approvalRequest(request.executionId, timeoutMs, after, approver);
        followed = await followApprovalLink(approvalLinkIn(own.message, decide));
        followedBy.push({ approver, email: own, followed });
      }
    } else {
      followed = await followApprovalLink(approvalLinkIn(email.message, decide));
    }
  }
  const record = await execution.done;
  return {
    record,
    ...(email ? { email } : {}),
    ...(followed ? { followed } : {}),
    ...(followedBy ? { followedBy } : {}),
  };
}

// --- Executions ------------------------------------------------------------------------------

/** One entry of aws-local-stepfunctions' event log (its type is not exported). */
type EventLog = ReturnType<StateMachine["run"]>["eventLogs"] extends AsyncGenerator<infer E> ? E : never;

export type LocalExecutionStatus = "RUNNING" | "SUCCEEDED" | "FAILED";

/** A local execution as `dr failover status` shows it (a subset of DescribeExecution + the report). */
export interface LocalExecutionRecord {
  executionId: string;
  executionArn: string;
  stateMachineArn: string;
  status: LocalExecutionStatus;
  startedAt: string;
  stoppedAt?: string;
  input: { request: FailoverRequest };
  /** The final state document (SUCCEEDED). */
  output?: Record<string, unknown>;
  /** The execution's error and cause (FAILED: the Fail state's, or the error that ended it). */
  error?: string;
  cause?: string;
  /** Why it failed: the error the Catch put at `$.error` (preflight refused, rejected, timed out...). */
  failure?: { error: string; cause: string };
  /** The report step's report (Report, or ReportFailure on the way to Failed). */
  report?: FailoverReport;
  /** The approval task's output (who approved, how, when). */
  approval?: { approvedBy: string; channel: string; at: string };
  /** Seconds per state, entered to exited (the last attempt's; a retried state counts from its first entry). */
  stateSeconds: Record<string, number>;
  /** The execution's history, compact: one line per event. */
  history: Array<{ at: string; type: string; state?: string; error?: string }>;
}

export interface LocalExecution {
  executionId: string;
  executionArn: string;
  /** Resolves when the execution ends, SUCCEEDED or FAILED (never rejects for a failed execution). */
  done: Promise<LocalExecutionRecord>;
  abort(): void;
}

const rec = (v: unknown): Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

/** A Lambda context for an in-process invocation. */
function lambdaContext(functionName: string, arn: string, timeoutMs: number): Context {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: "$LATEST",
    invokedFunctionArn: arn,
    memoryLimitInMB: "256",
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: "local",
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

type LambdaHandler = (event: unknown, context: Context) => Promise<unknown>;

/** Local mode's Step Functions for the failover workflow (see the file's comment). */
export class LocalFailoverRunner {
  readonly definition: Record<string, unknown>;
  readonly stateMachineArn: string;
  /** Task state name -> what it is bound to (`failover-steps.<step>`, `request-approval`). */
  readonly bindings: Record<string, string>;
  private readonly records = new Map<string, LocalExecutionRecord>();

  private constructor(
    private readonly o: LocalFailoverOptions,
    private readonly machine: StateMachine,
    definition: Record<string, unknown>,
    private readonly handlers: Record<string, (executionId: string) => (input: unknown) => Promise<unknown>>,
    readonly callbacks: LocalTaskCallbacks,
    readonly mailbox: Mailbox,
    readonly functionUrl: LocalFunctionUrl,
    readonly approvalSecretArn: string,
    readonly approversTopicArn: string,
    private readonly clock: Clock,
    readonly machineOptions: MachineOptions,
  ) {
    this.definition = definition;
    this.stateMachineArn = `arn:aws:states:${o.failover.failoverRegion}:${LOCAL_ACCOUNT}:stateMachine:velero-dr-failover-local`;
    this.bindings = Object.fromEntries(Object.keys(handlers).map((s) => [s, bindingName(definition, s)]));
  }

  static async start(o: LocalFailoverOptions): Promise<LocalFailoverRunner> {
    const region = o.failover.failoverRegion;
    const clock = o.clock ?? { now: () => new Date() };
    const logger = new Logger({ serviceName: "velero-dr-failover", logLevel: o.logLevel ?? "WARN" });
    const mailbox = new Mailbox();
    const settings = (service: LocalService) => ({
      ...(o.clientConfig?.(service, region) ?? { endpoint: o.endpoint, credentials: LOCAL_CREDENTIALS }),
      region,
    });
    const onClient = (client: LocalClient, service: LocalService) => {
      if (service === "sns") mailbox.attach(client as SNSClient);
      o.onClient?.(client, service);
    };
    const made = <C extends LocalClient>(client: C, service: LocalService): C => {
      onClient(client, service);
      return client;
    };
    const dynamo = made(new DynamoDBClient(settings("dynamodb")), "dynamodb");
    const secretsManager = made(new SecretsManagerClient(settings("secretsmanager")), "secretsmanager");

    // The approval key and the approvers' topic, when not given: made on the emulator as the stack would.
    const suffix = randomBytes(4).toString("hex");
    const approvalSecretArn =
      o.approval?.secretArn ??
      (
        await secretsManager.send(
          new CreateSecretCommand({
            Name: `velero-dr-approval-keys-${suffix}`,
            SecretString: JSON.stringify({ keys: [randomBytes(48).toString("base64url")] }),
          }),
        )
      ).ARN ??
      "";
    const approversTopicArn =
      o.approval?.topicArn ??
      (
        await made(new SNSClient(settings("sns")), "sns").send(
          new CreateTopicCommand({ Name: `velero-dr-approvers-${suffix}` }),
        )
      ).TopicArn ??
      "";

    const callbacks = new LocalTaskCallbacks();
    const approvalEnv = {
      FAILOVER_REGION: region,
      LEDGER_TABLE: o.failover.ledgerTable,
      APPROVAL_SECRET_ARN: approvalSecretArn,
      ...(o.approval?.ttlMinutes !== undefined
        ? { APPROVAL_TTL_MINUTES: String(o.approval.ttlMinutes) }
        : {}),
      ...(o.approval?.twoPersonRule !== undefined
        ? { TWO_PERSON_RULE: String(o.approval.twoPersonRule) }
        : {}),
    };
    const endpointRt = makeApprovalRuntime(loadApprovalConfig(approvalEnv), {
      dynamo,
      secretsManager,
      callback: callbacks,
      clock,
      logger,
    });
    const functionUrl = await LocalFunctionUrl.start((event) => handleApprovalRequest(endpointRt, event));

    const requestRt = makeRequestApprovalRuntime(
      loadRequestApprovalConfig({
        ...approvalEnv,
        APPROVAL_BASE_URL: functionUrl.url,
        FAILOVER_TOPIC_ARN: approversTopicArn,
        ...(o.approval?.approverEmails?.length
          ? { APPROVER_EMAILS: o.approval.approverEmails.join(",") }
          : {}),
      }),
      { clientConfig: (s) => settings(s), onClient, callback: callbacks, clock, logger },
    );
    const steps = makeFailoverSteps(
      makeFailoverRuntime(o.failover, { clientConfig: (s) => settings(s), onClient, clock, logger }),
    );

    const machineOptions: MachineOptions = { ...LOCAL_MACHINE_OPTIONS, ...o.machine };
    const arns = Object.fromEntries(
      (Object.keys(STATE_OF) as FailoverTask[]).map((t) => [
        t,
        `arn:aws:lambda:${region}:${LOCAL_ACCOUNT}:function:velero-dr-failover-${t}`,
      ]),
    ) as Record<FailoverTask, string>;
    const definition = failoverDefinition(arns, machineOptions);
    // Validated as written (asl-validator, JSONPaths and ARNs): nothing had to be turned off.
    const machine = new StateMachine(definition as never);

    const lambdaOf: Record<Exclude<FailoverTask, "requestApproval">, LambdaHandler> = {
      preflight: steps.preflight,
      scaleNodegroup: steps.scaleNodegroup,
      waitNodegroup: steps.waitNodegroup,
      startRestore: steps.startRestore,
      waitRestore: steps.waitRestore,
      switchDns: steps.switchDns,
      scaleBack: steps.scaleBack,
      report: steps.report,
    };
    const requestApproval: LambdaHandler = makeRequestApprovalHandler(requestRt);
    const taskOf = new Map(Object.entries(arns).map(([t, arn]) => [arn, t as FailoverTask]));
    const invoke = async (task: FailoverTask, handler: LambdaHandler, input: unknown): Promise<unknown> => {
      const event = JSON.parse(JSON.stringify(input ?? null)) as unknown;
      try {
        const out = await handler(event, lambdaContext(`velero-dr-failover-${task}`, arns[task], 60_000));
        return JSON.parse(JSON.stringify(out ?? null)) as unknown;
      } catch (err) {
        // What Step Functions sees of a Lambda error: its type (name) and message.
        const e = new Error(errorMessage(err));
        e.name = err instanceof Error ? err.name : "Error";
        throw e;
      }
    };

    const handlers: Record<string, (executionId: string) => (input: unknown) => Promise<unknown>> = {};
    for (const [name, state] of taskStates(definition)) {
      const resource = String(state.Resource ?? "");
      const direct = taskOf.get(resource);
      if (direct && direct !== "requestApproval") {
        const handler = lambdaOf[direct];
        handlers[name] = () => (input) => invoke(direct, handler, input);
        continue;
      }
      const params = rec(state.Parameters);
      if (resource === "arn:aws:states:::lambda:invoke.waitForTaskToken") {
        const target = taskOf.get(String(params.FunctionName ?? ""));
        if (target !== "requestApproval") {
          throw new Error(
            `state ${name} waits for a task token from ${String(params.FunctionName)}: not bound`,
          );
        }
        const timeoutMs = Number(state.TimeoutSeconds ?? 60) * 1000;
        handlers[name] = () => async (input) => {
          const payload = rec(rec(input).Payload);
          const token = String(payload.taskToken ?? "");
          const outcome = callbacks.wait(token, timeoutMs);
          try {
            await invoke("requestApproval", requestApproval, payload);
          } catch (err) {
            callbacks.close(token);
            throw err;
          }
          return outcome;
        };
        continue;
      }
      throw new Error(`Task state ${name} (${resource}) has no local binding`);
    }

    return new LocalFailoverRunner(
      o,
      machine,
      definition,
      handlers,
      callbacks,
      mailbox,
      functionUrl,
      approvalSecretArn,
      approversTopicArn,
      clock,
      machineOptions,
    );
  }

  /** A request as `dr failover request` makes it, timed by the runner's clock. */
  request(o: { reason: string; requestedBy: string; drill: boolean; executionId?: string }): FailoverRequest {
    const now = this.clock.now();
    return {
      executionId: o.executionId ?? newExecutionId(o.drill, now),
      reason: o.reason,
      requestedBy: o.requestedBy,
      drill: o.drill,
      requestedAt: now.toISOString(),
    };
  }

  /**
   * Starts an execution with input `{ request }`. A re-run of a failed execution is another start
   * with the same request (the same executionId): every step finds its work done.
   */
  start(request: FailoverRequest): LocalExecution {
    const executionId = request.executionId;
    const executionArn = `${this.stateMachineArn.replace(":stateMachine:", ":execution:")}:${executionId}`;
    const callbacks = this.callbacks;
    const started = new Date();
    const record: LocalExecutionRecord = {
      executionId,
      executionArn,
      stateMachineArn: this.stateMachineArn,
      status: "RUNNING",
      startedAt: started.toISOString(),
      input: { request },
      stateSeconds: {},
      history: [],
    };
    this.records.set(executionId, record);
    this.persist(record);
    const overrides = Object.fromEntries(
      Object.entries(this.handlers).map(([state, make]) => [state, make(executionId)]),
    );
    const context = {
      Execution: { Id: executionArn, Name: executionId, RoleArn: `arn:aws:iam::${LOCAL_ACCOUNT}:role/local` },
      StateMachine: { Id: this.stateMachineArn, Name: "velero-dr-failover-local" },
      // aws-local-stepfunctions has no task tokens: each read of $$.Task.Token mints one.
      Task: {
        get Token() {
          return callbacks.mint(executionId);
        },
      },
    };
    const run = this.machine.run({ request } as never, {
      overrides: { taskResourceLocalHandlers: overrides as never },
      context: context as never,
    });
    const events: EventLog[] = [];
    const collected = (async () => {
      for await (const e of run.eventLogs) events.push(e);
    })();
    const done = (async () => {
      try {
        const output = rec(await run.result);
        record.status = "SUCCEEDED";
        record.output = output;
      } catch (err) {
        record.status = "FAILED";
        const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
        record.error = cause instanceof Error ? cause.name : "Error";
        record.cause = errorMessage(cause);
      } finally {
        callbacks.closeExecution(executionId);
      }
      await Promise.race([collected, new Promise((r) => setTimeout(r, 1000))]);
      record.stoppedAt = new Date().toISOString();
      summariseEvents(record, events);
      this.persist(record);
      return record;
    })();
    return { executionId, executionArn, done, abort: () => run.abort() };
  }

  /** Starts and waits for the end. */
  run(request: FailoverRequest): Promise<LocalExecutionRecord> {
    return this.start(request).done;
  }

  describe(executionId: string): LocalExecutionRecord | undefined {
    return this.records.get(executionId);
  }

  private persist(record: LocalExecutionRecord): void {
    const dir = this.o.stateDir;
    if (!dir) return;
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${record.executionId}.json`);
    writeFileSync(`${file}.tmp`, `${JSON.stringify(record, null, 2)}\n`);
    renameSync(`${file}.tmp`, file);
  }

  async stop(): Promise<void> {
    await this.functionUrl.stop();
  }
}

/** Every Task state of a definition, in Parallel branches too: [name, state]. */
function taskStates(definition: Record<string, unknown>): Array<[string, Record<string, unknown>]> {
  const out: Array<[string, Record<string, unknown>]> = [];
  const walk = (states: Record<string, unknown>) => {
    for (const [name, raw] of Object.entries(states)) {
      const state = rec(raw);
      if (state.Type === "Task") out.push([name, state]);
      if (state.Type === "Parallel") {
        for (const b of (state.Branches as unknown[]) ?? []) walk(rec(rec(b).States));
      }
    }
  };
  walk(rec(definition.States));
  return out;
}

function bindingName(definition: Record<string, unknown>, stateName: string): string {
  const state = taskStates(definition).find(([n]) => n === stateName)?.[1] ?? {};
  const fn = String(state.Resource ?? "").startsWith("arn:aws:states:::")
    ? String(rec(state.Parameters).FunctionName ?? "")
    : String(state.Resource ?? "");
  const task = fn.split(":function:velero-dr-failover-")[1] ?? "?";
  return task === "requestApproval"
    ? "request-approval (waits for its task token)"
    : `failover-steps.${task}`;
}

/** Fills the record from the execution's events: why it failed, the report, the approval, times. */
function summariseEvents(record: LocalExecutionRecord, events: EventLog[]): void {
  const entered = new Map<string, number>();
  for (const e of events) {
    const state = "state" in e ? e.state : undefined;
    const error = "Error" in e ? `${e.Error}: ${String(e.Cause ?? "")}`.slice(0, 500) : undefined;
    record.history.push({
      at: new Date(e.timestamp).toISOString(),
      type: e.type,
      ...(state ? { state: state.name } : {}),
      ...(error ? { error } : {}),
    });
    if (!state) continue;
    if (e.type === "StateEntered" && !entered.has(state.name)) entered.set(state.name, e.timestamp);
    if (e.type === "StateExited" || e.type === "StateFailed" || e.type === "StateCaught") {
      const t0 = entered.get(state.name);
      if (t0 !== undefined) record.stateSeconds[state.name] = (e.timestamp - t0) / 1000;
    }
    if (e.type === "StateExited") {
      const out = rec(state.output);
      if (state.name === "ReportFailure" || state.name === STATE_OF.report) {
        const report = rec(rec(rec(out.steps).report).report);
        if (report.executionId) record.report = report as unknown as FailoverReport;
        const caught = rec(out.error);
        if (typeof caught.Error === "string") {
          record.failure = { error: caught.Error, cause: String(caught.Cause ?? "") };
        }
      }
      if (state.name === STATE_OF.requestApproval) {
        const a = rec(out.approval);
        if (typeof a.approvedBy === "string") {
          record.approval = {
            approvedBy: a.approvedBy,
            channel: String(a.channel ?? ""),
            at: String(a.at ?? ""),
          };
        }
      }
    }
    if (e.type === "StateCaught" && !record.failure) {
      // The Catch's error, should ReportFailure itself not have exited.
      const failed = [...events]
        .reverse()
        .find((x) => x.type === "StateFailed" && "state" in x && x.state.name === state.name);
      if (failed && "Error" in failed)
        record.failure = { error: failed.Error, cause: String(failed.Cause ?? "") };
    }
  }
}

/**
 * A new execution id (= Step Functions execution name): `failover-` or `drill-`, the UTC time, and
 * 6 random hex digits. Fits execution names (1-80 of A-Z a-z 0-9 _ -) and approval tokens.
 */
export function newExecutionId(
  drill: boolean,
  now: Date,
  random: () => string = () => randomBytes(3).toString("hex"),
): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  return `${drill ? "drill" : "failover"}-${stamp}-${random()}`;
}

const LocalRecordSchema = z.looseObject({
  executionId: z.string(),
  executionArn: z.string(),
  status: z.enum(["RUNNING", "SUCCEEDED", "FAILED"]),
  startedAt: z.string(),
  input: z.looseObject({ request: FailoverRequestSchema }),
  stateSeconds: z.record(z.string(), z.number()),
  history: z.array(z.looseObject({ at: z.string(), type: z.string() })),
});

/** Execution records kept by a runner with `stateDir` (`dr failover status --local`). */
export function readLocalExecutions(stateDir: string): LocalExecutionRecord[] {
  let files: string[];
  try {
    files = readdirSync(stateDir).filter((f) => f.endsWith(".json"));
  } catch {
    return [];
  }
  const out: LocalExecutionRecord[] = [];
  for (const f of files) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(join(stateDir, f), "utf8"));
    } catch {
      continue; // being written, or not ours
    }
    // The fields the status reads; the rest is the runner's own record, written by the same code.
    if (z.safeParse(LocalRecordSchema, parsed).success) out.push(parsed as LocalExecutionRecord);
  }
  return out.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
}
