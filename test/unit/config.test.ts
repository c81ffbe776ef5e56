import { describe, expect, it } from "vitest";
import {
  configToEnv,
  DEFAULTS,
  ENV,
  loadConfig,
  type ReplicationConfig,
} from "../../functions/core/config.js";
import { ConfigError } from "../../functions/core/errors.js";

type Env = Record<string, string | undefined>;

/** The smallest valid environment, with some variables replaced (undefined removes one). */
function env(patch: Env = {}): Env {
  const base: Env = {
    LEDGER_TABLE: "velero-dr-ledger",
    SOURCE_REGIONS: "us-east-1",
    FAILOVER_REGION: "us-west-2",
  };
  const out = { ...base, ...patch };
  for (const [k, v] of Object.entries(out)) if (v === undefined) delete out[k];
  return out;
}

/** The ConfigError loadConfig throws for this environment (fails the test when it throws none). */
function configError(e: Env): ConfigError {
  try {
    loadConfig(e);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(e)}`);
}

const KEY_ARN = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ALIAS_ARN = "arn:aws:kms:us-west-2:111122223333:alias/velero-dr";

describe("loadConfig: required variables", () => {
  it.each([ENV.ledgerTable, ENV.sourceRegions, ENV.failoverRegion])("names %s when it is missing", (name) => {
    // arrange
    const e = env({ [name]: undefined });
    // act
    const err = configError(e);
    // assert
    expect(err.name).toBe("ConfigError");
    expect(err.message).toContain(name);
  });

  it.each([ENV.ledgerTable, ENV.sourceRegions, ENV.failoverRegion])("names %s when it is blank", (name) => {
    // arrange
    const e = env({ [name]: "   " });
    // act
    const err = configError(e);
    // assert
    expect(err.message).toContain(name);
  });

  it("rejects a source region list that names no region", () => {
    // arrange
    const e = env({ SOURCE_REGIONS: " , ," });
    // act
    const err = configError(e);
    // assert
    expect(err.message).toContain(ENV.sourceRegions);
  });
});

describe("loadConfig: defaults", () => {
  it("applies the documented defaults and nothing else", () => {
    // arrange
    const e = env();
    // act
    const c = loadConfig(e);
    // assert
    expect(c).toEqual({
      ledgerTable: "velero-dr-ledger",
      sourceRegions: ["us-east-1"],
      failoverRegion: "us-west-2",
      copyBudget: 16,
      includeTags: {},
      excludeTags: {},
      maxCopyAttempts: 3,
      stuckAfterMinutes: 60,
      rpoTargetMinutes: 60,
      pollSeconds: 10,
    });
    expect(DEFAULTS).toEqual({
      copyBudget: 16,
      maxCopyAttempts: 3,
      stuckAfterMinutes: 60,
      rpoTargetMinutes: 60,
      pollSeconds: 10,
    });
  });

  it("treats blank optional variables as unset", () => {
    // arrange
    const e = env({ COPY_BUDGET: " ", KMS_KEY_ID: "", COPY_COMPLETION_MINUTES: "  ", INCLUDE_TAGS: " " });
    // act
    const c = loadConfig(e);
    // assert
    expect(c.copyBudget).toBe(16);
    expect(c.kmsKeyId).toBeUndefined();
    expect(c.completionDurationMinutes).toBeUndefined();
    expect(c.includeTags).toEqual({});
  });
});

describe("loadConfig: regions", () => {
  it.each(["us-east", "US-WEST-2", "uswest2", "us-west-2a", "us-west-2 x", "us-west-2;rm", "moon-base-1x"])(
    "rejects failover region %j, naming the variable",
    (region) => {
      // arrange
      const e = env({ FAILOVER_REGION: region });
      // act
      const err = configError(e);
      // assert
      expect(err.message).toContain(ENV.failoverRegion);
    },
  );

  it.each(["us-east-1,us-east", "eu-west-1,EU-WEST-2", "us-east-1a"])(
    "rejects source regions %j, naming the variable",
    (regions) => {
      // arrange
      const e = env({ SOURCE_REGIONS: regions });
      // act
      const err = configError(e);
      // assert
      expect(err.message).toContain(ENV.sourceRegions);
    },
  );

  it("accepts several source regions, including GovCloud and ISO forms, with spaces", () => {
    // arrange
    const e = env({ SOURCE_REGIONS: " us-east-1 , eu-central-1,us-gov-west-1,us-isob-east-1 ," });
    // act
    const c = loadConfig(e);
    // assert
    expect(c.sourceRegions).toEqual(["us-east-1", "eu-central-1", "us-gov-west-1", "us-isob-east-1"]);
  });

  it("rejects source regions that include the failover region", () => {
    // arrange
    const e = env({ SOURCE_REGIONS: "us-east-1,us-west-2" });
    // act
    const err = configError(e);
    // assert
    expect(err.message).toContain(ENV.sourceRegions);
    expect(err.message).toContain("us-west-2");
  });
});

describe("loadConfig: numbers", () => {
  it.each(["31", "-1", "2.5", "often"])("rejects POLL_SECONDS=%j", (raw) => {
    // arrange
    const e = env({ POLL_SECONDS: raw });
    // act
    const err = configError(e);
    // assert
    expect(err.message).toContain(ENV.pollSeconds);
    expect(err.message).toContain(raw === "31" ? "between 0 and 30" : "integer");
  });

  it.each([
    ["0", 0],
    ["5", 5],
    ["30", 30],
  ])("accepts POLL_SECONDS=%j (0: the poller is off)", (raw, expected) => {
    // arrange
    const e = env({ POLL_SECONDS: raw });
    // act
    const c = loadConfig(e);
    // assert
    expect(c.pollSeconds).toBe(expected);
  });

  it.each(["0", "21", "abc", "-1", "1.5", "1e1", "16 copies"])("rejects COPY_BUDGET=%j", (budget) => {
    // arrange
    const e = env({ COPY_BUDGET: budget });
    // act
    const err = configError(e);
    // assert
    expect(err.message).toContain(ENV.copyBudget);
    expect(err.message).toContain(budget === "0" || budget === "21" ? "between 1 and 20" : "integer");
  });

  it.each([
    ["1", 1],
    ["20", 20],
    [" 8 ", 8],
  ])("accepts COPY_BUDGET=%j", (raw, expected) => {
    // arrange
    const e = env({ COPY_BUDGET: raw });
    // act
    const c = loadConfig(e);
    // assert
    expect(c.copyBudget).toBe(expected);
  });

  it.each(["10", "20", "2895", "0", "fifteen"])("rejects COPY_COMPLETION_MINUTES=%j", (minutes) => {
    // arrange
    const e = env({ COPY_COMPLETION_MINUTES: minutes });
    // act
    const err = configError(e);
    // assert
    expect(err.message).toContain(ENV.completionDurationMinutes);
  });

  it.each([15, 45, 2880])("accepts COPY_COMPLETION_MINUTES=%d", (minutes) => {
    // arrange
    const e = env({ COPY_COMPLETION_MINUTES: String(minutes) });
    // act
    const c = loadConfig(e);
    // assert
    expect(c.completionDurationMinutes).toBe(minutes);
  });

  it.each([
    [ENV.maxCopyAttempts, "0"],
    [ENV.maxCopyAttempts, "21"],
    [ENV.stuckAfterMinutes, "4"],
    [ENV.stuckAfterMinutes, "2881"],
  ])("rejects %s=%j", (name, raw) => {
    // arrange
    const e = env({ [name]: raw });
    // act
    const err = configError(e);
    // assert
    expect(err.message).toContain(name);
  });
});

describe("loadConfig: KMS key and account", () => {
  it.each([KEY_ARN, ALIAS_ARN])("accepts %s in the failover region", (arn) => {
    // arrange
    const e = env({ KMS_KEY_ID: arn });
    // act
    const c = loadConfig(e);
    // assert
    expect(c.kmsKeyId).toBe(arn);
  });

  it("rejects a key in another region, naming the variable and both regions", () => {
    // arrange
    const e = env({ KMS_KEY_ID: KEY_ARN.replace("us-west-2", "us-east-1") });
    // act
    const err = configError(e);
    // assert
    expect(err.message).toContain(ENV.kmsKeyId);
    expect(err.message).toContain("us-west-2");
    expect(err.message).toContain("us-east-1");
  });

  it.each([
    "1234abcd-12ab-34cd-56ef-1234567890ab",
    "alias/aws/ebs",
    "arn:aws:kms:us-west-2:11112222333:key/1234abcd",
    "arn:aws:s3:us-west-2:111122223333:key/1234abcd",
    "arn:aws:kms:us-west-2:111122223333:grant/1234abcd",
  ])("rejects the malformed key %j, naming the variable", (key) => {
    // arrange
    const e = env({ KMS_KEY_ID: key });
    // act
    const err = configError(e);
    // assert
    expect(err.message).toContain(ENV.kmsKeyId);
  });

  it("rejects an account id that is not 12 digits", () => {
    // arrange
    const e = env({ SOURCE_ACCOUNT_ID: "12345" });
    // act
    const err = configError(e);
    // assert
    expect(err.message).toContain(ENV.accountId);
  });
});

describe("loadConfig: tag filters", () => {
  it("parses key=value lists, keeping '=' inside values and trimming spaces", () => {
    // arrange
    const e = env({ INCLUDE_TAGS: "a=b,c=d=e", EXCLUDE_TAGS: " velero.io/storage-location = default , x=," });
    // act
    const c = loadConfig(e);
    // assert
    expect(c.includeTags).toEqual({ a: "b", c: "d=e" });
    expect(c.excludeTags).toEqual({ "velero.io/storage-location": "default", x: "" });
  });

  it.each([
    [ENV.includeTags, "a=b,oops"],
    [ENV.includeTags, "=value"],
    [ENV.excludeTags, "justakey"],
  ])("rejects %s=%j, naming the variable and the entry", (name, raw) => {
    // arrange
    const e = env({ [name]: raw });
    // act
    const err = configError(e);
    // assert
    expect(err.message).toContain(name);
    expect(err.message).toContain(raw.split(",").at(-1) ?? "");
  });
});

describe("loadConfig: the failover metadata's layout (checked at cold start too)", () => {
  const env = {
    LEDGER_TABLE: "t",
    SOURCE_REGIONS: "us-east-1",
    FAILOVER_REGION: "us-west-2",
    VELERO_BUCKET: "acme-velero",
    ZONE_MAP: "us-east-1a=us-west-2a",
  };

  it.each([
    [
      {},
      /^VELERO_PREFIX is empty, so the primary's BackupStorageLocation is the whole of bucket "acme-velero".*Set FAILOVER_BUCKET to another bucket/,
    ],
    [
      { VELERO_PREFIX: "cbci", FAILOVER_PREFIX: "cbci/dr" },
      /VELERO_PREFIX="cbci" and FAILOVER_PREFIX="cbci\/dr" .* must be disjoint/,
    ],
    [
      { VELERO_PREFIX: "cbci", FAILOVER_PREFIX: "/", FAILOVER_BUCKET: "acme-velero" },
      /^FAILOVER_PREFIX is empty, so the standby's BackupStorageLocation would be the whole of bucket "acme-velero"/,
    ],
    [{ FAILOVER_BUCKET: "acme-velero" }, /^VELERO_PREFIX is empty/],
  ])("refuses %o, naming the functions' variables", (layout, message) => {
    expect(() => loadConfig({ ...env, ...layout })).toThrow(message);
  });

  it("takes another bucket for the failover metadata, and names it in the functions' environment", () => {
    // act
    const config = loadConfig({ ...env, FAILOVER_BUCKET: "acme-velero-dr" });
    // assert
    expect(config.velero).toMatchObject({
      bucket: "acme-velero",
      prefix: "",
      failoverBucket: "acme-velero-dr",
    });
    expect(configToEnv(config)).toMatchObject({
      FAILOVER_BUCKET: "acme-velero-dr",
      FAILOVER_PREFIX: "failover",
    });
    expect(loadConfig(configToEnv(config))).toEqual(config);
  });
});

describe("loadConfig: the zone map, per source region", () => {
  const env = {
    LEDGER_TABLE: "t",
    SOURCE_REGIONS: "us-east-1,eu-west-1",
    FAILOVER_REGION: "us-west-2",
    VELERO_BUCKET: "acme-velero",
    VELERO_PREFIX: "cbci",
  };

  it("accepts one map over several source regions", () => {
    const config = loadConfig({ ...env, ZONE_MAP: "us-east-1a=us-west-2a,eu-west-1b=us-west-2c" });
    expect(config.velero?.zoneMap).toEqual({ "us-east-1a": "us-west-2a", "eu-west-1b": "us-west-2c" });
  });

  it.each([
    [
      { ZONE_MAP: "us-east-1a=us-west-2a" },
      "ZONE_MAP maps no zone of the source region(s) eu-west-1 and DEFAULT_ZONE is not set: their backups could not be published",
    ],
    [
      { ZONE_MAP: "us-east-1a=us-west-2a,eu-west-1a=us-west-2b,ap-south-1a=us-west-2c" },
      'ZONE_MAP maps "ap-south-1a", which is not a zone of a source region (us-east-1, eu-west-1)',
    ],
  ])("refuses %o", (zones, message) => {
    expect(() => loadConfig({ ...env, ...zones })).toThrow(message);
  });

  it("takes DEFAULT_ZONE for a source region the map does not cover", () => {
    const config = loadConfig({ ...env, ZONE_MAP: "us-east-1a=us-west-2a", DEFAULT_ZONE: "us-west-2b" });
    expect(config.velero?.defaultZone).toBe("us-west-2b");
  });
});

describe("configToEnv", () => {
  it("round-trips a full configuration through loadConfig", () => {
    // arrange
    const c: ReplicationConfig = {
      ledgerTable: "ledger",
      sourceRegions: ["us-east-1", "eu-west-1"],
      failoverRegion: "us-west-2",
      copyBudget: 7,
      kmsKeyId: ALIAS_ARN,
      completionDurationMinutes: 60,
      includeTags: { "velero.io/storage-location": "default", tier: "a=b" },
      excludeTags: { skip: "yes" },
      maxCopyAttempts: 5,
      stuckAfterMinutes: 90,
      accountId: "111122223333",
      rpoTargetMinutes: 30,
      pollSeconds: 5,
      velero: {
        bucket: "velero-backups-dr",
        prefix: "cluster-a",
        failoverBucket: "velero-backups-dr",
        failoverPrefix: "failover",
        zoneMap: { "us-east-1a": "us-west-2a", "us-east-1b": "us-west-2b" },
        defaultZone: "us-west-2c",
        allowedWarnings: 1,
        combinedIds: true,
      },
    };
    // act
    const back = loadConfig(configToEnv(c));
    // assert
    expect(back).toEqual(c);
  });

  it("round-trips the minimal configuration, writing no optional variable", () => {
    // arrange
    const c = loadConfig(env());
    // act
    const e = configToEnv(c);
    // assert
    expect(loadConfig(e)).toEqual(c);
    expect(Object.keys(e).sort()).toEqual(
      [
        ENV.ledgerTable,
        ENV.sourceRegions,
        ENV.failoverRegion,
        ENV.copyBudget,
        ENV.maxCopyAttempts,
        ENV.stuckAfterMinutes,
        ENV.rpoTargetMinutes,
        ENV.pollSeconds,
      ].sort(),
    );
  });
});
