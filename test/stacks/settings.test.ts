/** The deployment settings (pure: no synthesis). */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { APPROVAL_ENV } from "../../functions/core/approval-config.js";
import { ENV, loadConfig } from "../../functions/core/config.js";
import { ConfigError } from "../../functions/core/errors.js";
import { FAILOVER_ENV } from "../../functions/core/failover.js";
import config from "../../sst.config.js";
import { iamRecordName } from "../../stacks/Failover.js";
import {
  APPROVAL_SETTINGS,
  busName,
  FAILOVER_SETTINGS,
  failoverMachineName,
  failoverSettingsFromEnv,
  forwardRuleName,
  isProtectedStage,
  SETTINGS,
  settingsFromEnv,
} from "../../stacks/settings.js";

const BASE = { DR_SOURCE_REGIONS: "us-east-1", DR_FAILOVER_REGION: "us-west-2" };

describe("settingsFromEnv", () => {
  it("maps every DR_* setting onto the functions' variable and validates it with loadConfig", () => {
    // arrange
    const env = {
      DR_SOURCE_REGIONS: "us-east-1, eu-west-1",
      DR_FAILOVER_REGION: "us-west-2",
      DR_COPY_BUDGET: "12",
      DR_KMS_KEY_ARN: "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
      DR_COPY_COMPLETION_MINUTES: "60",
      DR_INCLUDE_TAGS: "velero.io/schedule-name=cbci-dr",
      DR_EXCLUDE_TAGS: "dr=skip,tier=scratch",
      DR_MAX_COPY_ATTEMPTS: "4",
      DR_STUCK_AFTER_MINUTES: "90",
      DR_POLL_SECONDS: "5",
      DR_RPO_TARGET_MINUTES: "30",
      DR_VELERO_BUCKET: "acme-velero",
      DR_VELERO_PREFIX: "/cbci/",
      DR_FAILOVER_PREFIX: "cbci-failover",
      DR_ZONE_MAP: "us-east-1a=us-west-2a, us-east-1b=us-west-2b",
      DR_DEFAULT_ZONE: "us-west-2c",
      DR_ALLOWED_WARNINGS: "2",
      DR_COMBINED_SNAPSHOT_IDS: "true",
      DR_ALERT_EMAIL: "ops@example.com",
      DR_QUEUE_MAX_CONCURRENCY: "20",
    };
    // act
    const settings = settingsFromEnv(env);
    // assert
    expect(settings).toEqual({
      config: {
        sourceRegions: ["us-east-1", "eu-west-1"],
        failoverRegion: "us-west-2",
        copyBudget: 12,
        kmsKeyId: env.DR_KMS_KEY_ARN,
        completionDurationMinutes: 60,
        includeTags: { "velero.io/schedule-name": "cbci-dr" },
        excludeTags: { dr: "skip", tier: "scratch" },
        maxCopyAttempts: 4,
        stuckAfterMinutes: 90,
        pollSeconds: 5,
        rpoTargetMinutes: 30,
        velero: {
          bucket: "acme-velero",
          prefix: "cbci",
          failoverBucket: "acme-velero",
          failoverPrefix: "cbci-failover",
          zoneMap: { "us-east-1a": "us-west-2a", "us-east-1b": "us-west-2b" },
          defaultZone: "us-west-2c",
          allowedWarnings: 2,
          combinedIds: true,
        },
      },
      alertEmail: "ops@example.com",
      queueMaxConcurrency: 20,
    });
    expect(Object.keys(SETTINGS).every((k) => k in ENV)).toBe(true);
  });

  it("applies loadConfig's documented defaults and leaves optional settings out", () => {
    const { config, alertEmail, queueMaxConcurrency } = settingsFromEnv(BASE);
    expect(queueMaxConcurrency).toBe(5); // each queue consumer: at most 5 invocations at once
    expect(config.rpoTargetMinutes).toBe(60);
    expect(config.pollSeconds).toBe(10); // the copy poller looks every 10 s while copies wait
    expect(config.velero).toBeUndefined(); // registration off without DR_VELERO_BUCKET
    const fromFunctions = loadConfig({
      LEDGER_TABLE: "t",
      SOURCE_REGIONS: "us-east-1",
      FAILOVER_REGION: "us-west-2",
    });
    const { ledgerTable: _, ...expected } = fromFunctions;
    expect(config).toEqual(expected);
    expect(alertEmail).toBeUndefined();
  });

  it.each([
    [{ DR_SOURCE_REGIONS: "us-east-1" }, "DR_FAILOVER_REGION is required but not set"],
    [{ DR_FAILOVER_REGION: "us-west-2" }, "DR_SOURCE_REGIONS is required but not set"],
    [{ ...BASE, DR_COPY_BUDGET: "25" }, "DR_COPY_BUDGET must be between 1 and 20, got 25"],
    [{ ...BASE, DR_COPY_BUDGET: "ten" }, 'DR_COPY_BUDGET must be an integer, got "ten"'],
    [{ ...BASE, DR_FAILOVER_REGION: "mars-1" }, 'DR_FAILOVER_REGION has an invalid AWS region "mars-1"'],
    [
      { ...BASE, DR_SOURCE_REGIONS: "us-west-2" },
      "DR_SOURCE_REGIONS must not include the failover region us-west-2",
    ],
    [
      { ...BASE, DR_KMS_KEY_ARN: "arn:aws:kms:eu-west-1:123456789012:alias/x" },
      "DR_KMS_KEY_ARN must be a key in the failover region us-west-2, got one in eu-west-1",
    ],
    [
      { ...BASE, DR_COPY_COMPLETION_MINUTES: "20" },
      "DR_COPY_COMPLETION_MINUTES must be a multiple of 15, got 20",
    ],
    [
      { ...BASE, DR_INCLUDE_TAGS: "novalue" },
      'DR_INCLUDE_TAGS entries must look like key=value, got "novalue"',
    ],
    [{ ...BASE, DR_MAX_COPY_ATTEMPTS: "0" }, "DR_MAX_COPY_ATTEMPTS must be between 1 and 20, got 0"],
    [{ ...BASE, DR_STUCK_AFTER_MINUTES: "1" }, "DR_STUCK_AFTER_MINUTES must be between 5 and 2880, got 1"],
    [{ ...BASE, DR_ALERT_EMAIL: "ops" }, 'DR_ALERT_EMAIL must be an email address, got "ops"'],
    // Lambda's SQS maximum concurrency is 2..1000
    [
      { ...BASE, DR_QUEUE_MAX_CONCURRENCY: "1" },
      "DR_QUEUE_MAX_CONCURRENCY must be between 2 and 1000, got 1",
    ],
    [
      { ...BASE, DR_QUEUE_MAX_CONCURRENCY: "1001" },
      "DR_QUEUE_MAX_CONCURRENCY must be between 2 and 1000, got 1001",
    ],
    [
      { ...BASE, DR_QUEUE_MAX_CONCURRENCY: "five" },
      'DR_QUEUE_MAX_CONCURRENCY must be an integer, got "five"',
    ],
    [{ ...BASE, DR_RPO_TARGET_MINUTES: "0" }, "DR_RPO_TARGET_MINUTES must be between 1 and 10080, got 0"],
    [{ ...BASE, DR_POLL_SECONDS: "31" }, "DR_POLL_SECONDS must be between 0 and 30, got 31"],
    [{ ...BASE, DR_POLL_SECONDS: "x" }, 'DR_POLL_SECONDS must be an integer, got "x"'],
    [{ ...BASE, DR_VELERO_BUCKET: "acme-velero" }, "DR_ZONE_MAP is required but not set"],
    [
      { ...BASE, DR_VELERO_BUCKET: "Not_A_Bucket", DR_ZONE_MAP: "us-east-1a=us-west-2a" },
      "DR_VELERO_BUCKET is not a valid bucket name",
    ],
    [
      { ...BASE, DR_VELERO_BUCKET: "acme-velero", DR_ZONE_MAP: "us-east-1a=us-east-1b" },
      'DR_ZONE_MAP must name zones of the failover region us-west-2, got "us-east-1b"',
    ],
    [
      {
        ...BASE,
        DR_VELERO_BUCKET: "acme-velero",
        DR_ZONE_MAP: "us-east-1a=us-west-2a",
        DR_DEFAULT_ZONE: "eu-west-1a",
      },
      'DR_DEFAULT_ZONE must name zones of the failover region us-west-2, got "eu-west-1a"',
    ],
    // The failover metadata never lies inside the primary's BackupStorageLocation, nor the other way
    // round: Velero marks a location whose top level holds anything but its own folders Unavailable.
    [
      { ...BASE, DR_VELERO_BUCKET: "acme-velero", DR_ZONE_MAP: "us-east-1a=us-west-2a" },
      'DR_VELERO_PREFIX is empty, so the primary\'s BackupStorageLocation is the whole of bucket "acme-velero", and the failover metadata (DR_FAILOVER_PREFIX="failover") would be a folder at its top: Velero allows only backups/, restores/, restic/, metadata/, plugins/, kopia/ at the top of a BackupStorageLocation and marks it Unavailable otherwise (from Velero 1.17 an Unavailable location takes no new backups). Set DR_FAILOVER_BUCKET to another bucket',
    ],
    [
      {
        ...BASE,
        DR_VELERO_BUCKET: "acme-velero",
        DR_ZONE_MAP: "us-east-1a=us-west-2a",
        DR_VELERO_PREFIX: "v",
        DR_FAILOVER_PREFIX: "v/",
      },
      'DR_VELERO_PREFIX="v" and DR_FAILOVER_PREFIX="v" in the same bucket "acme-velero" must be disjoint',
    ],
    [
      {
        ...BASE,
        DR_VELERO_BUCKET: "acme-velero",
        DR_ZONE_MAP: "us-east-1a=us-west-2a",
        DR_VELERO_PREFIX: "cbci",
        DR_FAILOVER_PREFIX: "cbci/failover",
      },
      'DR_VELERO_PREFIX="cbci" and DR_FAILOVER_PREFIX="cbci/failover" in the same bucket "acme-velero" must be disjoint',
    ],
    [
      {
        ...BASE,
        DR_VELERO_BUCKET: "acme-velero",
        DR_ZONE_MAP: "us-east-1a=us-west-2a",
        DR_VELERO_PREFIX: "dr/cbci",
        DR_FAILOVER_PREFIX: "dr",
      },
      'DR_VELERO_PREFIX="dr/cbci" and DR_FAILOVER_PREFIX="dr" in the same bucket "acme-velero" must be disjoint',
    ],
    [
      {
        ...BASE,
        DR_VELERO_BUCKET: "acme-velero",
        DR_ZONE_MAP: "us-east-1a=us-west-2a",
        DR_VELERO_PREFIX: "cbci",
        DR_FAILOVER_PREFIX: "/",
      },
      "DR_FAILOVER_PREFIX is empty, so the standby's BackupStorageLocation would be the whole of bucket",
    ],
    [
      {
        ...BASE,
        DR_VELERO_BUCKET: "acme-velero",
        DR_FAILOVER_BUCKET: "Acme_Failover",
        DR_ZONE_MAP: "us-east-1a=us-west-2a",
      },
      'DR_FAILOVER_BUCKET is not a valid bucket name: "Acme_Failover"',
    ],
    [
      {
        ...BASE,
        DR_VELERO_BUCKET: "acme-velero",
        DR_ZONE_MAP: "us-east-1a=us-west-2a",
        DR_ALLOWED_WARNINGS: "-1",
      },
      'DR_ALLOWED_WARNINGS must be an integer, got "-1"',
    ],
    [
      {
        ...BASE,
        DR_VELERO_BUCKET: "acme-velero",
        DR_ZONE_MAP: "us-east-1a=us-west-2a",
        DR_COMBINED_SNAPSHOT_IDS: "yes",
      },
      'DR_COMBINED_SNAPSHOT_IDS must be true or false, got "yes"',
    ],
  ])("rejects %o naming the setting the deployer sets", (env, message) => {
    expect(() => settingsFromEnv(env)).toThrow(ConfigError);
    expect(() => settingsFromEnv(env)).toThrow(message);
  });

  it.each([
    [{ DR_FAILOVER_BUCKET: "acme-velero-dr" }, "acme-velero-dr", "failover"],
    [{ DR_FAILOVER_BUCKET: "acme-velero-dr", DR_FAILOVER_PREFIX: "/" }, "acme-velero-dr", ""],
    [{ DR_VELERO_PREFIX: "cbci", DR_FAILOVER_PREFIX: "cbci-failover" }, "acme-velero", "cbci-failover"],
    [
      { DR_VELERO_PREFIX: "dr/cbci", DR_FAILOVER_PREFIX: "dr/cbci-failover" },
      "acme-velero",
      "dr/cbci-failover",
    ],
  ])("accepts the disjoint layout %o (failover metadata in %s under %j)", (layout, bucket, prefix) => {
    // act
    const { config } = settingsFromEnv({
      ...BASE,
      DR_VELERO_BUCKET: "acme-velero",
      DR_ZONE_MAP: "us-east-1a=us-west-2a",
      ...layout,
    });
    // assert
    expect(config.velero).toMatchObject({
      bucket: "acme-velero",
      failoverBucket: bucket,
      failoverPrefix: prefix,
    });
  });

  it("accepts DR_POLL_SECONDS=0 (the copy poller is off: the stack deploys none)", () => {
    // act
    const { config } = settingsFromEnv({ ...BASE, DR_POLL_SECONDS: "0" });
    // assert
    expect(config.pollSeconds).toBe(0);
  });

  it("ignores the functions' own variable names (only DR_* configures a deployment)", () => {
    expect(() => settingsFromEnv({ FAILOVER_REGION: "us-west-2", SOURCE_REGIONS: "us-east-1" })).toThrow(
      "DR_FAILOVER_REGION is required",
    );
  });
});

describe("failoverSettingsFromEnv", () => {
  const VELERO = {
    ...BASE,
    DR_VELERO_BUCKET: "acme-velero",
    DR_VELERO_PREFIX: "cbci",
    DR_ZONE_MAP: "us-east-1a=us-west-2a",
  };
  const FAILOVER = {
    ...VELERO,
    DR_FAILOVER_CLUSTER_NAME: "standby",
    DR_FAILOVER_NODEGROUP_NAME: "workers",
    DR_FAILOVER_NODEGROUP_MIN: "1",
    DR_FAILOVER_NODEGROUP_DESIRED: "2",
    DR_FAILOVER_NODEGROUP_MAX: "4",
    DR_FAILOVER_HOSTED_ZONE_ID: "Z123",
    DR_FAILOVER_RECORD_NAME: "ci.example.com",
    DR_FAILOVER_LB_NAME: "ingress",
    DR_APPROVER_EMAILS: "ops@example.com",
  };

  it("is off without DR_FAILOVER_CLUSTER_NAME", () => {
    expect(failoverSettingsFromEnv(VELERO)).toBeUndefined();
    expect(failoverSettingsFromEnv(BASE)).toBeUndefined();
  });

  it("maps every setting onto the functions' variables, validated by their own loaders, with their defaults", () => {
    // act
    const f = failoverSettingsFromEnv({
      ...FAILOVER,
      DR_FAILOVER_NODEGROUP_WAIT_SECONDS: "300",
      DR_FAILOVER_PARTIAL_RESTORE: "fail",
    });
    // assert
    expect(f?.env).toEqual({
      FAILOVER_REGION: "us-west-2",
      ALLOWED_WARNINGS: "0",
      FAILOVER_CLUSTER_NAME: "standby",
      FAILOVER_NODEGROUP_NAME: "workers",
      FAILOVER_NODEGROUP_MIN: "1",
      FAILOVER_NODEGROUP_DESIRED: "2",
      FAILOVER_NODEGROUP_MAX: "4",
      FAILOVER_HOSTED_ZONE_ID: "Z123",
      FAILOVER_RECORD_NAME: "ci.example.com",
      FAILOVER_LB_NAME: "ingress",
      FAILOVER_NODEGROUP_WAIT_SECONDS: "300",
      FAILOVER_PARTIAL_RESTORE: "fail",
    });
    expect(f?.config).toMatchObject({
      recordName: "ci.example.com.",
      recordType: "A",
      namespaces: ["cbci"],
      partialRestore: "fail",
      waits: { pollMs: 10_000, nodegroupMs: 300_000, restoreMs: 600_000, dnsMs: 300_000 },
    });
    expect(f?.approvalEnv).toEqual({
      FAILOVER_REGION: "us-west-2",
      APPROVAL_TTL_MINUTES: "60",
      TWO_PERSON_RULE: "false",
    });
    expect(f?.requestApprovalEnv).toEqual({
      FAILOVER_REGION: "us-west-2",
      APPROVAL_TTL_MINUTES: "60",
      APPROVER_EMAILS: "ops@example.com",
    });
    expect(f?.requestApproval.approverEmails).toEqual(["ops@example.com"]);
    expect(f?.approverEmails).toEqual(["ops@example.com"]);
    expect(f?.approvalTimeoutMinutes).toBe(60); // the links' TTL
    for (const [key, setting] of Object.entries(FAILOVER_SETTINGS)) {
      expect(setting).toBe(`DR_${FAILOVER_ENV[key as keyof typeof FAILOVER_SETTINGS]}`);
    }
    for (const [key, setting] of Object.entries(APPROVAL_SETTINGS)) {
      expect(setting).toBe(`DR_${APPROVAL_ENV[key as keyof typeof APPROVAL_SETTINGS]}`);
    }
  });

  it.each([
    [
      { DR_FAILOVER_NODEGROUP_MIN: "5" },
      "DR_FAILOVER_NODEGROUP_MIN <= DR_FAILOVER_NODEGROUP_DESIRED <= DR_FAILOVER_NODEGROUP_MAX must hold",
    ],
    [{ DR_FAILOVER_RECORD_NAME: "not a name" }, 'DR_FAILOVER_RECORD_NAME is not a DNS name: "not a name"'],
    [
      { DR_FAILOVER_LB_NAME: undefined },
      "exactly one of DR_FAILOVER_LB_NAME and DR_FAILOVER_LB_TAG must be set",
    ],
    [{ DR_FAILOVER_NAMESPACES: "CBCI" }, 'DR_FAILOVER_NAMESPACES has an invalid namespace "CBCI"'],
    [
      { DR_FAILOVER_DNS_WAIT_SECONDS: "900" },
      "DR_FAILOVER_DNS_WAIT_SECONDS must be between 10 and 840, got 900",
    ],
    [{ DR_TWO_PERSON_RULE: "yes" }, 'DR_TWO_PERSON_RULE must be true or false, got "yes"'],
    [{ DR_SLACK_APPROVERS: "U0ALICE01" }, "DR_SLACK_APPROVERS is set but DR_SLACK_SECRET_ARN is not"],
    [{ DR_APPROVER_EMAILS: undefined }, "DR_FAILOVER_CLUSTER_NAME needs approvers: set DR_APPROVER_EMAILS"],
    [
      { DR_APPROVAL_TIMEOUT_MINUTES: "61" },
      "DR_APPROVAL_TIMEOUT_MINUTES must be between 5 and DR_APPROVAL_TTL_MINUTES (60), got 61",
    ],
    [{ DR_FAILOVER_CLUSTER_NAME: " " }, "DR_FAILOVER_NODEGROUP_NAME"],
  ])("rejects %o naming the DR_* setting", (over, message) => {
    const env = { ...FAILOVER, ...over };
    expect(() => failoverSettingsFromEnv(env)).toThrow(ConfigError);
    expect(() => failoverSettingsFromEnv(env)).toThrow(message);
  });

  it("names the machine after the stage, and the record as Route 53's IAM conditions compare it", () => {
    expect(failoverMachineName("prod")).toBe("velero-dr-prod-failover");
    expect(iamRecordName("ci.example.com.")).toBe("ci.example.com");
    expect(iamRecordName("*.ci.example.com.")).toBe("\\052.ci.example.com");
  });
});

describe("stage naming", () => {
  it.each([
    ["prod", true],
    ["production", true],
    ["prod-eu", true],
    ["dev", false],
    ["test", false],
    ["producer", false],
  ])("protects %s: %s", (stage, expected) => {
    expect(isProtectedStage(stage)).toBe(expected);
  });

  it("derives the bus and forwarding rule names from the stage", () => {
    expect(busName("prod")).toBe("velero-dr-prod");
    expect(forwardRuleName("prod", "snapshots")).toBe("velero-dr-prod-forward-snapshots");
  });
});

describe("sst.config.ts config()", () => {
  const cwd = process.cwd();
  const shell = process.env.DR_FAILOVER_REGION;
  let dir = "";
  afterEach(async () => {
    process.chdir(cwd);
    if (dir) await rm(dir, { recursive: true, force: true });
    if (shell === undefined) delete process.env.DR_FAILOVER_REGION;
    else process.env.DR_FAILOVER_REGION = shell;
  });

  it("defaults to DR_FAILOVER_REGION from the shell or SST's .env files, and --region wins", async () => {
    // arrange: SST loads .env, .env.local, .env.<stage>, .env.<stage>.local after config() runs
    dir = await mkdtemp(path.join(tmpdir(), "velero-dr-config-"));
    await writeFile(path.join(dir, ".env"), "DR_FAILOVER_REGION=eu-central-1\n");
    await writeFile(path.join(dir, ".env.prod"), "DR_FAILOVER_REGION=ap-southeast-2\n");
    process.chdir(dir);
    process.env.DR_FAILOVER_REGION = "us-west-2";
    // act + assert
    expect(await config.config({ stage: "prod" })).toEqual({ name: "velero-dr", region: "ap-southeast-2" });
    expect(await config.config({ stage: "dev" })).toEqual({ name: "velero-dr", region: "eu-central-1" });
    expect(await config.config({ stage: "prod", region: "us-east-1" })).toEqual({
      name: "velero-dr",
      region: "us-east-1",
    });
    process.chdir(cwd);
    expect(await config.config({ stage: "dev" })).toEqual({ name: "velero-dr", region: "us-west-2" });
  });
});
