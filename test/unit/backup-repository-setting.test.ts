import { describe, expect, it } from "vitest";
import { configToEnv, ENV, loadConfig } from "../../functions/core/config.js";
import { ConfigError } from "../../functions/core/errors.js";
import { SETTINGS, settingsFromEnv } from "../../stacks/settings.js";

/**
 * BACKUP_REPOSITORY_REPLICATED (DR_BACKUP_REPOSITORY_REPLICATED at deploy time): the user says they
 * replicate Velero's backup repository, so file-system backup and data-mover volumes count as
 * restorable (functions/core/backup.ts). Default false.
 */

const FUNCTION_ENV = {
  LEDGER_TABLE: "ledger",
  SOURCE_REGIONS: "us-east-1",
  FAILOVER_REGION: "us-west-2",
  VELERO_BUCKET: "acme-velero",
  VELERO_PREFIX: "cbci",
  ZONE_MAP: "us-east-1a=us-west-2a",
};

const DEPLOY_ENV = {
  DR_SOURCE_REGIONS: "us-east-1",
  DR_FAILOVER_REGION: "us-west-2",
  DR_VELERO_BUCKET: "acme-velero",
  DR_VELERO_PREFIX: "cbci",
  DR_ZONE_MAP: "us-east-1a=us-west-2a",
};

describe("BACKUP_REPOSITORY_REPLICATED", () => {
  it("is off by default: absent from the configuration and from the functions' environment", () => {
    // act
    const config = loadConfig(FUNCTION_ENV);
    // assert
    expect(config.velero?.backupRepositoryReplicated).toBeUndefined();
    expect(configToEnv(config)).not.toHaveProperty(ENV.backupRepositoryReplicated);
    expect(loadConfig({ ...FUNCTION_ENV, BACKUP_REPOSITORY_REPLICATED: "false" })).toEqual(config);
  });

  it("true turns it on, and round-trips through the functions' environment", () => {
    // act
    const config = loadConfig({ ...FUNCTION_ENV, BACKUP_REPOSITORY_REPLICATED: " true " });
    // assert
    expect(config.velero?.backupRepositoryReplicated).toBe(true);
    expect(configToEnv(config)).toMatchObject({ BACKUP_REPOSITORY_REPLICATED: "true" });
    expect(loadConfig(configToEnv(config))).toEqual(config);
  });

  it("refuses anything but true or false, naming the variable", () => {
    expect(() => loadConfig({ ...FUNCTION_ENV, BACKUP_REPOSITORY_REPLICATED: "yes" })).toThrow(
      new ConfigError('BACKUP_REPOSITORY_REPLICATED must be true or false, got "yes"'),
    );
  });

  it("is DR_BACKUP_REPOSITORY_REPLICATED at deploy time, validated and renamed like every setting", () => {
    expect(SETTINGS.backupRepositoryReplicated).toBe("DR_BACKUP_REPOSITORY_REPLICATED");
    expect(
      settingsFromEnv({ ...DEPLOY_ENV, DR_BACKUP_REPOSITORY_REPLICATED: "true" }).config.velero
        ?.backupRepositoryReplicated,
    ).toBe(true);
    expect(settingsFromEnv(DEPLOY_ENV).config.velero?.backupRepositoryReplicated).toBeUndefined();
    expect(() => settingsFromEnv({ ...DEPLOY_ENV, DR_BACKUP_REPOSITORY_REPLICATED: "1" })).toThrow(
      'DR_BACKUP_REPOSITORY_REPLICATED must be true or false, got "1"',
    );
  });
});
