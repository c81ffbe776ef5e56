import { Logger } from "@aws-lambda-powertools/logger";
import { Metrics } from "@aws-lambda-powertools/metrics";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { EC2Client, type EC2ClientConfig } from "@aws-sdk/client-ec2";
import { S3Client } from "@aws-sdk/client-s3";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { DynamoLedger } from "../adapters/dynamo-ledger.js";
import { type Ec2ClientFor, Ec2SnapshotCopier, Ec2SourceSnapshots } from "../adapters/ec2.js";
import { S3VeleroBucket } from "../adapters/s3-velero.js";
import { loadConfig, type ReplicationConfig } from "../core/config.js";
import { type PlaneDeps, ReplicationPlane } from "../core/plane.js";
import type { Clock } from "../core/ports.js";
import { BackupRegistry, type VeleroCodec } from "../core/registry.js";
import { veleroCodec } from "./velero-codec.js";

/** Everything a handler needs, built once per container (cold start) and reused. */
export interface Runtime {
  config: ReplicationConfig;
  plane: ReplicationPlane;
  ledger: DynamoLedger;
  copier: Ec2SnapshotCopier;
  /** Backup registration and DR-readiness; present when Velero's bucket is configured. */
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
  s3?: S3Client;
  codec?: VeleroCodec;
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

export function makeRuntime(config: ReplicationConfig, options: RuntimeOptions = {}): Runtime {
  const logger = options.logger ?? new Logger({ serviceName: "velero-dr" });
  const metrics = options.metrics ?? new Metrics({ namespace: "VeleroDR", serviceName: "velero-dr" });
  const clock = options.clock ?? systemClock;
  const dynamo = options.dynamo ?? new DynamoDBClient({ region: config.failoverRegion });
  const db = DynamoDBDocumentClient.from(dynamo, { marshallOptions: { removeUndefinedValues: true } });
  const ledger = new DynamoLedger(db, config.ledgerTable);
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
  if (config.velero) {
    const s3 = options.s3 ?? new S3Client({ region: config.failoverRegion });
    rt.registry = new BackupRegistry(
      {
        ledger,
        bucket: new S3VeleroBucket(s3, config.velero),
        copier,
        codec: options.codec ?? veleroCodec(config),
        clock,
        log: logger,
      },
      { allowedWarnings: config.velero.allowedWarnings },
    );
  }
  return rt;
}

/** The Lambda cold start: validate the environment (failing fast with the variable's name), then wire. */
export function runtimeFromEnv(env: Record<string, string | undefined> = process.env): Runtime {
  return makeRuntime(loadConfig(env));
}
