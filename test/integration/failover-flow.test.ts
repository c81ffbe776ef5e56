/**
 * The whole failover workflow, locally: the real definition (functions/core/failover-machine.ts) on
 * aws-local-stepfunctions with its tasks bound to the real handlers (local/failover-runner.ts), the
 * emulator behind every SDK client, the Kubernetes API stand-in, and the approval decided by
 * following the emailed link over HTTP to the real approval endpoint.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EKSClient } from "@aws-sdk/client-eks";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { CreateStateMachineCommand, DescribeExecutionCommand, SFNClient } from "@aws-sdk/client-sfn";
import type { FinalizeRequestMiddleware } from "@smithy/types";
import { afterEach, describe, expect, it } from "vitest";
import { main } from "../../cli/dr.js";
import { EXECUTION_ID, verifyApproval } from "../../functions/core/approval.js";
import { parseApprovalKeys } from "../../functions/core/approval-config.js";
import { REJECTED } from "../../functions/core/failover-machine.js";
import {
  approvalLinkIn,
  followApprovalLink,
  type LocalFailoverOptions,
  LocalFailoverRunner,
  type LocalService,
  runWithApprover,
} from "../../local/failover-runner.js";
import { createFailoverWorld, type FailoverWorld, registerReadyBackup } from "../../local/failover-world.js";
import { freePort } from "../../local/moto.js";
import { awsError, LOCAL_CREDENTIALS } from "../../local/runtime.js";
import { useMoto } from "../support/harness.js";
import { captureIo } from "../support/io.js";

const moto = useMoto();

const FAILOVER = "us-west-2";
const PRIMARY = "us-east-1";
const BACKUP = "cbci-dr-20261127120000";

interface Call {
  service: string;
  command: string;
  signingRegion: string;
  host: string;
}

/** A fault to inject into one SDK call of the runner's clients: an error to throw instead of calling. */
type Fault = (service: LocalService, command: string, input: Record<string, unknown>) => Error | undefined;

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * The failover region with one DR-ready backup, and a runner over it. Every call of the runner's
 * clients is recorded after signing (service, command, signing region, host); `fault` may fail one.
 */
async function setup(
  o: {
    machine?: LocalFailoverOptions["machine"];
    clientConfig?: LocalFailoverOptions["clientConfig"];
    approval?: LocalFailoverOptions["approval"];
  } = {},
) {
  const world: FailoverWorld = await createFailoverWorld({
    endpoint: moto().endpoint,
    failoverRegion: FAILOVER,
    primaryRegion: PRIMARY,
    standIn: { knownBackups: () => [BACKUP] },
  });
  cleanups.push(() => world.stop());
  await registerReadyBackup(world.ledger, BACKUP, new Date(Date.now() - 10 * 60_000));
  const calls: Call[] = [];
  const faults: { fault?: Fault } = {};
  const runner = await LocalFailoverRunner.start({
    endpoint: moto().endpoint,
    failover: world.config(),
    logLevel: "SILENT",
    ...(o.machine ? { machine: o.machine } : {}),
    ...(o.clientConfig ? { clientConfig: o.clientConfig } : {}),
    ...(o.approval ? { approval: o.approval } : {}),
    onClient: (client, service) => {
      const stack = (client as EKSClient).middlewareStack;
      stack.add(
        (next, context) => async (args) => {
          const injected = faults.fault?.(
            service,
            context.commandName ?? "",
            args.input as Record<string, unknown>,
          );
          if (injected) throw injected;
          return next(args);
        },
        { step: "initialize", name: "testFaults" },
      );
      const recorder =
        <I extends object, O extends object>(): FinalizeRequestMiddleware<I, O> =>
        (next, ctx) =>
        async (args) => {
          const req = args.request as { hostname?: string; headers?: Record<string, string> };
          const auth = req.headers?.authorization ?? req.headers?.Authorization ?? "";
          calls.push({
            service,
            command: ctx.commandName ?? "?",
            signingRegion: /Credential=[^/]+\/\d{8}\/([^/]+)\//.exec(auth)?.[1] ?? "unsigned",
            host: req.hostname ?? "?",
          });
          return next(args);
        };
      stack.addRelativeTo(recorder(), {
        relation: "after",
        toMiddleware: "httpSigningMiddleware",
        name: "recordCalls",
      });
    },
  });
  cleanups.push(() => runner.stop());
  const count = (command: string) => calls.filter((c) => c.command === command).length;
  const request = (drill = false) =>
    runner.request({ reason: "us-east-1 is unreachable", requestedBy: "alice@example.com", drill });
  return { world, runner, calls, count, faults, request };
}

describe("the failover workflow through the local runner", () => {
  it("completes: approved by following the emailed link over HTTP, node group scaled, one Restore, DNS on the failover LB", async () => {
    // arrange
    const s = await setup();
    const req = s.request();

    // act
    const { record, email, followed } = await runWithApprover(s.runner, req, "approve");

    // assert: every Task state of the real definition was bound to a real handler
    expect(s.runner.bindings).toEqual({
      Preflight: "failover-steps.preflight",
      RequestApproval: "request-approval (waits for its task token)",
      ScaleNodegroup: "failover-steps.scaleNodegroup",
      WaitNodegroup: "failover-steps.waitNodegroup",
      StartRestore: "failover-steps.startRestore",
      WaitRestore: "failover-steps.waitRestore",
      SwitchDns: "failover-steps.switchDns",
      ScaleBack: "failover-steps.scaleBack",
      Report: "failover-steps.report",
      ReportFailure: "failover-steps.report",
    });
    // the email: what is restored, what is lost, who asks and why, the links to the endpoint
    expect(email?.subject).toMatch(new RegExp(`^Approve FAILOVER\\? ${BACKUP}, data loss 10 min( \\d+ s)?$`));
    expect(email?.message).toContain(`Backup: ${BACKUP}`);
    expect(email?.message).toContain("Data-loss window: 10 min");
    expect(email?.message).toContain("Reason: us-east-1 is unreachable");
    expect(email?.message).toContain("Requested by: alice@example.com");
    expect(email?.message).toContain(
      `${s.runner.functionUrl.url}/approval?execution=${req.executionId}&action=approve&token=`,
    );
    expect(email?.message).not.toMatch(/local-task-token/);
    // the approver: the confirmation page (GET), then its form (POST)
    expect(followed?.page).toEqual({ status: 200, title: "Approve failover?" });
    expect(followed?.decision).toMatchObject({ status: 200, title: "Failover approved" });
    // the execution
    expect(record).toMatchObject({
      status: "SUCCEEDED",
      approval: { approvedBy: "email:approvers-topic", channel: "email" },
      report: {
        drill: false,
        backup: { name: BACKUP },
        restore: { phase: "Completed" },
        dns: { switched: true },
        nodegroup: { target: { desired: 3 } },
      },
    });
    expect(record.report?.dataLossSeconds).toBeGreaterThanOrEqual(600);
    expect(Object.keys(record.stateSeconds)).toEqual(
      expect.arrayContaining(["Preflight", "RequestApproval", "Recover", "SwitchDns", "Report"]),
    );
    // the world
    expect(await s.world.alias()).toMatchObject({
      DNSName: `dualstack.${s.world.failoverLb.dnsName.toLowerCase()}.`,
      HostedZoneId: s.world.failoverLb.canonicalHostedZoneId,
    });
    expect(await s.world.nodegroup()).toMatchObject({ status: "ACTIVE", desiredSize: 3, minSize: 3 });
    expect(s.world.standIn.counts.restoreCreates).toBe(1);
    expect(s.world.standIn.list()[0]).toMatchObject({
      spec: { backupName: BACKUP, includedNamespaces: ["cbci"] },
      status: { phase: "Completed" },
    });
    expect(s.count("UpdateNodegroupConfigCommand")).toBe(1);
    expect(s.count("ChangeResourceRecordSetsCommand")).toBe(1);
    // a message per stage, then the report; the audit record says who approved
    const name = req.executionId.split(":").pop();
    const reports = await s.world.reports();
    expect(reports.map((r) => r.Subject).sort()).toEqual(
      [
        `DR failover ${name}: preflight passed`,
        `DR failover ${name}: recovery started`,
        `DR failover ${name}: restore Completed`,
        `DR failover ${name}: DNS switched`,
        `Failover Completed: ${BACKUP}`,
      ].sort(),
    );
    expect(record.report).toMatchObject({ outcome: "succeeded", approvedBy: "email:approvers-topic" });
    // one callback resumed it
    expect(s.runner.callbacks.calls).toEqual([
      { kind: "succeed", executionId: req.executionId, accepted: true },
    ]);

    // act again: the same link once more (a second click, a replay)
    const again = await followApprovalLink(approvalLinkIn(email?.message ?? "", "approve"));

    // assert: refused, nothing resumed twice
    expect(again.page.status).toBe(409);
    expect(s.runner.callbacks.calls).toHaveLength(1);
  });

  it("per-approver emails: each approver gets a message of their own; approving through one records `email:<address>`", async () => {
    // arrange
    const ALICE = "alice@example.com";
    const BOB = "bob@example.com";
    const s = await setup({ approval: { approverEmails: [ALICE, BOB] } });
    const req = s.request();

    // act: the local approver reads the first approver's message and follows its link
    const { record, email, followed } = await runWithApprover(s.runner, req, "approve");

    // assert: one approval message per approver, addressed by the SNS attribute, in order
    const requests = s.runner.mailbox.messages.filter((m) => m.message.includes("/approval?"));
    expect(requests.map((m) => [m.topicArn, m.approver])).toEqual([
      [s.runner.approversTopicArn, ALICE],
      [s.runner.approversTopicArn, BOB],
    ]);
    expect(email?.approver).toBe(ALICE);
    expect(email?.message).toContain(`These links are yours (${ALICE})`);
    expect(followed?.decision).toMatchObject({ status: 200, title: "Failover approved" });
    expect(record).toMatchObject({
      status: "SUCCEEDED",
      approval: { approvedBy: `email:${ALICE}`, channel: "email" },
      report: { outcome: "succeeded", approvedBy: `email:${ALICE}` },
    });
    // every other message (stages, the report) is for all: each approver's filter policy lets it in
    const others = s.runner.mailbox.messages.filter((m) => !m.message.includes("/approval?"));
    expect(others.length).toBeGreaterThanOrEqual(5);
    expect(new Set(others.map((m) => m.approver))).toEqual(new Set(["all"]));

    // act again: bob's own link, after the decision
    const bob = requests[1]?.message ?? "";
    const late = await followApprovalLink(approvalLinkIn(bob, "approve"));

    // assert: the first decision won; nothing resumed twice
    expect(late.page.status).toBe(409);
    expect(s.runner.callbacks.calls).toHaveLength(1);
  });

  it("two-person rule: two distinct email approvers, each through their own link, approve it", async () => {
    // arrange
    const ALICE = "alice@example.com";
    const BOB = "bob@example.com";
    const s = await setup({ approval: { approverEmails: [ALICE, BOB], twoPersonRule: true } });
    const req = s.request();

    // act: alice, then bob, each following the approve link of the message addressed to them
    const { record, followedBy } = await runWithApprover(s.runner, req, "approve", {
      approvers: [ALICE, BOB],
    });

    // assert: alice's approval alone did not resume it; bob's completed it
    expect(followedBy?.map((f) => [f.approver, f.email.approver, f.followed.decision?.title])).toEqual([
      [ALICE, ALICE, "Approval recorded: a second approver is needed"],
      [BOB, BOB, "Failover approved"],
    ]);
    expect(record).toMatchObject({
      status: "SUCCEEDED",
      approval: {
        approvedBy: `email:${ALICE} and email:${BOB}`,
        channel: "email",
      },
    });
    expect(s.runner.callbacks.calls).toEqual([
      { kind: "succeed", executionId: req.executionId, accepted: true },
    ]);
  });

  it("two-person rule: the same email approver twice does not count as two", async () => {
    // arrange
    const ALICE = "alice@example.com";
    const s = await setup({
      approval: { approverEmails: [ALICE, "bob@example.com"], twoPersonRule: true },
      machine: { approvalTimeoutSeconds: 3 },
    });
    const req = s.request();

    // act: alice follows her approve link, then the same link again (the same person, the same claim)
    const { record, followedBy } = await runWithApprover(s.runner, req, "approve", {
      approvers: [ALICE, ALICE],
    });

    // assert: the second is refused; nobody else approved, so the approval timed out
    expect(followedBy?.[0]?.followed.decision?.title).toBe("Approval recorded: a second approver is needed");
    expect(followedBy?.[1]?.followed.decision).toMatchObject({
      status: 409,
      title: "Approval refused",
      body: expect.stringContaining("already approved by you; a second approver is needed"),
    });
    expect(record.status).toBe("FAILED");
    expect(s.runner.callbacks.calls.filter((c) => c.accepted)).toEqual([]);
  });

  it("drills: restores into cbci-drill, leaves DNS on the primary LB, scales the node group back", async () => {
    const s = await setup();

    const { record } = await runWithApprover(s.runner, s.request(true), "approve");

    expect(record.status).toBe("SUCCEEDED");
    expect(record.report).toMatchObject({
      drill: true,
      dns: { switched: false },
      nodegroup: { scaledBack: true },
    });
    expect((await s.world.alias())?.DNSName).toBe(s.world.primaryAlias.DNSName);
    expect((await s.world.nodegroup()).desiredSize).toBe(0);
    expect(s.world.standIn.list()[0]).toMatchObject({ spec: { namespaceMapping: { cbci: "cbci-drill" } } });
    expect(s.count("ChangeResourceRecordSetsCommand")).toBe(0);
  });

  it("a rejection ends it failed with the reason, before anything changed", async () => {
    // arrange
    const s = await setup();
    const req = s.request();

    // act
    const { record, followed } = await runWithApprover(s.runner, req, "reject");

    // assert
    expect(followed?.page).toEqual({ status: 200, title: "Reject failover?" });
    expect(followed?.decision).toMatchObject({ status: 200, title: "Failover rejected" });
    expect(record).toMatchObject({
      status: "FAILED",
      error: "FailoverFailed",
      failure: {
        error: REJECTED,
        cause: expect.stringMatching(/^rejected by email:approvers-topic via email at /),
      },
    });
    expect(record.report).toMatchObject({
      executionId: req.executionId,
      restore: null,
      dns: { switched: false },
    });
    expect((await s.world.nodegroup()).desiredSize).toBe(0);
    expect((await s.world.alias())?.DNSName).toBe(s.world.primaryAlias.DNSName);
    expect(s.world.standIn.counts.restoreCreates).toBe(0);
    expect(s.count("UpdateNodegroupConfigCommand") + s.count("ChangeResourceRecordSetsCommand")).toBe(0);
    // the failure report went out, after the preflight's message
    const name = req.executionId.split(":").pop();
    expect((await s.world.reports()).map((r) => r.Subject).sort()).toEqual(
      [`DR failover ${name}: preflight passed`, `Failover FAILED: ${BACKUP}`].sort(),
    );
    expect(record.report).toMatchObject({ outcome: "failed", error: { error: REJECTED } });
  });

  it("the approval timeout ends it; a late approval is recorded but resumes nothing", async () => {
    // arrange: the workflow waits one second for a decision
    const s = await setup({ machine: { approvalTimeoutSeconds: 1 } });
    const req = s.request();

    // act: nobody decides in time
    const { record, email } = await runWithApprover(s.runner, req, "none");
    const late = await followApprovalLink(approvalLinkIn(email?.message ?? "", "approve"));

    // assert
    expect(record).toMatchObject({ status: "FAILED", failure: { error: "States.Timeout" } });
    expect(late.decision).toMatchObject({
      status: 502,
      title: "Failover approved, but the workflow could not be resumed",
    });
    expect(s.runner.callbacks.calls).toEqual([
      { kind: "succeed", executionId: req.executionId, accepted: false, error: "TaskTimedOut" },
    ]);
    expect((await s.world.nodegroup()).desiredSize).toBe(0);
    expect(s.world.standIn.counts.restoreCreates).toBe(0);
    expect((await s.world.alias())?.DNSName).toBe(s.world.primaryAlias.DNSName);
  });

  it("completes with every primary-region endpoint refusing connections; every call is signed for the failover region", async () => {
    // arrange: a client for the primary region, or one left to the environment's defaults, would
    // get a port nobody listens on
    const closed = `http://127.0.0.1:${await freePort()}`;
    const s = await setup({
      clientConfig: (service, region) => ({
        endpoint: region === PRIMARY && service !== "route53" ? closed : moto().endpoint,
        credentials: LOCAL_CREDENTIALS,
      }),
    });
    const saved = { region: process.env.AWS_REGION, endpoint: process.env.AWS_ENDPOINT_URL };
    process.env.AWS_REGION = PRIMARY;
    process.env.AWS_ENDPOINT_URL = closed;
    let status: string;
    try {
      // act
      status = (await runWithApprover(s.runner, s.request(), "approve")).record.status;
    } finally {
      if (saved.region === undefined) delete process.env.AWS_REGION;
      else process.env.AWS_REGION = saved.region;
      if (saved.endpoint === undefined) delete process.env.AWS_ENDPOINT_URL;
      else process.env.AWS_ENDPOINT_URL = saved.endpoint;
    }

    // assert: completed; the steps, the approval request and the endpoint called only the failover
    // region (Route 53 too: with a custom endpoint the SDK signs with the client's region), on the emulator
    expect(status).toBe("SUCCEEDED");
    expect(new Set(s.calls.map((c) => c.service))).toEqual(
      new Set(["dynamodb", "secretsmanager", "sns", "eks", "route53", "elbv2"]),
    );
    expect(s.calls.filter((c) => c.signingRegion !== FAILOVER)).toEqual([]);
    expect(new Set(s.calls.map((c) => c.host))).toEqual(new Set(["127.0.0.1"]));
    expect((await s.world.alias())?.DNSName).toBe(`dualstack.${s.world.failoverLb.dnsName.toLowerCase()}.`);
  });

  it.each([
    ["the DNS switch", "route53", "ChangeResourceRecordSetsCommand"],
    ["the report's publish", "sns", "PublishCommand"],
  ] as const)(
    "a re-run of an execution that failed at %s completes with one Restore, one DNS change, one node group update",
    async (_what, service, command) => {
      // arrange: the first run fails (a terminal error) at one call
      const s = await setup();
      const req = s.request();
      let failing = true;
      s.faults.fault = (svc, cmd, input) =>
        failing &&
        svc === service &&
        cmd === command &&
        (svc !== "sns" || input.TopicArn === s.world.reportsTopicArn)
          ? awsError("AccessDenied", "injected: not allowed", 403)
          : undefined;
      const first = await runWithApprover(s.runner, req, "approve");
      failing = false;

      // act: the same execution again
      const rerun = await runWithApprover(s.runner, req, "none");

      // assert: the first failed, the re-run completed without asking again (the decision stands)
      expect(first.record.status).toBe("FAILED");
      expect(`${first.record.failure?.cause ?? ""} ${first.record.cause ?? ""}`).toMatch(
        /injected: not allowed/,
      );
      expect(rerun.record).toMatchObject({ status: "SUCCEEDED", approval: first.record.approval });
      expect(rerun.email).toBeUndefined();
      expect(s.runner.callbacks.calls.map((c) => [c.kind, c.accepted])).toEqual([
        ["succeed", true], // the approver's click
        ["succeed", true], // the re-run's RequestApproval replaying the recorded approval
      ]);
      // nothing done twice
      expect(s.world.standIn.counts.restoreCreates).toBe(1);
      expect(s.count("UpdateNodegroupConfigCommand")).toBe(1);
      expect(s.count("ChangeResourceRecordSetsCommand")).toBe(1);
      expect((await s.world.alias())?.DNSName).toBe(`dualstack.${s.world.failoverLb.dnsName.toLowerCase()}.`);
      expect((await s.world.nodegroup()).desiredSize).toBe(3);
      // the re-run's success report went out (a failure report does not use it up), and says so
      const subjects = (await s.world.reports()).map((r) => r.Subject);
      expect(subjects.filter((x) => x === `Failover Completed: ${BACKUP}`)).toHaveLength(1);
      if (service === "route53") expect(subjects).toContain(`Failover FAILED: ${BACKUP}`);
      expect(rerun.record.report).toMatchObject({ outcome: "succeeded" });
      expect(rerun.record.output).toMatchObject({
        steps: {
          preflight: { outcome: "unchanged" },
          scaleNodegroup: { outcome: "unchanged" },
          startRestore: { outcome: "unchanged", created: false },
        },
      });
    },
  );

  it("the approval request's links verify with the approval key, bound to the execution and the action", async () => {
    const s = await setup();
    const req = s.request();
    const { email } = await runWithApprover(s.runner, req, "approve");
    const secrets = new SecretsManagerClient({
      endpoint: moto().endpoint,
      region: FAILOVER,
      credentials: LOCAL_CREDENTIALS,
    });
    const secret = await secrets.send(new GetSecretValueCommand({ SecretId: s.runner.approvalSecretArn }));
    const keys = parseApprovalKeys(secret.SecretString ?? "", s.runner.approvalSecretArn);
    const token = new URL(approvalLinkIn(email?.message ?? "", "reject")).searchParams.get("token");
    expect(EXECUTION_ID.test(req.executionId)).toBe(true);
    expect(
      verifyApproval(
        token,
        { channel: "email", executionId: req.executionId, action: "reject" },
        keys,
        new Date(),
      ),
    ).toMatchObject({
      ok: true,
    });
    expect(
      verifyApproval(
        token,
        { channel: "email", executionId: req.executionId, action: "approve" },
        keys,
        new Date(),
      ),
    ).toMatchObject({
      ok: false,
      reason: "wrong-action",
    });
    expect(email?.message).not.toContain(JSON.parse(secret.SecretString ?? "{}").keys[0]);
  });

  it("the request-approval entrypoint fails at cold start naming the missing setting", () => {
    const env = {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      FAILOVER_REGION: FAILOVER,
      LEDGER_TABLE: "ledger",
    };
    const run = spawnSync("node_modules/.bin/tsx", ["functions/request-approval.ts"], {
      env,
      encoding: "utf8",
    });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/APPROVAL_BASE_URL is required but not set/);
  });
});

describe("dr failover", () => {
  const io = captureIo;

  it("local mode: request --local --approve runs it to the end; status --local shows it", async () => {
    // arrange: the steps' environment, as their functions get it, and a state directory
    const world = await createFailoverWorld({
      endpoint: moto().endpoint,
      standIn: { knownBackups: () => [BACKUP] },
    });
    cleanups.push(() => world.stop());
    await registerReadyBackup(world.ledger, BACKUP, new Date(Date.now() - 10 * 60_000));
    const dir = mkdtempSync(join(tmpdir(), "dr-failover-"));
    const saved = { ...process.env };
    Object.assign(process.env, world.env, { DR_LOCAL_STATE_DIR: dir, FAILOVER_POLL_SECONDS: "1" });
    try {
      // act
      const a = io();
      const code = await main(
        [
          "failover",
          "request",
          "--reason",
          "drill from the CLI",
          "--drill",
          "--local",
          "--endpoint",
          moto().endpoint,
          "--approve",
          "--json",
        ],
        a.io,
      );
      const b = io();
      const statusCode = await main(["failover", "status", "--local", "--json"], b.io);

      // assert
      expect(code, a.out.stderr).toBe(0);
      expect(a.out.stderr).toMatch(/approval email to arn:aws:sns:us-west-2:/);
      expect(a.out.stderr).toMatch(
        /local approver: GET 200 "Approve failover drill\?", POST 200 "Failover approved"/,
      );
      const view = JSON.parse(a.out.stdout) as Record<string, unknown>;
      expect(view).toMatchObject({
        status: "SUCCEEDED",
        drill: true,
        request: { reason: "drill from the CLI", requestedBy: "arn:aws:sts::123456789012:user/moto" },
        approval: { approvedBy: "email:approvers-topic" },
        report: { drill: true, restore: { phase: "Completed" } },
      });
      expect(statusCode).toBe(0);
      expect(JSON.parse(b.out.stdout)).toEqual(view);
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });

  it("AWS mode: request starts an execution named by its id with the request as input; status describes it", async () => {
    // arrange: the emulator's Step Functions (its executions do not run)
    const sfn = new SFNClient({
      endpoint: moto().endpoint,
      region: FAILOVER,
      credentials: LOCAL_CREDENTIALS,
    });
    const machine = await sfn.send(
      new CreateStateMachineCommand({
        name: "velero-dr-failover-test",
        definition: JSON.stringify({ StartAt: "A", States: { A: { Type: "Pass", End: true } } }),
        roleArn: "arn:aws:iam::123456789012:role/sfn",
      }),
    );
    const arn = machine.stateMachineArn ?? "";

    // act: with the operator's credentials (here, the emulator's)
    const saved = { ...process.env };
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: "local", AWS_SECRET_ACCESS_KEY: "local" });
    const a = io();
    const b = io();
    let code: number;
    let statusCode: number;
    let started: { executionId: string; executionArn: string };
    try {
      code = await main(
        [
          "failover",
          "request",
          "--reason",
          "us-east-1 is down",
          "--state-machine",
          arn,
          "--endpoint",
          moto().endpoint,
          "--json",
        ],
        a.io,
      );
      expect(code, a.out.stderr).toBe(0);
      started = JSON.parse(a.out.stdout) as { executionId: string; executionArn: string };
      statusCode = await main(
        [
          "failover",
          "status",
          started.executionId,
          "--state-machine",
          arn,
          "--endpoint",
          moto().endpoint,
          "--json",
        ],
        b.io,
      );
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }

    // assert
    expect(started.executionId).toMatch(/^failover-\d{8}T\d{6}Z-[0-9a-f]{6}$/);
    const described = await sfn.send(new DescribeExecutionCommand({ executionArn: started.executionArn }));
    expect(described.name).toBe(started.executionId);
    expect(JSON.parse(described.input ?? "{}")).toEqual({
      request: {
        executionId: started.executionId,
        reason: "us-east-1 is down",
        requestedBy: "arn:aws:sts::123456789012:user/moto",
        drill: false,
        requestedAt: expect.any(String),
      },
    });
    expect(statusCode).toBe(0);
    expect(JSON.parse(b.out.stdout)).toMatchObject({
      executionId: started.executionId,
      status: "RUNNING",
      drill: false,
      request: { reason: "us-east-1 is down" },
    });
  });

  it("refuses a request without a reason, and one without a state machine outside local mode", async () => {
    const a = io();
    expect(
      await main(
        ["failover", "request", "--state-machine", "arn:aws:states:us-west-2:123456789012:stateMachine:x"],
        a.io,
      ),
    ).toBe(64);
    expect(a.out.stderr).toMatch(/needs --reason/);
    const saved = { arn: process.env.FAILOVER_STATE_MACHINE_ARN, endpoint: process.env.AWS_ENDPOINT_URL };
    delete process.env.FAILOVER_STATE_MACHINE_ARN;
    delete process.env.AWS_ENDPOINT_URL;
    try {
      const b = io();
      expect(await main(["failover", "request", "--reason", "x"], b.io)).toBe(64);
      expect(b.out.stderr).toMatch(/--state-machine ARN or FAILOVER_STATE_MACHINE_ARN/);
    } finally {
      if (saved.arn !== undefined) process.env.FAILOVER_STATE_MACHINE_ARN = saved.arn;
      if (saved.endpoint !== undefined) process.env.AWS_ENDPOINT_URL = saved.endpoint;
    }
  });
});
