import { randomUUID } from "node:crypto";
import { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { EKSClient } from "@aws-sdk/client-eks";
import { ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { Route53Client } from "@aws-sdk/client-route-53";
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { SNSClient } from "@aws-sdk/client-sns";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import middy from "@middy/core";
import * as z from "zod/mini";
import { DynamoLedger } from "../adapters/dynamo-ledger.js";
import { EksStandbyCluster } from "../adapters/eks.js";
import { Elbv2LoadBalancerLookup } from "../adapters/elbv2.js";
import { DynamoExecutionMemo, DynamoFailoverAudit } from "../adapters/failover-memo.js";
import { type Credentials, eksToken, KubeClient, KubeVeleroRestores } from "../adapters/k8s.js";
import { SecretSlackNotifier, SlackWebhookNotifier, SnsNotifier } from "../adapters/notifier.js";
import { Route53DnsSwitch } from "../adapters/route53.js";
import { SecretsManagerSecrets } from "../adapters/secrets.js";
import { parseSlackWebhookSecret } from "../core/approval-config.js";
import { errorMessage } from "../core/errors.js";
import {
  AliasTargetSchema,
  aliasTargetFor,
  buildReport,
  type DnsSwitch,
  type ExecutionMemo,
  type FailoverAudit,
  type FailoverConfig,
  type FailoverPlan,
  FailoverPlanSchema,
  type FailoverReport,
  type FailoverRequest,
  FailoverStateSchema,
  type LoadBalancerLookup,
  loadFailoverConfig,
  type Notifier,
  namespaceMappingFor,
  PreflightFailed,
  parseWith,
  preflightPlan,
  renderReport,
  requestTokenFor,
  restoreNameFor,
  type Scaling,
  ScalingSchema,
  type StandbyCluster,
  StepFailed,
  type StepName,
  type StepOutcome,
  StillWaiting,
  type VeleroRestores,
} from "../core/failover.js";
import type { BackupLedger, Clock } from "../core/ports.js";

/**
 * The failover's steps (DESIGN.md section 3), one Lambda handler each, for a Step Functions
 * workflow. Every handler takes the workflow's state document
 * `{ request: { executionId, reason, requestedBy, drill, requestedAt }, steps: { <step>: <output> } }`
 * and returns its own output (`{ step, outcome, startedAt, endedAt, seconds, ... }`), which the
 * workflow keeps at `$.steps.<step>`. Every step is idempotent: run again with the same execution,
 * it finds its work done (by deterministic names, tokens and a per-execution memo) and repeats none.
 * Every client is pinned to the failover region; nothing here calls the primary region.
 */

/** How many registered backups preflight reads (newest first): two days of a 15-minute schedule. */
export const PREFLIGHT_WINDOW = 200;

/** Memo keys (see DynamoExecutionMemo): each is written once per execution. */
const MEMO = {
  plan: "plan",
  previousScaling: "nodegroup.previous",
  nodegroupUpdate: "nodegroup.update",
  dnsChange: "dns.change",
  scaledBack: "nodegroup.scaledBack",
  /** Per outcome: a failed run's report does not use up the report of the re-run that completes. */
  reportPublished: (outcome: "succeeded" | "failed") => `report.published.${outcome}`,
  /** Per stage message (see `announce`): claimed before it is published, so it goes out at most once. */
  announced: (stage: Stage) => `announced.${stage}`,
} as const;

/** The stages announced to the notifiers as the execution gets through them (the report is separate). */
export type Stage =
  | "preflightPassed"
  | "preflightRefused"
  | "recoveryStarted"
  | "restoreFinished"
  | "dns"
  | "scaledBack";

export interface FailoverDeps {
  config: FailoverConfig;
  backups: Pick<BackupLedger, "listBackups">;
  memo: ExecutionMemo;
  audit: FailoverAudit;
  cluster: StandbyCluster;
  dns: DnsSwitch;
  loadBalancers: LoadBalancerLookup;
  velero: VeleroRestores;
  notifiers: Notifier[];
  clock: Clock;
  logger: Logger;
}

export type FailoverService = "eks" | "route53" | "elbv2" | "dynamodb" | "sns" | "secretsmanager";
export type FailoverClient =
  | EKSClient
  | Route53Client
  | ElasticLoadBalancingV2Client
  | DynamoDBClient
  | SNSClient
  | SecretsManagerClient;

export interface FailoverRuntimeOptions {
  /**
   * Extra client settings per service and region (tests and local mode: the emulator's endpoint,
   * credentials). The region passed is the one the client is pinned to: always the failover region.
   */
  clientConfig?: (
    service: FailoverService,
    region: string,
  ) => {
    endpoint?: string;
    credentials?: Credentials;
    maxAttempts?: number;
  };
  /** Called on every client once created (tests add SDK middleware here). */
  onClient?: (client: FailoverClient, service: FailoverService) => void;
  notifiers?: Notifier[];
  clock?: Clock;
  logger?: Logger;
}

/**
 * Builds the steps' dependencies once per container. Every SDK client gets the failover region,
 * whatever the caller passes: the primary region may be gone. Route 53 is the one global API: its
 * client, in the failover region too, is sent by the SDK to route53.amazonaws.com signed for
 * us-east-1, where Route 53's control plane lives. The EKS token for the standby cluster is
 * presigned for the failover region's STS endpoint, not the global one.
 */
export function makeFailoverRuntime(config: FailoverConfig, o: FailoverRuntimeOptions = {}): FailoverDeps {
  const region = config.failoverRegion;
  const settings = (s: FailoverService) => ({ ...o.clientConfig?.(s, region), region });
  const watch = <C extends FailoverClient>(c: C, s: FailoverService): C => {
    o.onClient?.(c, s);
    return c;
  };
  const logger = o.logger ?? new Logger({ serviceName: "velero-dr-failover" });
  const clock = o.clock ?? { now: () => new Date() };
  const eks = watch(new EKSClient(settings("eks")), "eks");
  const route53 = watch(new Route53Client(settings("route53")), "route53");
  const elb = watch(new ElasticLoadBalancingV2Client(settings("elbv2")), "elbv2");
  const dynamo = watch(new DynamoDBClient(settings("dynamodb")), "dynamodb");
  const db = DynamoDBDocumentClient.from(dynamo, { marshallOptions: { removeUndefinedValues: true } });
  const cluster = new EksStandbyCluster(eks, config.clusterName, config.nodegroupName, logger);
  const staticToken = config.k8sToken;
  const kube = new KubeClient(
    async () => (config.k8sEndpoint ? { endpoint: config.k8sEndpoint } : cluster.access()),
    staticToken
      ? async () => staticToken
      : () => eksToken({ clusterName: config.clusterName, region, credentials: eks.config.credentials }),
  );
  const notifiers = o.notifiers ?? [];
  if (!o.notifiers && config.topicArn) {
    notifiers.push(new SnsNotifier(watch(new SNSClient(settings("sns")), "sns"), config.topicArn));
  }
  if (!o.notifiers && config.slackWebhookUrl)
    notifiers.push(new SlackWebhookNotifier(config.slackWebhookUrl));
  if (!o.notifiers && config.slackWebhookSecretArn) {
    const secrets = new SecretsManagerSecrets(
      watch(new SecretsManagerClient(settings("secretsmanager")), "secretsmanager"),
    );
    notifiers.push(new SecretSlackNotifier(secrets, config.slackWebhookSecretArn, parseSlackWebhookSecret));
  }
  return {
    config,
    backups: new DynamoLedger(db, config.ledgerTable),
    memo: new DynamoExecutionMemo(db, config.ledgerTable, () => clock.now()),
    audit: new DynamoFailoverAudit(db, config.ledgerTable),
    cluster,
    dns: new Route53DnsSwitch(route53, config.hostedZoneId, config.recordName, config.recordType),
    loadBalancers: new Elbv2LoadBalancerLookup(elb, config.loadBalancer),
    velero: new KubeVeleroRestores(kube, config.veleroNamespace),
    notifiers,
    clock,
    logger,
  };
}

/** The Lambda cold start: validate the environment (failing fast with the variable's name), then wire. */
export function failoverRuntimeFromEnv(env: Record<string, string | undefined> = process.env): FailoverDeps {
  return makeFailoverRuntime(loadFailoverConfig(env));
}

// --- Step plumbing ------------------------------------------------------------------------------

export interface StepOutput {
  step: StepName;
  outcome: StepOutcome;
  startedAt: string;
  endedAt: string;
  seconds: number;
  detail?: string;
  [field: string]: unknown;
}

interface StepContext {
  request: FailoverRequest;
  steps: Record<string, unknown>;
  /** The error the workflow caught (ReportFailure's input): `{ Error, Cause }`. */
  error?: unknown;
  /** The approval task's output: `{ approvedBy, channel, at }`. */
  approval?: unknown;
}

const rec = (v: unknown): Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

/** Lambda errors reach Step Functions' Catch with a JSON cause: its message, bounded. */
function causeText(cause: unknown): string {
  const c = typeof cause === "string" ? cause : JSON.stringify(cause ?? "");
  let text = c;
  try {
    const m = rec(JSON.parse(c)).errorMessage;
    if (typeof m === "string") text = m;
  } catch {
    // not JSON: the cause as given
  }
  return text.slice(0, 2000);
}

/** The plan preflight put in the state (its output at `$.steps.preflight.plan`). */
function planOf(ctx: StepContext): FailoverPlan {
  const plan = parseWith(FailoverPlanSchema, rec(ctx.steps.preflight).plan, "steps.preflight.plan");
  if (plan.executionId !== ctx.request.executionId) {
    throw new StepFailed(
      `steps.preflight.plan is for execution ${plan.executionId}, not ${ctx.request.executionId}`,
    );
  }
  return plan;
}

type StepBody = (
  ctx: StepContext,
) => Promise<{ outcome: StepOutcome; detail?: string; fields?: Record<string, unknown> }>;

// --- The steps ------------------------------------------------------------------------------------

/** The step handlers (plain async functions wrapped with middy and the Powertools logger). */
export function makeFailoverSteps(deps: FailoverDeps) {
  const { config, memo, clock, logger } = deps;
  const waitOptions = (timeoutMs: number) => ({ timeoutMs, pollMs: config.waits.pollMs });

  /**
   * Publishes one short stage message to every notifier, once per execution and stage: the memo
   * item is claimed first (first write wins), so a re-run, or the other parallel branch, finds it
   * claimed and sends nothing. Never fails the step: a failed claim or publish is logged, and the
   * message is not sent again (the final report is authoritative).
   */
  const announce = async (
    request: FailoverRequest,
    stage: Stage,
    what: string,
    lines: string[],
    facts: Record<string, unknown>,
  ): Promise<void> => {
    if (deps.notifiers.length === 0) return;
    const exec = request.executionId;
    const subject = `${request.drill ? "DR drill" : "DR failover"} ${exec.split(":").pop() || exec}: ${what}`;
    try {
      const claim = randomUUID();
      const stored = await memo.remember(exec, MEMO.announced(stage), {
        claim,
        at: clock.now().toISOString(),
      });
      if (rec(stored).claim !== claim) return;
      const text = `${[subject, ...lines].join("\n")}\n`;
      const json = { executionId: exec, stage, drill: request.drill, ...facts };
      const sent = await Promise.allSettled(deps.notifiers.map((n) => n.publish(subject, text, json)));
      for (const r of sent) {
        if (r.status === "rejected")
          logger.warn("stage message not published", { stage, error: errorMessage(r.reason) });
      }
    } catch (err) {
      logger.warn("stage message not published", { stage, error: errorMessage(err) });
    }
  };

  /** The recovery's start: from the scale-up or the Restore, whichever gets there first. */
  const announceRecovery = (request: FailoverRequest, plan: FailoverPlan) =>
    announce(
      request,
      "recoveryStarted",
      "recovery started",
      [
        `node group ${plan.nodegroup.name}: desired ${plan.nodegroup.current.desired} -> ${plan.nodegroup.target.desired} (min ${plan.nodegroup.target.min}, max ${plan.nodegroup.target.max})`,
        `restore ${plan.restore.name} of backup ${plan.backup.name}`,
      ],
      { nodegroupTarget: plan.nodegroup.target, restoreName: plan.restore.name, backup: plan.backup.name },
    );

  const handler = (step: StepName, body: StepBody) =>
    middy(async (event: unknown): Promise<StepOutput> => {
      const state = parseWith(FailoverStateSchema, event, `${step} input`);
      const ctx: StepContext = {
        request: state.request,
        steps: rec(state.steps),
        error: state.error,
        approval: state.approval,
      };
      logger.appendKeys({ executionId: ctx.request.executionId, step, drill: ctx.request.drill });
      const started = clock.now();
      try {
        const r = await body(ctx);
        const ended = clock.now();
        const out: StepOutput = {
          step,
          outcome: r.outcome,
          startedAt: started.toISOString(),
          endedAt: ended.toISOString(),
          seconds: (ended.getTime() - started.getTime()) / 1000,
          ...(r.detail ? { detail: r.detail } : {}),
          ...r.fields,
        };
        logger.info(`${step} ${r.outcome}`, { detail: r.detail, ...r.fields });
        return out;
      } catch (err) {
        const level = err instanceof StillWaiting ? "info" : "error";
        logger[level](`${step} did not finish`, { error: errorMessage(err), name: (err as Error)?.name });
        throw err;
      }
    }).use(injectLambdaContext(logger, { resetKeys: true }));

  /**
   * Chooses the backup and checks the standby side: cluster and node group ACTIVE, the record an
   * alias in the zone, the failover load balancer found, the inject-metadata plugin installed. Any
   * failure throws PreflightFailed with every reason, before anyone is asked to approve. The plan
   * is remembered: a re-run returns the same plan (even once its backup expired: the failover
   * BackupStorageLocation is read-only, so Velero does not collect it), unless the backup was
   * retired and its Restore never made.
   */
  const preflight: StepBody = async ({ request }) => {
    const exec = request.executionId;
    const now = clock.now();
    const options = {
      allowedWarnings: config.allowedWarnings,
      ...(config.schedule ? { schedule: config.schedule } : {}),
    };
    const [backups, remembered] = await Promise.all([
      deps.backups.listBackups(PREFLIGHT_WINDOW),
      memo.recall(exec, MEMO.plan),
    ]);
    const reasons: string[] = [];
    const previous =
      remembered === undefined ? undefined : parseWith(FailoverPlanSchema, remembered, "remembered plan");
    if (previous && previous.drill !== request.drill) {
      reasons.push(
        `this execution was planned as a ${previous.drill ? "drill" : "failover"}; the request says otherwise`,
      );
    } else if (previous) {
      // The plan stands once made (its backup was restorable then, and the Restore may exist by
      // now); only a backup whose failover metadata is gone, with no Restore made of it yet, stops it.
      const b = backups.find((x) => x.name === previous.backup.name);
      if ((!b || b.retiredAt) && !(await deps.velero.get(previous.restore.name))) {
        reasons.push(
          `the backup this execution chose, ${previous.backup.name}, ${b ? `was retired at ${b.retiredAt}` : "is no longer registered"} and no Restore of it exists; start a new execution`,
        );
      }
    }
    const choice = preflightPlan(backups, now, options);
    if (!previous && !choice.ok) reasons.push(choice.reason);
    const [clusterStatus, nodegroup, current, lb, plugin] = await Promise.all([
      deps.cluster.clusterStatus().catch((e: unknown) => `error: ${errorMessage(e)}`),
      deps.cluster.nodegroup().catch((e: unknown) => `error: ${errorMessage(e)}`),
      deps.dns.current().catch((e: unknown) => `error: ${errorMessage(e)}`),
      deps.loadBalancers.find().catch((e: unknown) => `error: ${errorMessage(e)}`),
      config.requirePlugin
        ? deps.velero.pluginCheck().catch((e: unknown) => `error: ${errorMessage(e)}`)
        : Promise.resolve({
            present: undefined as boolean | undefined,
            detail: "not checked (FAILOVER_REQUIRE_INJECT_METADATA=false)",
          }),
    ]);
    if (clusterStatus !== "ACTIVE") {
      reasons.push(
        `standby cluster ${config.clusterName} is ${clusterStatus === undefined ? "not found" : clusterStatus}`,
      );
    }
    const ng = typeof nodegroup === "object" ? nodegroup : undefined;
    // On a re-run the node group may be mid-update from this very execution's scale-up.
    const fine = previous ? ["ACTIVE", "UPDATING"] : ["ACTIVE"];
    if (!ng || !fine.includes(ng.status)) {
      reasons.push(`node group ${config.nodegroupName} is ${ng?.status ?? nodegroup ?? "not found"}`);
    }
    const record = typeof current === "object" ? current : undefined;
    if (typeof current === "string") reasons.push(`record ${config.recordName}: ${current}`);
    else if (!record) {
      reasons.push(
        `no ${config.recordType} alias record ${config.recordName} in hosted zone ${config.hostedZoneId}`,
      );
    }
    const found = typeof lb === "object" ? lb : undefined;
    if (typeof lb === "string") reasons.push(`failover load balancer: ${lb}`);
    const checked = typeof plugin === "object" ? plugin : undefined;
    if (typeof plugin === "string") reasons.push(`inject-metadata plugin check: ${plugin}`);
    else if (checked?.present === false) reasons.push(`inject-metadata plugin missing: ${checked.detail}`);
    // The chosen backup's CSI volumes are restored from VolumeSnapshots: the standby cluster needs a
    // VolumeSnapshotClass of each driver (only checked when there are any).
    const chosen = previous?.backup.name ?? (choice.ok ? choice.backup.name : undefined);
    const drivers = new Set(
      (backups.find((b) => b.name === chosen)?.volumes ?? [])
        .filter((v) => v.method === "csi")
        .map((v) => v.driver ?? "ebs.csi.aws.com"),
    );
    for (const driver of drivers) {
      const c = await deps.velero
        .snapshotClassCheck(driver)
        .catch((e: unknown) => `error: ${errorMessage(e)}`);
      if (typeof c === "string") reasons.push(`VolumeSnapshotClass check: ${c}`);
      else if (!c.present) {
        reasons.push(
          `backup ${chosen} has CSI volumes (driver ${driver}) the standby cannot restore: ${c.detail}`,
        );
      }
    }
    if (reasons.length > 0 || !ng || !found || !checked || !record) {
      throw new PreflightFailed(`preflight failed: ${reasons.join("; ")}`, reasons);
    }
    if (previous)
      return { outcome: "unchanged", detail: `plan of ${previous.plannedAt}`, fields: { plan: previous } };
    if (!choice.ok) throw new PreflightFailed(`preflight failed: ${choice.reason}`, [choice.reason]);

    const plan: FailoverPlan = {
      executionId: exec,
      drill: request.drill,
      plannedAt: now.toISOString(),
      backup: choice.backup,
      dataLossSeconds: choice.dataLossSeconds,
      passedOver: choice.passedOver,
      cluster: config.clusterName,
      nodegroup: { name: config.nodegroupName, current: ng.scaling, target: config.scaling },
      restore: {
        name: restoreNameFor(exec, request.drill),
        veleroNamespace: config.veleroNamespace,
        includedNamespaces: config.namespaces,
      },
      dns: {
        hostedZoneId: config.hostedZoneId,
        recordName: config.recordName,
        recordType: config.recordType,
        current: record,
        failover: aliasTargetFor(found),
        switch: !request.drill,
      },
      loadBalancer: { arn: found.arn, name: found.name, dnsName: found.dnsName },
      plugin: {
        checked: config.requirePlugin,
        detail: checked.detail,
        ...(checked.present !== undefined ? { present: checked.present } : {}),
      },
    };
    const mapping = namespaceMappingFor(config.namespaces, request.drill, config.drillSuffix);
    if (mapping) plan.restore.namespaceMapping = mapping;
    // Two concurrent first runs: the first plan stored is the plan.
    const stored = parseWith(
      FailoverPlanSchema,
      await memo.remember(exec, MEMO.plan, plan),
      "remembered plan",
    );
    return {
      outcome: "succeeded",
      detail: `backup ${stored.backup.name}, data-loss window ${stored.dataLossSeconds} s`,
      fields: { plan: stored },
    };
  };

  const scaledBack = async (exec: string) => (await memo.recall(exec, MEMO.scaledBack)) !== undefined;

  /** UpdateNodegroupConfig to the configured size, unless already there; remembers the size before. */
  const scaleNodegroup: StepBody = async (ctx) => {
    const exec = ctx.request.executionId;
    const plan = planOf(ctx);
    if (await scaledBack(exec))
      return { outcome: "skipped", detail: "this drill already scaled the node group back" };
    const ng = await deps.cluster.nodegroup();
    if (!ng) throw new StepFailed(`node group ${config.nodegroupName} does not exist`);
    const previous = parseWith(
      ScalingSchema,
      await memo.remember(exec, MEMO.previousScaling, ng.scaling),
      "remembered node group size",
    );
    const token = requestTokenFor(exec, "scaleNodegroup");
    const r = await deps.cluster.scale(plan.nodegroup.target, token);
    const updateId = r.updateId
      ? String(await memo.remember(exec, MEMO.nodegroupUpdate, r.updateId))
      : await memo.recall(exec, MEMO.nodegroupUpdate);
    await announceRecovery(ctx.request, plan);
    return {
      outcome: r.changed ? "succeeded" : "unchanged",
      detail: r.changed
        ? `update ${r.updateId ?? "?"}: desired ${previous.desired} -> ${plan.nodegroup.target.desired}`
        : `already at desired ${plan.nodegroup.target.desired}`,
      fields: {
        previous,
        target: plan.nodegroup.target,
        clientRequestToken: token,
        ...(typeof updateId === "string" ? { updateId } : {}),
      },
    };
  };

  /** Until the node group is ACTIVE at the target size (DescribeUpdate when it answers, else DescribeNodegroup). */
  const waitNodegroup: StepBody = async (ctx) => {
    const exec = ctx.request.executionId;
    const plan = planOf(ctx);
    if (await scaledBack(exec))
      return { outcome: "skipped", detail: "this drill already scaled the node group back" };
    const fromState = rec(ctx.steps.scaleNodegroup).updateId;
    const updateId =
      typeof fromState === "string" ? fromState : await memo.recall(exec, MEMO.nodegroupUpdate);
    const r = await deps.cluster.waitFor(
      plan.nodegroup.target,
      typeof updateId === "string" ? updateId : undefined,
      waitOptions(config.waits.nodegroupMs),
    );
    return {
      outcome: "succeeded",
      detail: `ACTIVE at desired ${plan.nodegroup.target.desired} (via ${r.via}, ${r.polls} poll(s))`,
      fields: { target: plan.nodegroup.target, ...r },
    };
  };

  /** Creates the Velero Restore (deterministic name); a re-run finds it and creates nothing. */
  const startRestore: StepBody = async (ctx) => {
    const plan = planOf(ctx);
    const { request } = ctx;
    const existing = await deps.velero.get(plan.restore.name);
    let created = false;
    let restore = existing;
    if (existing) {
      if (existing.backupName !== plan.backup.name) {
        throw new StepFailed(
          `a Restore named ${plan.restore.name} exists for backup ${existing.backupName}, not ${plan.backup.name}`,
        );
      }
    } else {
      const r = await deps.velero.ensure({
        name: plan.restore.name,
        backupName: plan.backup.name,
        includedNamespaces: plan.restore.includedNamespaces,
        ...(plan.restore.namespaceMapping ? { namespaceMapping: plan.restore.namespaceMapping } : {}),
        labels: {
          "app.kubernetes.io/managed-by": "velero-xregion-dr",
          "dr.velero.io/mode": request.drill ? "drill" : "failover",
        },
        annotations: {
          "dr.velero.io/execution-id": request.executionId,
          "dr.velero.io/requested-by": request.requestedBy,
          "dr.velero.io/reason": request.reason.slice(0, 1024),
        },
      });
      created = r.created;
      restore = r.restore;
    }
    await announceRecovery(request, plan);
    return {
      outcome: created ? "succeeded" : "unchanged",
      detail: `${created ? "created" : "found"} Restore ${plan.restore.name} of backup ${plan.backup.name}`,
      fields: {
        restoreName: plan.restore.name,
        backupName: plan.backup.name,
        created,
        phase: restore?.phase ?? "New",
        includedNamespaces: plan.restore.includedNamespaces,
        ...(plan.restore.namespaceMapping ? { namespaceMapping: plan.restore.namespaceMapping } : {}),
      },
    };
  };

  /** Until the Restore's phase is final: Completed, PartiallyFailed (reported) or Failed (StepFailed). */
  const waitRestore: StepBody = async (ctx) => {
    const plan = planOf(ctx);
    const name = plan.restore.name;
    const deadline = Date.now() + config.waits.restoreMs;
    let polls = 0;
    for (;;) {
      polls++;
      const r = await deps.velero.get(name);
      if (!r) throw new StepFailed(`Restore ${name} does not exist (startRestore has not run?)`);
      const counts = { restoreName: name, phase: r.phase, warnings: r.warnings, errors: r.errors, polls };
      const why = [r.failureReason, ...(r.validationErrors ?? [])].filter(Boolean).join("; ");
      if (["Completed", "PartiallyFailed", "Failed", "FailedValidation"].includes(r.phase)) {
        await announce(
          ctx.request,
          "restoreFinished",
          `restore ${r.phase}`,
          [
            `Restore ${name} of backup ${plan.backup.name}: ${r.phase}, warnings ${r.warnings}, errors ${r.errors}`,
            ...(why ? [why] : []),
          ],
          { restoreName: name, phase: r.phase, warnings: r.warnings, errors: r.errors },
        );
      }
      if (r.phase === "Completed") {
        return {
          outcome: "succeeded",
          detail: `Completed (warnings ${r.warnings}, errors ${r.errors})`,
          fields: counts,
        };
      }
      if (r.phase === "PartiallyFailed") {
        const detail = `PartiallyFailed: warnings ${r.warnings}, errors ${r.errors}${why ? `; ${why}` : ""}`;
        if (config.partialRestore === "fail") throw new StepFailed(`Restore ${name} ${detail}`);
        return { outcome: "partially-failed", detail, fields: counts };
      }
      if (r.phase === "Failed" || r.phase === "FailedValidation") {
        throw new StepFailed(
          `Restore ${name} ${r.phase}: warnings ${r.warnings}, errors ${r.errors}${why ? `; ${why}` : ""}`,
        );
      }
      if (Date.now() + config.waits.pollMs > deadline) {
        throw new StillWaiting(`Restore ${name} is ${r.phase}; still waiting`);
      }
      await new Promise((res) => setTimeout(res, config.waits.pollMs));
    }
  };

  /**
   * UPSERTs the alias to the failover load balancer unless it already is, remembers the change, and
   * waits for INSYNC. Skipped in a drill (the record is read, for the report, and left alone).
   */
  const switchDns: StepBody = async (ctx) => {
    const plan = planOf(ctx);
    const exec = ctx.request.executionId;
    if (ctx.request.drill || !plan.dns.switch) {
      const current = await deps.dns.current();
      await announce(
        ctx.request,
        "dns",
        "DNS switch skipped (drill)",
        [`${plan.dns.recordName} left on ${current?.dnsName ?? "its target"}`],
        { switched: false, target: current?.dnsName ?? null },
      );
      return {
        outcome: "skipped",
        detail: `drill: ${plan.dns.recordName} left on ${current?.dnsName ?? "its target"}`,
        fields: { changed: false, ...(current ? { previousTarget: current, currentTarget: current } : {}) },
      };
    }
    const target = plan.dns.failover;
    const r = await deps.dns.switchTo(target, `velero-dr failover ${exec}`);
    const ChangeSchema = z.object({
      changeId: z.optional(z.string()),
      previous: z.optional(AliasTargetSchema),
    });
    const change = r.changed
      ? parseWith(
          ChangeSchema,
          await memo.remember(exec, MEMO.dnsChange, { changeId: r.changeId, previous: r.previous }),
          "remembered DNS change",
        )
      : parseWith(ChangeSchema, (await memo.recall(exec, MEMO.dnsChange)) ?? {}, "remembered DNS change");
    const changeId = r.changed ? r.changeId : change.changeId;
    const previousTarget = r.changed ? r.previous : (change.previous ?? plan.dns.current);
    const status = changeId
      ? await deps.dns.waitInSync(changeId, waitOptions(config.waits.dnsMs))
      : "unknown (not changed by this execution)";
    await announce(
      ctx.request,
      "dns",
      "DNS switched",
      [`${plan.dns.recordName}: ${previousTarget?.dnsName ?? "?"} -> ${target.dnsName} (${status})`],
      { switched: true, previous: previousTarget?.dnsName ?? null, target: target.dnsName, status },
    );
    return {
      outcome: r.changed ? "succeeded" : "unchanged",
      detail: `${plan.dns.recordName} -> ${target.dnsName} (${r.changed ? "changed" : "already there"}, ${status})`,
      fields: {
        changed: r.changed,
        target,
        status,
        ...(changeId ? { changeId } : {}),
        ...(previousTarget ? { previousTarget } : {}),
      },
    };
  };

  /** Drill only: back to the size remembered before the scale-up. */
  const scaleBack: StepBody = async (ctx) => {
    const exec = ctx.request.executionId;
    if (!ctx.request.drill) {
      return { outcome: "skipped", detail: "not a drill: the node group stays scaled up" };
    }
    const fromState = rec(ctx.steps.scaleNodegroup).previous;
    const recorded = fromState ?? (await memo.recall(exec, MEMO.previousScaling));
    if (recorded === undefined) {
      throw new StepFailed(
        "no node group size was recorded before the scale-up (scaleNodegroup has not run?)",
      );
    }
    const previous: Scaling = parseWith(ScalingSchema, recorded, "recorded node group size");
    const r = await deps.cluster.scale(previous, requestTokenFor(exec, "scaleBack"));
    await memo.remember(exec, MEMO.scaledBack, {
      at: clock.now().toISOString(),
      updateId: r.updateId ?? null,
    });
    await announce(
      ctx.request,
      "scaledBack",
      "node group scaled back",
      [
        `node group ${config.nodegroupName} back to desired ${previous.desired} (min ${previous.min}, max ${previous.max})`,
      ],
      { nodegroupTarget: previous },
    );
    return {
      outcome: r.changed ? "succeeded" : "unchanged",
      detail: r.changed
        ? `update ${r.updateId ?? "?"}: back to desired ${previous.desired}`
        : "already at the recorded size",
      fields: { target: previous, ...(r.updateId ? { updateId: r.updateId } : {}) },
    };
  };

  /**
   * Builds the report from the state (failed when the workflow caught an error: ReportFailure),
   * records it as the execution's audit record, and publishes it to every notifier once per
   * execution and outcome (the memo records that it went out; a crash between the publish and the
   * record sends it twice). A failed run's report leaves the success report of its re-run to send.
   */
  const report: StepBody = async (ctx) => {
    const exec = ctx.request.executionId;
    const preflightOut = rec(ctx.steps.preflight);
    const plan = preflightOut.plan === undefined ? undefined : planOf(ctx);
    const built: FailoverReport = buildReport(ctx.request, ctx.steps, plan, clock.now());
    const caught = ctx.error === undefined ? undefined : rec(ctx.error);
    const approvedBy = rec(ctx.approval).approvedBy;
    const full = {
      ...built,
      outcome: caught ? ("failed" as const) : ("succeeded" as const),
      ...(caught
        ? { error: { error: String(caught.Error ?? "error"), cause: causeText(caught.Cause) } }
        : {}),
      ...(typeof approvedBy === "string" ? { approvedBy } : {}),
    };
    const audit = await deps.audit.record(full);
    const key = MEMO.reportPublished(full.outcome);
    let published = await memo.recall(exec, key);
    let outcome: StepOutcome = "unchanged";
    if (published === undefined && deps.notifiers.length > 0) {
      const kind = full.drill ? "DR drill" : "Failover";
      const backup = full.backup?.name ?? "no backup";
      const subject = caught
        ? `${kind} FAILED: ${backup}`
        : `${kind} ${full.restore?.phase ?? "report"}: ${backup}`;
      const text = renderReport(full);
      const ids = await Promise.all(deps.notifiers.map((n) => n.publish(subject, text, full)));
      published = await memo.remember(exec, key, ids);
      outcome = "succeeded";
    } else if (deps.notifiers.length === 0) {
      outcome = "succeeded";
    }
    return {
      outcome,
      detail: `${full.outcome}: RTO ${full.rtoSeconds ?? "n/a"} s, data-loss window ${full.dataLossSeconds ?? "n/a"} s`,
      fields: { report: full, published: published ?? [], audit },
    };
  };

  /** Preflight, announced: passed (the backup and the data-loss window) or refused (the reasons). */
  const preflightAnnounced: StepBody = async (ctx) => {
    const { request } = ctx;
    try {
      const r = await preflight(ctx);
      const plan = parseWith(FailoverPlanSchema, r.fields?.plan, "plan");
      await announce(
        request,
        "preflightPassed",
        "preflight passed",
        [
          `backup ${plan.backup.name} (started ${plan.backup.startTimestamp}); data-loss window ${plan.dataLossSeconds} s`,
          request.drill
            ? `drill: restore into ${Object.values(plan.restore.namespaceMapping ?? {}).join(", ") || plan.restore.includedNamespaces.join(", ")}, DNS left alone`
            : `failover: DNS ${plan.dns.recordName} will switch to ${plan.dns.failover.dnsName}`,
          `requested by ${request.requestedBy}: ${request.reason}`,
          "waiting for approval",
        ],
        { backup: plan.backup.name, dataLossSeconds: plan.dataLossSeconds },
      );
      return r;
    } catch (err) {
      if (err instanceof PreflightFailed) {
        await announce(
          request,
          "preflightRefused",
          "preflight refused",
          [...err.reasons.map((x) => `- ${x}`), `requested by ${request.requestedBy}: ${request.reason}`],
          { reasons: err.reasons },
        );
      }
      throw err;
    }
  };

  return {
    preflight: handler("preflight", preflightAnnounced),
    scaleNodegroup: handler("scaleNodegroup", scaleNodegroup),
    waitNodegroup: handler("waitNodegroup", waitNodegroup),
    startRestore: handler("startRestore", startRestore),
    waitRestore: handler("waitRestore", waitRestore),
    switchDns: handler("switchDns", switchDns),
    scaleBack: handler("scaleBack", scaleBack),
    report: handler("report", report),
  };
}
