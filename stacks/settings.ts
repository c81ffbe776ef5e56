import {
  APPROVAL_ENV,
  type ApprovalConfig,
  approvalConfigToEnv,
  loadApprovalConfig,
  loadRequestApprovalConfig,
  type RequestApprovalConfig,
  requestApprovalConfigToEnv,
} from "../functions/core/approval-config.js";
import { ENV, loadConfig, type ReplicationConfig } from "../functions/core/config.js";
import { integer } from "../functions/core/env.js";
import { ConfigError } from "../functions/core/errors.js";
import { FAILOVER_ENV, type FailoverConfig, loadFailoverConfig } from "../functions/core/failover.js";

/**
 * Deployment settings, read from the deployer's environment at synth time (see README). Each maps
 * onto the functions' own variable (`ENV`), so the stacks validate with the very `loadConfig` the
 * functions run at cold start: a deployment the functions would reject never synthesizes.
 */
export const SETTINGS = {
  sourceRegions: "DR_SOURCE_REGIONS",
  failoverRegion: "DR_FAILOVER_REGION",
  copyBudget: "DR_COPY_BUDGET",
  kmsKeyId: "DR_KMS_KEY_ARN",
  completionDurationMinutes: "DR_COPY_COMPLETION_MINUTES",
  includeTags: "DR_INCLUDE_TAGS",
  excludeTags: "DR_EXCLUDE_TAGS",
  maxCopyAttempts: "DR_MAX_COPY_ATTEMPTS",
  stuckAfterMinutes: "DR_STUCK_AFTER_MINUTES",
  pollSeconds: "DR_POLL_SECONDS",
  rpoTargetMinutes: "DR_RPO_TARGET_MINUTES",
  // Velero's bucket (optional as a group: without DR_VELERO_BUCKET, backup registration is off)
  veleroBucket: "DR_VELERO_BUCKET",
  veleroPrefix: "DR_VELERO_PREFIX",
  failoverBucket: "DR_FAILOVER_BUCKET",
  failoverPrefix: "DR_FAILOVER_PREFIX",
  zoneMap: "DR_ZONE_MAP",
  defaultZone: "DR_DEFAULT_ZONE",
  allowedWarnings: "DR_ALLOWED_WARNINGS",
  // true: you replicate Velero's backup repository (file-system backup, data mover) yourself
  backupRepositoryReplicated: "DR_BACKUP_REPOSITORY_REPLICATED",
  combinedIds: "DR_COMBINED_SNAPSHOT_IDS",
} as const satisfies Partial<Record<keyof typeof ENV, string>>;

/** Optional: where alarm notifications go (an SNS email subscription, confirmed by its owner). */
export const ALERT_EMAIL_SETTING = "DR_ALERT_EMAIL";

/**
 * The most concurrent invocations each SQS event source mapping (snapshot, copy and backup events)
 * may start: Lambda's `ScalingConfig.MaximumConcurrency`, 2..1000. Without it Lambda scales a
 * queue's pollers up to 1,000 invocations, so a schedule burst at 1,000 controllers (1,000
 * createSnapshot events within a minute or two) would start ~100 replicate invocations at once, each
 * with a DescribeSnapshots call (EC2's filtered Describe bucket: 100 burst, 20/s) and a transaction
 * on the ledger's one control item. Five invocations of 10 messages clear such a burst in well under
 * a minute, while messages past the cap simply wait in the queue (they are not throttled back, as
 * with reserved concurrency). https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html
 */
export const QUEUE_MAX_CONCURRENCY_SETTING = "DR_QUEUE_MAX_CONCURRENCY";
export const DEFAULT_QUEUE_MAX_CONCURRENCY = 5;

export interface Settings {
  /** The functions' configuration, minus the ledger table name (the table construct supplies it). */
  config: Omit<ReplicationConfig, "ledgerTable">;
  alertEmail?: string;
  /** Maximum concurrency of each queue consumer's event source mapping (see above). */
  queueMaxConcurrency: number;
}

type Env = Record<string, string | undefined>;

// loadConfig requires LEDGER_TABLE, which only exists once the table does; this stand-in never
// reaches a function (the stack sets the real name).
const LEDGER_PLACEHOLDER = "ledger-table-set-by-stack";

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/**
 * Validates the deployment settings in `env` (process.env at synth time). Throws ConfigError naming
 * the `DR_*` variable to fix; pure, so tests pass their own environment.
 */
export function settingsFromEnv(env: Env): Settings {
  const functionEnv: Env = { [ENV.ledgerTable]: LEDGER_PLACEHOLDER };
  for (const [key, setting] of Object.entries(SETTINGS)) {
    functionEnv[ENV[key as keyof typeof SETTINGS]] = env[setting];
  }
  const config: ReplicationConfig = validated(() => loadConfig(functionEnv));
  const { ledgerTable: _placeholder, ...rest } = config;
  const settings: Settings = {
    config: rest,
    queueMaxConcurrency: integer(env, QUEUE_MAX_CONCURRENCY_SETTING, 2, 1000, DEFAULT_QUEUE_MAX_CONCURRENCY),
  };
  const alertEmail = env[ALERT_EMAIL_SETTING]?.trim();
  if (alertEmail) {
    if (!EMAIL.test(alertEmail)) {
      throw new ConfigError(`${ALERT_EMAIL_SETTING} must be an email address, got "${alertEmail}"`);
    }
    settings.alertEmail = alertEmail;
  }
  return settings;
}

/** The functions' variable -> the DR_* setting the deployer sets, for every setting above. */
const RENAMES: Array<[string, string]> = Object.entries(SETTINGS).map(([key, setting]) => [
  ENV[key as keyof typeof SETTINGS],
  setting,
]);

/** The loaders name the functions' variables; the deployer set the DR_* ones. */
function renameVariables(message: string, renames: Array<[string, string]> = RENAMES): string {
  let out = message;
  for (const [name, setting] of renames) {
    out = out.replace(new RegExp(`(?<![A-Z0-9_])${name}(?![A-Z0-9_])`, "g"), setting);
  }
  return out;
}

/** Runs a loader over the functions' environment, renaming its variables in any ConfigError. */
function validated<T>(load: () => T, renames: Array<[string, string]> = RENAMES): T {
  try {
    return load();
  } catch (error) {
    if (error instanceof ConfigError)
      throw new ConfigError(renameVariables(error.message, renames), { cause: error });
    throw error;
  }
}

// --- The failover plane (issue 4) -------------------------------------------------------------

/**
 * The failover steps' settings (functions/core/failover.ts, FAILOVER_ENV). Optional as a group:
 * without DR_FAILOVER_CLUSTER_NAME there is no failover plane (no Failover stack). The Slack webhook
 * (FAILOVER_SLACK_WEBHOOK_URL) is deliberately not among them: a webhook URL is a credential, and
 * settings end up in the template and the function's configuration.
 */
export const FAILOVER_SETTINGS = {
  clusterName: "DR_FAILOVER_CLUSTER_NAME",
  nodegroupName: "DR_FAILOVER_NODEGROUP_NAME",
  min: "DR_FAILOVER_NODEGROUP_MIN",
  desired: "DR_FAILOVER_NODEGROUP_DESIRED",
  max: "DR_FAILOVER_NODEGROUP_MAX",
  hostedZoneId: "DR_FAILOVER_HOSTED_ZONE_ID",
  recordName: "DR_FAILOVER_RECORD_NAME",
  recordType: "DR_FAILOVER_RECORD_TYPE",
  lbName: "DR_FAILOVER_LB_NAME",
  lbTag: "DR_FAILOVER_LB_TAG",
  namespaces: "DR_FAILOVER_NAMESPACES",
  drillSuffix: "DR_FAILOVER_DRILL_NAMESPACE_SUFFIX",
  veleroNamespace: "DR_FAILOVER_VELERO_NAMESPACE",
  schedule: "DR_FAILOVER_SCHEDULE",
  requirePlugin: "DR_FAILOVER_REQUIRE_INJECT_METADATA",
  partialRestore: "DR_FAILOVER_PARTIAL_RESTORE",
  pollSeconds: "DR_FAILOVER_POLL_SECONDS",
  nodegroupWaitSeconds: "DR_FAILOVER_NODEGROUP_WAIT_SECONDS",
  restoreWaitSeconds: "DR_FAILOVER_RESTORE_WAIT_SECONDS",
  dnsWaitSeconds: "DR_FAILOVER_DNS_WAIT_SECONDS",
} as const satisfies Partial<Record<keyof typeof FAILOVER_ENV, string>>;

/**
 * The approval settings (functions/core/approval-config.ts, APPROVAL_ENV): the approval endpoint's
 * and the request step's. The HMAC keys' secret is the stack's own (generated); Slack's two secrets
 * are the deployer's, by ARN only: the app's signing secret `{"signingSecret": ...}`, which the
 * endpoint verifies the buttons' callbacks with, and the incoming webhook `{"webhookUrl": ...}` the
 * request step posts the buttons to (one secret holding both fields may be named twice).
 */
export const APPROVAL_SETTINGS = {
  slackSecretArn: "DR_SLACK_SECRET_ARN",
  slackApprovers: "DR_SLACK_APPROVERS",
  slackWebhookSecretArn: "DR_SLACK_WEBHOOK_SECRET_ARN",
  ttlMinutes: "DR_APPROVAL_TTL_MINUTES",
  twoPersonRule: "DR_TWO_PERSON_RULE",
  /**
   * Comma-separated email addresses subscribed to the approvers' topic (each confirms by email),
   * each with a filter policy for its own approval message; the request step gets them as
   * APPROVER_EMAILS and sends each approver links of their own.
   */
  approverEmails: "DR_APPROVER_EMAILS",
} as const satisfies Partial<Record<keyof typeof APPROVAL_ENV, string>>;

/** Comma-separated email addresses subscribed to the approvers' topic (each confirms by email). */
export const APPROVER_EMAILS_SETTING = APPROVAL_SETTINGS.approverEmails;
/**
 * Minutes the workflow waits for a decision (the approval task's timeout): at most the links' TTL,
 * after which no decision can resume it; default: the TTL.
 */
export const APPROVAL_TIMEOUT_SETTING = "DR_APPROVAL_TIMEOUT_MINUTES";

export interface FailoverSettings {
  /** The step functions' configuration, minus what the stack supplies (ledger table, report topic). */
  config: Omit<FailoverConfig, "ledgerTable" | "topicArn">;
  /** Their environment (FAILOVER_*, ALLOWED_WARNINGS), minus LEDGER_TABLE and FAILOVER_TOPIC_ARN. */
  env: Record<string, string>;
  /** The approval endpoint's configuration, minus the ledger table and the stack's own key secret. */
  approval: Omit<ApprovalConfig, "ledgerTable" | "approvalSecretArn">;
  /** Its environment (APPROVAL_ENV), minus LEDGER_TABLE and APPROVAL_SECRET_ARN. */
  approvalEnv: Record<string, string>;
  /** The request step's configuration, minus what the stack supplies (ledger, key secret, URL, topic). */
  requestApproval: Omit<
    RequestApprovalConfig,
    "ledgerTable" | "approvalSecretArn" | "baseUrl" | "approversTopicArn"
  >;
  /** Its environment, minus LEDGER_TABLE, APPROVAL_SECRET_ARN, APPROVAL_BASE_URL and FAILOVER_TOPIC_ARN. */
  requestApprovalEnv: Record<string, string>;
  approverEmails: string[];
  approvalTimeoutMinutes: number;
}

const FAILOVER_RENAMES: Array<[string, string]> = [
  ...RENAMES,
  ...Object.entries(FAILOVER_SETTINGS).map(([key, setting]): [string, string] => [
    FAILOVER_ENV[key as keyof typeof FAILOVER_SETTINGS],
    setting,
  ]),
  ...Object.entries(APPROVAL_SETTINGS).map(([key, setting]): [string, string] => [
    APPROVAL_ENV[key as keyof typeof APPROVAL_SETTINGS],
    setting,
  ]),
];

/**
 * Validates the failover plane's settings with the loaders its functions run at cold start
 * (loadFailoverConfig, loadApprovalConfig, loadRequestApprovalConfig); a ConfigError names the DR_*
 * variable. Undefined when DR_FAILOVER_CLUSTER_NAME is not set (no failover plane); any other
 * failover setting without it is an error rather than silently ignored. Pure, like settingsFromEnv.
 */
export function failoverSettingsFromEnv(
  env: Env,
  settings: Settings = settingsFromEnv(env),
): FailoverSettings | undefined {
  const trigger = FAILOVER_SETTINGS.clusterName;
  const given = (name: string) => env[name]?.trim() || undefined;
  if (given(trigger) === undefined) {
    const stray = [
      ...Object.values(FAILOVER_SETTINGS),
      ...Object.values(APPROVAL_SETTINGS),
      APPROVAL_TIMEOUT_SETTING,
    ].filter((name) => given(name) !== undefined);
    if (stray.length > 0) {
      throw new ConfigError(
        `${stray.join(", ")} set but ${trigger} is not: the failover plane needs ${trigger}`,
      );
    }
    return undefined;
  }
  const { config } = settings;
  if (!config.velero) {
    throw new ConfigError(
      `${trigger} needs ${SETTINGS.veleroBucket}: a failover restores DR-ready backups, which are registered from Velero's bucket`,
    );
  }
  const region = config.failoverRegion;
  // Stand-ins for what only exists once deployed (the stack sets the real values); valid ARNs so
  // that the loaders check everything else.
  const topicPlaceholder = `arn:aws:sns:${region}:000000000000:failover-topic-set-by-stack`;
  const secretPlaceholder = `arn:aws:secretsmanager:${region}:000000000000:secret:approval-keys-set-by-stack`;

  const stepsEnv: Env = {
    [FAILOVER_ENV.ledgerTable]: LEDGER_PLACEHOLDER,
    [FAILOVER_ENV.topicArn]: topicPlaceholder,
    [FAILOVER_ENV.failoverRegion]: region,
    [FAILOVER_ENV.allowedWarnings]: String(config.velero.allowedWarnings),
  };
  for (const [key, setting] of Object.entries(FAILOVER_SETTINGS)) {
    const v = given(setting);
    if (v !== undefined) stepsEnv[FAILOVER_ENV[key as keyof typeof FAILOVER_SETTINGS]] = v;
  }
  const parsed = validated(() => loadFailoverConfig(stepsEnv), FAILOVER_RENAMES);
  const { ledgerTable: _table, topicArn: _topic, ...failoverConfig } = parsed;
  const stepsVariables: Record<string, string> = {};
  for (const [name, v] of Object.entries(stepsEnv)) {
    if (v !== undefined && name !== FAILOVER_ENV.ledgerTable && name !== FAILOVER_ENV.topicArn) {
      stepsVariables[name] = v;
    }
  }

  const approvalInput: Env = {
    [APPROVAL_ENV.ledgerTable]: LEDGER_PLACEHOLDER,
    [APPROVAL_ENV.region]: region,
    [APPROVAL_ENV.approvalSecretArn]: secretPlaceholder,
  };
  for (const [key, setting] of Object.entries(APPROVAL_SETTINGS)) {
    approvalInput[APPROVAL_ENV[key as keyof typeof APPROVAL_SETTINGS]] = given(setting);
  }
  const endpointInput = { ...approvalInput };
  delete endpointInput[APPROVAL_ENV.slackWebhookSecretArn];
  delete endpointInput[APPROVAL_ENV.approverEmails];
  const approvalConfig = validated(() => loadApprovalConfig(endpointInput), FAILOVER_RENAMES);
  const { ledgerTable: _t, approvalSecretArn: _s, ...approval } = approvalConfig;
  const approvalEnv = approvalConfigToEnv(approvalConfig);
  delete approvalEnv[APPROVAL_ENV.ledgerTable];
  delete approvalEnv[APPROVAL_ENV.approvalSecretArn];

  const requestConfig = validated(
    () =>
      loadRequestApprovalConfig({
        ...approvalInput,
        [APPROVAL_ENV.baseUrl]: `https://approval-url-set-by-stack.lambda-url.${region}.on.aws/`,
        [APPROVAL_ENV.approversTopicArn]: topicPlaceholder,
      }),
    FAILOVER_RENAMES,
  );
  const {
    ledgerTable: _rt,
    approvalSecretArn: _rs,
    baseUrl: _ru,
    approversTopicArn: _ra,
    ...requestApproval
  } = requestConfig;
  const requestApprovalEnv = requestApprovalConfigToEnv(requestConfig);
  for (const name of [
    APPROVAL_ENV.ledgerTable,
    APPROVAL_ENV.approvalSecretArn,
    APPROVAL_ENV.baseUrl,
    APPROVAL_ENV.approversTopicArn,
  ]) {
    delete requestApprovalEnv[name];
  }
  // The buttons call the endpoint, which refuses Slack callbacks it cannot verify (404 without them).
  if (requestApproval.slackWebhookSecretArn && !approval.slack) {
    throw new ConfigError(
      `${APPROVAL_SETTINGS.slackWebhookSecretArn} needs ${APPROVAL_SETTINGS.slackSecretArn} and ${APPROVAL_SETTINGS.slackApprovers}: the approval endpoint verifies the buttons' callbacks with Slack's signing secret`,
    );
  }

  const approverEmails = [
    ...new Set(
      (given(APPROVER_EMAILS_SETTING) ?? "")
        .split(",")
        .map((e) => e.trim())
        .filter(Boolean),
    ),
  ];
  for (const email of approverEmails) {
    if (!EMAIL.test(email)) {
      throw new ConfigError(`${APPROVER_EMAILS_SETTING} must list email addresses, got "${email}"`);
    }
  }
  if (approverEmails.length === 0 && !requestApproval.slackWebhookSecretArn) {
    throw new ConfigError(
      `${trigger} needs approvers: set ${APPROVER_EMAILS_SETTING}, or ${APPROVAL_SETTINGS.slackWebhookSecretArn} (with ${APPROVAL_SETTINGS.slackSecretArn} and ${APPROVAL_SETTINGS.slackApprovers})`,
    );
  }
  const timeoutRaw = given(APPROVAL_TIMEOUT_SETTING);
  let approvalTimeoutMinutes = approval.ttlMinutes;
  if (timeoutRaw !== undefined) {
    if (!/^\d+$/.test(timeoutRaw)) {
      throw new ConfigError(`${APPROVAL_TIMEOUT_SETTING} must be an integer, got "${timeoutRaw}"`);
    }
    approvalTimeoutMinutes = Number(timeoutRaw);
    if (approvalTimeoutMinutes < 5 || approvalTimeoutMinutes > approval.ttlMinutes) {
      // The stored task token expires with the links: past it, no decision can resume the workflow.
      throw new ConfigError(
        `${APPROVAL_TIMEOUT_SETTING} must be between 5 and ${APPROVAL_SETTINGS.ttlMinutes} (${approval.ttlMinutes}), got ${approvalTimeoutMinutes}`,
      );
    }
  }
  return {
    config: failoverConfig,
    env: stepsVariables,
    approval,
    approvalEnv,
    requestApproval,
    requestApprovalEnv,
    approverEmails,
    approvalTimeoutMinutes,
  };
}

/** Stages whose data outlives a `sst remove`: the ledger and its key are retained and protected. */
export function isProtectedStage(stage: string): boolean {
  return /^(prod|production)(-|$)/.test(stage);
}

/**
 * The failover bus's name. Fixed (not generated) because each primary-region stack, deployed
 * separately, must name its ARN without a cross-region reference.
 */
export function busName(stage: string): string {
  return `velero-dr-${stage}`;
}

/** The failover state machine's name: fixed, so the approval endpoint can name its ARN (no cycle). */
export function failoverMachineName(stage: string): string {
  return `velero-dr-${stage}-failover`;
}

/**
 * A forwarding rule's name in each source region (one rule per pattern of SNAPSHOT_EVENT_PATTERNS);
 * fixed so the failover bus's policy can name its ARN.
 */
export function forwardRuleName(stage: string, pattern: string): string {
  return `velero-dr-${stage}-forward-${pattern}`;
}
