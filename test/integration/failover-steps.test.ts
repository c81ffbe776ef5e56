import { spawnSync } from "node:child_process";
import { Logger } from "@aws-lambda-powertools/logger";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DescribeClusterCommand, DescribeNodegroupCommand, EKSClient } from "@aws-sdk/client-eks";
import { Route53Client } from "@aws-sdk/client-route-53";
import { DynamoDBDocumentClient, GetCommand } from "@aws-sdk/lib-dynamodb";
import type { FinalizeRequestMiddleware } from "@smithy/types";
import type { Context } from "aws-lambda";
import { afterEach, describe, expect, it } from "vitest";
import { auditKey } from "../../functions/adapters/failover-memo.js";
import {
  type FailoverClient,
  type FailoverRuntimeOptions,
  makeFailoverRuntime,
  makeFailoverSteps,
  type StepOutput,
} from "../../functions/app/failover-steps.js";
import {
  type FailoverConfig,
  type FailoverRequest,
  type Notifier,
  STEPS,
} from "../../functions/core/failover.js";
import { createFailoverWorld, registerReadyBackup } from "../../local/failover-world.js";
import { type K8sStandIn, type K8sStandInOptions, STAND_IN_LABEL } from "../../local/k8s-standin.js";
import { freePort } from "../../local/moto.js";
import { LOCAL_CREDENTIALS } from "../../local/runtime.js";
import { useMoto } from "../support/harness.js";

const moto = useMoto();

const FAILOVER = "us-west-2";
const PRIMARY = "us-east-1";
const CLUSTER = "cbci-standby";
const NODEGROUP = "cbci-workers";
const PRIMARY_ALIAS = { DNSName: "", HostedZoneId: "" };
const STANDBY_SIZE = { min: 0, max: 1, desired: 0 };

const context = {
  functionName: "failover-steps",
  invokedFunctionArn: `arn:aws:lambda:${FAILOVER}:123456789012:function:failover-steps`,
  awsRequestId: "req-1",
  memoryLimitInMB: "256",
  getRemainingTimeInMillis: () => 60_000,
} as unknown as Context;

/** One SDK call as the wire saw it: after signing, so the region is the credential scope's. */
interface Call {
  service: string;
  command: string;
  signingRegion: string;
  host: string;
}

const standIns: K8sStandIn[] = [];
afterEach(async () => {
  await Promise.all(standIns.splice(0).map((s) => s.stop()));
});

/**
 * The failover region on the emulator (local/failover-world.ts: the standby cluster and its node
 * group at its idle size, the failover load balancer, the record aliased to the primary region's
 * load balancer, the reports topic, the Kubernetes API stand-in), plus one DR-ready backup.
 */
async function world(o: { standIn?: Partial<K8sStandInOptions>; backups?: "ready" | "none" } = {}) {
  const backupName = "cbci-dr-20261127120000";
  const f = await createFailoverWorld({
    endpoint: moto().endpoint,
    failoverRegion: FAILOVER,
    primaryRegion: PRIMARY,
    clusterName: CLUSTER,
    nodegroupName: NODEGROUP,
    standbySize: STANDBY_SIZE,
    standIn: { knownBackups: () => [backupName], ...o.standIn },
  });
  standIns.push(f.standIn);
  PRIMARY_ALIAS.DNSName = f.primaryAlias.DNSName;
  PRIMARY_ALIAS.HostedZoneId = f.primaryAlias.HostedZoneId;
  if (o.backups !== "none")
    await registerReadyBackup(f.ledger, backupName, new Date(Date.now() - 10 * 60_000));
  const eks = new EKSClient({ endpoint: moto().endpoint, credentials: LOCAL_CREDENTIALS, region: FAILOVER });
  const nodegroup = async () =>
    (await eks.send(new DescribeNodegroupCommand({ clusterName: CLUSTER, nodegroupName: NODEGROUP })))
      .nodegroup;
  const lb = (l: { dnsName: string; canonicalHostedZoneId: string }) => ({
    dnsName: l.dnsName,
    zoneId: l.canonicalHostedZoneId,
  });
  return {
    config: f.config(),
    standIn: f.standIn,
    backupName,
    failoverLb: lb(f.failoverLb),
    primaryLb: lb(f.primaryLb),
    alias: f.alias,
    nodegroup,
    reports: f.reports,
    eks,
    ledger: f.ledger,
  };
}

/**
 * The world's backup registered DR-ready with one CSI volume of the EBS CSI driver. (Such a backup
 * is DR-ready only once its copy exists; the ledger is seeded directly to check preflight's rule.)
 */
async function registerCsiBackup(w: Awaited<ReturnType<typeof world>>) {
  const csi = [
    {
      method: "csi" as const,
      pvName: "pvc-1",
      snapshotHandle: "snap-0123456789abcdef0",
      driver: "ebs.csi.aws.com",
    },
  ];
  await registerReadyBackup(w.ledger, w.backupName, new Date(Date.now() - 10 * 60_000), "cbci-dr", csi);
}

/** The audit item of an execution (FAILOVER#<execution> / AUDIT), as stored. */
async function auditItem(config: FailoverConfig, executionId: string) {
  const db = DynamoDBDocumentClient.from(
    new DynamoDBClient({ endpoint: moto().endpoint, credentials: LOCAL_CREDENTIALS, region: FAILOVER }),
  );
  const out = await db.send(new GetCommand({ TableName: config.ledgerTable, Key: auditKey(executionId) }));
  return out.Item;
}

/** The subjects published to the reports topic since the last look, sorted. */
const subjects = async (w: { reports(): Promise<Array<{ Subject?: string }>> }) =>
  (await w.reports()).map((r) => r.Subject).sort();

/** The steps wired to the emulator; every call the steps' clients make is recorded after signing. */
function stepsFor(
  config: FailoverConfig,
  clientConfig?: FailoverRuntimeOptions["clientConfig"],
  notifiers?: Notifier[],
) {
  const calls: Call[] = [];
  const record = (client: FailoverClient, service: string) => {
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
    (client as EKSClient).middlewareStack.addRelativeTo(recorder(), {
      relation: "after",
      toMiddleware: "httpSigningMiddleware",
      name: "recordCalls",
    });
  };
  const rt = makeFailoverRuntime(config, {
    clientConfig: clientConfig ?? (() => ({ endpoint: moto().endpoint, credentials: LOCAL_CREDENTIALS })),
    onClient: record,
    logger: new Logger({ serviceName: "failover-test", logLevel: "SILENT" }),
    ...(notifiers ? { notifiers } : {}),
  });
  const steps = makeFailoverSteps(rt);
  const count = (command: string) => calls.filter((c) => c.command === command).length;
  return { steps, calls, count };
}

type Steps = ReturnType<typeof makeFailoverSteps>;
type State = { request: FailoverRequest; steps: Record<string, StepOutput>; error?: unknown };

/** Runs the steps in order (or the first `upTo`), each taking the state and adding its output. */
async function run(
  steps: Steps,
  request: FailoverRequest,
  upTo: number = STEPS.length,
  state?: State,
): Promise<State> {
  const s: State = state ?? { request, steps: {} };
  for (const name of STEPS.slice(0, upTo)) s.steps[name] = await steps[name](s, context);
  return s;
}

const request = (executionId: string, drill = false): FailoverRequest => ({
  executionId: `arn:aws:states:${FAILOVER}:123456789012:execution:velero-dr-failover:${executionId}`,
  reason: "us-east-1 is unreachable",
  requestedBy: "alice@example.com",
  drill,
  requestedAt: new Date().toISOString(),
});

describe("failover steps against the emulator and the Kubernetes API stand-in", () => {
  it("fails over: scales the node group, restores once, switches the alias to the failover LB; a re-run repeats nothing", async () => {
    // arrange
    const w = await world();
    const { steps, count } = stepsFor(w.config);
    const req = request("failover-1");

    // act
    const first = await run(steps, req);

    // assert: every step's outcome
    expect(Object.fromEntries(Object.entries(first.steps).map(([k, v]) => [k, v.outcome]))).toEqual({
      preflight: "succeeded",
      scaleNodegroup: "succeeded",
      waitNodegroup: "succeeded",
      startRestore: "succeeded",
      waitRestore: "succeeded",
      switchDns: "succeeded",
      scaleBack: "skipped",
      report: "succeeded",
    });
    // the plan: the DR-ready backup, its data-loss window, the failover LB as the alias target
    const plan = first.steps.preflight?.plan as Record<string, never>;
    expect(plan).toMatchObject({
      backup: { name: w.backupName },
      nodegroup: { current: STANDBY_SIZE, target: { min: 3, max: 6, desired: 3 } },
      dns: {
        failover: {
          dnsName: `dualstack.${w.failoverLb.dnsName.toLowerCase()}.`,
          hostedZoneId: w.failoverLb.zoneId,
        },
      },
      plugin: { checked: true, present: true },
    });
    expect(plan.dataLossSeconds).toBeGreaterThanOrEqual(600);
    // the node group: scaled and ACTIVE (DescribeUpdate tried, the emulator's HTML 404 -> DescribeNodegroup)
    expect((await w.nodegroup())?.scalingConfig).toEqual({ minSize: 3, maxSize: 6, desiredSize: 3 });
    expect(first.steps.waitNodegroup).toMatchObject({ via: "DescribeNodegroup" });
    expect(count("DescribeUpdateCommand")).toBe(1);
    // the Restore: created once, Completed, of the backup, into cbci, PVs restored
    expect(w.standIn.counts.restoreCreates).toBe(1);
    const [restore] = w.standIn.list();
    expect(restore).toMatchObject({
      apiVersion: "velero.io/v1",
      kind: "Restore",
      metadata: { name: first.steps.startRestore?.restoreName, namespace: "velero" },
      spec: { backupName: w.backupName, includedNamespaces: ["cbci"], restorePVs: true },
      status: { phase: "Completed" },
    });
    expect(restore?.spec).not.toHaveProperty("namespaceMapping");
    expect(first.steps.waitRestore).toMatchObject({ phase: "Completed", warnings: 0, errors: 0 });
    // DNS: the alias is on the failover LB, INSYNC
    expect(await w.alias()).toEqual({
      DNSName: `dualstack.${w.failoverLb.dnsName.toLowerCase()}.`,
      HostedZoneId: w.failoverLb.zoneId,
      EvaluateTargetHealth: true,
    });
    expect(first.steps.switchDns).toMatchObject({
      changed: true,
      status: "INSYNC",
      previousTarget: { dnsName: PRIMARY_ALIAS.DNSName },
    });
    // the report, published once
    expect(first.steps.report?.report).toMatchObject({
      drill: false,
      backup: { name: w.backupName },
      restore: { phase: "Completed" },
      dns: { switched: true },
    });
    // one message per stage, then the report
    const published = await w.reports();
    expect(published.map((m) => m.Subject).sort()).toEqual(
      [
        "DR failover failover-1: preflight passed",
        "DR failover failover-1: recovery started",
        "DR failover failover-1: restore Completed",
        "DR failover failover-1: DNS switched",
        `Failover Completed: ${w.backupName}`,
      ].sort(),
    );
    const reportMessage = published.find((m) => m.Subject?.startsWith("Failover Completed"));
    expect(reportMessage?.Message).toMatch(/^FAILOVER arn:aws:states:/);
    expect(reportMessage?.Message).toMatch(/outcome: succeeded/);
    expect(published.find((m) => m.Subject?.endsWith("preflight passed"))?.Message).toMatch(
      new RegExp(`backup ${w.backupName} \\(started [^)]+\\); data-loss window \\d+ s`),
    );
    expect(published.find((m) => m.Subject?.endsWith("DNS switched"))?.Message).toContain(
      `${PRIMARY_ALIAS.DNSName} -> dualstack.${w.failoverLb.dnsName.toLowerCase()}.`,
    );
    // the audit record: the final report, succeeded
    const audit = await auditItem(w.config, req.executionId);
    expect(audit).toMatchObject({
      executionId: req.executionId,
      outcome: "succeeded",
      drill: false,
      backup: w.backupName,
      approvedBy: null,
    });
    expect(audit?.dataLossSeconds).toBeGreaterThanOrEqual(600);
    expect(typeof audit?.rtoSeconds).toBe("number");
    expect(JSON.parse(String(audit?.report))).toMatchObject({
      outcome: "succeeded",
      steps: expect.arrayContaining([expect.objectContaining({ step: "waitRestore", outcome: "succeeded" })]),
    });
    expect(first.steps.report).toMatchObject({ audit: "written" });

    // act again: every step re-run after it succeeded (the same state, then a fresh one)
    const again = await run(steps, req, STEPS.length, first);
    const fresh = await run(steps, req);

    // assert: nothing repeated
    for (const s of [again, fresh]) {
      expect(s.steps.preflight?.outcome).toBe("unchanged");
      expect(s.steps.preflight?.plan).toEqual(first.steps.preflight?.plan);
      expect(s.steps.scaleNodegroup).toMatchObject({ outcome: "unchanged", previous: STANDBY_SIZE });
      expect(s.steps.startRestore).toMatchObject({ outcome: "unchanged", created: false });
      expect(s.steps.switchDns).toMatchObject({
        outcome: "unchanged",
        changeId: first.steps.switchDns?.changeId,
        previousTarget: { dnsName: PRIMARY_ALIAS.DNSName },
      });
      expect(s.steps.report).toMatchObject({ outcome: "unchanged", audit: "kept" });
    }
    expect(count("UpdateNodegroupConfigCommand")).toBe(1);
    expect(count("ChangeResourceRecordSetsCommand")).toBe(1);
    expect(count("PublishCommand")).toBe(5);
    expect(w.standIn.counts).toMatchObject({ restoreCreates: 1, restoreConflicts: 0, unauthorized: 0 });
    expect(w.standIn.list()).toHaveLength(1);
    expect(await w.reports()).toHaveLength(0);
  });

  it("fails after each step in turn, re-runs from the start, and still makes one update, one Restore, one DNS change", async () => {
    for (let failedAfter = 1; failedAfter < STEPS.length; failedAfter++) {
      // arrange: a fresh emulator state; the workflow got through `failedAfter` steps, then failed
      await moto().reset();
      const w = await world();
      const { steps, count } = stepsFor(w.config);
      const req = request(`retry-after-${failedAfter}`);
      await run(steps, req, failedAfter);

      // act: the whole workflow again, same execution
      const done = await run(steps, req);

      // assert
      const where = `failed after ${STEPS[failedAfter - 1]}`;
      expect(done.steps.waitRestore?.phase, where).toBe("Completed");
      expect(count("UpdateNodegroupConfigCommand"), where).toBe(1);
      expect(count("ChangeResourceRecordSetsCommand"), where).toBe(1);
      expect(w.standIn.counts.restoreCreates, where).toBe(1);
      expect((await w.alias())?.DNSName, where).toBe(`dualstack.${w.failoverLb.dnsName.toLowerCase()}.`);
      expect((await w.nodegroup())?.scalingConfig?.desiredSize, where).toBe(3);
    }
  });

  it("drills: restores into cbci-drill, leaves DNS on the primary target, scales back; a re-run changes nothing", async () => {
    // arrange: the failover load balancer found by its tag this time
    const w = await world();
    const { steps, count } = stepsFor({
      ...w.config,
      loadBalancer: { tag: { key: "velero-dr/role", value: "cbci-failover" } },
    });
    const req = request("drill-1", true);

    // act
    const first = await run(steps, req);

    // assert
    expect(first.steps.preflight?.plan).toMatchObject({ loadBalancer: { name: "cbci-failover" } });
    expect(first.steps.switchDns).toMatchObject({ outcome: "skipped", changed: false });
    expect(await w.alias()).toMatchObject({
      DNSName: PRIMARY_ALIAS.DNSName,
      HostedZoneId: PRIMARY_ALIAS.HostedZoneId,
    });
    expect(count("ChangeResourceRecordSetsCommand")).toBe(0);
    const [restore] = w.standIn.list();
    expect(restore?.metadata).toMatchObject({ name: expect.stringMatching(/^drill-1-[0-9a-f]{10}$/) });
    expect(restore?.spec).toMatchObject({
      namespaceMapping: { cbci: "cbci-drill" },
      includedNamespaces: ["cbci"],
    });
    expect(first.steps.waitRestore?.phase).toBe("Completed");
    expect(first.steps.scaleBack).toMatchObject({ outcome: "succeeded", target: STANDBY_SIZE });
    expect((await w.nodegroup())?.scalingConfig).toEqual({ minSize: 0, maxSize: 1, desiredSize: 0 });
    expect(count("UpdateNodegroupConfigCommand")).toBe(2); // up, and back
    expect(first.steps.report?.report).toMatchObject({
      drill: true,
      dns: { switched: false, previous: PRIMARY_ALIAS.DNSName },
      nodegroup: { scaledBack: true, previous: STANDBY_SIZE },
    });
    expect(await subjects(w)).toEqual(
      [
        "DR drill drill-1: preflight passed",
        "DR drill drill-1: recovery started",
        "DR drill drill-1: restore Completed",
        "DR drill drill-1: DNS switch skipped (drill)",
        "DR drill drill-1: node group scaled back",
        `DR drill Completed: ${w.backupName}`,
      ].sort(),
    );
    expect(await auditItem(w.config, req.executionId)).toMatchObject({ outcome: "succeeded", drill: true });

    // act again: the drill re-run after it finished
    const again = await run(steps, req);

    // assert: the scale-up is not repeated after the scale-back, nor anything else
    expect(again.steps.scaleNodegroup?.outcome).toBe("skipped");
    expect(again.steps.waitNodegroup?.outcome).toBe("skipped");
    expect(again.steps.scaleBack?.outcome).toBe("unchanged");
    expect(count("UpdateNodegroupConfigCommand")).toBe(2);
    expect(w.standIn.counts.restoreCreates).toBe(1);
    expect((await w.nodegroup())?.scalingConfig?.desiredSize).toBe(0);
    // no message twice
    expect(await subjects(w)).toEqual([]);
    expect(count("PublishCommand")).toBe(6);
  });

  it("a failed run's report and audit record give way to the re-run that completes; never the reverse", async () => {
    // arrange: the workflow got through the restore's start, then failed (ReportFailure's input)
    const w = await world();
    const { steps } = stepsFor(w.config);
    const req = request("failed-then-ok");
    const failed = await run(steps, req, 4);
    const caught = {
      Error: "StepFailed",
      Cause: JSON.stringify({ errorMessage: "injected: waitRestore lost its way", errorType: "StepFailed" }),
    };

    // act: the failure report
    const failure = await steps.report({ ...failed, error: caught }, context);

    // assert: a failed report and audit record, with the error
    expect(failure).toMatchObject({
      outcome: "succeeded",
      audit: "written",
      report: {
        outcome: "failed",
        error: { error: "StepFailed", cause: "injected: waitRestore lost its way" },
      },
    });
    expect(await subjects(w)).toEqual(
      [
        "DR failover failed-then-ok: preflight passed",
        "DR failover failed-then-ok: recovery started",
        `Failover FAILED: ${w.backupName}`,
      ].sort(),
    );
    expect(await auditItem(w.config, req.executionId)).toMatchObject({ outcome: "failed" });

    // act: the re-run, to the end, approved this time
    const done = await run(steps, req, STEPS.length - 1);
    const ok = await steps.report(
      { ...done, approval: { approvedBy: "bob@example.com", channel: "email", at: req.requestedAt } },
      context,
    );

    // assert: the success report went out (the failed one did not use it up), the record says succeeded
    expect(ok).toMatchObject({ outcome: "succeeded", audit: "written", report: { outcome: "succeeded" } });
    expect(await subjects(w)).toEqual(
      [
        "DR failover failed-then-ok: restore Completed",
        "DR failover failed-then-ok: DNS switched",
        `Failover Completed: ${w.backupName}`,
      ].sort(),
    );
    const audit = await auditItem(w.config, req.executionId);
    expect(audit).toMatchObject({
      outcome: "succeeded",
      approvedBy: "bob@example.com",
      backup: w.backupName,
    });
    expect(JSON.parse(String(audit?.report))).not.toHaveProperty("error");

    // act: a late failure report of the same execution, and a re-run of the success report
    const late = await steps.report({ ...failed, error: caught }, context);
    const again = await steps.report(done, context);

    // assert: the succeeded record stands, nothing published again
    expect(late).toMatchObject({ outcome: "unchanged", audit: "kept" });
    expect(again).toMatchObject({ outcome: "unchanged", audit: "kept" });
    expect(await auditItem(w.config, req.executionId)).toMatchObject({
      outcome: "succeeded",
      approvedBy: "bob@example.com",
    });
    expect(await subjects(w)).toEqual([]);
  });

  it("a stage message that cannot be published fails no step; the report still goes out", async () => {
    // arrange: a notifier refusing every stage message, and one recording what it gets
    const w = await world();
    const got: string[] = [];
    const refusing: Notifier = {
      publish: async (subject) => {
        if (subject.startsWith("DR failover")) throw new Error("injected: SNS is down");
        return "refusing:ok";
      },
    };
    const recording: Notifier = {
      publish: async (subject) => {
        got.push(subject);
        return "recording:ok";
      },
    };
    const { steps } = stepsFor(w.config, undefined, [refusing, recording]);
    const req = request("publish-fails");

    // act
    const done = await run(steps, req);
    const again = await run(steps, req);

    // assert: every step went through; the other notifier got each message once
    expect(Object.values(done.steps).map((s) => s.outcome)).not.toContain("failed");
    expect(done.steps.switchDns?.outcome).toBe("succeeded");
    expect(done.steps.report).toMatchObject({ outcome: "succeeded", report: { outcome: "succeeded" } });
    expect(again.steps.report?.outcome).toBe("unchanged");
    expect(got).toEqual([
      "DR failover publish-fails: preflight passed",
      "DR failover publish-fails: recovery started",
      "DR failover publish-fails: restore Completed",
      "DR failover publish-fails: DNS switched",
      `Failover Completed: ${w.backupName}`,
    ]);
  });

  it("completes with every primary-region endpoint refusing connections; no call is signed for the primary region but Route 53's", async () => {
    // arrange: any client for the primary region would get a port nobody listens on
    const closed = `http://127.0.0.1:${await freePort()}`;
    const refused = await new EKSClient({
      endpoint: closed,
      region: PRIMARY,
      credentials: LOCAL_CREDENTIALS,
      maxAttempts: 1,
    })
      .send(new DescribeClusterCommand({ name: CLUSTER }))
      .then(
        () => "answered",
        (e: Error & { code?: string }) => e.code ?? e.name,
      );
    expect(refused).toBe("ECONNREFUSED");
    const w = await world();
    const { steps, calls } = stepsFor(w.config, (service, region) => ({
      endpoint: region === PRIMARY && service !== "route53" ? closed : moto().endpoint,
      credentials: LOCAL_CREDENTIALS,
    }));
    const saved = { region: process.env.AWS_REGION, endpoint: process.env.AWS_ENDPOINT_URL };
    process.env.AWS_REGION = PRIMARY; // a client left to the default region would land in the primary
    process.env.AWS_ENDPOINT_URL = closed;
    try {
      // act
      const done = await run(steps, request("isolated-1"));

      // assert: completed
      expect(done.steps.waitRestore?.phase).toBe("Completed");
      expect(done.steps.switchDns).toMatchObject({ changed: true, status: "INSYNC" });
    } finally {
      process.env.AWS_REGION = saved.region;
      if (saved.endpoint === undefined) delete process.env.AWS_ENDPOINT_URL;
      else process.env.AWS_ENDPOINT_URL = saved.endpoint;
      if (saved.region === undefined) delete process.env.AWS_REGION;
    }
    // Every call the steps made, by its signature's credential scope, is for the failover region.
    // Route 53 is the one exception against AWS: its API is global, so the SDK sends it to
    // route53.amazonaws.com signed for us-east-1 whatever the client's region (checked below on the
    // SDK's endpoint resolver). With a custom endpoint, as here, the SDK signs with the client's own
    // region, so on the emulator even Route 53's calls carry the failover region.
    expect(new Set(calls.map((c) => c.service))).toEqual(
      new Set(["dynamodb", "eks", "route53", "elbv2", "sns"]),
    );
    expect(calls.filter((c) => c.signingRegion !== FAILOVER)).toEqual([]);
    expect(new Set(calls.map((c) => c.host))).toEqual(new Set(["127.0.0.1"]));
    const r53 = new Route53Client({ region: FAILOVER });
    const resolved = await r53.config.endpointProvider({
      Region: FAILOVER,
      UseFIPS: false,
      UseDualStack: false,
    } as never);
    expect(resolved.url.hostname).toBe("route53.amazonaws.com");
    expect(resolved.properties?.authSchemes).toEqual([{ name: "sigv4", signingRegion: "us-east-1" }]);
    // The EKS tokens the stand-in accepted were presigned for the failover region's STS endpoint.
    expect(w.standIn.tokens.length).toBeGreaterThan(0);
    for (const t of w.standIn.tokens) {
      expect(t).toMatchObject({
        kind: "eks",
        stsHost: `sts.${FAILOVER}.amazonaws.com`,
        region: FAILOVER,
        signatureVerified: true,
      });
    }
  });

  it("refuses in preflight with every reason, before anything changes", async () => {
    // arrange: no DR-ready backup, and Velero without the inject-metadata plugin
    const w = await world({
      backups: "none",
      standIn: { pluginImages: ["velero/velero-plugin-for-aws:v1.10.0"] },
    });
    const { steps, count } = stepsFor(w.config);

    // act
    const error = await steps.preflight({ request: request("refused-1"), steps: {} }, context).then(
      () => undefined,
      (e: Error & { reasons?: string[] }) => e,
    );

    // assert
    expect(error?.name).toBe("PreflightFailed");
    expect(error?.reasons).toEqual([
      "no backup is registered",
      expect.stringMatching(
        /^inject-metadata plugin missing: the velero Deployment has no inject-metadata-velero-plugin init container/,
      ),
    ]);
    expect(count("UpdateNodegroupConfigCommand") + count("ChangeResourceRecordSetsCommand")).toBe(0);
    expect(w.standIn.counts.restoreCreates).toBe(0);
    // announced once, with the reasons, even when preflight is re-run
    await steps.preflight({ request: request("refused-1"), steps: {} }, context).catch(() => undefined);
    const published = await w.reports();
    expect(published.map((m) => m.Subject)).toEqual(["DR failover refused-1: preflight refused"]);
    expect(published[0]?.Message).toContain("- no backup is registered");
  });

  it("refuses a backup with CSI volumes when the standby has no VolumeSnapshotClass for their driver", async () => {
    // arrange: the newest DR-ready backup has a CSI volume; the standby cluster has only another
    // driver's class. (Such a backup is not DR-ready today: the ledger is seeded with one to check
    // the preflight rule on its own.)
    const w = await world({ backups: "none", standIn: { snapshotClasses: { gp3: "efs.csi.aws.com" } } });
    await registerCsiBackup(w);
    const { steps, count } = stepsFor(w.config);

    // act
    const error = await steps.preflight({ request: request("csi-1"), steps: {} }, context).then(
      () => undefined,
      (e: Error & { reasons?: string[] }) => e,
    );

    // assert
    expect(error?.name).toBe("PreflightFailed");
    expect(error?.reasons).toEqual([
      `backup ${w.backupName} has CSI volumes (driver ebs.csi.aws.com) the standby cannot restore: no VolumeSnapshotClass for driver ebs.csi.aws.com (classes: gp3 (efs.csi.aws.com))`,
    ]);
    expect(count("UpdateNodegroupConfigCommand")).toBe(0);
  });

  it("passes a backup with CSI volumes when the standby has a VolumeSnapshotClass for their driver", async () => {
    // arrange: the stand-in's default class is ebs.csi.aws.com's
    const w = await world({ backups: "none" });
    await registerCsiBackup(w);
    const { steps } = stepsFor(w.config);

    // act
    const out = await steps.preflight({ request: request("csi-2"), steps: {} }, context);

    // assert
    expect(JSON.stringify(out)).toContain(w.backupName);
  });

  it("a re-run keeps the plan once its Restore exists, even after the backup was retired; without one it refuses", async () => {
    // arrange: one execution got its Restore made, another only its plan; then Velero deleted the backup
    const w = await world();
    const { steps } = stepsFor(w.config);
    const restored = await run(steps, request("kept-1"), STEPS.indexOf("startRestore") + 1);
    const planned = await run(steps, request("planned-1"), 1);
    await w.ledger.retireBackup(w.backupName, new Date().toISOString(), "deleted by Velero");

    // act
    const kept = await steps.preflight(restored, context);
    const refused = await steps.preflight(planned, context).then(
      () => undefined,
      (e: Error) => e,
    );

    // assert
    expect(kept).toMatchObject({ outcome: "unchanged", plan: restored.steps.preflight?.plan });
    expect(refused?.name).toBe("PreflightFailed");
    expect(refused?.message).toMatch(/was retired at .* and no Restore of it exists; start a new execution/);
  });

  it("reports a PartiallyFailed restore with its warnings and errors, and fails the step when configured to", async () => {
    // arrange
    const w = await world({
      standIn: { outcome: () => ({ phase: "PartiallyFailed", warnings: 3, errors: 1 }) },
    });
    const { steps } = stepsFor(w.config);
    const state = await run(steps, request("partial-1"), STEPS.indexOf("waitRestore"));

    // act
    const partial = await steps.waitRestore(state, context);
    const strict = makeFailoverSteps(
      makeFailoverRuntime(
        { ...w.config, partialRestore: "fail" },
        {
          clientConfig: () => ({ endpoint: moto().endpoint, credentials: LOCAL_CREDENTIALS }),
          logger: new Logger({ serviceName: "failover-test", logLevel: "SILENT" }),
        },
      ),
    );
    const failed = await strict.waitRestore(state, context).then(
      () => undefined,
      (e: Error) => e,
    );

    // assert
    expect(partial).toMatchObject({
      outcome: "partially-failed",
      phase: "PartiallyFailed",
      warnings: 3,
      errors: 1,
    });
    expect(failed?.name).toBe("StepFailed");
    expect(failed?.message).toMatch(/PartiallyFailed: warnings 3, errors 1/);
  });

  it("a wait that runs out of its time throws StillWaiting; the retried step picks the wait up", async () => {
    // arrange: the Restore takes 600 ms, the step may wait 100 ms per invocation
    const w = await world({ standIn: { completeAfterMs: 600 } });
    w.config.waits = { ...w.config.waits, restoreMs: 100 };
    const { steps } = stepsFor(w.config);
    const state = await run(steps, request("slow-1"), STEPS.indexOf("waitRestore"));

    // act
    const first = await steps.waitRestore(state, context).then(
      () => undefined,
      (e: Error) => e,
    );
    await new Promise((r) => setTimeout(r, 700));
    const retried = await steps.waitRestore(state, context);

    // assert
    expect(first?.name).toBe("StillWaiting");
    expect(first?.message).toMatch(/is InProgress; still waiting/);
    expect(retried).toMatchObject({ outcome: "succeeded", phase: "Completed" });
    expect(w.standIn.counts.restoreCreates).toBe(1);
  });

  it("labels the stand-in as one, and refuses a request without a valid token", async () => {
    const w = await world();
    const res = await fetch(`${w.standIn.endpoint}/apis/velero.io/v1/namespaces/velero/restores/x`, {
      headers: { authorization: "Bearer k8s-aws-v1.bm90LWEtdXJs" },
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("x-stand-in")).toBe(STAND_IN_LABEL);
    expect(w.standIn.describe()).toMatch(/STAND-IN/);
    expect(w.standIn.counts.unauthorized).toBe(1);
  });

  it("the deployed entrypoint fails at cold start naming the missing setting", () => {
    const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", FAILOVER_REGION: FAILOVER };
    const run = spawnSync("node_modules/.bin/tsx", ["functions/failover-steps.ts"], {
      env,
      encoding: "utf8",
    });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/FAILOVER_CLUSTER_NAME is required but not set/);
  });
});
