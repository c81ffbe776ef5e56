import { type Env, integer, optional, required } from "./env.js";
import { ConfigError } from "./errors.js";

/**
 * The replication plane's settings, read once and validated: at synth time by the stacks and at
 * cold start by every function. A missing or malformed value fails fast with its variable's name;
 * nothing defaults silently except the documented defaults below.
 */
export interface ReplicationConfig {
  /** DynamoDB ledger table name. */
  ledgerTable: string;
  /** Regions Velero snapshots come from (the primary region, or several). */
  sourceRegions: string[];
  /** Region copies land in; the functions run there. */
  failoverRegion: string;
  /** Concurrent copies we allow ourselves. AWS allows 20 per destination region (not adjustable). */
  copyBudget: number;
  /** KMS key (ARN or alias ARN) in the failover region for the copies; default: the region's EBS default key. */
  kmsKeyId?: string;
  /** Time-based copy: CompletionDurationMinutes (15..2880, multiple of 15). */
  completionDurationMinutes?: number;
  /** Copy only snapshots whose tags match all of these (key=value). */
  includeTags: Record<string, string>;
  /** Skip snapshots whose tags match any of these (key=value). */
  excludeTags: Record<string, string>;
  /** Attempts per snapshot before a copy failure is final. */
  maxCopyAttempts: number;
  /** A copy pending longer than this is flagged as stuck by the sweep. */
  stuckAfterMinutes: number;
  /**
   * While copies wait for a slot, look for finished copies this often (seconds) rather than wait
   * for their events, which arrive 2-20 s late; 0 turns the poller off (events and the sweep only).
   */
  pollSeconds: number;
  /** Only events from this account are accepted (optional; defaults to the function's account). */
  accountId?: string;
  /** Recovery point objective: RecoveryPointAge above this raises the alarm. */
  rpoTargetMinutes: number;
  /** Velero's bucket and the failover metadata settings; backup registration is off without them. */
  velero?: VeleroConfig;
}

/** Where Velero keeps its metadata (the bucket lives in the failover region) and how to publish a DR-ready copy. */
export interface VeleroConfig {
  bucket: string;
  /** The BackupStorageLocation's prefix in the bucket ("" for none). */
  prefix: string;
  /**
   * The bucket of the failover metadata (the standby cluster's read-only BackupStorageLocation):
   * Velero's own bucket unless set, which is only allowed when the primary's location has a prefix.
   */
  failoverBucket: string;
  /** Prefix, in `failoverBucket`, that the standby cluster's read-only BackupStorageLocation reads. */
  failoverPrefix: string;
  /** Source availability zone -> failover availability zone. */
  zoneMap: Record<string, string>;
  /** Failover zone for source zones missing from the map (optional). */
  defaultZone?: string;
  /** Warnings a DR-ready backup may carry (default 0). */
  allowedWarnings: number;
  /**
   * The user replicates Velero's backup repository (file-system backup and data-mover data, the
   * `kopia/` and `restic/` folders of the primary's location) to where the standby cluster restores
   * from: volumes backed up that way then count as restorable. Default false (absent): a backup
   * with such volumes is never DR-ready.
   */
  backupRepositoryReplicated?: boolean;
  /** Also write the CloudBees fork's combined `SRC/snap;DST/snap` snapshot ids. */
  combinedIds: boolean;
}

/** Documented defaults. 16 of AWS's 20 concurrent copies leaves room for other tools. */
export const DEFAULTS = {
  copyBudget: 16,
  maxCopyAttempts: 3,
  stuckAfterMinutes: 60,
  rpoTargetMinutes: 60,
  pollSeconds: 10,
} as const;

/** The poller runs once a minute and looks several times within it. */
export const MAX_POLL_SECONDS = 30;

/** AWS's hard limit on concurrent snapshot copies per destination region. */
export const AWS_CONCURRENT_COPY_LIMIT = 20;

export const REGION_PATTERN = /^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$/;
const KMS_PATTERN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)\/[A-Za-z0-9/_-]+$/;

/** Environment variable names, shared by the stacks (which set them) and the functions (which read them). */
export const ENV = {
  ledgerTable: "LEDGER_TABLE",
  sourceRegions: "SOURCE_REGIONS",
  failoverRegion: "FAILOVER_REGION",
  copyBudget: "COPY_BUDGET",
  kmsKeyId: "KMS_KEY_ID",
  completionDurationMinutes: "COPY_COMPLETION_MINUTES",
  includeTags: "INCLUDE_TAGS",
  excludeTags: "EXCLUDE_TAGS",
  maxCopyAttempts: "MAX_COPY_ATTEMPTS",
  stuckAfterMinutes: "STUCK_AFTER_MINUTES",
  pollSeconds: "POLL_SECONDS",
  accountId: "SOURCE_ACCOUNT_ID",
  veleroBucket: "VELERO_BUCKET",
  veleroPrefix: "VELERO_PREFIX",
  failoverBucket: "FAILOVER_BUCKET",
  failoverPrefix: "FAILOVER_PREFIX",
  zoneMap: "ZONE_MAP",
  defaultZone: "DEFAULT_ZONE",
  allowedWarnings: "ALLOWED_WARNINGS",
  backupRepositoryReplicated: "BACKUP_REPOSITORY_REPLICATED",
  combinedIds: "COMBINED_SNAPSHOT_IDS",
  rpoTargetMinutes: "RPO_TARGET_MINUTES",
} as const;

function region(name: string, value: string): string {
  if (!REGION_PATTERN.test(value)) throw new ConfigError(`${name} has an invalid AWS region "${value}"`);
  return value;
}

/** Parses `key=value,key2=value2` (values may contain `=`). */
export function parseTagList(name: string, raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!raw?.trim()) return out;
  for (const part of raw.split(",")) {
    const p = part.trim();
    if (!p) continue;
    const i = p.indexOf("=");
    if (i <= 0) throw new ConfigError(`${name} entries must look like key=value, got "${p}"`);
    out[p.slice(0, i).trim()] = p.slice(i + 1).trim();
  }
  return out;
}

/** Reads and validates the configuration from an environment (process.env at cold start). */
export function loadConfig(env: Env): ReplicationConfig {
  const failoverRegion = region(ENV.failoverRegion, required(env, ENV.failoverRegion));
  const sourceRegions = required(env, ENV.sourceRegions)
    .split(",")
    .map((r) => r.trim())
    .filter(Boolean)
    .map((r) => region(ENV.sourceRegions, r));
  if (sourceRegions.length === 0) throw new ConfigError(`${ENV.sourceRegions} names no region`);
  if (sourceRegions.includes(failoverRegion)) {
    throw new ConfigError(`${ENV.sourceRegions} must not include the failover region ${failoverRegion}`);
  }
  const kmsKeyId = optional(env, ENV.kmsKeyId);
  if (kmsKeyId !== undefined) {
    if (!KMS_PATTERN.test(kmsKeyId)) {
      throw new ConfigError(`${ENV.kmsKeyId} must be a KMS key or alias ARN, got "${kmsKeyId}"`);
    }
    const keyRegion = kmsKeyId.split(":")[3];
    if (keyRegion !== failoverRegion) {
      throw new ConfigError(
        `${ENV.kmsKeyId} must be a key in the failover region ${failoverRegion}, got one in ${keyRegion}`,
      );
    }
  }
  const completionDurationMinutes = integer(env, ENV.completionDurationMinutes, 15, 2880);
  if (completionDurationMinutes !== undefined && completionDurationMinutes % 15 !== 0) {
    throw new ConfigError(
      `${ENV.completionDurationMinutes} must be a multiple of 15, got ${completionDurationMinutes}`,
    );
  }
  const accountId = optional(env, ENV.accountId);
  if (accountId !== undefined && !/^\d{12}$/.test(accountId)) {
    throw new ConfigError(`${ENV.accountId} must be a 12-digit account id, got "${accountId}"`);
  }
  const config: ReplicationConfig = {
    ledgerTable: required(env, ENV.ledgerTable),
    sourceRegions,
    failoverRegion,
    copyBudget: integer(env, ENV.copyBudget, 1, AWS_CONCURRENT_COPY_LIMIT, DEFAULTS.copyBudget),
    includeTags: parseTagList(ENV.includeTags, env[ENV.includeTags]),
    excludeTags: parseTagList(ENV.excludeTags, env[ENV.excludeTags]),
    maxCopyAttempts: integer(env, ENV.maxCopyAttempts, 1, 20, DEFAULTS.maxCopyAttempts),
    stuckAfterMinutes: integer(env, ENV.stuckAfterMinutes, 5, 2880, DEFAULTS.stuckAfterMinutes),
    pollSeconds: integer(env, ENV.pollSeconds, 0, MAX_POLL_SECONDS, DEFAULTS.pollSeconds),
    rpoTargetMinutes: integer(env, ENV.rpoTargetMinutes, 1, 10_080, DEFAULTS.rpoTargetMinutes),
  };
  if (kmsKeyId !== undefined) config.kmsKeyId = kmsKeyId;
  if (completionDurationMinutes !== undefined) config.completionDurationMinutes = completionDurationMinutes;
  if (accountId !== undefined) config.accountId = accountId;
  const velero = loadVeleroConfig(env, failoverRegion, sourceRegions);
  if (velero) config.velero = velero;
  return config;
}

const ZONE_PATTERN = /^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}[a-z]$/;
const prefixOf = (p: string) => p.replace(/^\/+|\/+$/g, "");
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * What Velero allows at the top of a BackupStorageLocation (`<bucket>/<prefix>/`): anything else
 * makes it mark the location Unavailable (pkg/persistence/object_store.go, IsValid), and from Velero
 * 1.17 an Unavailable location takes no new backups.
 */
export const VELERO_TOP_LEVEL_DIRS = [
  "backups",
  "restores",
  "restic",
  "metadata",
  "plugins",
  "kopia",
] as const;

/** Whether one object-store path (`a/b`) is the other or lies inside it, segment by segment. */
function nested(a: string, b: string): boolean {
  return a === b || a === "" || b === "" || b.startsWith(`${a}/`) || a.startsWith(`${b}/`);
}

/**
 * Why a layout of the primary's BackupStorageLocation (bucket + prefix) and the failover metadata
 * (failoverBucket + failoverPrefix) would break one of the two locations, or undefined when it is
 * safe. In one bucket the two must be disjoint: Velero validates a location's top level, so the
 * failover prefix inside the primary's (with no primary prefix, the whole bucket is the primary's)
 * makes the primary Unavailable, and the primary's prefix inside the failover one makes the standby's
 * location Unavailable. Names are the settings to fix (the functions' or the deployer's).
 */
export function layoutProblem(
  v: Pick<VeleroConfig, "bucket" | "prefix" | "failoverBucket" | "failoverPrefix">,
  names: { bucket: string; prefix: string; failoverBucket: string; failoverPrefix: string } = {
    bucket: ENV.veleroBucket,
    prefix: ENV.veleroPrefix,
    failoverBucket: ENV.failoverBucket,
    failoverPrefix: ENV.failoverPrefix,
  },
): string | undefined {
  if (v.failoverBucket !== v.bucket || !nested(v.prefix, v.failoverPrefix)) return undefined;
  const allowed = VELERO_TOP_LEVEL_DIRS.map((d) => `${d}/`).join(", ");
  const why =
    `Velero allows only ${allowed} at the top of a BackupStorageLocation and marks it Unavailable ` +
    "otherwise (from Velero 1.17 an Unavailable location takes no new backups)";
  if (v.prefix === "") {
    return (
      `${names.prefix} is empty, so the primary's BackupStorageLocation is the whole of bucket ` +
      `"${v.bucket}", and the failover metadata (${names.failoverPrefix}="${v.failoverPrefix}") would ` +
      `be a folder at its top: ${why}. Set ${names.failoverBucket} to another bucket in the failover ` +
      `region for the failover metadata (or give the primary's location a prefix and set ${names.prefix})`
    );
  }
  if (v.failoverPrefix === "") {
    return (
      `${names.failoverPrefix} is empty, so the standby's BackupStorageLocation would be the whole of ` +
      `bucket "${v.bucket}", which holds the primary's location under "${v.prefix}/": ${why}. Set ` +
      `${names.failoverPrefix} to a prefix outside "${v.prefix}", or ${names.failoverBucket} to another bucket`
    );
  }
  return (
    `${names.prefix}="${v.prefix}" and ${names.failoverPrefix}="${v.failoverPrefix}" in the same bucket ` +
    `"${v.bucket}" must be disjoint (neither the other or inside it): ${why}. Choose a ` +
    `${names.failoverPrefix} beside "${v.prefix}", or set ${names.failoverBucket} to another bucket`
  );
}

/** The Velero settings, or undefined when VELERO_BUCKET is not set (registration off). */
function loadVeleroConfig(
  env: Env,
  failoverRegion: string,
  sourceRegions: readonly string[],
): VeleroConfig | undefined {
  const bucket = optional(env, ENV.veleroBucket);
  if (bucket === undefined) return undefined;
  if (!BUCKET_NAME.test(bucket)) {
    throw new ConfigError(`${ENV.veleroBucket} is not a valid bucket name: "${bucket}"`);
  }
  const failoverBucket = optional(env, ENV.failoverBucket) ?? bucket;
  if (!BUCKET_NAME.test(failoverBucket)) {
    throw new ConfigError(`${ENV.failoverBucket} is not a valid bucket name: "${failoverBucket}"`);
  }
  const zoneMap = parseTagList(ENV.zoneMap, required(env, ENV.zoneMap));
  const inFailover = (name: string, zone: string) => {
    if (!ZONE_PATTERN.test(zone) || !zone.startsWith(failoverRegion)) {
      throw new ConfigError(
        `${name} must name zones of the failover region ${failoverRegion}, got "${zone}"`,
      );
    }
    return zone;
  };
  // Per source region: each backup is rewritten with its own region's entries (velero.ts zoneMapFor).
  const regionOf = (zone: string) =>
    sourceRegions.find((r) => zone.length === r.length + 1 && zone.startsWith(r));
  const covered = new Set<string>();
  for (const [from, to] of Object.entries(zoneMap)) {
    if (!ZONE_PATTERN.test(from))
      throw new ConfigError(`${ENV.zoneMap} has an invalid source zone "${from}"`);
    const source = regionOf(from);
    if (source === undefined) {
      throw new ConfigError(
        `${ENV.zoneMap} maps "${from}", which is not a zone of a source region (${sourceRegions.join(", ")})`,
      );
    }
    covered.add(source);
    inFailover(ENV.zoneMap, to);
  }
  const defaultZone = optional(env, ENV.defaultZone);
  const uncovered = sourceRegions.filter((r) => !covered.has(r));
  if (defaultZone === undefined && uncovered.length > 0) {
    throw new ConfigError(
      `${ENV.zoneMap} maps no zone of the source region(s) ${uncovered.join(", ")} and ${ENV.defaultZone} ` +
        "is not set: their backups could not be published. Map their zones or set a default zone",
    );
  }
  const prefix = prefixOf(optional(env, ENV.veleroPrefix) ?? "");
  const failoverPrefix = prefixOf(optional(env, ENV.failoverPrefix) ?? "failover");
  const combined = optional(env, ENV.combinedIds) ?? "false";
  if (combined !== "true" && combined !== "false") {
    throw new ConfigError(`${ENV.combinedIds} must be true or false, got "${combined}"`);
  }
  const v: VeleroConfig = {
    bucket,
    prefix,
    failoverBucket,
    failoverPrefix,
    zoneMap,
    allowedWarnings: integer(env, ENV.allowedWarnings, 0, 1_000_000, 0) as number,
    combinedIds: combined === "true",
  };
  if (defaultZone !== undefined) v.defaultZone = inFailover(ENV.defaultZone, defaultZone);
  const repository = optional(env, ENV.backupRepositoryReplicated) ?? "false";
  if (repository !== "true" && repository !== "false") {
    throw new ConfigError(`${ENV.backupRepositoryReplicated} must be true or false, got "${repository}"`);
  }
  if (repository === "true") v.backupRepositoryReplicated = true;
  // Last, so that each setting's own error comes first.
  const problem = layoutProblem(v);
  if (problem) throw new ConfigError(problem);
  return v;
}

/** The inverse of loadConfig: the environment a function needs for this configuration. */
export function configToEnv(c: ReplicationConfig): Record<string, string> {
  const env: Record<string, string> = {
    [ENV.ledgerTable]: c.ledgerTable,
    [ENV.sourceRegions]: c.sourceRegions.join(","),
    [ENV.failoverRegion]: c.failoverRegion,
    [ENV.copyBudget]: String(c.copyBudget),
    [ENV.maxCopyAttempts]: String(c.maxCopyAttempts),
    [ENV.stuckAfterMinutes]: String(c.stuckAfterMinutes),
    [ENV.pollSeconds]: String(c.pollSeconds),
    [ENV.rpoTargetMinutes]: String(c.rpoTargetMinutes),
  };
  const tags = (t: Record<string, string>) =>
    Object.entries(t)
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
  if (Object.keys(c.includeTags).length) env[ENV.includeTags] = tags(c.includeTags);
  if (Object.keys(c.excludeTags).length) env[ENV.excludeTags] = tags(c.excludeTags);
  if (c.kmsKeyId) env[ENV.kmsKeyId] = c.kmsKeyId;
  if (c.completionDurationMinutes) env[ENV.completionDurationMinutes] = String(c.completionDurationMinutes);
  if (c.accountId) env[ENV.accountId] = c.accountId;
  if (c.velero) {
    env[ENV.veleroBucket] = c.velero.bucket;
    if (c.velero.prefix) env[ENV.veleroPrefix] = c.velero.prefix;
    if (c.velero.failoverBucket !== c.velero.bucket) env[ENV.failoverBucket] = c.velero.failoverBucket;
    env[ENV.failoverPrefix] = c.velero.failoverPrefix;
    env[ENV.zoneMap] = tags(c.velero.zoneMap);
    if (c.velero.defaultZone) env[ENV.defaultZone] = c.velero.defaultZone;
    env[ENV.allowedWarnings] = String(c.velero.allowedWarnings);
    if (c.velero.backupRepositoryReplicated) env[ENV.backupRepositoryReplicated] = "true";
    env[ENV.combinedIds] = String(c.velero.combinedIds);
  }
  return env;
}
