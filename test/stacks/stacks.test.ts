/**
 * Synthesis tests of both stacks, offline (vitest sets NODE_ENV=test, SST's test mode).
 *
 * Every SST synthesis of this repo lives in this one file on purpose: SST writes per-project state
 * under .sst/ (it empties .sst/types on every `new App`, and builds each function into
 * .sst/artifacts/<function id>/), so two test files synthesizing in parallel forks would race.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { App } from "sst/constructs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INDEX } from "../../functions/adapters/dynamo-ledger.js";
import { configToEnv } from "../../functions/core/config.js";
import { SOURCE_SNAPSHOT_TAG } from "../../functions/core/model.js";
import { COPY_EVENT_PATTERNS, SNAPSHOT_EVENT_PATTERNS } from "../../functions/core/patterns.js";
import config from "../../sst.config.js";
import { HANDLERS, sstBuildOptions, sstEsbuild } from "../../stacks/functions.js";
import { STATUS_INDEX } from "../../stacks/Replication.js";
import { settingsFromEnv } from "../../stacks/settings.js";
import { type SynthesizedStack, synthRegion } from "../../stacks/synth.js";
import { allStatements, countByType, flat, type Json, policyRoles, type Resource, resources } from "./cfn.js";

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

let replication: SynthesizedStack;
let primary: SynthesizedStack;
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

beforeAll(async () => {
  // arrange + act: one synthesis per region, as `sst deploy` (failover) and `sst deploy --region`
  const failoverStacks = await timed("synth failover region", () => synthRegion(FAILOVER, { env: SETTINGS }));
  const primaryStacks = await timed("synth primary region", () => synthRegion(PRIMARY, { env: SETTINGS }));
  replication = only(failoverStacks, "stack in the failover region");
  primary = only(primaryStacks, "stack in the primary region");
  console.log("stack synthesis timings (ms):", timings);
}, 240_000);

afterAll(async () => {
  // CDK writes each cloud assembly (function bundles included) to a fresh temporary directory.
  for (const s of [replication, primary]) if (s) await rm(s.assemblyDir, { recursive: true, force: true });
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
  ])("fails synthesis naming the bad setting (%o)", async (env, message) => {
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
  });
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
      // 2 snapshot-event rules on our bus, 2 copy-event rules on the default bus, the sweep schedule
      "AWS::Events::Rule": 5,
      "AWS::SQS::Queue": 4,
      "AWS::SQS::QueuePolicy": 4,
      // DLQ depth and oldest-message age per queue, and the sweep's errors
      "AWS::CloudWatch::Alarm": 5,
      "AWS::KMS::Key": 1,
      "AWS::SNS::Topic": 1,
      "AWS::SNS::TopicPolicy": 1,
      "AWS::SNS::Subscription": 1,
      // our three (SST's idle custom-resource handler is removed: stacks/sst-internals.ts)
      "AWS::Lambda::Function": 3,
      "AWS::IAM::Role": 3,
      "AWS::IAM::Policy": 3,
      "AWS::Logs::LogGroup": 3,
      "AWS::Lambda::EventSourceMapping": 2,
      "AWS::Lambda::EventInvokeConfig": 1,
      "AWS::Lambda::Permission": 1,
      // SST's per-function name parameters (/sst/velero-dr/<stage>/Function/<id>/functionName)
      "AWS::SSM::Parameter": 3,
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

  it("runs the three handlers on nodejs22.x arm64 with their configuration and one-month logs", () => {
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
    const esbuild = sstEsbuild();
    for (const handler of Object.values(HANDLERS)) {
      const code = byHandler(handler).props.Code as Record<string, Json>;
      const hash = String(code.S3Key).replace(/\.zip$/, "");
      const assetDir = path.join(replication.assemblyDir, `asset.${hash}`);
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

  it("consumes each queue with partial batch responses, 10 records, a 5 s window", () => {
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
          }),
        ),
      ),
    );
    expect(mappings).toHaveLength(2);
  });

  it("runs the sweep every 5 minutes, invoked directly, without async retries", () => {
    const sweep = byHandler(HANDLERS.sweep).id;
    const schedule = only(
      resources(t(), "AWS::Events::Rule").filter((r) => r.props.ScheduleExpression),
      "schedule",
    );
    expect(schedule.props.ScheduleExpression).toBe("rate(5 minutes)");
    expect(flat(schedule.props.Targets)).toEqual([{ Arn: `${sweep}.Arn`, Id: "Target0" }]);
    expect(flat(only(resources(t(), "AWS::Lambda::Permission"), "permission").props)).toMatchObject({
      Principal: "events.amazonaws.com",
      FunctionName: `${sweep}.Arn`,
      SourceArn: `${schedule.id}.Arn`,
    });
    expect(only(resources(t(), "AWS::Lambda::EventInvokeConfig"), "invoke config").props).toMatchObject({
      MaximumRetryAttempts: 0,
    });
  });

  it("outputs the bus ARN, table name, queue URLs and topic ARN", () => {
    expect(Object.keys(replication.template.Outputs as object)).toEqual(
      expect.arrayContaining([
        "BusArn",
        "LedgerTableName",
        "SnapshotEventsQueueUrl",
        "CopyEventsQueueUrl",
        "AlertsTopicArn",
      ]),
    );
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
    expect(star.length).toBe(3); // one per function
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
    expect(roles).toHaveLength(3);
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
    expect(dynamo).toHaveLength(6); // two statements per function
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
  it("passes both templates", async () => {
    // arrange
    const dir = await mkdtemp(path.join(tmpdir(), "velero-dr-cfn-"));
    const files: string[] = [];
    for (const s of [replication, primary]) {
      const file = path.join(dir, `${s.stackName}.json`);
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
