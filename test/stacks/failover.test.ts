/**
 * Synthesis tests of the Failover stack (issue 4), offline (vitest sets NODE_ENV=test, SST's test
 * mode). Synthesis goes through stacks/synth.ts, whose lock keeps this file and stacks.test.ts (in
 * parallel forks) from writing SST's .sst/ state at the same time.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MIN_KEY_BYTES } from "../../functions/core/approval.js";
import {
  loadApprovalConfig,
  loadRequestApprovalConfig,
  parseApprovalKeys,
} from "../../functions/core/approval-config.js";
import { FAILOVER_ERRORS, loadFailoverConfig } from "../../functions/core/failover.js";
import { REJECTED } from "../../functions/core/failover-machine.js";
import { FAILOVER_KUBERNETES_GROUP } from "../../stacks/Failover.js";
import { FAILOVER_HANDLERS } from "../../stacks/functions.js";
import { failoverSettingsFromEnv } from "../../stacks/settings.js";
import { type SynthesizedStack, synthRegion } from "../../stacks/synth.js";
import { allStatements, countByType, flat, type Json, policyRoles, type Resource, resources } from "./cfn.js";

const PRIMARY = "us-east-1";
const FAILOVER = "us-west-2";
const ACCOUNT = "123456789012";
const SLACK_SECRET = `arn:aws:secretsmanager:${FAILOVER}:${ACCOUNT}:secret:velero-dr/slack-AbCdEf`;
const SLACK_WEBHOOK_SECRET = `arn:aws:secretsmanager:${FAILOVER}:${ACCOUNT}:secret:velero-dr/slack-webhook-GhIjKl`;
/** A deployment with DR-ready backups and the failover plane. */
const SETTINGS = {
  DR_SOURCE_REGIONS: PRIMARY,
  DR_FAILOVER_REGION: FAILOVER,
  DR_ALERT_EMAIL: "dr-alerts@example.com",
  DR_VELERO_BUCKET: "acme-velero",
  DR_VELERO_PREFIX: "cbci",
  DR_FAILOVER_PREFIX: "cbci-failover",
  DR_ZONE_MAP: "us-east-1a=us-west-2a,us-east-1b=us-west-2b",
  DR_ALLOWED_WARNINGS: "1",
  DR_FAILOVER_CLUSTER_NAME: "cbci-standby",
  DR_FAILOVER_NODEGROUP_NAME: "cbci-workers",
  DR_FAILOVER_NODEGROUP_MIN: "3",
  DR_FAILOVER_NODEGROUP_DESIRED: "6",
  DR_FAILOVER_NODEGROUP_MAX: "12",
  DR_FAILOVER_HOSTED_ZONE_ID: "/hostedzone/Z0123456789ABCDEFGHIJ",
  DR_FAILOVER_RECORD_NAME: "CI.Example.com.",
  DR_FAILOVER_LB_TAG: "velero-dr/ingress=failover",
  DR_FAILOVER_NAMESPACES: "cbci,cbci-agents",
  DR_APPROVER_EMAILS: "alice@example.com, bob@example.com",
  DR_SLACK_SECRET_ARN: SLACK_SECRET,
  DR_SLACK_APPROVERS: "U0ALICE01,U0BOB0002",
  DR_SLACK_WEBHOOK_SECRET_ARN: SLACK_WEBHOOK_SECRET,
  DR_APPROVAL_TTL_MINUTES: "45",
  DR_TWO_PERSON_RULE: "true",
  DR_APPROVAL_TIMEOUT_MINUTES: "30",
};
const ZONE_ARN = "arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ";
const CLUSTER_ARN = `arn:aws:eks:${FAILOVER}:${ACCOUNT}:cluster/cbci-standby`;
const NODEGROUP_ARN = `arn:aws:eks:${FAILOVER}:${ACCOUNT}:nodegroup/cbci-standby/cbci-workers/*`;
const MACHINE_NAME = "velero-dr-test-failover";
const MACHINE_ARN = `arn:aws:states:${FAILOVER}:${ACCOUNT}:stateMachine:${MACHINE_NAME}`;

type Step = keyof typeof FAILOVER_HANDLERS;

let replication: SynthesizedStack;
let failover: SynthesizedStack;

function only<T>(items: T[], what: string): T {
  expect(items, what).toHaveLength(1);
  const [item] = items;
  if (item === undefined) throw new Error(`no ${what}`);
  return item;
}

const t = () => failover.template;
const fnOf = (step: Step): Resource =>
  only(
    resources(t(), "AWS::Lambda::Function").filter((f) => f.props.Handler === FAILOVER_HANDLERS[step]),
    `function ${step}`,
  );
const roleOf = (step: Step) => String(flat(fnOf(step).props.Role)).replace(/\.Arn$/, "");
const identityOfRole = (role: string) =>
  resources(t(), "AWS::IAM::Policy")
    .filter((p) => policyRoles(p).includes(role))
    .flatMap((p) => allStatements({ Resources: { [p.id]: p.raw } }));
/** Replaces each import of a Replication export with the resource it names, for reading. */
function resolveImports(value: Json): Json {
  if (Array.isArray(value)) return value.map(resolveImports);
  if (typeof value !== "object" || value === null) return value;
  const name = value["Fn::ImportValue"];
  if (typeof name === "string") return exported(name);
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveImports(v)]));
}
const list = (v: Json | undefined): string[] =>
  v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)];
interface Grant {
  actions: string[];
  resources: string[];
  condition?: Json;
}
/** A function's identity statements by Sid, with intrinsics rendered as cfn.ts's `flat` does. */
function grants(step: Step): Record<string, Grant> {
  const out: Record<string, Grant> = {};
  for (const policy of resources(t(), "AWS::IAM::Policy").filter((p) =>
    policyRoles(p).includes(roleOf(step)),
  )) {
    const doc = flat(resolveImports(policy.props.PolicyDocument ?? null)) as {
      Statement: Array<Record<string, Json>>;
    };
    for (const s of doc.Statement) {
      expect(s.Effect).toBe("Allow");
      const sid = String(s.Sid);
      expect(out[sid], `${step}: one statement per Sid`).toBeUndefined();
      out[sid] = {
        actions: list(s.Action).sort(),
        resources: list(s.Resource),
        ...(s.Condition ? { condition: s.Condition } : {}),
      };
    }
  }
  return out;
}
const envOf = (step: Step) =>
  (flat(fnOf(step).props.Environment) as { Variables: Record<string, Json> }).Variables;
const imported = (value: Json | undefined) => {
  const name = (value as { "Fn::ImportValue"?: string } | undefined)?.["Fn::ImportValue"];
  if (typeof name !== "string") throw new Error(`not an import: ${JSON.stringify(value)}`);
  return name;
};
/** The logical id behind a Replication export, so imports can be compared with what they name. */
const exported = (name: string) => {
  const outputs = replication.template.Outputs as Record<string, { Value: Json; Export?: { Name: string } }>;
  const out = only(
    Object.values(outputs).filter((o) => o.Export?.Name === name),
    `export ${name}`,
  );
  return String(flat(out.Value));
};
const tableArn = () => `${only(resources(replication.template, "AWS::DynamoDB::Table"), "table").id}.Arn`;
const machine = () => only(resources(t(), "AWS::StepFunctions::StateMachine"), "state machine");
const definition = () => JSON.parse(String(flat(machine().props.DefinitionString))) as Record<string, Json>;
const topic = () => only(resources(t(), "AWS::SNS::Topic"), "approvers topic");
const key = () => only(resources(t(), "AWS::KMS::Key"), "approvers key");
const secret = () => only(resources(t(), "AWS::SecretsManager::Secret"), "approval secret");

beforeAll(async () => {
  // arrange + act: the failover region with the failover settings, as `sst deploy` would
  const stacks = await synthRegion(FAILOVER, { env: SETTINGS });
  expect(stacks.map((s) => s.stackName)).toEqual(["test-velero-dr-Replication", "test-velero-dr-Failover"]);
  [replication, failover] = stacks as [SynthesizedStack, SynthesizedStack];
}, 240_000);

afterAll(async () => {
  if (failover) await rm(failover.assemblyDir, { recursive: true, force: true });
});

describe("Failover stack (failover region)", () => {
  it("has exactly the expected resources", () => {
    expect(countByType(t())).toEqual({
      // 8 steps, the approval request, the approval endpoint (SST's idle handler is removed)
      "AWS::Lambda::Function": 10,
      // one per function, and the state machine's
      "AWS::IAM::Role": 11,
      "AWS::IAM::Policy": 11,
      "AWS::Logs::LogGroup": 11,
      "AWS::SSM::Parameter": 10,
      "AWS::Lambda::Url": 1,
      // the function URL's two public grants (InvokeFunctionUrl, and InvokeFunction through the URL)
      "AWS::Lambda::Permission": 2,
      "AWS::StepFunctions::StateMachine": 1,
      "AWS::SecretsManager::Secret": 1,
      "AWS::KMS::Key": 1,
      "AWS::SNS::Topic": 1,
      "AWS::SNS::TopicPolicy": 1,
      "AWS::SNS::Subscription": 2,
      "AWS::CloudWatch::Alarm": 1,
      // preflight, startRestore, waitRestore: the standby cluster's Kubernetes API
      "AWS::EKS::AccessEntry": 3,
    });
  });

  it("uses Replication's ledger table and alerts topic (same region, cross-stack exports)", () => {
    const alerts = only(resources(replication.template, "AWS::SNS::Topic"), "alerts topic").id;
    const table = only(resources(replication.template, "AWS::DynamoDB::Table"), "table").id;
    expect(exported(imported(envOf("preflight").LEDGER_TABLE))).toBe(`ref:${table}`);
    const alarm = only(resources(t(), "AWS::CloudWatch::Alarm"), "alarm");
    expect((alarm.props.AlarmActions as Json[]).map((a) => exported(imported(a)))).toEqual([`ref:${alerts}`]);
    // Nothing of the ledger or the alerts is created here.
    expect(resources(t(), "AWS::DynamoDB::Table")).toEqual([]);
  });

  describe("state machine", () => {
    const states = () => definition().States as Record<string, Record<string, Json>>;
    const taskTarget = (state: Record<string, Json>) =>
      String(state.Resource).endsWith(".Arn") ? String(state.Resource) : undefined;
    const branches = () => (states().Recover?.Branches ?? []) as Array<Record<string, Json>>;
    const branchStates = (i: number) => branches()[i]?.States as Record<string, Record<string, Json>>;
    const lambdaTasks = () => ({
      ...states(),
      ...branchStates(0),
      ...branchStates(1),
    });

    it("is a STANDARD machine named for the stage, logging to its own log group without data, tracing off", () => {
      const logGroup = only(
        resources(t(), "AWS::Logs::LogGroup").filter(
          (g) => g.props.LogGroupName === `/aws/vendedlogs/states/${MACHINE_NAME}`,
        ),
        "machine log group",
      );
      expect(flat(machine().props) as Record<string, Json>).toMatchObject({
        StateMachineName: MACHINE_NAME,
        StateMachineType: "STANDARD",
        TracingConfiguration: { Enabled: false },
        LoggingConfiguration: {
          Level: "ALL",
          IncludeExecutionData: false,
          Destinations: [{ CloudWatchLogsLogGroup: { LogGroupArn: `${logGroup.id}.Arn` } }],
        },
      });
      expect(logGroup.props.RetentionInDays).toBe(365);
    });

    it("runs preflight, the approval, node group and restore in parallel, DNS, scale-back, report", () => {
      const d = definition();
      expect(d.StartAt).toBe("Preflight");
      expect(Object.keys(states()).sort()).toEqual(
        [
          "Preflight",
          "RequestApproval",
          "Recover",
          "Merge",
          "SwitchDns",
          "ScaleBack",
          "Report",
          "ReportFailure",
          "Failed",
        ].sort(),
      );
      const next = (name: string) => states()[name]?.Next;
      expect([
        next("Preflight"),
        next("RequestApproval"),
        next("Recover"),
        next("Merge"),
        next("SwitchDns"),
        next("ScaleBack"),
      ]).toEqual(["RequestApproval", "Recover", "Merge", "SwitchDns", "ScaleBack", "Report"]);
      expect(states().Report?.End).toBe(true);
      expect(states().Recover?.Type).toBe("Parallel");
      expect(branches().map((b) => [b.StartAt, Object.keys(b.States as object)])).toEqual([
        ["ScaleNodegroup", ["ScaleNodegroup", "WaitNodegroup"]],
        ["StartRestore", ["StartRestore", "WaitRestore"]],
      ]);
      expect(branchStates(0).ScaleNodegroup?.Next).toBe("WaitNodegroup");
      expect(branchStates(1).StartRestore?.Next).toBe("WaitRestore");
    });

    it("invokes each step's own function (the ARNs resolve to the handlers)", () => {
      const expected: Record<string, Step> = {
        Preflight: "preflight",
        ScaleNodegroup: "scaleNodegroup",
        WaitNodegroup: "waitNodegroup",
        StartRestore: "startRestore",
        WaitRestore: "waitRestore",
        SwitchDns: "switchDns",
        ScaleBack: "scaleBack",
        Report: "report",
        ReportFailure: "report",
      };
      for (const [name, step] of Object.entries(expected)) {
        const state = lambdaTasks()[name];
        expect(state?.Type, name).toBe("Task");
        expect(taskTarget(state ?? {}), name).toBe(`${fnOf(step).id}.Arn`);
      }
    });

    it("waits for the approval on a task token, through the approval request, with the configured timeout", () => {
      expect(states().RequestApproval).toMatchObject({
        Type: "Task",
        Resource: "arn:aws:states:::lambda:invoke.waitForTaskToken",
        Parameters: {
          FunctionName: `${fnOf("requestApproval").id}.Arn`,
          Payload: { "taskToken.$": "$$.Task.Token", "request.$": "$.request", "steps.$": "$.steps" },
        },
        TimeoutSeconds: 30 * 60, // DR_APPROVAL_TIMEOUT_MINUTES
        ResultPath: "$.approval",
      });
      // A rejection fails the task (REJECTED) and is caught like any failure.
      expect(REJECTED).toBe("Rejected");
    });

    it("retries StillWaiting on the wait steps only, transient errors everywhere, and catches to ReportFailure", () => {
      const retriesOn = (state: Record<string, Json> | undefined) =>
        ((state?.Retry ?? []) as Array<Record<string, Json>>).flatMap((r) => r.ErrorEquals as string[]);
      for (const name of ["WaitNodegroup", "WaitRestore", "SwitchDns"]) {
        const waiting = ((lambdaTasks()[name]?.Retry ?? []) as Array<Record<string, Json>>).find((r) =>
          (r.ErrorEquals as string[]).includes(FAILOVER_ERRORS.stillWaiting),
        );
        expect(waiting, name).toMatchObject({ IntervalSeconds: 15, MaxAttempts: 120, BackoffRate: 1 });
      }
      for (const name of [
        "Preflight",
        "RequestApproval",
        "ScaleNodegroup",
        "StartRestore",
        "ScaleBack",
        "Report",
        "ReportFailure",
      ]) {
        expect(retriesOn(lambdaTasks()[name]), name).not.toContain(FAILOVER_ERRORS.stillWaiting);
      }
      for (const name of Object.keys(lambdaTasks()).filter((n) => lambdaTasks()[n]?.Type === "Task")) {
        expect(retriesOn(lambdaTasks()[name]), name).toEqual(
          expect.arrayContaining([
            FAILOVER_ERRORS.retryable,
            "Lambda.ServiceException",
            "Lambda.TooManyRequestsException",
          ]),
        );
        // a refusal, a failed step or a rejection is never retried
        expect(retriesOn(lambdaTasks()[name]), name).not.toContain(FAILOVER_ERRORS.preflightFailed);
        expect(retriesOn(lambdaTasks()[name]), name).not.toContain(FAILOVER_ERRORS.stepFailed);
        expect(retriesOn(lambdaTasks()[name]), name).not.toContain("States.ALL");
      }
      const toFailure = [{ ErrorEquals: ["States.ALL"], ResultPath: "$.error", Next: "ReportFailure" }];
      for (const name of ["Preflight", "RequestApproval", "Recover", "SwitchDns", "ScaleBack"]) {
        expect(states()[name]?.Catch, name).toEqual(toFailure);
      }
      expect(states().ReportFailure).toMatchObject({
        Next: "Failed",
        Catch: [{ ErrorEquals: ["States.ALL"], ResultPath: "$.reportError", Next: "Failed" }],
      });
      expect(states().Failed).toMatchObject({ Type: "Fail", Error: "FailoverFailed" });
    });

    it("gives every Lambda task a timeout above its function's, and each wait step its wait budget plus a minute", () => {
      const timeouts: Record<Step, number> = {
        preflight: 60,
        scaleNodegroup: 60,
        waitNodegroup: 660, // FAILOVER_NODEGROUP_WAIT_SECONDS default 600 + 60
        startRestore: 60,
        waitRestore: 660, // FAILOVER_RESTORE_WAIT_SECONDS default 600 + 60
        switchDns: 360, // FAILOVER_DNS_WAIT_SECONDS default 300 + 60
        scaleBack: 60,
        report: 60,
        requestApproval: 60,
        approval: 60,
      };
      for (const [step, seconds] of Object.entries(timeouts) as Array<[Step, number]>) {
        expect(fnOf(step).props.Timeout, step).toBe(seconds);
      }
      for (const [name, state] of Object.entries(lambdaTasks())) {
        const target = taskTarget(state);
        if (!target) continue;
        const fn = only(
          resources(t(), "AWS::Lambda::Function").filter((f) => `${f.id}.Arn` === target),
          name,
        );
        expect(Number(state.TimeoutSeconds), name).toBeGreaterThan(Number(fn.props.Timeout));
        expect(Number(state.TimeoutSeconds), name).toBe(720);
      }
    });

    it("runs as a role that only Step Functions, for this machine, may assume, and that invokes exactly the tasks' functions", () => {
      const role = String(flat(machine().props.RoleArn)).replace(/\.Arn$/, "");
      const trust = allStatements(t()).filter((s) => s.holder === role && s.kind === "trust");
      expect(trust).toEqual([
        expect.objectContaining({
          actions: ["sts:AssumeRole"],
          principal: { Service: "states.amazonaws.com" },
          condition: {
            StringEquals: { "aws:SourceAccount": ACCOUNT },
            ArnLike: { "aws:SourceArn": MACHINE_ARN },
          },
        }),
      ]);
      const identity = identityOfRole(role);
      const invoke = only(
        identity.filter((s) => s.actions.includes("lambda:InvokeFunction")),
        "invoke statement",
      );
      const steps: Step[] = [
        "preflight",
        "requestApproval",
        "scaleNodegroup",
        "waitNodegroup",
        "startRestore",
        "waitRestore",
        "switchDns",
        "scaleBack",
        "report",
      ];
      expect(invoke.actions).toEqual(["lambda:InvokeFunction"]);
      expect([...invoke.resources].sort()).toEqual(steps.map((s) => `${fnOf(s).id}.Arn`).sort());
      expect(invoke.resources).not.toContain(`${fnOf("approval").id}.Arn`);
      // The other statement is CloudWatch Logs' delivery setup, which has no resource-level permissions.
      const rest = identity.filter((s) => s !== invoke);
      expect(rest).toEqual([
        expect.objectContaining({
          resources: ["*"],
          actions: [
            "logs:CreateLogDelivery",
            "logs:GetLogDelivery",
            "logs:UpdateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:ListLogDeliveries",
            "logs:PutResourcePolicy",
            "logs:DescribeResourcePolicies",
            "logs:DescribeLogGroups",
          ],
        }),
      ]);
      // The approval endpoint names the machine by the name it is given (no reference cycle).
      expect(MACHINE_ARN.endsWith(`:${machine().props.StateMachineName}`)).toBe(true);
    });

    it("alarms on failed executions to Replication's alerts topic, under the prefix its policy admits", () => {
      const alarm = flat(only(resources(t(), "AWS::CloudWatch::Alarm"), "alarm").props) as Record<
        string,
        Json
      >;
      expect(alarm).toMatchObject({
        AlarmName: "velero-dr-test-failover-failed",
        Namespace: "AWS/States",
        MetricName: "ExecutionsFailed",
        Dimensions: [{ Name: "StateMachineArn", Value: `ref:${machine().id}` }],
        Statistic: "Sum",
        Threshold: 0,
        ComparisonOperator: "GreaterThanThreshold",
        EvaluationPeriods: 1,
        TreatMissingData: "notBreaching",
      });
      expect((alarm.OKActions as Json[]).length).toBe(1);
      const policy = allStatements(replication.template).find(
        (s) =>
          s.kind === "resource" && JSON.stringify(s.principal) === '{"Service":"cloudwatch.amazonaws.com"}',
      );
      expect(policy?.condition).toMatchObject({
        ArnLike: { "aws:SourceArn": `arn:aws:cloudwatch:${FAILOVER}:${ACCOUNT}:alarm:velero-dr-test-*` },
      });
    });
  });

  describe("approval endpoint and secrets", () => {
    it("serves the approval endpoint on a function URL with auth type NONE and no CORS", () => {
      const url = only(resources(t(), "AWS::Lambda::Url"), "function URL");
      expect(flat(url.props)).toEqual({ AuthType: "NONE", TargetFunctionArn: `${fnOf("approval").id}.Arn` });
      const grants = resources(t(), "AWS::Lambda::Permission").map((p) => flat(p.props));
      expect(grants).toEqual(
        expect.arrayContaining([
          {
            Action: "lambda:InvokeFunctionUrl",
            FunctionName: `${fnOf("approval").id}.Arn`,
            FunctionUrlAuthType: "NONE",
            Principal: "*",
          },
          {
            Action: "lambda:InvokeFunction",
            FunctionName: `${fnOf("approval").id}.Arn`,
            InvokedViaFunctionUrl: true,
            Principal: "*",
          },
        ]),
      );
      expect(grants).toHaveLength(2);
      const outputs = failover.template.Outputs as Record<string, { Value: Json }>;
      expect(flat(outputs.ApprovalUrl?.Value)).toBe(`${url.id}.FunctionUrl`);
      expect(flat(outputs.FailoverStateMachineArn?.Value)).toBe(`ref:${machine().id}`);
      // The request step builds its links on that URL.
      expect(envOf("requestApproval").APPROVAL_BASE_URL).toBe(`${url.id}.FunctionUrl`);
    });

    it('generates the approval key in Secrets Manager ({"keys": <64 characters>}), never in the template', () => {
      expect(secret().props).toMatchObject({
        Description: "Velero DR test: HMAC keys of the failover approval links",
        GenerateSecretString: {
          SecretStringTemplate: "{}",
          GenerateStringKey: "keys",
          PasswordLength: 64,
          ExcludePunctuation: true,
        },
      });
      expect(secret().props.SecretString).toBeUndefined();
      // The shape Secrets Manager generates is one the functions accept, and long enough.
      const generated = JSON.stringify({ keys: "a".repeat(64) });
      expect(
        parseApprovalKeys(generated, "arn:aws:secretsmanager:us-west-2:1:secret:x")[0]?.length,
      ).toBeGreaterThanOrEqual(MIN_KEY_BYTES);
      for (const step of ["approval", "requestApproval"] as const) {
        expect(envOf(step).APPROVAL_SECRET_ARN).toBe(`ref:${secret().id}`);
      }
      // No secret value anywhere: not the keys, not a Slack webhook.
      const text = JSON.stringify(failover.template);
      expect(text.includes('"SecretString"'), "a SecretString in the template").toBe(false);
      for (const leak of ["hooks.slack.com", "FAILOVER_SLACK_WEBHOOK_URL", "FAILOVER_K8S_TOKEN"]) {
        expect(text.includes(leak), leak).toBe(false);
      }
    });

    it("encrypts the approvers' topic with its own key, over TLS only, and subscribes each approver to their own messages and those to all", () => {
      expect(key().props.EnableKeyRotation).toBe(true);
      expect(topic().props.KmsMasterKeyId).toEqual({ "Fn::GetAtt": [key().id, "Arn"] });
      expect(
        resources(t(), "AWS::SNS::Subscription")
          .map((s) => flat(s.props))
          .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      ).toEqual(
        ["alice@example.com", "bob@example.com"].map((e) => ({
          Protocol: "email",
          Endpoint: e,
          TopicArn: `ref:${topic().id}`,
          // the approval request addressed to this approver, and what goes to all (stages, report)
          FilterPolicy: { approver: [e, "all"] },
        })),
      );
      const onTopic = allStatements(t()).filter(
        (s) => s.kind === "resource" && s.holder.startsWith("Approvers"),
      );
      expect(onTopic).toEqual([
        expect.objectContaining({ effect: "Deny", condition: { Bool: { "aws:SecureTransport": "false" } } }),
      ]);
    });
  });

  describe("functions", () => {
    it("runs every function on nodejs22.x arm64 with one-month logs, tracing off", () => {
      for (const step of Object.keys(FAILOVER_HANDLERS) as Step[]) {
        const fn = fnOf(step);
        expect(fn.props, step).toMatchObject({
          Runtime: "nodejs22.x",
          Architectures: ["arm64"],
          MemorySize: 256,
        });
        expect(fn.props.TracingConfig, step).toBeUndefined();
        const logGroupRef = (flat(fn.props.LoggingConfig) as Record<string, Json>).LogGroup;
        const logGroup = only(
          resources(t(), "AWS::Logs::LogGroup").filter((g) => `ref:${g.id}` === logGroupRef),
          `log group of ${step}`,
        );
        expect(logGroup.props.RetentionInDays, step).toBe(30);
      }
    });

    it("ships each handler as a minified ESM bundle of its entrypoint, without source maps", () => {
      for (const step of Object.keys(FAILOVER_HANDLERS) as Step[]) {
        const code = fnOf(step).props.Code as Record<string, Json>;
        const assetDir = path.join(failover.assemblyDir, `asset.${String(code.S3Key).replace(/\.zip$/, "")}`);
        const handler = FAILOVER_HANDLERS[step];
        const base = handler.slice(0, handler.lastIndexOf("."));
        const bundle = readFileSync(path.join(assetDir, `${base}.mjs`), "utf8");
        expect(bundle.split("\n").length, step).toBeLessThan(200); // minified
        expect(bundle, step).toContain(handler.slice(handler.lastIndexOf(".") + 1)); // the export
        expect(
          readdirSync(path.join(assetDir, path.dirname(base))).filter((f) => f.endsWith(".map")),
          step,
        ).toEqual([]);
      }
    });

    it("gives the steps their FAILOVER_* settings, which the steps' own loader accepts", () => {
      const steps: Step[] = [
        "preflight",
        "scaleNodegroup",
        "waitNodegroup",
        "startRestore",
        "waitRestore",
        "switchDns",
        "scaleBack",
        "report",
      ];
      const env = envOf("preflight");
      expect(env).toMatchObject({
        FAILOVER_REGION: FAILOVER,
        ALLOWED_WARNINGS: "1",
        FAILOVER_CLUSTER_NAME: "cbci-standby",
        FAILOVER_NODEGROUP_NAME: "cbci-workers",
        FAILOVER_NODEGROUP_MIN: "3",
        FAILOVER_NODEGROUP_DESIRED: "6",
        FAILOVER_NODEGROUP_MAX: "12",
        FAILOVER_HOSTED_ZONE_ID: "/hostedzone/Z0123456789ABCDEFGHIJ",
        FAILOVER_RECORD_NAME: "CI.Example.com.",
        FAILOVER_LB_TAG: "velero-dr/ingress=failover",
        FAILOVER_NAMESPACES: "cbci,cbci-agents",
        FAILOVER_TOPIC_ARN: `ref:${topic().id}`,
        SLACK_WEBHOOK_SECRET_ARN: SLACK_WEBHOOK_SECRET,
        POWERTOOLS_SERVICE_NAME: "velero-dr-failover",
      });
      for (const step of steps) expect(envOf(step), step).toEqual(env);
      // arrange: the deployed values of the stack's references
      const deployed = {
        ...(env as Record<string, string>),
        LEDGER_TABLE: "test-velero-dr-Replication-Ledger",
        FAILOVER_TOPIC_ARN: `arn:aws:sns:${FAILOVER}:${ACCOUNT}:test-velero-dr-Failover-Approvers`,
      };
      // act
      const loaded = loadFailoverConfig(deployed);
      // assert
      const { config } = failoverSettingsFromEnv(SETTINGS) ?? {};
      expect({
        ...loaded,
        ledgerTable: undefined,
        topicArn: undefined,
        slackWebhookSecretArn: undefined,
      }).toEqual({
        ...config,
        ledgerTable: undefined,
        topicArn: undefined,
        slackWebhookSecretArn: undefined,
      });
      expect(loaded.slackWebhookSecretArn).toBe(SLACK_WEBHOOK_SECRET);
      expect(loaded).toMatchObject({
        hostedZoneId: "Z0123456789ABCDEFGHIJ",
        recordName: "ci.example.com.",
        scaling: { min: 3, desired: 6, max: 12 },
        loadBalancer: { tag: { key: "velero-dr/ingress", value: "failover" } },
      });
      expect(loaded.slackWebhookUrl).toBeUndefined();
    });

    it("gives the approval endpoint and the request step their settings, which their own loaders accept", () => {
      // arrange: the deployed values of the stack's references
      const deployed = {
        LEDGER_TABLE: "test-velero-dr-Replication-Ledger",
        APPROVAL_SECRET_ARN: `arn:aws:secretsmanager:${FAILOVER}:${ACCOUNT}:secret:ApprovalKeys-AbCdEf`,
        APPROVAL_BASE_URL: `https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.${FAILOVER}.on.aws/`,
        FAILOVER_TOPIC_ARN: `arn:aws:sns:${FAILOVER}:${ACCOUNT}:test-velero-dr-Failover-Approvers`,
      };
      const endpoint = envOf("approval") as Record<string, string>;
      const request = envOf("requestApproval") as Record<string, string>;
      expect(endpoint).toMatchObject({
        FAILOVER_REGION: FAILOVER,
        SLACK_SECRET_ARN: SLACK_SECRET,
        SLACK_APPROVERS: "U0ALICE01,U0BOB0002",
        APPROVAL_TTL_MINUTES: "45",
        TWO_PERSON_RULE: "true",
      });
      expect(request).toMatchObject({
        FAILOVER_REGION: FAILOVER,
        APPROVAL_TTL_MINUTES: "45",
        SLACK_WEBHOOK_SECRET_ARN: SLACK_WEBHOOK_SECRET,
        FAILOVER_TOPIC_ARN: `ref:${topic().id}`,
        // one approval message per approver, each with links naming them
        APPROVER_EMAILS: "alice@example.com,bob@example.com",
      });
      // the endpoint needs no list: a per-approver link's signed claim names its approver
      expect(endpoint.APPROVER_EMAILS).toBeUndefined();
      // each only what it uses: the endpoint no webhook, the request step no signing secret
      expect(endpoint.SLACK_WEBHOOK_SECRET_ARN).toBeUndefined();
      expect(request.SLACK_SECRET_ARN).toBeUndefined();
      // act
      const endpointConfig = loadApprovalConfig({ ...endpoint, ...deployed });
      const requestConfig = loadRequestApprovalConfig({ ...request, ...deployed });
      // assert
      expect(endpointConfig).toMatchObject({
        ttlMinutes: 45,
        twoPersonRule: true,
        slack: { secretArn: SLACK_SECRET, approvers: ["U0ALICE01", "U0BOB0002"] },
      });
      expect(requestConfig).toMatchObject({
        ttlMinutes: 45,
        slackWebhookSecretArn: SLACK_WEBHOOK_SECRET,
        approverEmails: ["alice@example.com", "bob@example.com"],
      });
    });

    it("maps the standby cluster's Kubernetes callers, and only them, to one group by EKS access entries", () => {
      const entries = resources(t(), "AWS::EKS::AccessEntry").map((e) => flat(e.props));
      expect(entries).toEqual(
        (["preflight", "startRestore", "waitRestore"] as const).map((step) =>
          expect.objectContaining({
            ClusterName: "cbci-standby",
            PrincipalArn: `${roleOf(step)}.Arn`,
            KubernetesGroups: [FAILOVER_KUBERNETES_GROUP],
            Type: "STANDARD",
          }),
        ),
      );
      // no AWS-managed access policy (they would not cover Velero's resources anyway): RBAC decides
      for (const e of entries) expect((e as Record<string, Json>).AccessPolicies).toBeUndefined();
    });
  });

  describe("IAM", () => {
    const memo = (actions: string[]) => ({
      actions: actions.sort(),
      resources: [tableArn()],
      condition: { "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["FAILOVER#*"] } },
    });
    const approvalItems = (actions: string[]) => ({
      actions: actions.sort(),
      resources: [tableArn()],
      condition: { "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["APPROVAL#*"] } },
    });
    const publish = () => ({
      PublishToApprovers: { actions: ["sns:Publish"], resources: [`ref:${topic().id}`] },
      ApproversTopicKeyViaSns: {
        actions: ["kms:Decrypt", "kms:GenerateDataKey*"],
        resources: [`${key().id}.Arn`],
        condition: { StringEquals: { "kms:ViaService": `sns.${FAILOVER}.amazonaws.com` } },
      },
      // the stage messages and the report go to Slack too, through the webhook in its secret
      ReadSlackWebhook: { actions: ["secretsmanager:GetSecretValue"], resources: [SLACK_WEBHOOK_SECRET] },
    });
    const secrets = (slack: string) => ({
      ReadApprovalSecrets: {
        actions: ["secretsmanager:GetSecretValue"],
        resources: [`ref:${secret().id}`, slack],
      },
    });
    const resume = {
      ResumeFailoverWorkflow: {
        actions: ["states:SendTaskFailure", "states:SendTaskSuccess"],
        resources: [MACHINE_ARN],
      },
    };

    it("scopes each step to the named cluster, node group, hosted zone and record, and its ledger items", () => {
      expect(grants("preflight")).toEqual({
        FailoverMemo: memo(["dynamodb:GetItem", "dynamodb:PutItem"]),
        LedgerStatusIndexRead: { actions: ["dynamodb:Query"], resources: [`${tableArn()}/index/byStatus`] },
        StandbyClusterDescribeCluster: { actions: ["eks:DescribeCluster"], resources: [CLUSTER_ARN] },
        StandbyClusterDescribeNodegroup: { actions: ["eks:DescribeNodegroup"], resources: [NODEGROUP_ARN] },
        ReadFailoverRecord: { actions: ["route53:ListResourceRecordSets"], resources: [ZONE_ARN] },
        FindFailoverLoadBalancer: {
          actions: ["elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTags"],
          resources: ["*"],
          condition: { StringEquals: { "aws:RequestedRegion": FAILOVER } },
        },
        ...publish(), // the stage messages
      });
      expect(grants("scaleNodegroup")).toEqual({
        FailoverMemo: memo(["dynamodb:GetItem", "dynamodb:PutItem"]),
        StandbyClusterDescribeNodegroupUpdateNodegroupConfig: {
          actions: ["eks:DescribeNodegroup", "eks:UpdateNodegroupConfig"],
          resources: [NODEGROUP_ARN],
        },
        ...publish(),
      });
      expect(grants("waitNodegroup")).toEqual({
        FailoverMemo: memo(["dynamodb:GetItem"]),
        StandbyClusterDescribeNodegroup: { actions: ["eks:DescribeNodegroup"], resources: [NODEGROUP_ARN] },
        StandbyClusterDescribeUpdate: {
          actions: ["eks:DescribeUpdate"],
          resources: [CLUSTER_ARN, NODEGROUP_ARN],
        },
      });
      for (const step of ["startRestore", "waitRestore"] as const) {
        expect(grants(step), step).toEqual({
          // the stage message's once-only claim
          FailoverMemo: memo(["dynamodb:GetItem", "dynamodb:PutItem"]),
          StandbyClusterDescribeCluster: { actions: ["eks:DescribeCluster"], resources: [CLUSTER_ARN] },
          ...publish(),
        });
      }
      expect(grants("switchDns")).toEqual({
        FailoverMemo: memo(["dynamodb:GetItem", "dynamodb:PutItem"]),
        ReadFailoverRecord: { actions: ["route53:ListResourceRecordSets"], resources: [ZONE_ARN] },
        SwitchFailoverRecord: {
          actions: ["route53:ChangeResourceRecordSets"],
          resources: [ZONE_ARN],
          condition: {
            "ForAllValues:StringEquals": {
              // normalized as Route 53 compares it: lower case, no trailing dot
              "route53:ChangeResourceRecordSetsNormalizedRecordNames": ["ci.example.com"],
              "route53:ChangeResourceRecordSetsRecordTypes": ["A"],
              "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
            },
          },
        },
        WaitForRecordChange: { actions: ["route53:GetChange"], resources: ["arn:aws:route53:::change/*"] },
        ...publish(),
      });
      expect(grants("scaleBack")).toEqual({
        FailoverMemo: memo(["dynamodb:GetItem", "dynamodb:PutItem"]),
        StandbyClusterDescribeNodegroupUpdateNodegroupConfig: {
          actions: ["eks:DescribeNodegroup", "eks:UpdateNodegroupConfig"],
          resources: [NODEGROUP_ARN],
        },
        ...publish(),
      });
      // the report: its once-only publish and the audit item FAILOVER#<execution> / AUDIT
      expect(grants("report")).toEqual({
        FailoverMemo: memo(["dynamodb:GetItem", "dynamodb:PutItem"]),
        ...publish(),
      });
    });

    it("lets the approval endpoint and the request step resume only this machine, with their own secrets and items", () => {
      expect(grants("approval")).toEqual({
        ApprovalItems: approvalItems([
          "dynamodb:GetItem",
          "dynamodb:PutItem",
          "dynamodb:UpdateItem",
          "dynamodb:DeleteItem",
          "dynamodb:ConditionCheckItem",
        ]),
        ...secrets(SLACK_SECRET),
        ...resume,
      });
      // the request step stores the task token, and replays a decision already recorded
      expect(grants("requestApproval")).toEqual({
        ApprovalItems: approvalItems(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"]),
        ...secrets(SLACK_WEBHOOK_SECRET),
        ...publish(),
        ...resume,
      });
    });

    it("grants no wildcard action, and Resource '*' only for the ELBv2 lookup (region-bound) and Step Functions' log delivery", () => {
      const everything = allStatements(t());
      for (const s of everything) {
        // A key policy's statement for the account root delegates the key to IAM (CDK's default).
        const delegation =
          s.kind === "key" && JSON.stringify(s.principal) === `{"AWS":"arn:aws:iam::${ACCOUNT}:root"}`;
        for (const a of s.actions) {
          if (delegation && a === "kms:*") continue;
          expect(a, `${s.holder}: ${a}`).not.toMatch(/^\*$|:\*$/);
        }
      }
      const star = everything.filter((s) => s.kind === "identity" && s.resources.includes("*"));
      const machineRole = String(flat(machine().props.RoleArn)).replace(/\.Arn$/, "");
      const policiesOf = (role: string) =>
        resources(t(), "AWS::IAM::Policy")
          .filter((p) => policyRoles(p).includes(role))
          .map((p) => p.id);
      expect(star.map((s) => s.holder).sort()).toEqual(
        [...policiesOf(roleOf("preflight")), ...policiesOf(machineRole)].sort(),
      );
      for (const s of star) {
        if (s.actions.some((a) => a.startsWith("elasticloadbalancing:"))) {
          expect(s.actions.every((a) => /^elasticloadbalancing:Describe/.test(a))).toBe(true);
          expect(s.condition).toEqual({ StringEquals: { "aws:RequestedRegion": FAILOVER } });
        } else {
          expect(s.actions.every((a) => a.startsWith("logs:"))).toBe(true);
        }
      }
      // Only the switch step may change DNS, only the scaling steps may resize the node group.
      const holdersOf = (action: string) =>
        [...new Set(everything.filter((s) => s.actions.includes(action)).map((s) => s.holder))].sort();
      expect(holdersOf("route53:ChangeResourceRecordSets")).toEqual(policiesOf(roleOf("switchDns")));
      expect(holdersOf("eks:UpdateNodegroupConfig")).toEqual(
        [...policiesOf(roleOf("scaleNodegroup")), ...policiesOf(roleOf("scaleBack"))].sort(),
      );
      expect(holdersOf("states:SendTaskSuccess")).toEqual(
        [...policiesOf(roleOf("approval")), ...policiesOf(roleOf("requestApproval"))].sort(),
      );
    });
  });

  it("passes cfn-lint (the Failover template, and Replication's with the exports it gains)", async () => {
    // arrange
    const dir = await mkdtemp(path.join(tmpdir(), "velero-dr-cfn-"));
    const files: string[] = [];
    for (const s of [failover, replication]) {
      const file = path.join(dir, `${s.stackName}.json`);
      await writeFile(file, JSON.stringify(s.template, null, 2));
      files.push(file);
    }
    // act: W3005 (redundant DependsOn) is CDK's own style; nothing else is ignored.
    const run = spawnSync("cfn-lint", ["--ignore-checks", "W3005", "--", ...files], { encoding: "utf8" });
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

describe("failover settings at synthesis", () => {
  it.each([
    [{ DR_FAILOVER_NODEGROUP_DESIRED: "0" }, /DR_FAILOVER_NODEGROUP_MIN <= DR_FAILOVER_NODEGROUP_DESIRED/],
    [{ DR_FAILOVER_NODEGROUP_MAX: "lots" }, /DR_FAILOVER_NODEGROUP_MAX must be an integer, got "lots"/],
    [{ DR_FAILOVER_RECORD_TYPE: "CNAME" }, /DR_FAILOVER_RECORD_TYPE must be one of A, AAAA, got "CNAME"/],
    [
      { DR_FAILOVER_LB_NAME: "ingress" },
      /exactly one of DR_FAILOVER_LB_NAME and DR_FAILOVER_LB_TAG must be set/,
    ],
    [{ DR_FAILOVER_HOSTED_ZONE_ID: "example.com" }, /DR_FAILOVER_HOSTED_ZONE_ID is not a hosted zone id/],
    [{ DR_FAILOVER_NODEGROUP_NAME: undefined }, /DR_FAILOVER_NODEGROUP_NAME is required but not set/],
    [
      { DR_SLACK_SECRET_ARN: SLACK_SECRET.replace(FAILOVER, PRIMARY) },
      /DR_SLACK_SECRET_ARN must be a secret in the failover region us-west-2/,
    ],
    [{ DR_APPROVAL_TTL_MINUTES: "2" }, /DR_APPROVAL_TTL_MINUTES must be between 5 and 1440, got 2/],
    [{ DR_APPROVAL_TIMEOUT_MINUTES: "soon" }, /DR_APPROVAL_TIMEOUT_MINUTES must be an integer/],
    [
      { DR_APPROVAL_TIMEOUT_MINUTES: "60" },
      /DR_APPROVAL_TIMEOUT_MINUTES must be between 5 and DR_APPROVAL_TTL_MINUTES \(45\), got 60/,
    ],
    [
      { DR_SLACK_SECRET_ARN: undefined, DR_SLACK_APPROVERS: undefined },
      /DR_SLACK_WEBHOOK_SECRET_ARN needs DR_SLACK_SECRET_ARN and DR_SLACK_APPROVERS/,
    ],
    [
      { DR_SLACK_WEBHOOK_SECRET_ARN: "velero-dr/slack" },
      /DR_SLACK_WEBHOOK_SECRET_ARN must be a Secrets Manager secret ARN/,
    ],
    [{ DR_APPROVER_EMAILS: "alice" }, /DR_APPROVER_EMAILS must list email addresses, got "alice"/],
    [{ DR_VELERO_BUCKET: undefined }, /DR_FAILOVER_CLUSTER_NAME needs DR_VELERO_BUCKET/],
    [
      { DR_FAILOVER_CLUSTER_NAME: undefined },
      /DR_FAILOVER_NODEGROUP_NAME, .* set but DR_FAILOVER_CLUSTER_NAME is not/,
    ],
  ])("fails the synthesis naming the DR_* setting (%o)", async (over, message) => {
    await expect(synthRegion(FAILOVER, { env: { ...SETTINGS, ...over } })).rejects.toThrow(message);
  });
});
