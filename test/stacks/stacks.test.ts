/**
 * Synthesis tests of both stacks, offline (vitest sets NODE_ENV=test, SST's test mode).
 *
 * SST writes per-project state under .sst/ (it empties .sst/types on every `new App`, and builds
 * each function into .sst/artifacts/<function id>/), so every synthesis, here and in
 * failover.test.ts (which runs in a parallel fork), goes through stacks/synth.ts's lock.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Stack } from "aws-cdk-lib";
import { App } from "sst/constructs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INDEX } from "../../functions/adapters/dynamo-ledger.js";
import { METRIC } from "../../functions/app/metrics.js";
import { configToEnv } from "../../functions/core/config.js";
import { SOURCE_SNAPSHOT_TAG } from "../../functions/core/model.js";
import { COPY_EVENT_PATTERNS, SNAPSHOT_EVENT_PATTERNS } from "../../functions/core/patterns.js";
import { startMoto } from "../../local/moto.js";
import config from "../../sst.config.js";
import { HANDLERS, sstBuildOptions, sstEsbuild } from "../../stacks/functions.js";
import { STATUS_INDEX, veleroBucketPermissions } from "../../stacks/Replication.js";
import { settingsFromEnv } from "../../stacks/settings.js";
import { type SynthesizedStack, synthRegion, withSynthLock } from "../../stacks/synth.js";
import { allStatements, countByType, flat, type Json, policyRoles, type Resource, resources } from "./cfn.js";
import {
  cloudwatch,
  dashboardBodyText,
  type MetricRow,
  metricRows,
  parseDashboardBody,
  shapeProblems,
  type Widget,
} from "./dashboard.js";

const PRIMARY = "us-east-1";
const FAILOVER = "us-west-2";
const ACCOUNT = "123456789012";
const SETTINGS = {
  DR_SOURCE_REGIONS: PRIMARY,
  DR_FAILOVER_REGION: FAILOVER,
  DR_ALERT_EMAIL: "dr-alerts@example.com",
};
const BUS_ARN = `arn:aws:events:${FAILOVER}:${ACCOUNT}:event-bus/velero-dr-test`;
const FORWARD_RULE_ARNS = Object.keys(SNAPSHOT_EVENT_PATTERNS).map(
  (key) => `arn:aws:events:${PRIMARY}:${ACCOUNT}:rule/velero-dr-test-forward-${key}`,
);
const snapshotArns = (region: string) => `arn:aws:ec2:${region}::snapshot/*`;
/** The same deployment with Velero's bucket: backup registration, the recovery point, its alarm. */
const VELERO_SETTINGS = {
  ...SETTINGS,
  DR_VELERO_BUCKET: "acme-velero",
  DR_VELERO_PREFIX: "cbci",
  DR_FAILOVER_PREFIX: "cbci-failover",
  DR_ZONE_MAP: "us-east-1a=us-west-2a,us-east-1b=us-west-2b",
  DR_DEFAULT_ZONE: "us-west-2c",
  DR_ALLOWED_WARNINGS: "1",
  DR_COMBINED_SNAPSHOT_IDS: "true",
  DR_RPO_TARGET_MINUTES: "30",
  DR_QUEUE_MAX_CONCURRENCY: "8",
};
const BUCKET_ARN = "arn:aws:s3:::acme-velero";
/** The same deployment with the copy poller off. */
const NO_POLLER_SETTINGS = { ...SETTINGS, DR_POLL_SECONDS: "0" };

let replication: SynthesizedStack;
let primary: SynthesizedStack;
let withVelero: SynthesizedStack;
let withoutPoller: SynthesizedStack;
const timings: Record<string, number> = {};

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    timings[label] = Math.round(performance.now() - t0);
  }
}

function only<T>(items: T[], what: string): T {
  expect(items, what).toHaveLength(1);
  const [item] = items;
  if (item === undefined) throw new Error(`no ${what}`);
  return item;
}

function fnByHandler(template: Record<string, unknown>, handler: string): Resource {
  return only(
    resources(template, "AWS::Lambda::Function").filter((f) => f.props.Handler === handler),
    `function ${handler}`,
  );
}

/** The identity statements of the role a handler runs as. */
function statementsOfHandler(template: Record<string, unknown>, handler: string) {
  const role = String(flat(fnByHandler(template, handler).props.Role)).replace(/\.Arn$/, "");
  return resources(template, "AWS::IAM::Policy")
    .filter((p: Resource) => policyRoles(p).includes(role))
    .flatMap((p) => allStatements({ Resources: { [p.id]: p.raw } }));
}

function everyAction(template: Record<string, unknown>): string[] {
  return allStatements(template).flatMap((s) => s.actions);
}

/** The alarms on our own copy metrics, as the tests compare them. */
function planeAlarms(template: Record<string, unknown>) {
  const topic = only(resources(template, "AWS::SNS::Topic"), "topic").id;
  return resources(template, "AWS::CloudWatch::Alarm")
    .map((a) => flat(a.props) as Record<string, Json>)
    .filter((a) => a.Namespace === "VeleroDR" && a.MetricName !== METRIC.recoveryPointAge)
    .map((a) => {
      expect(a.AlarmActions).toEqual([`ref:${topic}`]);
      expect(a.OKActions).toEqual([`ref:${topic}`]);
      const { AlarmName, MetricName, Dimensions, Statistic, Period, Threshold, ComparisonOperator } = a;
      const { EvaluationPeriods, TreatMissingData } = a;
      return {
        AlarmName,
        MetricName,
        Dimensions,
        Statistic,
        Period,
        Threshold,
        ComparisonOperator,
        EvaluationPeriods,
        TreatMissingData,
      };
    })
    .sort((a, b) => String(a.AlarmName).localeCompare(String(b.AlarmName)));
}

const SERVICE_DIMENSION = [{ Name: "service", Value: "velero-dr" }];
const PLANE_ALARMS = [
  {
    AlarmName: "velero-dr-test-copies-stuck",
    MetricName: METRIC.copiesStuck,
    Dimensions: SERVICE_DIMENSION,
    Statistic: "Maximum",
    Period: 300,
    Threshold: 0,
    ComparisonOperator: "GreaterThanThreshold",
    EvaluationPeriods: 1,
    // published every 5 minutes by the sweep; a missed period keeps the state (no flapping)
    TreatMissingData: "ignore",
  },
  {
    AlarmName: "velero-dr-test-copy-failures",
    MetricName: METRIC.copyFailures,
    Dimensions: SERVICE_DIMENSION,
    Statistic: "Sum",
    Period: 300,
    Threshold: 0,
    ComparisonOperator: "GreaterThanThreshold",
    EvaluationPeriods: 1,
    TreatMissingData: "notBreaching",
  },
];

beforeAll(async () => {
  // arrange + act: one synthesis per region, as `sst deploy` (failover) and `sst deploy --region`
  const failoverStacks = await timed("synth failover region", () => synthRegion(FAILOVER, { env: SETTINGS }));
  const primaryStacks = await timed("synth primary region", () => synthRegion(PRIMARY, { env: SETTINGS }));
  const veleroStacks = await timed("synth failover region with Velero's bucket", () =>
    synthRegion(FAILOVER, { env: VELERO_SETTINGS }),
  );
  const noPollerStacks = await timed("synth failover region without the copy poller", () =>
    synthRegion(FAILOVER, { env: NO_POLLER_SETTINGS }),
  );
  replication = only(failoverStacks, "stack in the failover region");
  primary = only(primaryStacks, "stack in the primary region");
  withVelero = only(veleroStacks, "stack in the failover region, with Velero's bucket");
  withoutPoller = only(noPollerStacks, "stack in the failover region, without the copy poller");
  console.log("stack synthesis timings (ms):", timings);
}, 240_000);

afterAll(async () => {
  // CDK writes each cloud assembly (function bundles included) to a fresh temporary directory.
  for (const s of [replication, primary, withVelero, withoutPoller]) {
    if (s) await rm(s.assemblyDir, { recursive: true, force: true });
  }
});

describe("multi-region app", () => {
  it("deploys Replication to the failover region and Primary to the source region", () => {
    expect(replication.stackName).toBe("test-velero-dr-Replication");
    expect(primary.stackName).toBe("test-velero-dr-Primary");
  });

  it("refuses a region that is neither failover nor source", async () => {
    await expect(synthRegion("eu-west-1", { env: SETTINGS })).rejects.toThrow(
      /Region eu-west-1 is neither DR_FAILOVER_REGION \(us-west-2\) nor one of DR_SOURCE_REGIONS \(us-east-1\)/,
    );
  });

  it.each([
    [{ DR_SOURCE_REGIONS: PRIMARY }, /DR_FAILOVER_REGION is required/],
    [{ ...SETTINGS, DR_COPY_BUDGET: "25" }, /DR_COPY_BUDGET must be between 1 and 20, got 25/],
    [{ ...SETTINGS, DR_SOURCE_REGIONS: "" }, /DR_SOURCE_REGIONS is required/],
    [{ ...SETTINGS, DR_KMS_KEY_ARN: "alias/mine" }, /DR_KMS_KEY_ARN must be a KMS key or alias ARN/],
    [{ ...SETTINGS, DR_ALERT_EMAIL: "not-an-address" }, /DR_ALERT_EMAIL must be an email address/],
    [{ ...SETTINGS, DR_POLL_SECONDS: "31" }, /DR_POLL_SECONDS must be between 0 and 30, got 31/],
    [{ ...SETTINGS, DR_POLL_SECONDS: "x" }, /DR_POLL_SECONDS must be an integer, got "x"/],
    // the default layout with Velero's bucket: the failover metadata would sit at the top of the
    // primary's BackupStorageLocation and make it Unavailable
    [
      { ...SETTINGS, DR_VELERO_BUCKET: "acme-velero", DR_ZONE_MAP: "us-east-1a=us-west-2a" },
      /DR_VELERO_PREFIX is empty, so the primary's BackupStorageLocation is the whole of bucket "acme-velero".*Set DR_FAILOVER_BUCKET/,
    ],
    [
      { ...VELERO_SETTINGS, DR_FAILOVER_PREFIX: "cbci/failover" },
      /DR_VELERO_PREFIX="cbci" and DR_FAILOVER_PREFIX="cbci\/failover" in the same bucket "acme-velero" must be disjoint/,
    ],
  ])("fails synthesis naming the bad setting (%o)", (env, message) =>
    withSynthLock(async () => {
      // arrange
      const outdir = await mkdtemp(path.join(tmpdir(), "velero-dr-synth-"));
      const app = new App(
        {
          mode: "deploy",
          name: "velero-dr",
          stage: "test",
          region: FAILOVER,
          account: ACCOUNT,
        },
        { outdir },
      );
      const saved = { ...process.env };
      for (const k of Object.keys(process.env)) if (k.startsWith("DR_")) delete process.env[k];
      Object.assign(process.env, env);
      try {
        // act + assert
        await expect(Promise.resolve().then(() => config.stacks(app))).rejects.toThrow(message);
      } finally {
        await rm(outdir, { recursive: true, force: true });
        for (const k of Object.keys(process.env)) if (k.startsWith("DR_")) delete process.env[k];
        Object.assign(
          process.env,
          Object.fromEntries(Object.entries(saved).filter(([k]) => k.startsWith("DR_"))),
        );
      }
    }),
  );
});

describe("Replication stack (failover region)", () => {
  const t = () => replication.template;
  const byHandler = (handler: string) =>
    only(
      resources(t(), "AWS::Lambda::Function").filter((f) => f.props.Handler === handler),
      `function ${handler}`,
    );
  const queueIds = () => {
    const queues = resources(t(), "AWS::SQS::Queue");
    const find = (prefix: string) =>
      only(
        queues.filter((q) => q.id.startsWith(prefix)),
        prefix,
      ).id;
    return {
      snapshot: find("SnapshotEventsQueue"),
      snapshotDlq: find("SnapshotEventsDlq"),
      copy: find("CopyEventsQueue"),
      copyDlq: find("CopyEventsDlq"),
    };
  };

  it("has exactly the expected resources", () => {
    expect(countByType(t())).toEqual({
      "AWS::DynamoDB::Table": 1,
      "AWS::Events::EventBus": 1,
      "AWS::Events::EventBusPolicy": 1,
      // 2 snapshot-event rules on our bus, 2 copy-event rules on the default bus, the sweep's and
      // the copy poller's schedules
      "AWS::Events::Rule": 6,
      "AWS::SQS::Queue": 4,
      "AWS::SQS::QueuePolicy": 4,
      // DLQ depth and oldest-message age per queue, the sweep's and the poller's errors, copy
      // failures, stuck copies
      "AWS::CloudWatch::Alarm": 8,
      "AWS::CloudWatch::Dashboard": 1,
      "AWS::KMS::Key": 1,
      "AWS::SNS::Topic": 1,
      "AWS::SNS::TopicPolicy": 1,
      "AWS::SNS::Subscription": 1,
      // our four (SST's idle custom-resource handler is removed: stacks/sst-internals.ts)
      "AWS::Lambda::Function": 4,
      "AWS::IAM::Role": 4,
      "AWS::IAM::Policy": 4,
      "AWS::Logs::LogGroup": 4,
      "AWS::Lambda::EventSourceMapping": 2,
      // the sweep and the copy poller: no async retries (the next run is the retry)
      "AWS::Lambda::EventInvokeConfig": 2,
      "AWS::Lambda::Permission": 2,
      // SST's per-function name parameters (/sst/velero-dr/<stage>/Function/<id>/functionName)
      "AWS::SSM::Parameter": 4,
    });
  });

  it("names the bus after the stage and lets only our forwarding rules put events on it", () => {
    const bus = only(resources(t(), "AWS::Events::EventBus"), "bus");
    expect(bus.props.Name).toBe("velero-dr-test");
    const [statement, ...rest] = allStatements(t()).filter((s) => s.holder.startsWith("Bus"));
    expect(rest).toEqual([]);
    expect(statement).toMatchObject({
      effect: "Allow",
      actions: ["events:PutEvents"],
      resources: [`${bus.id}.Arn`],
      principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` },
      condition: { ArnEquals: { "aws:SourceArn": FORWARD_RULE_ARNS } },
    });
  });

  it("routes forwarded snapshot events (our bus) and copy events (default bus) to their queues", () => {
    const { snapshot, copy } = queueIds();
    const rules = resources(t(), "AWS::Events::Rule").filter((r) => r.props.EventPattern);
    const bus = only(resources(t(), "AWS::Events::EventBus"), "bus").id;
    const view = rules.map((r) => ({
      bus: flat(r.props.EventBusName) ?? "default",
      pattern: r.props.EventPattern,
      targets: flat(r.props.Targets),
    }));
    expect(view).toEqual(
      expect.arrayContaining([
        ...Object.values(SNAPSHOT_EVENT_PATTERNS).map((pattern) => ({
          bus: `ref:${bus}`,
          pattern,
          targets: [{ Arn: `${snapshot}.Arn`, Id: "Target0" }],
        })),
        ...Object.values(COPY_EVENT_PATTERNS).map((pattern) => ({
          bus: "default",
          pattern,
          targets: [{ Arn: `${copy}.Arn`, Id: "Target0" }],
        })),
      ]),
    );
    expect(view).toHaveLength(4);
  });

  it("gives each queue an encrypted DLQ (5 receives, 14 days) and a visibility timeout of 6x its consumer's", () => {
    const q = queueIds();
    const props = (id: string) =>
      only(
        resources(t(), "AWS::SQS::Queue").filter((r) => r.id === id),
        id,
      ).props;
    for (const [queue, dlq, handler] of [
      [q.snapshot, q.snapshotDlq, HANDLERS.replicate],
      [q.copy, q.copyDlq, HANDLERS.copyCompleted],
    ] as const) {
      const timeout = Number(byHandler(handler).props.Timeout);
      expect(props(queue)).toMatchObject({
        SqsManagedSseEnabled: true,
        RedrivePolicy: { deadLetterTargetArn: { "Fn::GetAtt": [dlq, "Arn"] }, maxReceiveCount: 5 },
      });
      expect(Number(props(queue).VisibilityTimeout)).toBeGreaterThanOrEqual(6 * timeout);
      expect(props(dlq)).toMatchObject({
        SqsManagedSseEnabled: true,
        MessageRetentionPeriod: 14 * 24 * 3600,
      });
    }
  });

  it("lets EventBridge send to each queue only from that queue's own rules, over TLS", () => {
    const q = queueIds();
    const rulesTo = (queue: string) =>
      resources(t(), "AWS::Events::Rule")
        .filter((r) => JSON.stringify(r.props.Targets).includes(`"${queue}"`))
        .map((r) => `${r.id}.Arn`)
        .sort();
    for (const queue of [q.snapshot, q.copy]) {
      const statements = allStatements(t()).filter(
        (s) => s.kind === "resource" && s.resources.includes(`${queue}.Arn`),
      );
      const allows = statements.filter((s) => s.effect === "Allow");
      expect(allows.every((s) => JSON.stringify(s.principal) === '{"Service":"events.amazonaws.com"}')).toBe(
        true,
      );
      expect(allows.every((s) => s.actions.includes("sqs:SendMessage"))).toBe(true);
      const sources = allows
        .map((s) => s.condition?.ArnEquals)
        .map((c) => (c as Record<string, Json>)["aws:SourceArn"]);
      expect(sources.sort()).toEqual(rulesTo(queue));
      expect(statements.filter((s) => s.effect === "Deny")).toEqual([
        expect.objectContaining({ condition: { Bool: { "aws:SecureTransport": "false" } } }),
      ]);
    }
    // The DLQs receive nothing from EventBridge.
    for (const dlq of [q.snapshotDlq, q.copyDlq]) {
      const allows = allStatements(t()).filter(
        (s) => s.resources.includes(`${dlq}.Arn`) && s.effect === "Allow",
      );
      expect(allows.filter((s) => s.kind === "resource")).toEqual([]);
    }
  });

  it("alarms on DLQ depth and queue age, and on a failing sweep, notifying the alerts topic", () => {
    const q = queueIds();
    const topic = only(resources(t(), "AWS::SNS::Topic"), "topic").id;
    const alarms = resources(t(), "AWS::CloudWatch::Alarm").map((a) => flat(a.props) as Record<string, Json>);
    const on = (metric: string, queue: string) =>
      only(
        alarms.filter(
          (a) => a.MetricName === metric && JSON.stringify(a.Dimensions).includes(`"${queue}.QueueName"`),
        ),
        `${metric} alarm on ${queue}`,
      );
    for (const dlq of [q.snapshotDlq, q.copyDlq]) {
      expect(on("ApproximateNumberOfMessagesVisible", dlq)).toMatchObject({
        Namespace: "AWS/SQS",
        ComparisonOperator: "GreaterThanThreshold",
        Threshold: 0,
      });
    }
    for (const queue of [q.snapshot, q.copy]) {
      expect(on("ApproximateAgeOfOldestMessage", queue)).toMatchObject({
        ComparisonOperator: "GreaterThanThreshold",
        Threshold: 900,
      });
    }
    const sweep = byHandler(HANDLERS.sweep).id;
    expect(
      alarms.filter(
        (a) => a.MetricName === "Errors" && JSON.stringify(a.Dimensions).includes(`ref:${sweep}`),
      ),
    ).toHaveLength(1);
    for (const a of alarms) {
      expect(a.AlarmActions).toEqual([`ref:${topic}`]);
      expect(String(a.AlarmName)).toMatch(/^velero-dr-test-/);
    }
  });

  it("encrypts the alerts topic with its own key that only our alarms may use, and subscribes the email", () => {
    const key = only(resources(t(), "AWS::KMS::Key"), "key");
    const topic = only(resources(t(), "AWS::SNS::Topic"), "topic");
    expect(key.props.EnableKeyRotation).toBe(true);
    expect(topic.props.KmsMasterKeyId).toEqual({ "Fn::GetAtt": [key.id, "Arn"] });
    const fromOurAlarms = {
      StringEquals: { "aws:SourceAccount": ACCOUNT },
      ArnLike: { "aws:SourceArn": `arn:aws:cloudwatch:${FAILOVER}:${ACCOUNT}:alarm:velero-dr-test-*` },
    };
    const cloudwatch = allStatements(t()).filter(
      (s) => JSON.stringify(s.principal) === '{"Service":"cloudwatch.amazonaws.com"}',
    );
    expect(cloudwatch).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          kind: "key",
          actions: ["kms:Decrypt", "kms:GenerateDataKey*"],
          condition: fromOurAlarms,
        }),
        expect.objectContaining({ kind: "resource", actions: ["sns:Publish"], condition: fromOurAlarms }),
      ]),
    );
    expect(cloudwatch).toHaveLength(2);
    expect(only(resources(t(), "AWS::SNS::Subscription"), "subscription").props).toMatchObject({
      Protocol: "email",
      Endpoint: SETTINGS.DR_ALERT_EMAIL,
      TopicArn: { Ref: topic.id },
    });
  });

  it("keeps the ledger on demand, with PITR, TTL and the byStatus index the adapter queries", () => {
    expect(STATUS_INDEX).toBe(INDEX);
    const table = only(resources(t(), "AWS::DynamoDB::Table"), "table");
    expect(table.props).toMatchObject({
      BillingMode: "PAY_PER_REQUEST",
      KeySchema: [
        { AttributeName: "pk", KeyType: "HASH" },
        { AttributeName: "sk", KeyType: "RANGE" },
      ],
      GlobalSecondaryIndexes: [
        {
          IndexName: "byStatus",
          KeySchema: [
            { AttributeName: "gsi1pk", KeyType: "HASH" },
            { AttributeName: "gsi1sk", KeyType: "RANGE" },
          ],
          Projection: { ProjectionType: "ALL" },
        },
      ],
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: "expiresAt", Enabled: true },
      // stage "test" is not protected (isProtectedStage): deletable
      DeletionProtectionEnabled: false,
    });
    expect(table.raw.DeletionPolicy).toBe("Delete");
  });

  it("runs the four handlers on nodejs22.x arm64 with their configuration and one-month logs", () => {
    const table = only(resources(t(), "AWS::DynamoDB::Table"), "table").id;
    const { config: c } = settingsFromEnv(SETTINGS);
    const expectedEnv = {
      ...configToEnv({ ...c, ledgerTable: "placeholder" }),
      LEDGER_TABLE: `ref:${table}`,
      POWERTOOLS_SERVICE_NAME: "velero-dr",
      POWERTOOLS_METRICS_NAMESPACE: "VeleroDR",
    };
    for (const [handler, timeout] of [
      [HANDLERS.replicate, 60],
      [HANDLERS.copyCompleted, 60],
      [HANDLERS.sweep, 120],
      [HANDLERS.poll, 60],
    ] as const) {
      const fn = byHandler(handler);
      expect(fn.props).toMatchObject({
        Runtime: "nodejs22.x",
        Architectures: ["arm64"],
        MemorySize: 256,
        Timeout: timeout,
      });
      expect(fn.props.TracingConfig).toBeUndefined();
      const env = (flat(fn.props.Environment) as { Variables: Record<string, Json> }).Variables;
      expect(env).toMatchObject(expectedEnv);
      const logGroupRef = (flat(fn.props.LoggingConfig) as Record<string, Json>).LogGroup;
      const logGroup = only(
        resources(t(), "AWS::Logs::LogGroup").filter((g) => `ref:${g.id}` === logGroupRef),
        `log group of ${handler}`,
      );
      expect(logGroup.props.RetentionInDays).toBe(30);
    }
  });

  it("ships each handler as the minified ESM bundle scripts/bundle.ts builds (SST's esbuild), without source maps", async () => {
    // every handler, so from the deployment that has them all
    const esbuild = sstEsbuild();
    for (const handler of Object.values(HANDLERS)) {
      const code = fnByHandler(withVelero.template, handler).props.Code as Record<string, Json>;
      const hash = String(code.S3Key).replace(/\.zip$/, "");
      const assetDir = path.join(withVelero.assemblyDir, `asset.${hash}`);
      const base = handler.slice(0, handler.lastIndexOf("."));
      const deployed = readFileSync(path.join(assetDir, `${base}.mjs`));
      expect(readdirSync(path.join(assetDir, path.dirname(base))).filter((f) => f.endsWith(".map"))).toEqual(
        [],
      );
      const built = await esbuild.build({
        ...sstBuildOptions(`${base}.ts`),
        outfile: `${base}.mjs`,
        write: false,
      });
      expect(Buffer.from(built.outputFiles[0]?.contents ?? []).equals(deployed), `${handler} bundle`).toBe(
        true,
      );
      expect(deployed.toString("utf8").split("\n").length).toBeLessThan(200); // minified
    }
  });

  it("consumes each queue with partial batch responses, 10 records, a 5 s window, at most 5 invocations at once", () => {
    const q = queueIds();
    const mappings = resources(t(), "AWS::Lambda::EventSourceMapping").map((m) => flat(m.props));
    expect(mappings).toEqual(
      expect.arrayContaining(
        [
          [q.snapshot, HANDLERS.replicate],
          [q.copy, HANDLERS.copyCompleted],
        ].map(([queue, handler]) =>
          expect.objectContaining({
            EventSourceArn: `${queue}.Arn`,
            FunctionName: `ref:${byHandler(String(handler)).id}`,
            FunctionResponseTypes: ["ReportBatchItemFailures"],
            BatchSize: 10,
            MaximumBatchingWindowInSeconds: 5,
            // DR_QUEUE_MAX_CONCURRENCY's default: a schedule burst cannot stampede EC2 or the ledger
            ScalingConfig: { MaximumConcurrency: 5 },
          }),
        ),
      ),
    );
    expect(mappings).toHaveLength(2);
  });

  it("runs the sweep every 5 minutes, invoked directly, without async retries", () => {
    const sweep = byHandler(HANDLERS.sweep).id;
    const schedule = only(
      resources(t(), "AWS::Events::Rule").filter((r) => r.props.ScheduleExpression === "rate(5 minutes)"),
      "schedule",
    );
    expect(flat(schedule.props.Targets)).toEqual([{ Arn: `${sweep}.Arn`, Id: "Target0" }]);
    expect(
      flat(
        only(
          resources(t(), "AWS::Lambda::Permission").filter(
            (p) => flat(p.props.FunctionName) === `${sweep}.Arn`,
          ),
          "permission",
        ).props,
      ),
    ).toMatchObject({
      Principal: "events.amazonaws.com",
      FunctionName: `${sweep}.Arn`,
      SourceArn: `${schedule.id}.Arn`,
    });
    expect(
      only(
        resources(t(), "AWS::Lambda::EventInvokeConfig").filter(
          (c) => flat(c.props.FunctionName) === `ref:${sweep}`,
        ),
        "invoke config",
      ).props,
    ).toMatchObject({ MaximumRetryAttempts: 0 });
  });

  it("outputs the bus ARN, table name, queue URLs and topic ARN", () => {
    expect(Object.keys(replication.template.Outputs as object)).toEqual(
      expect.arrayContaining([
        "BusArn",
        "LedgerTableName",
        "SnapshotEventsQueueUrl",
        "CopyEventsQueueUrl",
        "AlertsTopicArn",
        "DashboardName",
        "CopyRoleArns",
      ]),
    );
    // the roles a source key's policy must name: exactly those of the functions that copy
    const copyRoles = flat(
      (replication.template.Outputs as Record<string, { Value: Json }>).CopyRoleArns?.Value,
    );
    const copying = [HANDLERS.replicate, HANDLERS.copyCompleted, HANDLERS.sweep, HANDLERS.poll].map(
      (h) => `${String(flat(fnByHandler(t(), h).props.Role))}`,
    );
    expect(copyRoles).toBe(copying.join(","));
  });

  it("alarms on copy failures and stuck copies (our metrics, service dimension), to the alerts topic", () => {
    expect(planeAlarms(t())).toEqual(PLANE_ALARMS);
  });

  it("has no Velero parts without DR_VELERO_BUCKET: no S3 access, no register or recovery point", () => {
    expect(everyAction(t()).filter((a) => a.startsWith("s3:"))).toEqual([]);
    const handlers = resources(t(), "AWS::Lambda::Function").map((f) => f.props.Handler);
    expect(handlers).not.toContain(HANDLERS.register);
    expect(handlers).not.toContain(HANDLERS.recoveryPoint);
    const body = parseDashboardBody(
      dashboardBodyText(only(resources(t(), "AWS::CloudWatch::Dashboard"), "dashboard"), FAILOVER),
    );
    expect(shapeProblems(body)).toEqual([]);
    const names = body.widgets.flatMap(metricRows).map((r) => r.name ?? String(r.options.expression));
    expect(names.some((n) => n.includes(METRIC.recoveryPointAge))).toBe(false);
    expect(names).toEqual(expect.arrayContaining([METRIC.copiesInFlight, METRIC.copyFailures]));
  });
});

describe("Copy poller (DR_POLL_SECONDS)", () => {
  const t = () => replication.template;
  const poller = (template: Record<string, unknown> = t()) => fnByHandler(template, HANDLERS.poll);
  const pollerSchedule = (template: Record<string, unknown>) =>
    resources(template, "AWS::Events::Rule").filter(
      (r) => r.props.ScheduleExpression === "rate(1 minute)" && !r.id.startsWith("RecoveryPoint"),
    );
  const pollerAlarms = (template: Record<string, unknown>) =>
    resources(template, "AWS::CloudWatch::Alarm")
      .map((a) => flat(a.props) as Record<string, Json>)
      .filter((a) => a.AlarmName === "velero-dr-test-poller-errors");
  /** A role's own statements as written (Sid included), without SQS consumption (event sources add it). */
  const ownStatements = (template: Record<string, unknown>, handler: string) => {
    const role = String(flat(fnByHandler(template, handler).props.Role)).replace(/\.Arn$/, "");
    return resources(template, "AWS::IAM::Policy")
      .filter((p) => policyRoles(p).includes(role))
      .flatMap((p) => {
        const doc = flat(p.props.PolicyDocument) as { Statement: Array<Record<string, Json>> };
        return doc.Statement;
      })
      .filter((st) => ![st.Action].flat().every((a) => String(a).startsWith("sqs:")));
  };

  it("runs on nodejs22.x arm64 for at most 60 s, with the plane's configuration and POLL_SECONDS=10 by default", () => {
    // arrange
    const table = only(resources(t(), "AWS::DynamoDB::Table"), "table").id;
    const { config: c } = settingsFromEnv(SETTINGS);
    // act
    const fn = poller();
    // assert
    expect(c.pollSeconds).toBe(10);
    expect(fn.props).toMatchObject({
      Runtime: "nodejs22.x",
      Architectures: ["arm64"],
      MemorySize: 256,
      Timeout: 60,
      Description: "Settles finished copies before their events while copies wait, and admits waiting ones",
    });
    expect(fn.props.TracingConfig).toBeUndefined();
    const env = (flat(fn.props.Environment) as { Variables: Record<string, Json> }).Variables;
    expect(env).toMatchObject({
      ...configToEnv({ ...c, ledgerTable: "placeholder" }),
      LEDGER_TABLE: `ref:${table}`,
      POWERTOOLS_SERVICE_NAME: "velero-dr",
      POWERTOOLS_METRICS_NAMESPACE: "VeleroDR",
      POLL_SECONDS: "10",
    });
    const logGroupRef = (flat(fn.props.LoggingConfig) as Record<string, Json>).LogGroup;
    const logGroup = only(
      resources(t(), "AWS::Logs::LogGroup").filter((g) => `ref:${g.id}` === logGroupRef),
      "poller log group",
    );
    expect(logGroup.props.RetentionInDays).toBe(30);
  });

  it("runs every minute, invoked directly by its schedule, without async retries", () => {
    // arrange
    const fn = poller().id;
    // act
    const schedule = only(pollerSchedule(t()), "poller schedule");
    // assert
    expect(flat(schedule.props.Targets)).toEqual([{ Arn: `${fn}.Arn`, Id: "Target0" }]);
    expect(schedule.props.EventBusName).toBeUndefined();
    expect(
      resources(t(), "AWS::Lambda::Permission")
        .map((p) => flat(p.props))
        .filter((p) => (p as Record<string, Json>).FunctionName === `${fn}.Arn`),
    ).toEqual([
      expect.objectContaining({
        Action: "lambda:InvokeFunction",
        Principal: "events.amazonaws.com",
        SourceArn: `${schedule.id}.Arn`,
      }),
    ]);
    expect(
      resources(t(), "AWS::Lambda::EventInvokeConfig")
        .map((c) => flat(c.props))
        .filter((c) => (c as Record<string, Json>).FunctionName === `ref:${fn}`),
    ).toEqual([expect.objectContaining({ MaximumRetryAttempts: 0 })]);
    // nothing else invokes it: no queue, no other rule
    expect(
      resources(t(), "AWS::Lambda::EventSourceMapping").filter(
        (m) => flat(m.props.FunctionName) === `ref:${fn}`,
      ),
    ).toEqual([]);
    expect(
      resources(t(), "AWS::Events::Rule").filter((r) => JSON.stringify(r.props.Targets).includes(`"${fn}"`)),
    ).toEqual([schedule]);
  });

  it.each([
    ["without Velero's bucket", () => replication.template],
    ["with Velero's bucket (S3 and retention too)", () => withVelero.template],
  ])("has exactly copy-completed's permissions (%s)", (_label, template) => {
    // arrange
    const copyCompleted = ownStatements(template(), HANDLERS.copyCompleted);
    // act
    const poll = ownStatements(template(), HANDLERS.poll);
    // assert
    expect(poll).toEqual(copyCompleted);
    expect(poll.length).toBeGreaterThan(0);
  });

  it("alarms when it failed on five 1-minute periods in a row, notifying the alerts topic", () => {
    // arrange
    const topic = only(resources(t(), "AWS::SNS::Topic"), "topic").id;
    const fn = poller().id;
    // act
    const alarm = only(pollerAlarms(t()), "poller errors alarm");
    // assert
    expect(alarm).toMatchObject({
      Namespace: "AWS/Lambda",
      MetricName: "Errors",
      Dimensions: [{ Name: "FunctionName", Value: `ref:${fn}` }],
      Statistic: "Sum",
      Period: 60,
      Threshold: 1,
      ComparisonOperator: "GreaterThanOrEqualToThreshold",
      EvaluationPeriods: 5,
      TreatMissingData: "notBreaching",
      AlarmActions: [`ref:${topic}`],
      OKActions: [`ref:${topic}`],
    });
    const alarmArn = resources(t(), "AWS::CloudWatch::Alarm").find(
      (a) => a.props.AlarmName === "velero-dr-test-poller-errors",
    )?.id;
    const body = parseDashboardBody(
      dashboardBodyText(only(resources(t(), "AWS::CloudWatch::Dashboard"), "dashboard"), FAILOVER),
    );
    const alarmsWidget = only(
      body.widgets.filter((w) => w.properties.title === "Alarms"),
      "alarms widget",
    );
    expect(alarmsWidget.properties.alarms).toContain(`${alarmArn}.Arn`);
  });

  it("is not deployed with DR_POLL_SECONDS=0: no poller function, schedule or alarm", () => {
    // arrange
    const off = withoutPoller.template;
    // act
    const handlers = resources(off, "AWS::Lambda::Function").map((f) => f.props.Handler);
    // assert
    expect(handlers).not.toContain(HANDLERS.poll);
    expect(pollerSchedule(off)).toEqual([]);
    expect(pollerAlarms(off)).toEqual([]);
    expect(
      resources(off, "AWS::Events::Rule")
        .filter((r) => r.props.ScheduleExpression)
        .map((r) => r.props.ScheduleExpression),
    ).toEqual(["rate(5 minutes)"]);
    expect(countByType(off)).toMatchObject({
      "AWS::Events::Rule": 5,
      "AWS::CloudWatch::Alarm": 7,
      "AWS::Lambda::Function": 3,
      "AWS::IAM::Role": 3,
      "AWS::IAM::Policy": 3,
      "AWS::Logs::LogGroup": 3,
      "AWS::Lambda::EventInvokeConfig": 1,
      "AWS::Lambda::Permission": 1,
      "AWS::SSM::Parameter": 3,
    });
    // the other functions still see the setting (the plane's config is the same everywhere)
    for (const f of resources(off, "AWS::Lambda::Function")) {
      const env = (flat(f.props.Environment) as { Variables: Record<string, Json> }).Variables;
      expect(env.POLL_SECONDS, String(f.props.Handler)).toBe("0");
    }
  });
});

describe("Replication stack with Velero's bucket (DR-ready backups)", () => {
  const t = () => withVelero.template;
  const queue = (prefix: string) =>
    only(
      resources(t(), "AWS::SQS::Queue").filter((q) => q.id.startsWith(prefix)),
      prefix,
    ).id;
  const dashboard = () => only(resources(t(), "AWS::CloudWatch::Dashboard"), "dashboard");
  const body = () => parseDashboardBody(dashboardBodyText(dashboard(), FAILOVER));
  const widget = (title: string): Widget =>
    only(
      body().widgets.filter((w) => w.properties.title === title),
      `widget "${title}"`,
    );
  const ours = (rows: MetricRow[]) => rows.filter((r) => r.namespace === "VeleroDR");
  const search = (rows: MetricRow[]) =>
    rows.flatMap((r) => (r.options.expression ? [String(r.options.expression)] : []));

  it("adds the backup-events queue and rule, the register and recovery-point functions, their alarms", () => {
    expect(countByType(t())).toEqual({
      "AWS::DynamoDB::Table": 1,
      "AWS::Events::EventBus": 1,
      "AWS::Events::EventBusPolicy": 1,
      // the six of the plane, the Velero bucket's events, the recovery point's schedule
      "AWS::Events::Rule": 8,
      "AWS::SQS::Queue": 6,
      "AWS::SQS::QueuePolicy": 6,
      // 3 queues x (DLQ depth, age), sweep and poller errors, copy failures, stuck copies,
      // recovery point age
      "AWS::CloudWatch::Alarm": 11,
      "AWS::CloudWatch::Dashboard": 1,
      "AWS::KMS::Key": 1,
      "AWS::SNS::Topic": 1,
      "AWS::SNS::TopicPolicy": 1,
      "AWS::SNS::Subscription": 1,
      "AWS::Lambda::Function": 6,
      "AWS::IAM::Role": 6,
      "AWS::IAM::Policy": 6,
      "AWS::Logs::LogGroup": 6,
      "AWS::Lambda::EventSourceMapping": 3,
      // the sweep, the copy poller and the recovery point: no async retries (the next run is the retry)
      "AWS::Lambda::EventInvokeConfig": 3,
      "AWS::Lambda::Permission": 3,
      "AWS::SSM::Parameter": 6,
    });
    // The bucket is the user's own: never created or changed by the stack.
    expect(
      everyAction(t()).filter((a) => /^s3:(Put|Delete)Bucket/.test(a) || a.startsWith("s3:Create")),
    ).toEqual([]);
  });

  it("sends the bucket's object events under <prefix>/backups/ from the default bus to the backup-events queue", () => {
    const backupEvents = queue("BackupEventsQueue");
    const rule = only(
      resources(t(), "AWS::Events::Rule").filter((r) =>
        JSON.stringify(r.props.EventPattern ?? {}).includes("aws.s3"),
      ),
      "bucket rule",
    );
    expect(rule.props.EventBusName).toBeUndefined(); // the default bus, where S3 delivers
    expect(rule.props.EventPattern).toEqual({
      source: ["aws.s3"],
      "detail-type": ["Object Created", "Object Deleted"],
      detail: { bucket: { name: ["acme-velero"] }, object: { key: [{ prefix: "cbci/backups/" }] } },
    });
    expect(flat(rule.props.Targets)).toEqual([{ Arn: `${backupEvents}.Arn`, Id: "Target0" }]);
    const sends = allStatements(t()).filter(
      (s) => s.kind === "resource" && s.resources.includes(`${backupEvents}.Arn`) && s.effect === "Allow",
    );
    expect(sends).toEqual([
      expect.objectContaining({
        actions: expect.arrayContaining(["sqs:SendMessage"]),
        principal: { Service: "events.amazonaws.com" },
        condition: { ArnEquals: { "aws:SourceArn": `${rule.id}.Arn` } },
      }),
    ]);
  });

  it("gives the backup-events queue an encrypted DLQ and alarms on its depth and age", () => {
    const [backupEvents, dlq] = [queue("BackupEventsQueue"), queue("BackupEventsDlq")];
    const props = (id: string) =>
      only(
        resources(t(), "AWS::SQS::Queue").filter((r) => r.id === id),
        id,
      ).props;
    expect(props(backupEvents)).toMatchObject({
      SqsManagedSseEnabled: true,
      VisibilityTimeout: 720, // 6x register's 120 s
      RedrivePolicy: { deadLetterTargetArn: { "Fn::GetAtt": [dlq, "Arn"] }, maxReceiveCount: 5 },
    });
    expect(props(dlq)).toMatchObject({ SqsManagedSseEnabled: true, MessageRetentionPeriod: 14 * 24 * 3600 });
    const topic = only(resources(t(), "AWS::SNS::Topic"), "topic").id;
    const alarms = resources(t(), "AWS::CloudWatch::Alarm").map((a) => flat(a.props) as Record<string, Json>);
    const on = (id: string) =>
      alarms.filter((a) => JSON.stringify(a.Dimensions).includes(`"${id}.QueueName"`));
    expect(on(dlq)).toEqual([
      expect.objectContaining({
        AlarmName: "velero-dr-test-BackupEvents-dlq-depth",
        MetricName: "ApproximateNumberOfMessagesVisible",
        Threshold: 0,
        ComparisonOperator: "GreaterThanThreshold",
        AlarmActions: [`ref:${topic}`],
      }),
    ]);
    expect(on(backupEvents)).toEqual([
      expect.objectContaining({
        AlarmName: "velero-dr-test-BackupEvents-oldest-message-age",
        MetricName: "ApproximateAgeOfOldestMessage",
        Threshold: 900,
        AlarmActions: [`ref:${topic}`],
      }),
    ]);
  });

  it("runs register on the queue and the recovery point every minute, both with the Velero settings", () => {
    const table = only(resources(t(), "AWS::DynamoDB::Table"), "table").id;
    const { config: c } = settingsFromEnv(VELERO_SETTINGS);
    const expectedEnv = {
      ...configToEnv({ ...c, ledgerTable: "placeholder" }),
      LEDGER_TABLE: `ref:${table}`,
      POWERTOOLS_SERVICE_NAME: "velero-dr",
      POWERTOOLS_METRICS_NAMESPACE: "VeleroDR",
    };
    expect(expectedEnv).toMatchObject({
      VELERO_BUCKET: "acme-velero",
      VELERO_PREFIX: "cbci",
      FAILOVER_PREFIX: "cbci-failover",
      ZONE_MAP: "us-east-1a=us-west-2a,us-east-1b=us-west-2b",
      DEFAULT_ZONE: "us-west-2c",
      ALLOWED_WARNINGS: "1",
      COMBINED_SNAPSHOT_IDS: "true",
      RPO_TARGET_MINUTES: "30",
    });
    // The four that publish DR-ready backups are sized from `npm run bench:publish` (stacks/Replication.ts).
    for (const [handler, timeout, memory] of [
      [HANDLERS.replicate, 60, 256],
      [HANDLERS.copyCompleted, 120, 1024],
      [HANDLERS.sweep, 300, 1024],
      [HANDLERS.poll, 120, 1024],
      [HANDLERS.register, 120, 1024],
      [HANDLERS.recoveryPoint, 30, 256],
    ] as const) {
      const fn = fnByHandler(t(), handler);
      expect(fn.props).toMatchObject({
        Runtime: "nodejs22.x",
        Architectures: ["arm64"],
        Timeout: timeout,
        MemorySize: memory,
      });
      expect((flat(fn.props.Environment) as { Variables: Record<string, Json> }).Variables).toMatchObject(
        expectedEnv,
      );
    }
    // copy-completed's queue waits 6x its longer timeout
    const copyQueue = resources(t(), "AWS::SQS::Queue").find((r) => r.id === queue("CopyEventsQueue"));
    expect(copyQueue?.props.VisibilityTimeout).toBe(720);
    const register = fnByHandler(t(), HANDLERS.register).id;
    expect(resources(t(), "AWS::Lambda::EventSourceMapping").map((m) => flat(m.props))).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          EventSourceArn: `${queue("BackupEventsQueue")}.Arn`,
          FunctionName: `ref:${register}`,
          FunctionResponseTypes: ["ReportBatchItemFailures"],
          BatchSize: 10,
        }),
      ]),
    );
    // DR_QUEUE_MAX_CONCURRENCY=8 applies to every queue consumer: snapshot, copy and backup events
    const scaling = resources(t(), "AWS::Lambda::EventSourceMapping").map((m) => flat(m.props.ScalingConfig));
    expect(scaling).toEqual([
      { MaximumConcurrency: 8 },
      { MaximumConcurrency: 8 },
      { MaximumConcurrency: 8 },
    ]);
    const recoveryPoint = fnByHandler(t(), HANDLERS.recoveryPoint).id;
    const schedule = only(
      resources(t(), "AWS::Events::Rule").filter(
        (r) =>
          r.props.ScheduleExpression === "rate(1 minute)" &&
          JSON.stringify(flat(r.props.Targets)).includes(`"${recoveryPoint}.Arn"`),
      ),
      "recovery point schedule",
    );
    expect(flat(schedule.props.Targets)).toEqual([{ Arn: `${recoveryPoint}.Arn`, Id: "Target0" }]);
    expect(resources(t(), "AWS::Lambda::Permission").map((p) => flat(p.props))).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          Principal: "events.amazonaws.com",
          FunctionName: `${recoveryPoint}.Arn`,
          SourceArn: `${schedule.id}.Arn`,
        }),
      ]),
    );
    expect(resources(t(), "AWS::Lambda::EventInvokeConfig").map((c) => flat(c.props))).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ FunctionName: `ref:${recoveryPoint}`, MaximumRetryAttempts: 0 }),
      ]),
    );
  });

  it("outputs where the standby's read-only BackupStorageLocation points", () => {
    const outputs = t().Outputs as Record<string, { Value: Json }>;
    expect(outputs.FailoverMetadataLocation?.Value).toBe("s3://acme-velero/cbci-failover");
  });

  it("with a failover bucket of its own: reads Velero's bucket, writes only the failover bucket's prefix", () => {
    // arrange
    const stack = new Stack();
    // act
    const statements = veleroBucketPermissions(stack, {
      bucket: "acme-velero",
      prefix: "",
      failoverBucket: "acme-velero-dr",
      failoverPrefix: "failover",
      zoneMap: {},
      allowedWarnings: 0,
      combinedIds: false,
    }).map((st) => stack.resolve(st.toStatementJson()) as Record<string, Json>);
    // assert
    const arn = (rest: string) => ({
      "Fn::Join": ["", ["arn:", { Ref: "AWS::Partition" }, `:s3:::${rest}`]],
    });
    expect(statements).toEqual([
      {
        Sid: "VeleroBackupsRead",
        Effect: "Allow",
        Action: "s3:GetObject",
        Resource: arn("acme-velero/backups/*"),
      },
      {
        Sid: "VeleroBackupsList",
        Effect: "Allow",
        Action: "s3:ListBucket",
        Resource: arn("acme-velero"),
        Condition: { StringLike: { "s3:prefix": ["backups/*"] } },
      },
      {
        Sid: "FailoverMetadataList",
        Effect: "Allow",
        Action: "s3:ListBucket",
        Resource: arn("acme-velero-dr"),
        Condition: { StringLike: { "s3:prefix": ["failover/backups/*"] } },
      },
      {
        Sid: "FailoverMetadataWrite",
        Effect: "Allow",
        Action: ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
        Resource: arn("acme-velero-dr/failover/backups/*"),
      },
    ]);
  });

  it("scopes S3 to the bucket's backups (read, list by prefix) and the failover prefix (write, delete)", () => {
    const expected = [
      { sid: "VeleroBackupsRead", actions: ["s3:GetObject"], resources: [`${BUCKET_ARN}/cbci/backups/*`] },
      {
        sid: "VeleroBackupsList",
        actions: ["s3:ListBucket"],
        resources: [BUCKET_ARN],
        condition: { StringLike: { "s3:prefix": ["cbci/backups/*", "cbci-failover/backups/*"] } },
      },
      {
        sid: "FailoverMetadataWrite",
        actions: ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
        resources: [`${BUCKET_ARN}/cbci-failover/backups/*`],
      },
    ];
    const s3Of = (handler: string) =>
      statementsOfHandler(t(), handler)
        .filter((s) => s.actions.some((a) => a.startsWith("s3:")))
        .map((s) => ({
          effect: s.effect,
          actions: s.actions,
          resources: s.resources,
          condition: s.condition,
        }));
    // register, and the three functions that also judge backups DR-ready and publish their metadata
    for (const handler of [HANDLERS.register, HANDLERS.copyCompleted, HANDLERS.sweep, HANDLERS.poll]) {
      expect(s3Of(handler), handler).toEqual(
        expected.map(({ sid: _sid, ...s }) => ({ effect: "Allow", condition: undefined, ...s })),
      );
    }
    for (const handler of [HANDLERS.replicate, HANDLERS.recoveryPoint])
      expect(s3Of(handler), handler).toEqual([]);
    // nowhere s3:*, nowhere an S3 action on "*", nothing outside the Velero bucket
    const s3 = allStatements(t()).filter((s) => s.actions.some((a) => a.startsWith("s3:")));
    expect(s3).toHaveLength(12);
    for (const s of s3) {
      expect(s.actions.filter((a) => a.includes("*"))).toEqual([]);
      expect(s.resources).not.toContain("*");
      for (const r of s.resources) expect(r === BUCKET_ARN || r.startsWith(`${BUCKET_ARN}/`)).toBe(true);
    }
  });

  it("gives register copy-completed's permissions (it copies a backup's CSI snapshots), and the recovery point a Query on the ledger's status index", () => {
    const table = only(resources(t(), "AWS::DynamoDB::Table"), "table").id;
    const ownActions = (handler: string) =>
      statementsOfHandler(t(), handler).filter((s) => !s.actions.every((a) => a.startsWith("sqs:")));
    // the same statements, the queue each reads aside: EC2 to describe and copy (tagged copies
    // only), delete our tagged copies, the ledger, Velero's bucket
    const shape = (handler: string) =>
      ownActions(handler)
        .map((s) => JSON.stringify({ ...s, sid: undefined, holder: undefined }))
        .sort();
    expect(shape(HANDLERS.register)).toEqual(shape(HANDLERS.copyCompleted));
    expect(ownActions(HANDLERS.register).filter((s) => s.actions.includes("ec2:DeleteSnapshot"))).toEqual([
      expect.objectContaining({
        actions: ["ec2:DeleteSnapshot"],
        resources: [snapshotArns(FAILOVER)],
        condition: { Null: { "aws:ResourceTag/dr.velero.io/source-snapshot-id": "false" } },
      }),
    ]);
    expect(ownActions(HANDLERS.recoveryPoint)).toEqual([
      expect.objectContaining({
        effect: "Allow",
        actions: ["dynamodb:Query"],
        resources: [`${table}.Arn/index/byStatus`],
        condition: undefined,
      }),
    ]);
    // Resource "*" still only for DescribeSnapshots, in the five functions that admit copies
    const star = allStatements(t()).filter((s) => s.kind === "identity" && s.resources.includes("*"));
    expect(star.map((s) => s.actions)).toEqual([
      ["ec2:DescribeSnapshots"],
      ["ec2:DescribeSnapshots"],
      ["ec2:DescribeSnapshots"],
      ["ec2:DescribeSnapshots"],
      ["ec2:DescribeSnapshots"],
    ]);
  });

  it("alarms when the recovery point is older than the RPO target or missing, on copy failures and stuck copies", () => {
    const topic = only(resources(t(), "AWS::SNS::Topic"), "topic").id;
    const alarms = resources(t(), "AWS::CloudWatch::Alarm").map((a) => flat(a.props) as Record<string, Json>);
    const rpo = only(
      alarms.filter((a) => a.MetricName === METRIC.recoveryPointAge),
      "recovery point alarm",
    );
    expect(rpo).toMatchObject({
      AlarmName: "velero-dr-test-recovery-point-age",
      Namespace: "VeleroDR",
      // the overall recovery point, with the service dimension Powertools adds
      Dimensions: [
        { Name: "Schedule", Value: "all" },
        { Name: "service", Value: "velero-dr" },
      ],
      Statistic: "Maximum",
      Period: 60,
      Threshold: 30 * 60, // DR_RPO_TARGET_MINUTES
      ComparisonOperator: "GreaterThanThreshold",
      EvaluationPeriods: 3,
      DatapointsToAlarm: 3,
      // no DR-ready backup publishes no age (functions/app/recovery-point.ts): a breach
      TreatMissingData: "breaching",
      AlarmActions: [`ref:${topic}`],
      OKActions: [`ref:${topic}`],
    });
    expect(planeAlarms(t())).toEqual(PLANE_ALARMS);
    expect(alarms.map((a) => a.AlarmName).sort()).toEqual([
      "velero-dr-test-BackupEvents-dlq-depth",
      "velero-dr-test-BackupEvents-oldest-message-age",
      "velero-dr-test-CopyEvents-dlq-depth",
      "velero-dr-test-CopyEvents-oldest-message-age",
      "velero-dr-test-SnapshotEvents-dlq-depth",
      "velero-dr-test-SnapshotEvents-oldest-message-age",
      "velero-dr-test-copies-stuck",
      "velero-dr-test-copy-failures",
      "velero-dr-test-poller-errors",
      "velero-dr-test-recovery-point-age",
      "velero-dr-test-sweep-errors",
    ]);
    for (const a of alarms) expect(a.AlarmActions).toEqual([`ref:${topic}`]);
  });

  it("builds the velero-dr-<stage> dashboard on CloudWatch's grid, every widget well formed", () => {
    expect(dashboard().props.DashboardName).toBe("velero-dr-test");
    const b = body();
    expect(shapeProblems(b)).toEqual([]);
    expect(b.widgets.map((w) => [w.type, w.properties.title ?? "(text)"])).toEqual([
      ["text", "(text)"],
      ["alarm", "Alarms"],
      ["metric", "Recovery point age (s) against the RPO target"],
      ["metric", "Newest DR-ready backup"],
      ["log", "Newest DR-ready backup, by name (recovery-point function, every minute)"],
      ["metric", "Backup replication lag (s): completed -> DR-ready"],
      ["metric", "Snapshot copy lag (s): source snapshot start -> copy completed"],
      ["metric", "Copies in flight against the budget"],
      ["metric", "Waiting and superseded copies"],
      ["metric", "Failures, throttles and stuck copies"],
      ["metric", "Dead-letter queues (messages)"],
      ["metric", "Oldest message per event queue (s)"],
    ]);
    // Every metric of ours carries Powertools' service dimension, as the functions emit it.
    for (const w of b.widgets) {
      for (const r of ours(metricRows(w)))
        expect(r.dimensions.service, `${r.name} in ${w.properties.title}`).toBe("velero-dr");
    }
    for (const e of b.widgets.flatMap((w) => search(metricRows(w)))) {
      expect(e).toMatch(
        /^SEARCH\('\{VeleroDR,Schedule,service\} MetricName="\w+" service="velero-dr" NOT Schedule="all"'/,
      );
    }
    expect(b.widgets.filter((w) => w.type === "metric").every((w) => w.properties.region === FAILOVER)).toBe(
      true,
    );
  });

  it("draws the recovery point age against the RPO target, and the newest DR-ready backup by value and by name", () => {
    const age = widget("Recovery point age (s) against the RPO target");
    const rows = metricRows(age);
    expect(ours(rows)).toEqual([
      {
        namespace: "VeleroDR",
        name: METRIC.recoveryPointAge,
        dimensions: { Schedule: "all", service: "velero-dr" },
        options: { label: "all schedules", period: 60, stat: "Maximum" },
      },
    ]);
    expect(search(rows)).toEqual([
      `SEARCH('{VeleroDR,Schedule,service} MetricName="RecoveryPointAge" service="velero-dr" NOT Schedule="all"', 'Maximum', 60)`,
    ]);
    expect(age.properties.annotations).toEqual({
      horizontal: [{ value: 1800, label: "RPO target (30 min)", color: "#d62728", yAxis: "left" }],
    });
    const newest = widget("Newest DR-ready backup");
    expect(newest.properties.view).toBe("singleValue");
    expect(ours(metricRows(newest)).map((r) => [r.name, r.dimensions.Schedule, r.options.stat])).toEqual([
      [METRIC.recoveryPointAge, "all", "Maximum"],
      [METRIC.drReadyBackups, "all", "Maximum"],
      [METRIC.recoveryPointMissing, "all", "Maximum"],
    ]);
    const logs = only(
      resources(t(), "AWS::Logs::LogGroup").filter((g) => g.id.startsWith("RecoveryPointLogs")),
      "recovery point logs",
    ).id;
    const query = String(
      widget("Newest DR-ready backup, by name (recovery-point function, every minute)").properties.query,
    );
    expect(query.split("\n")).toEqual([
      `SOURCE 'ref:${logs}' | fields @timestamp, backup, startTimestamp, ageSeconds, drReadyBackups, missing`,
      `| filter message = "recovery point"`,
      "| sort @timestamp desc",
      "| limit 20",
    ]);
    expect(search(metricRows(widget("Backup replication lag (s): completed -> DR-ready")))).toEqual([
      `SEARCH('{VeleroDR,Schedule,service} MetricName="BackupReplicationLag" service="velero-dr" NOT Schedule="all"', 'Maximum', 300)`,
    ]);
  });

  it("draws copy lag percentiles, copies in flight against the budget and AWS's 20, waiting, superseded and failures", () => {
    expect(
      search(metricRows(widget("Snapshot copy lag (s): source snapshot start -> copy completed"))),
    ).toEqual(
      ["p50", "p90", "p99"].map(
        (p) =>
          `SEARCH('{VeleroDR,Schedule,service} MetricName="SnapshotCopyLag" service="velero-dr" NOT Schedule="all"', '${p}', 300)`,
      ),
    );
    const inFlight = widget("Copies in flight against the budget");
    expect(ours(metricRows(inFlight)).map((r) => [r.name, r.options.stat, r.options.period])).toEqual([
      [METRIC.copiesInFlight, "Maximum", 60],
    ]);
    expect(inFlight.properties.annotations).toEqual({
      horizontal: [
        { value: 16, label: "copy budget (16)", color: "#ff7f0e", yAxis: "left" },
        { value: 20, label: "AWS limit (20 per region)", color: "#d62728", yAxis: "left" },
      ],
    });
    expect(
      ours(metricRows(widget("Waiting and superseded copies"))).map((r) => [r.name, r.options.stat]),
    ).toEqual([
      [METRIC.copiesWaiting, "Maximum"],
      [METRIC.copiesSuperseded, "Sum"],
    ]);
    expect(
      ours(metricRows(widget("Failures, throttles and stuck copies"))).map((r) => [r.name, r.options.stat]),
    ).toEqual([
      [METRIC.copyFailures, "Sum"],
      [METRIC.copiesRetried, "Sum"],
      [METRIC.copiesThrottled, "Sum"],
      [METRIC.copiesStuck, "Maximum"],
      [METRIC.copiesMissedDeadline, "Sum"],
    ]);
  });

  it("draws every dead-letter queue's depth and every event queue's oldest message, and lists every alarm", () => {
    const byQueue = (title: string) =>
      metricRows(widget(title)).map((r) => [r.namespace, r.name, r.dimensions.QueueName, r.options.stat]);
    expect(byQueue("Dead-letter queues (messages)")).toEqual(
      ["SnapshotEventsDlq", "CopyEventsDlq", "BackupEventsDlq"].map((q) => [
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        `${queue(q)}.QueueName`,
        "Maximum",
      ]),
    );
    expect(byQueue("Oldest message per event queue (s)")).toEqual(
      ["SnapshotEventsQueue", "CopyEventsQueue", "BackupEventsQueue"].map((q) => [
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        `${queue(q)}.QueueName`,
        "Maximum",
      ]),
    );
    const alarmArns = resources(t(), "AWS::CloudWatch::Alarm").map((a) => `${a.id}.Arn`);
    expect([...(widget("Alarms").properties.alarms as string[])].sort()).toEqual(alarmArns.sort());
  });

  it("is accepted by the emulator's PutDashboard and read back unchanged by GetDashboard", async () => {
    // arrange
    const moto = await startMoto();
    try {
      const text = dashboardBodyText(dashboard(), FAILOVER);
      // act
      const put = await cloudwatch(moto.endpoint, FAILOVER, "PutDashboard", {
        DashboardName: "velero-dr-test",
        DashboardBody: text,
      });
      const got = await cloudwatch(moto.endpoint, FAILOVER, "GetDashboard", {
        DashboardName: "velero-dr-test",
      });
      // assert (and that the emulator does reject a broken body, so the acceptance means something)
      expect(put).toEqual({ status: 200, body: { DashboardValidationMessages: [] } });
      expect(got.status).toBe(200);
      expect(got.body.DashboardName).toBe("velero-dr-test");
      expect(JSON.parse(String(got.body.DashboardBody))).toEqual(JSON.parse(text));
      const broken = await cloudwatch(moto.endpoint, FAILOVER, "PutDashboard", {
        DashboardName: "broken",
        DashboardBody: text.slice(0, -1),
      });
      expect(broken.status).toBe(400);
    } finally {
      await moto.stop();
    }
  });
});

describe("Primary stack (source region)", () => {
  const t = () => primary.template;

  it("holds only the forwarding rules and their role: nothing runs in the source region", () => {
    expect(countByType(t())).toEqual({
      "AWS::Events::Rule": 2,
      "AWS::IAM::Role": 1,
      "AWS::IAM::Policy": 1,
    });
  });

  it("forwards each snapshot pattern from the default bus to the failover bus with the forwarder role", () => {
    const role = only(
      resources(t(), "AWS::IAM::Role").filter((r) => r.id.startsWith("ForwarderRole")),
      "forwarder role",
    ).id;
    const rules = resources(t(), "AWS::Events::Rule").map((r) => flat(r.props) as Record<string, Json>);
    expect(rules).toEqual(
      expect.arrayContaining(
        Object.entries(SNAPSHOT_EVENT_PATTERNS).map(([key, pattern]) =>
          expect.objectContaining({
            Name: `velero-dr-test-forward-${key}`,
            EventPattern: pattern,
            Targets: [{ Arn: BUS_ARN, Id: "Target0", RoleArn: `${role}.Arn` }],
          }),
        ),
      ),
    );
    for (const rule of rules) expect(rule.EventBusName).toBeUndefined(); // the default bus
  });

  it("lets the forwarder role only put events on the failover bus, assumed only for our rules", () => {
    const statements = allStatements(t()).filter((s) => s.holder.startsWith("ForwarderRole"));
    expect(statements.filter((s) => s.kind === "identity")).toEqual([
      expect.objectContaining({ effect: "Allow", actions: ["events:PutEvents"], resources: [BUS_ARN] }),
    ]);
    expect(statements.filter((s) => s.kind === "trust")).toEqual([
      expect.objectContaining({
        actions: ["sts:AssumeRole"],
        principal: { Service: "events.amazonaws.com" },
        condition: {
          StringEquals: { "aws:SourceAccount": ACCOUNT },
          ArnEquals: { "aws:SourceArn": FORWARD_RULE_ARNS },
        },
      }),
    ]);
  });
});

describe("IAM scoping (both stacks)", () => {
  const everywhere = () => [...allStatements(replication.template), ...allStatements(primary.template)];
  const functionRoles = () => {
    const fns = resources(replication.template, "AWS::Lambda::Function").filter((f) =>
      String(f.props.Handler).startsWith("functions/"),
    );
    return fns.map((f) => String((flat(f.props.Role) as string).replace(/\.Arn$/, "")));
  };
  const identityOf = (role: string) =>
    resources(replication.template, "AWS::IAM::Policy")
      .filter((p: Resource) => policyRoles(p).includes(role))
      .flatMap((p) => allStatements({ Resources: { [p.id]: p.raw } }));

  it("grants no action '*' or 'ec2:*' anywhere", () => {
    for (const s of everywhere()) {
      expect(s.actions).not.toContain("*");
      expect(s.actions).not.toContain("ec2:*");
    }
  });

  it("allows Resource '*' in identity policies only for ec2:DescribeSnapshots, limited to our regions", () => {
    const star = everywhere().filter((s) => s.kind === "identity" && s.resources.includes("*"));
    expect(star.length).toBe(4); // one per function
    for (const s of star) {
      expect(s.actions).toEqual(["ec2:DescribeSnapshots"]);
      expect(s.condition).toEqual({ StringEquals: { "aws:RequestedRegion": [PRIMARY, FAILOVER] } });
    }
    // Elsewhere "*" appears only as a key policy's resource, where it means "this key".
    const others = everywhere().filter((s) => s.kind !== "identity" && s.resources.includes("*"));
    expect(others.every((s) => s.kind === "key")).toBe(true);
  });

  it("gives each function the copy permissions, scoped to snapshot ARNs and conditions", () => {
    const roles = functionRoles();
    expect(roles).toHaveLength(4);
    for (const role of roles) {
      const statements = identityOf(role);
      const withAction = (a: string) => statements.filter((s) => s.actions.includes(a));
      expect(withAction("ec2:DescribeSnapshots")).toHaveLength(1);
      expect(withAction("ec2:CopySnapshot")).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            resources: [snapshotArns(FAILOVER)],
            condition: { Null: { [`aws:RequestTag/${SOURCE_SNAPSHOT_TAG}`]: "false" } },
          }),
          expect.objectContaining({ resources: [snapshotArns(PRIMARY)], condition: undefined }),
        ]),
      );
      expect(withAction("ec2:CopySnapshot")).toHaveLength(2);
      expect(withAction("ec2:CreateTags")).toEqual([
        expect.objectContaining({
          actions: ["ec2:CreateTags"],
          resources: [snapshotArns(FAILOVER)],
          condition: { StringEquals: { "ec2:CreateAction": "CopySnapshot" } },
        }),
      ]);
    }
  });

  it("keeps every ec2 action to the three we need (no DeleteSnapshot), and no KMS without a configured key", () => {
    const actions = new Set(everywhere().flatMap((s) => s.actions));
    expect([...actions].filter((a) => a.startsWith("ec2:")).sort()).toEqual([
      "ec2:CopySnapshot",
      "ec2:CreateTags",
      "ec2:DescribeSnapshots",
    ]);
    const identityKms = everywhere().filter(
      (s) => s.kind === "identity" && s.actions.some((a) => a.startsWith("kms:")),
    );
    expect(identityKms).toEqual([]);
    for (const banned of ["cloudwatch:PutMetricData", "xray:PutTraceSegments", "dynamodb:Scan"]) {
      expect(actions.has(banned), banned).toBe(false);
    }
  });

  it("grants DynamoDB actions on the ledger table and its status index only", () => {
    const table = only(resources(replication.template, "AWS::DynamoDB::Table"), "table").id;
    const dynamo = everywhere().filter((s) => s.actions.some((a) => a.startsWith("dynamodb:")));
    expect(dynamo).toHaveLength(8); // two statements per function
    for (const s of dynamo) {
      expect(s.kind).toBe("identity");
      for (const r of s.resources) expect([`${table}.Arn`, `${table}.Arn/index/byStatus`]).toContain(r);
      if (s.resources.includes(`${table}.Arn/index/byStatus`)) expect(s.actions).toEqual(["dynamodb:Query"]);
      else
        expect([...s.actions].sort()).toEqual([
          "dynamodb:BatchGetItem",
          "dynamodb:ConditionCheckItem",
          "dynamodb:DeleteItem",
          "dynamodb:GetItem",
          "dynamodb:PutItem",
          "dynamodb:Query",
          "dynamodb:UpdateItem",
        ]);
    }
  });
});

describe("cfn-lint", () => {
  it("passes every template (the failover region with and without Velero's bucket or the poller, the source region)", async () => {
    // arrange
    const dir = await mkdtemp(path.join(tmpdir(), "velero-dr-cfn-"));
    const files: string[] = [];
    for (const [s, name] of [
      [replication, replication.stackName],
      [primary, primary.stackName],
      [withVelero, `${withVelero.stackName}-velero`],
      [withoutPoller, `${withoutPoller.stackName}-no-poller`],
    ] as const) {
      const file = path.join(dir, `${name}.json`);
      await writeFile(file, JSON.stringify(s.template, null, 2));
      files.push(file);
    }
    // act: W3005 (redundant DependsOn) is CDK's own style; nothing else is ignored.
    const started = performance.now();
    const run = spawnSync("cfn-lint", ["--ignore-checks", "W3005", "--", ...files], { encoding: "utf8" });
    timings["cfn-lint"] = Math.round(performance.now() - started);
    // assert
    if (run.error && "code" in run.error && run.error.code === "ENOENT") {
      throw new Error(
        "cfn-lint is not on PATH: install it (pip install cfn-lint); this test must not be skipped",
      );
    }
    expect(run.error).toBeUndefined();
    expect(`${run.stdout}${run.stderr}`.trim()).toBe("");
    expect(run.status).toBe(0);
    expect(files.every((f) => existsSync(f))).toBe(true);
    await rm(dir, { recursive: true, force: true });
  }, 120_000);
});
