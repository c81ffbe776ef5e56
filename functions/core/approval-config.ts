/**
 * The approval endpoint's settings, read once at cold start and validated: a missing or malformed
 * value fails fast with its variable's name. The secrets themselves are not in the environment, only
 * their ARNs; their values are parsed here ({@link parseApprovalKeys}, {@link parseSlackSecret}) with
 * errors that name the secret but never show its content.
 */
import * as z from "zod/mini";
import { APPROVER_EMAIL, DEFAULT_APPROVAL_TTL_MINUTES, MIN_KEY_BYTES, SLACK_USER_ID } from "./approval.js";
import { ENV, REGION_PATTERN } from "./config.js";
import { type Env, integer, optional, required } from "./env.js";
import { ConfigError } from "./errors.js";

export const APPROVAL_ENV = {
  ledgerTable: ENV.ledgerTable,
  region: ENV.failoverRegion,
  /**
   * Secrets Manager ARN of `{"keys": ["<at least 32 bytes>", ...]}`: first signs, all verify
   * (`{"keys": "<key>"}`, one key, as the stack generates it, is accepted too).
   */
  approvalSecretArn: "APPROVAL_SECRET_ARN",
  /** Secrets Manager ARN of `{"signingSecret": "<the Slack app's signing secret>"}` (Slack off without it). */
  slackSecretArn: "SLACK_SECRET_ARN",
  /** Comma-separated Slack user ids (U.../W...) allowed to decide; required with SLACK_SECRET_ARN. */
  slackApprovers: "SLACK_APPROVERS",
  /** Minutes a link stays valid (5..1440, default 60). */
  ttlMinutes: "APPROVAL_TTL_MINUTES",
  /** `true`: approve needs two distinct identified approvers (default `false`). */
  twoPersonRule: "TWO_PERSON_RULE",
  /** The approval endpoint's URL (the function URL), where the links point (request step). */
  baseUrl: "APPROVAL_BASE_URL",
  /**
   * SNS topic of the failover region the approvers subscribe to by email (request step): the same
   * variable and topic the failover steps report to (FAILOVER_ENV.topicArn).
   */
  approversTopicArn: "FAILOVER_TOPIC_ARN",
  /**
   * Secrets Manager ARN of `{"webhookUrl": "https://hooks.slack.com/services/..."}`: the Slack
   * incoming webhook the request step posts the buttons to (Slack off without it). Set it only when
   * the approval endpoint has SLACK_SECRET_ARN and SLACK_APPROVERS, or the buttons answer 404.
   */
  slackWebhookSecretArn: "SLACK_WEBHOOK_SECRET_ARN",
  /**
   * Comma-separated email addresses of the approvers (request step), each subscribed to the
   * approvers' topic with the filter policy `{"approver": ["<address>", "all"]}`: each gets a message
   * of their own, with links naming them (`email:<address>`, usable for the two-person rule). Unset:
   * one message to the whole topic, whose links do not say who clicked.
   */
  approverEmails: "APPROVER_EMAILS",
} as const;

export interface ApprovalConfig {
  ledgerTable: string;
  /** The failover region: the function, the table, the state machine and the secrets live there. */
  region: string;
  approvalSecretArn: string;
  ttlMinutes: number;
  twoPersonRule: boolean;
  /** Slack approvals; absent when SLACK_SECRET_ARN is not set (POST /slack then answers 404). */
  slack?: { secretArn: string; approvers: string[] };
}

const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}$/;

function secretArn(env: Env, name: string, region: string): string {
  const arn = required(env, name);
  const m = SECRET_ARN.exec(arn);
  if (!m) throw new ConfigError(`${name} must be a Secrets Manager secret ARN, got "${arn}"`);
  if (m[1] !== region) {
    throw new ConfigError(`${name} must be a secret in the failover region ${region}, got one in ${m[1]}`);
  }
  return arn;
}

function failoverRegion(env: Env): string {
  const region = required(env, APPROVAL_ENV.region);
  if (!REGION_PATTERN.test(region)) {
    throw new ConfigError(`${APPROVAL_ENV.region} has an invalid AWS region "${region}"`);
  }
  return region;
}

function ttlMinutesOf(env: Env): number {
  return integer(env, APPROVAL_ENV.ttlMinutes, 5, 1440, DEFAULT_APPROVAL_TTL_MINUTES);
}

/** Reads and validates the approval settings from an environment (process.env at cold start). */
export function loadApprovalConfig(env: Env): ApprovalConfig {
  const region = failoverRegion(env);
  const ttlMinutes = ttlMinutesOf(env);
  const twoPerson = optional(env, APPROVAL_ENV.twoPersonRule) ?? "false";
  if (twoPerson !== "true" && twoPerson !== "false") {
    throw new ConfigError(`${APPROVAL_ENV.twoPersonRule} must be true or false, got "${twoPerson}"`);
  }
  const config: ApprovalConfig = {
    ledgerTable: required(env, APPROVAL_ENV.ledgerTable),
    region,
    approvalSecretArn: secretArn(env, APPROVAL_ENV.approvalSecretArn, region),
    ttlMinutes,
    twoPersonRule: twoPerson === "true",
  };
  const slackSecret = optional(env, APPROVAL_ENV.slackSecretArn);
  const approversRaw = optional(env, APPROVAL_ENV.slackApprovers);
  if (slackSecret === undefined && approversRaw !== undefined) {
    throw new ConfigError(`${APPROVAL_ENV.slackApprovers} is set but ${APPROVAL_ENV.slackSecretArn} is not`);
  }
  if (slackSecret !== undefined) {
    const approvers = [
      ...new Set(
        (approversRaw ?? "")
          .split(",")
          .map((u) => u.trim())
          .filter(Boolean),
      ),
    ];
    if (approvers.length === 0) {
      throw new ConfigError(
        `${APPROVAL_ENV.slackApprovers} is required with ${APPROVAL_ENV.slackSecretArn}: no Slack user could approve`,
      );
    }
    for (const u of approvers) {
      if (!SLACK_USER_ID.test(u)) {
        throw new ConfigError(`${APPROVAL_ENV.slackApprovers} must list Slack user ids (U...), got "${u}"`);
      }
    }
    config.slack = { secretArn: secretArn(env, APPROVAL_ENV.slackSecretArn, region), approvers };
  }
  return config;
}

/** The inverse of loadApprovalConfig: the environment the approval function needs. */
export function approvalConfigToEnv(c: ApprovalConfig): Record<string, string> {
  const env: Record<string, string> = {
    [APPROVAL_ENV.ledgerTable]: c.ledgerTable,
    [APPROVAL_ENV.region]: c.region,
    [APPROVAL_ENV.approvalSecretArn]: c.approvalSecretArn,
    [APPROVAL_ENV.ttlMinutes]: String(c.ttlMinutes),
    [APPROVAL_ENV.twoPersonRule]: String(c.twoPersonRule),
  };
  if (c.slack) {
    env[APPROVAL_ENV.slackSecretArn] = c.slack.secretArn;
    env[APPROVAL_ENV.slackApprovers] = c.slack.approvers.join(",");
  }
  return env;
}

// --- The request step (functions/app/request-approval.ts) -------------------------------------------

/** The RequestApproval step's settings: where links point, whom to tell, how long links last. */
export interface RequestApprovalConfig {
  /** The failover region: the function, the table, the topic and the secrets live there. */
  region: string;
  ledgerTable: string;
  /** Signs the links (the same secret the approval endpoint verifies with). */
  approvalSecretArn: string;
  /** How long links and the stored task token stay valid (the endpoint's APPROVAL_TTL_MINUTES). */
  ttlMinutes: number;
  /** The approval endpoint's base URL, without a trailing slash. */
  baseUrl: string;
  approversTopicArn: string;
  /** Slack's incoming webhook (its URL is a secret); absent: no Slack message. */
  slackWebhookSecretArn?: string;
  /**
   * The approvers, by email: one message each (SNS message attribute `approver` = the address) with
   * links naming them. Absent: one message to the whole topic.
   */
  approverEmails?: string[];
}

/** Parses a comma-separated list of approver email addresses (duplicates dropped, order kept). */
function approverEmailsOf(env: Env): string[] {
  const emails = [
    ...new Set(
      (optional(env, APPROVAL_ENV.approverEmails) ?? "")
        .split(",")
        .map((e) => e.trim())
        .filter(Boolean),
    ),
  ];
  for (const e of emails) {
    if (!APPROVER_EMAIL.test(e)) {
      throw new ConfigError(`${APPROVAL_ENV.approverEmails} must list email addresses, got "${e}"`);
    }
  }
  return emails;
}

const TOPIC_ARN = /^arn:aws[a-z-]*:sns:([a-z0-9-]+):\d{12}:[A-Za-z0-9_-]{1,256}$/;
/** https anywhere; plain http only to this machine (local mode's stand-in for the function URL). */
const BASE_URL =
  /^(https:\/\/[A-Za-z0-9.-]+(:\d{1,5})?|http:\/\/(127\.0\.0\.1|localhost)(:\d{1,5})?)(\/[A-Za-z0-9._~/-]*)?$/;

/**
 * Reads and validates the request step's settings (process.env at cold start): the failover region,
 * the ledger, the approval secret and TTL (the same names as the approval endpoint's), the approval
 * endpoint's URL, the approvers' topic and, optionally, the Slack webhook's secret.
 */
export function loadRequestApprovalConfig(env: Env): RequestApprovalConfig {
  const region = failoverRegion(env);
  const baseUrl = required(env, APPROVAL_ENV.baseUrl);
  if (!BASE_URL.test(baseUrl)) {
    throw new ConfigError(
      `${APPROVAL_ENV.baseUrl} must be an https URL (http only to 127.0.0.1 or localhost), got "${baseUrl}"`,
    );
  }
  const topicArn = required(env, APPROVAL_ENV.approversTopicArn);
  const topic = TOPIC_ARN.exec(topicArn);
  if (!topic) {
    throw new ConfigError(`${APPROVAL_ENV.approversTopicArn} is not an SNS topic ARN: "${topicArn}"`);
  }
  if (topic[1] !== region) {
    throw new ConfigError(
      `${APPROVAL_ENV.approversTopicArn} must be a topic in the failover region ${region}`,
    );
  }
  const config: RequestApprovalConfig = {
    region,
    ledgerTable: required(env, APPROVAL_ENV.ledgerTable),
    approvalSecretArn: secretArn(env, APPROVAL_ENV.approvalSecretArn, region),
    ttlMinutes: ttlMinutesOf(env),
    baseUrl: baseUrl.replace(/\/+$/, ""),
    approversTopicArn: topicArn,
  };
  if (optional(env, APPROVAL_ENV.slackWebhookSecretArn) !== undefined) {
    config.slackWebhookSecretArn = secretArn(env, APPROVAL_ENV.slackWebhookSecretArn, region);
  }
  const approverEmails = approverEmailsOf(env);
  if (approverEmails.length > 0) config.approverEmails = approverEmails;
  return config;
}

/** The inverse of loadRequestApprovalConfig: the environment the request step needs. */
export function requestApprovalConfigToEnv(c: RequestApprovalConfig): Record<string, string> {
  const env: Record<string, string> = {
    [APPROVAL_ENV.region]: c.region,
    [APPROVAL_ENV.ledgerTable]: c.ledgerTable,
    [APPROVAL_ENV.approvalSecretArn]: c.approvalSecretArn,
    [APPROVAL_ENV.ttlMinutes]: String(c.ttlMinutes),
    [APPROVAL_ENV.baseUrl]: c.baseUrl,
    [APPROVAL_ENV.approversTopicArn]: c.approversTopicArn,
  };
  if (c.slackWebhookSecretArn) env[APPROVAL_ENV.slackWebhookSecretArn] = c.slackWebhookSecretArn;
  if (c.approverEmails?.length) env[APPROVAL_ENV.approverEmails] = c.approverEmails.join(",");
  return env;
}

const slackWebhookSecret = z.object({ webhookUrl: z.string() });

// `keys` may also be one string: Secrets Manager's generated secrets (GenerateSecretString) can only
// put a string under a key, which is how the stack creates the secret; rotation writes the list.
const keysSecret = z.object({ keys: z.union([z.array(z.string()), z.string()]) });
const slackSecret = z.object({ signingSecret: z.string() });

function json(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ConfigError(`${what} is not JSON`);
  }
}

/** The HMAC keys from the approval secret's value; the error names the secret, never a key. */
export function parseApprovalKeys(text: string, secretArn: string): Buffer[] {
  const parsed = keysSecret.safeParse(json(text, `secret ${secretArn}`));
  const list = parsed.success ? [parsed.data.keys].flat() : [];
  if (list.length === 0) {
    throw new ConfigError(`secret ${secretArn} must be JSON {"keys": ["...", ...]} with at least one key`);
  }
  const keys = list.map((k) => Buffer.from(k, "utf8"));
  keys.forEach((k, i) => {
    if (k.length < MIN_KEY_BYTES) {
      throw new ConfigError(`secret ${secretArn}: key ${i} is shorter than ${MIN_KEY_BYTES} bytes`);
    }
  });
  return keys;
}

/** Slack's signing secret from its secret's value; the error names the secret, never its content. */
export function parseSlackSecret(text: string, secretArn: string): string {
  const parsed = slackSecret.safeParse(json(text, `secret ${secretArn}`));
  if (!parsed.success || parsed.data.signingSecret.length < 16) {
    throw new ConfigError(
      `secret ${secretArn} must be JSON {"signingSecret": "..."} (Slack app credentials)`,
    );
  }
  return parsed.data.signingSecret;
}

/** The Slack incoming webhook's URL from its secret's value; the error names the secret, never the URL. */
export function parseSlackWebhookSecret(text: string, secretArn: string): string {
  const parsed = slackWebhookSecret.safeParse(json(text, `secret ${secretArn}`));
  if (!parsed.success || !/^https:\/\/hooks\.slack\.com\/services\/\S+$/.test(parsed.data.webhookUrl)) {
    throw new ConfigError(
      `secret ${secretArn} must be JSON {"webhookUrl": "https://hooks.slack.com/services/..."} (a Slack incoming webhook)`,
    );
  }
  return parsed.data.webhookUrl;
}
