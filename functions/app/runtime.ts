import { Logger } from "@aws-lambda-powertools/logger";
import { Metrics } from "@aws-lambda-powertools/metrics";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { EC2Client, type EC2ClientConfig } from "@aws-sdk/client-ec2";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { DynamoLedger } from "../adapters/dynamo-ledger.js";
import { type Ec2ClientFor, Ec2SnapshotCopier, Ec2SourceSnapshots } from "../adapters/ec2.js";
import { loadConfig, type ReplicationConfig } from "../core/config.js";
import { type PlaneDeps, ReplicationPlane } from "../core/plane.js";
import type { Clock } from "../core/ports.js";
import type { BackupRegistry } from "../core/registry.js";

/** Everything a handler needs, built once per container (cold start) and reused. */
export interface Runtime {
  config: ReplicationConfig;
  plane: ReplicationPlane;
  ledger: DynamoLedger;
  copier: Ec2SnapshotCopier;
  /**
   * Backup registration and DR-readiness: present when Velero's bucket is configured and the
   * function attached it (functions/app/registry-runtime.ts; replicate does not, so its bundle
   * carries no S3 client).
   */
  registry?: BackupRegistry;
  logger: Logger;
  metrics: Metrics;
  clock: Clock;
}

export interface RuntimeOptions {
  /** Extra EC2 client settings (tests: endpoint, retry mode, middleware). */
  ec2?: Partial<EC2ClientConfig>;
  /** Called on every EC2 client once created (tests and local mode add SDK middleware here). */
  onEc2Client?: (client: EC2Client, region: string) => void;
  dynamo?: DynamoDBClient;
  clock?: Clock;
  random?: () => number;
  logger?: Logger;
  metrics?: Metrics;
}

export const systemClock: Clock = { now: () => new Date() };

/** One memoised EC2 client per region: cross-region work reuses connections across invocations. */
export function ec2ClientFactory(options: RuntimeOptions = {}): Ec2ClientFor {
  const clients = new Map<string, EC2Client>();
  return (region) => {
    let c = clients.get(region);
    if (!c) {
      c = new EC2Client({ region, ...options.ec2 });
      options.onEc2Client?.(c, region);
      clients.set(region, c);
    }
    return c;
  };
}

/** What every function has: configuration, the ledger, logs, metrics and a clock. */
export interface LedgerRuntime {
  config: ReplicationConfig;
  ledger: DynamoLedger;
  logger: Logger;
  metrics: Metrics;
  clock: Clock;
}

export function makeLedgerRuntime(
  config: ReplicationConfig,
  options: Pick<RuntimeOptions, "dynamo" | "clock" | "logger" | "metrics"> = {},
): LedgerRuntime {
  const dynamo = options.dynamo ?? new DynamoDBClient({ region: config.failoverRegion });
  const db = DynamoDBDocumentClient.from(dynamo, { marshallOptions: { removeUndefinedValues: true } });
  return {
    config,
    ledger: new DynamoLedger(db, config.ledgerTable),
    logger: options.logger ?? new Logger({ serviceName: "velero-dr" }),
    metrics: options.metrics ?? new Metrics({ namespace: "VeleroDR", serviceName: "velero-dr" }),
    clock: options.clock ?? systemClock,
  };
}

/** The ledger runtime from the environment (the recovery-point function needs no more). */
export function ledgerRuntimeFromEnv(env: Record<string, string | undefined> = process.env): LedgerRuntime {
  return makeLedgerRuntime(loadConfig(env));
}

export function makeRuntime(config: ReplicationConfig, options: RuntimeOptions = {}): Runtime {
  const { ledger, logger, metrics, clock } = makeLedgerRuntime(config, options);
  const ec2For = ec2ClientFactory(options);
  const copier = new Ec2SnapshotCopier(ec2For, config.failoverRegion);
  const deps: PlaneDeps = {
    ledger,
    copier,
    sources: new Ec2SourceSnapshots(ec2For),
    clock,
    log: logger,
    ...(options.random ? { random: options.random } : {}),
  };
  const rt: Runtime = {
    config,
    plane: new ReplicationPlane(deps, config),
    ledger,
    copier,
    logger,
    metrics,
    clock,
  };
  return rt;
}

/** The Lambda cold start: validate the environment (failing fast with the variable's name), then wire. */
export function runtimeFromEnv(env: Record<string, string | undefined> = process.env): Runtime {
  return makeRuntime(loadConfig(env));
}
