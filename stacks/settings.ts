import { ENV, loadConfig, type ReplicationConfig } from "../functions/core/config.js";
import { ConfigError } from "../functions/core/errors.js";

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
  rpoTargetMinutes: "DR_RPO_TARGET_MINUTES",
  // Velero's bucket (optional as a group: without DR_VELERO_BUCKET, backup registration is off)
  veleroBucket: "DR_VELERO_BUCKET",
  veleroPrefix: "DR_VELERO_PREFIX",
  failoverPrefix: "DR_FAILOVER_PREFIX",
  zoneMap: "DR_ZONE_MAP",
  defaultZone: "DR_DEFAULT_ZONE",
  allowedWarnings: "DR_ALLOWED_WARNINGS",
  combinedIds: "DR_COMBINED_SNAPSHOT_IDS",
} as const satisfies Partial<Record<keyof typeof ENV, string>>;

/** Optional: where alarm notifications go (an SNS email subscription, confirmed by its owner). */
export const ALERT_EMAIL_SETTING = "DR_ALERT_EMAIL";

export interface Settings {
  /** The functions' configuration, minus the ledger table name (the table construct supplies it). */
  config: Omit<ReplicationConfig, "ledgerTable">;
  alertEmail?: string;
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
  let config: ReplicationConfig;
  try {
    config = loadConfig(functionEnv);
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigError(renameVariables(error.message), { cause: error });
    throw error;
  }
  const { ledgerTable: _placeholder, ...rest } = config;
  const settings: Settings = { config: rest };
  const alertEmail = env[ALERT_EMAIL_SETTING]?.trim();
  if (alertEmail) {
    if (!EMAIL.test(alertEmail)) {
      throw new ConfigError(`${ALERT_EMAIL_SETTING} must be an email address, got "${alertEmail}"`);
    }
    settings.alertEmail = alertEmail;
  }
  return settings;
}

/** loadConfig names the functions' variables; the deployer set the DR_* ones. */
function renameVariables(message: string): string {
  let out = message;
  for (const [key, setting] of Object.entries(SETTINGS)) {
    const name = ENV[key as keyof typeof SETTINGS];
    out = out.replace(new RegExp(`(?<![A-Z0-9_])${name}(?![A-Z0-9_])`, "g"), setting);
  }
  return out;
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

/**
 * A forwarding rule's name in each source region (one rule per pattern of SNAPSHOT_EVENT_PATTERNS);
 * fixed so the failover bus's policy can name its ARN.
 */
export function forwardRuleName(stage: string, pattern: string): string {
  return `velero-dr-${stage}-forward-${pattern}`;
}
