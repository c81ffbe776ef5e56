import { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { SFNClient } from "@aws-sdk/client-sfn";
import { SNSClient } from "@aws-sdk/client-sns";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import middy from "@middy/core";
import * as z from "zod/mini";
import { DynamoApprovalStore, DynamoTaskTokens } from "../adapters/approval-store.js";
import type { Credentials } from "../adapters/k8s.js";
import { type SlackPoster, SnsNotifier, slackWebhookPoster } from "../adapters/notifier.js";
import { SecretsManagerSecrets } from "../adapters/secrets.js";
import { SfnTaskCallback } from "../adapters/task-callback.js";
import {
  type ApprovalStore,
  type ApprovalSummary,
  approvalLink,
  approvalOutput,
  type DecisionRecord,
  EXECUTION_ID,
  isFinal,
  issueApproval,
  rejectionCause,
  type Secrets,
  type TaskCallback,
  type TaskTokens,
} from "../core/approval.js";
import {
  loadRequestApprovalConfig,
  parseApprovalKeys,
  parseSlackWebhookSecret,
  type RequestApprovalConfig,
} from "../core/approval-config.js";
import { renderApprovalRequest } from "../core/approval-message.js";
import { ConfigError, classifyAwsError, errorMessage } from "../core/errors.js";
import {
  FailoverPlanSchema,
  FailoverRequestSchema,
  type Notifier,
  parseWith,
  StepFailed,
} from "../core/failover.js";
import { REJECTED } from "../core/failover-machine.js";
import type { Clock } from "../core/ports.js";
import { memoise } from "./approval-http.js";
import { systemClock } from "./runtime.js";

/**
 * The RequestApproval state's function, invoked by Step Functions with
 * `lambda:invoke.waitForTaskToken` and the payload `{ taskToken, request, steps }`
 * (functions/core/failover-machine.ts). Its return value is ignored: the workflow waits until the
 * approval endpoint (functions/app/approval-http.ts) calls SendTaskSuccess or SendTaskFailure with
 * the task token, or until the state's timeout.
 *
 * In order, so that a link clicked the moment it arrives finds what it needs:
 * 1. keep the task token server side (the ledger's APPROVAL#<execution>/TASK item, expiring with the
 *    links: APPROVAL_TTL_MINUTES), with the summary the confirmation page shows. A link carries a
 *    signed token naming the execution, never the task token.
 * 2. if this execution's approval is already decided (a retry of this state after the decision, or
 *    a re-run of the same execution): replay the recorded decision (SendTaskSuccess with the same
 *    approval, or SendTaskFailure `Rejected` with the same cause) and send nothing. The first
 *    decision wins, across retries and re-runs.
 * 3. otherwise mint one approve and one reject token per channel (email; Slack when its webhook is
 *    configured), each signed with the approval key (the first key of the approval secret), bound
 *    to the execution, the action and the channel, expiring with the TTL; publish the email to the
 *    approvers' topic (SNS) and, if configured, post the Slack message with the buttons. With
 *    APPROVER_EMAILS, the email is one message per approver, in the listed order: its links' tokens
 *    carry the `approver` claim (recorded as `email:<address>`, so they count for the two-person
 *    rule) and it has the SNS message attribute `approver` = the address, which only that
 *    approver's subscription accepts (filter policy `{"approver": ["<address>", "all"]}`, see
 *    stacks/Failover.ts). Without it, one message to the whole topic (attribute `all`).
 *
 * Idempotent per execution: a retry (a failed publish, a Lambda retry, a new attempt of the state)
 * stores the new task token in place of the old one and sends the request again with fresh links;
 * links of every copy stay valid until they expire, and whichever decides first decides for the
 * execution, once (the approval store's conditional write). The message says so.
 *
 * A failed SNS publish fails the invocation (retryable: the state's Retry sends again). A failed
 * Slack post after the email went out is logged and reported in the output, not retried: the email
 * already carries the links. No token, link, key or webhook URL is logged.
 */

export const RequestApprovalInputSchema = z.object({
  /** Step Functions' task token ($$.Task.Token): at most 2,048 characters (SendTaskSuccess). */
  taskToken: z.string().check(z.minLength(1), z.maxLength(2048)),
  request: FailoverRequestSchema,
  steps: z.looseObject({ preflight: z.looseObject({ plan: FailoverPlanSchema }) }),
});
export type RequestApprovalInput = z.infer<typeof RequestApprovalInputSchema>;

export interface RequestApprovalResult {
  executionId: string;
  /** `sent`: the request went out; `replayed-*`: the execution was already decided, nothing was sent. */
  outcome: "sent" | "replayed-approved" | "replayed-rejected" | "already-resumed";
  expiresAt: string;
  /** Message ids (`sns:<id>`, `slack:ok`). */
  sent: string[];
  /** Why the Slack message did not go out (the email did). */
  slackError?: string;
}

/** What the secrets hold, as used here. */
export interface RequestApprovalSecrets {
  keys: Buffer[];
  slackWebhookUrl?: string;
}

export interface RequestApprovalDeps {
  config: RequestApprovalConfig;
  tasks: TaskTokens;
  decisions: Pick<ApprovalStore, "get">;
  /** Replays a recorded decision (SendTaskSuccess / SendTaskFailure). */
  callback: TaskCallback;
  secrets: () => Promise<RequestApprovalSecrets>;
  /** The approvers' topic (SNS email). */
  email: Notifier;
  slack: SlackPoster;
  clock: Clock;
  logger: Logger;
  /** Nonce randomness (tests); default crypto.randomBytes. */
  random?: (bytes: number) => Uint8Array;
}

export type RequestApprovalService = "dynamodb" | "sns" | "secretsmanager" | "sfn";
export type RequestApprovalClient = DynamoDBClient | SNSClient | SecretsManagerClient | SFNClient;

export interface RequestApprovalOptions {
  /** Extra client settings per service (tests and local mode: the emulator's endpoint, credentials). */
  clientConfig?: (
    service: RequestApprovalService,
    region: string,
  ) => { endpoint?: string; credentials?: Credentials; maxAttempts?: number };
  /** Called on every client once created (tests and local mode add SDK middleware here). */
  onClient?: (client: RequestApprovalClient, service: RequestApprovalService) => void;
  secrets?: Secrets;
  callback?: TaskCallback;
  email?: Notifier;
  slack?: SlackPoster;
  clock?: Clock;
  logger?: Logger;
  random?: (bytes: number) => Uint8Array;
}

/** Reads the approval keys and, when configured, Slack's webhook URL (once per container). */
export async function loadRequestApprovalSecrets(
  secrets: Secrets,
  config: RequestApprovalConfig,
): Promise<RequestApprovalSecrets> {
  const keys = parseApprovalKeys(await secrets.get(config.approvalSecretArn), config.approvalSecretArn);
  if (!config.slackWebhookSecretArn) return { keys };
  const slackWebhookUrl = parseSlackWebhookSecret(
    await secrets.get(config.slackWebhookSecretArn),
    config.slackWebhookSecretArn,
  );
  return { keys, slackWebhookUrl };
}

/** Wires the step: SDK clients created once per container, every one pinned to the failover region. */
export function makeRequestApprovalRuntime(
  config: RequestApprovalConfig,
  o: RequestApprovalOptions = {},
): RequestApprovalDeps {
  const region = config.region;
  const settings = (s: RequestApprovalService) => ({ ...o.clientConfig?.(s, region), region });
  const watch = <C extends RequestApprovalClient>(c: C, s: RequestApprovalService): C => {
    o.onClient?.(c, s);
    return c;
  };
  const dynamo = watch(new DynamoDBClient(settings("dynamodb")), "dynamodb");
  const db = DynamoDBDocumentClient.from(dynamo, { marshallOptions: { removeUndefinedValues: true } });
  const secrets =
    o.secrets ??
    new SecretsManagerSecrets(watch(new SecretsManagerClient(settings("secretsmanager")), "secretsmanager"));
  return {
    config,
    tasks: new DynamoTaskTokens(db, config.ledgerTable),
    decisions: new DynamoApprovalStore(db, config.ledgerTable),
    callback: o.callback ?? new SfnTaskCallback(watch(new SFNClient(settings("sfn")), "sfn")),
    secrets: memoise(() => loadRequestApprovalSecrets(secrets, config)),
    email: o.email ?? new SnsNotifier(watch(new SNSClient(settings("sns")), "sns"), config.approversTopicArn),
    slack: o.slack ?? slackWebhookPoster(),
    clock: o.clock ?? systemClock,
    logger: o.logger ?? new Logger({ serviceName: "velero-dr-failover" }),
    ...(o.random ? { random: o.random } : {}),
  };
}

/** The Lambda cold start: validate the environment (failing fast with the variable's name), then wire. */
export function requestApprovalRuntimeFromEnv(
  env: Record<string, string | undefined> = process.env,
): RequestApprovalDeps {
  return makeRequestApprovalRuntime(loadRequestApprovalConfig(env));
}

/** Sends the recorded decision to the waiting task, once: only the caller that takes the token does. */
async function replay(
  deps: RequestApprovalDeps,
  executionId: string,
  decision: DecisionRecord,
): Promise<RequestApprovalResult["outcome"]> {
  const taskToken = await deps.tasks.take(executionId);
  // The approval endpoint took it between our put and our read: it resumes the task itself.
  if (taskToken === undefined) return "already-resumed";
  try {
    if (decision.status === "approved") {
      await deps.callback.succeed(taskToken, approvalOutput(decision));
      return "replayed-approved";
    }
    await deps.callback.fail(taskToken, REJECTED, rejectionCause(decision));
    return "replayed-rejected";
  } catch (err) {
    throw classifyAwsError(err, "replaying the recorded approval decision");
  }
}

/** The step as a plain function of its payload (the Lambda handler wraps it). */
export function makeRequestApproval(deps: RequestApprovalDeps) {
  const { config, logger, clock } = deps;
  return async (event: unknown): Promise<RequestApprovalResult> => {
    const input = parseWith(RequestApprovalInputSchema, event, "requestApproval input");
    const { request, taskToken } = input;
    const plan = input.steps.preflight.plan;
    const executionId = request.executionId;
    if (plan.executionId !== executionId) {
      throw new StepFailed(`steps.preflight.plan is for execution ${plan.executionId}, not ${executionId}`);
    }
    if (!EXECUTION_ID.test(executionId)) {
      throw new StepFailed(
        `request.executionId "${executionId.slice(0, 80)}" cannot be bound into an approval link (A-Z a-z 0-9 _ . : -, at most 256)`,
      );
    }
    logger.appendKeys({ executionId, step: "requestApproval", drill: request.drill });
    const now = clock.now();
    const expiresAt = new Date(now.getTime() + config.ttlMinutes * 60_000);
    const summary: ApprovalSummary = {
      backup: plan.backup.name,
      dataLossSeconds: plan.dataLossSeconds,
      reason: request.reason,
      requestedBy: request.requestedBy,
      drill: request.drill,
    };
    try {
      await deps.tasks.put(executionId, taskToken, expiresAt, summary);
    } catch (err) {
      throw classifyAwsError(err, "storing the task token");
    }
    const decided = await deps.decisions.get(executionId).catch((err: unknown) => {
      throw classifyAwsError(err, "reading the approval decision");
    });
    if (decided && isFinal(decided.status)) {
      const outcome = await replay(deps, executionId, decided);
      logger.info("approval already decided: replayed, nothing sent", { outcome, status: decided.status });
      return { executionId, outcome, expiresAt: expiresAt.toISOString(), sent: [] };
    }

    const { keys, slackWebhookUrl } = await deps.secrets().catch((err: unknown) => {
      if (err instanceof ConfigError) throw err;
      throw classifyAwsError(err, "reading the approval secrets");
    });
    const mint = (action: "approve" | "reject", channel: "email" | "slack", approver?: string) =>
      issueApproval({ executionId, action, channel, ...(approver ? { approver } : {}) }, keys, {
        now,
        ttlMinutes: config.ttlMinutes,
        ...(deps.random ? { random: deps.random } : {}),
      });
    const link = (action: "approve" | "reject", approver?: string) => {
      const { token, claims } = mint(action, "email", approver);
      return approvalLink(config.baseUrl, token, claims);
    };
    const slackTokens = slackWebhookUrl
      ? { approve: mint("approve", "slack").token, reject: mint("reject", "slack").token }
      : undefined;
    const render = (approver?: string) =>
      renderApprovalRequest({
        request,
        plan,
        expiresAt,
        links: { approve: link("approve", approver), reject: link("reject", approver) },
        ...(slackTokens ? { slackTokens } : {}),
        ...(approver ? { approver } : {}),
      });
    // One message per approver (attribute `approver` = the address: only their subscription gets
    // it), each with links naming them; without named approvers, one to the whole topic.
    const recipients: Array<string | undefined> = config.approverEmails?.length
      ? config.approverEmails
      : [undefined];
    const sent: string[] = [];
    let slackPayload: object | undefined;
    for (const approver of recipients) {
      const message = render(approver);
      slackPayload ??= message.slack;
      sent.push(
        approver
          ? await deps.email.publish(message.subject, message.text, message.facts, { approver })
          : await deps.email.publish(message.subject, message.text, message.facts),
      );
    }
    const out: RequestApprovalResult = {
      executionId,
      outcome: "sent",
      expiresAt: expiresAt.toISOString(),
      sent,
    };
    if (slackWebhookUrl && slackPayload) {
      try {
        sent.push(await deps.slack.post(slackWebhookUrl, slackPayload));
      } catch (err) {
        out.slackError = errorMessage(err);
        logger.error("the Slack approval message was not sent (the email was)", { error: out.slackError });
      }
    }
    logger.info("approval requested", {
      channels: slackWebhookUrl ? ["email", "slack"] : ["email"],
      emails: config.approverEmails?.length ?? "topic",
      expiresAt: out.expiresAt,
      backup: plan.backup.name,
    });
    return out;
  };
}

/** The Lambda handler: structured logs with the invocation's context; the event (a task token) is not logged. */
export function makeRequestApprovalHandler(deps: RequestApprovalDeps) {
  const run = makeRequestApproval(deps);
  return middy(async (event: unknown) => run(event)).use(
    injectLambdaContext(deps.logger, { logEvent: false, resetKeys: true }),
  );
}
