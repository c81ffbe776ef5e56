import { Arn, ArnFormat, Duration, Fn, RemovalPolicy, type Stack } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as events from "aws-cdk-lib/aws-events";
import * as targets from "aws-cdk-lib/aws-events-targets";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import { SqsEventSource } from "aws-cdk-lib/aws-lambda-event-sources";
import type * as logs from "aws-cdk-lib/aws-logs";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import * as sqs from "aws-cdk-lib/aws-sqs";
import type { FunctionProps, Function as SstFunction, StackContext } from "sst/constructs";
import { METRIC } from "../functions/app/metrics.js";
import { ALL_SCHEDULES } from "../functions/core/backup.js";
import { configToEnv, type VeleroConfig } from "../functions/core/config.js";
import { SOURCE_SNAPSHOT_TAG } from "../functions/core/model.js";
import {
  bucketEventPattern,
  COPY_EVENT_PATTERNS,
  SNAPSHOT_EVENT_PATTERNS,
} from "../functions/core/patterns.js";
import { operationsDashboard } from "./dashboard.js";
import { HANDLERS, ourFunction } from "./functions.js";
import { toEventPattern } from "./patterns.js";
import { busName, forwardRuleName, isProtectedStage, type Settings, settingsFromEnv } from "./settings.js";
import { removeIdleCustomResourceHandler } from "./sst-internals.js";

/** Ledger index of open work by status (the sweep and the scheduler query it). */
export const STATUS_INDEX = "byStatus";
export const METRICS_NAMESPACE = "VeleroDR";
export const SERVICE_NAME = "velero-dr";

/** Function timeouts; each SQS queue's visibility timeout is 6x its consumer's (AWS guidance). */
const QUEUE_CONSUMER_TIMEOUT = Duration.seconds(60);
const SWEEP_TIMEOUT = Duration.seconds(120);
/**
 * A copy poller run looks for at most POLL_WINDOW_MS (50 s, functions/app/poll.ts) and then stops;
 * the next run starts a minute later, so a run never outlives the next one's start, unless it
 * publishes a backup (PUBLISH_TIMEOUT): two runs at once are safe (each copy settles once, by the
 * ledger's conditions, as with copy-completed; publishing is idempotent).
 */
const POLL_TIMEOUT = Duration.seconds(60);
const RECOVERY_POINT_TIMEOUT = Duration.seconds(30);
/**
 * With Velero's bucket, copy-completed, register, the copy poller and the sweep also publish
 * DR-ready backups (small files read whole, the tarball streamed through the rewrite:
 * functions/core/velero-stream.ts). `npm run bench:publish` (README, Measured), 50,000 resources
 * and a 216 MiB tarball (634 MiB of tar): peak RSS 136-142 MiB, 68 MiB of it before publishing
 * (124 MiB for a 43 MiB tarball: it does not follow the backup's size), 15 s of CPU on one x86
 * core. Lambda's CPU follows memory (1,769 MB = one vCPU): at 1,024 MB (0.58 vCPU, 7x the peak RSS)
 * that backup takes about 26 s, and PUBLISH_TIMEOUT allows 4x that: a tarball near 800 MiB, or a
 * slower arm64 core.
 */
const PUBLISH_MEMORY_MB = 1024;
const PUBLISH_TIMEOUT = Duration.seconds(120);
/** The sweep may publish several backups in a run; every 5 minutes, so it still ends before the next. */
const PUBLISHING_SWEEP_TIMEOUT = Duration.seconds(300);
/** The oldest message waiting longer than this means the consumer is stuck or failing. */
const QUEUE_AGE_ALARM_SECONDS = 900;

/**
 * The replication plane, in the failover region: the bus the source regions forward to, the two
 * event queues and their consumers, the reconciliation sweep, the copy poller (unless
 * DR_POLL_SECONDS is 0), the ledger, the alarms and the dashboard. With Velero's bucket configured
 * (DR_VELERO_BUCKET), also the DR-ready backups: the bucket's events, their queue and the `register`
 * consumer, and the recovery point every minute with its RPO alarm.
 */
export function Replication({ stack }: StackContext) {
  const settings = settingsFromEnv(process.env);
  const { config } = settings;
  const isProtected = isProtectedStage(stack.stage);
  const statefulRemoval = isProtected ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;

  // --- Ledger -------------------------------------------------------------------------------
  const table = new dynamodb.Table(stack, "Ledger", {
    partitionKey: { name: "pk", type: dynamodb.AttributeType.STRING },
    sortKey: { name: "sk", type: dynamodb.AttributeType.STRING },
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    timeToLiveAttribute: "expiresAt",
    deletionProtection: isProtected,
    removalPolicy: statefulRemoval,
  });
  table.addGlobalSecondaryIndex({
    indexName: STATUS_INDEX,
    partitionKey: { name: "gsi1pk", type: dynamodb.AttributeType.STRING },
    sortKey: { name: "gsi1sk", type: dynamodb.AttributeType.STRING },
    projectionType: dynamodb.ProjectionType.ALL,
  });

  // --- Alerts ---------------------------------------------------------------------------------
  // Encrypted with a key of our own: CloudWatch cannot publish to a topic under the AWS managed
  // aws/sns key, whose policy cannot admit cloudwatch.amazonaws.com. Both grants are limited to
  // this stack's alarms (by name prefix) in this account.
  // https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
  const prefix = alarmPrefix(stack.stage);
  const fromOurAlarms = {
    StringEquals: { "aws:SourceAccount": stack.account },
    ArnLike: {
      "aws:SourceArn": Arn.format(
        {
          service: "cloudwatch",
          resource: "alarm",
          resourceName: `${prefix}*`,
          arnFormat: ArnFormat.COLON_RESOURCE_NAME,
        },
        stack,
      ),
    },
  };
  const alertsKey = new kms.Key(stack, "AlertsKey", {
    description: `Velero DR ${stack.stage}: alerts topic encryption`,
    enableKeyRotation: true,
    removalPolicy: statefulRemoval,
    pendingWindow: Duration.days(7),
  });
  alertsKey.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: "AllowOurAlarmsToPublish",
      principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
      actions: ["kms:Decrypt", "kms:GenerateDataKey*"],
      resources: ["*"], // in a key policy, "*" is this key
      conditions: fromOurAlarms,
    }),
  );
  const alerts = new sns.Topic(stack, "Alerts", {
    displayName: `Velero DR ${stack.stage}`,
    masterKey: alertsKey,
    enforceSSL: true,
  });
  // The topic policy CDK writes (for enforceSSL) replaces SNS's default one, so CloudWatch is
  // admitted explicitly.
  alerts.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: "AllowOurAlarmsToPublish",
      principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
      actions: ["sns:Publish"],
      resources: [alerts.topicArn],
      conditions: fromOurAlarms,
    }),
  );
  if (settings.alertEmail) alerts.addSubscription(new subscriptions.EmailSubscription(settings.alertEmail));
  const alarmAction = new SnsAction(alerts);

  // --- Queues ---------------------------------------------------------------------------------
  const { velero } = config;
  // With Velero's bucket, copy-completed (and register) publish backups: longer timeouts, more memory.
  const publisherTimeout = velero ? PUBLISH_TIMEOUT : QUEUE_CONSUMER_TIMEOUT;
  const publisherMemory = velero ? { memorySize: PUBLISH_MEMORY_MB } : {};
  const snapshotEvents = queueWithDlq(stack, "SnapshotEvents", QUEUE_CONSUMER_TIMEOUT);
  const copyEvents = queueWithDlq(stack, "CopyEvents", publisherTimeout);
  const backupEvents = velero ? queueWithDlq(stack, "BackupEvents", PUBLISH_TIMEOUT) : undefined;
  const queues: Record<string, QueuePair> = {
    SnapshotEvents: snapshotEvents,
    CopyEvents: copyEvents,
    ...(backupEvents ? { BackupEvents: backupEvents } : {}),
  };
  const alarms: cloudwatch.Alarm[] = [];
  const alarm = (a: cloudwatch.Alarm) => {
    a.addAlarmAction(alarmAction);
    a.addOkAction(alarmAction);
    alarms.push(a);
    return a;
  };
  for (const [id, pair] of Object.entries(queues)) {
    for (const a of queueAlarms(stack, prefix, id, pair)) alarm(a);
  }

  // --- Bus and rules --------------------------------------------------------------------------
  const bus = new events.EventBus(stack, "Bus", {
    eventBusName: busName(stack.stage),
    description: "EBS snapshot notifications forwarded from the Velero source regions",
  });
  // Same account, so the forwarders' IAM role already suffices by IAM's rules; EventBridge has been
  // seen to check the receiving bus's policy when the cross-region target is created
  // (ministryofjustice/modernisation-platform-environments#19002: AccessDenied from PutTargets).
  // This policy names only our own account and only our forwarding rules, so it grants nothing new.
  bus.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: "AllowForwardRulesFromSourceRegions",
      principals: [new iam.AccountRootPrincipal()],
      actions: ["events:PutEvents"],
      resources: [bus.eventBusArn],
      conditions: {
        ArnEquals: {
          "aws:SourceArn": config.sourceRegions.flatMap((region) =>
            Object.keys(SNAPSHOT_EVENT_PATTERNS).map((key) =>
              Arn.format(
                {
                  service: "events",
                  region,
                  resource: "rule",
                  resourceName: forwardRuleName(stack.stage, key),
                  arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
                },
                stack,
              ),
            ),
          ),
        },
      },
    }),
  );
  // One rule per pattern, the patterns local mode runs too (functions/core/patterns.ts). Each
  // SqsQueue target adds a queue policy statement: events.amazonaws.com may SendMessage only with
  // aws:SourceArn equal to that rule's ARN.
  for (const [key, pattern] of Object.entries(SNAPSHOT_EVENT_PATTERNS)) {
    new events.Rule(stack, `SnapshotEvents-${key}`, {
      eventBus: bus,
      description: `Forwarded EBS snapshot notifications (${key}) -> snapshot-events queue`,
      eventPattern: toEventPattern(pattern),
      targets: [new targets.SqsQueue(snapshotEvents.queue)],
    });
  }
  // copySnapshot notifications arrive on the *destination* region's default bus: completions and
  // failures, and time-based copies that missed their deadline.
  // https://docs.aws.amazon.com/ebs/latest/userguide/ebs-cloud-watch-events.html
  for (const [key, pattern] of Object.entries(COPY_EVENT_PATTERNS)) {
    new events.Rule(stack, `CopyEvents-${key}`, {
      description: `EBS copy notifications (${key}, default bus) -> copy-events queue`,
      eventPattern: toEventPattern(pattern),
      targets: [new targets.SqsQueue(copyEvents.queue)],
    });
  }
  // Velero's bucket lives in this region, so its S3 events (once EventBridge notifications are on
  // for the bucket, see README) arrive on this region's default bus.
  // https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventBridge.html
  if (velero && backupEvents) {
    // No rule on `<failoverPrefix>/backups/`: our own writes there must not trigger registration.
    new events.Rule(stack, "BackupEvents-bucket", {
      description: `Velero metadata in s3://${velero.bucket}/${backupsDir(velero.prefix)} -> backup-events queue`,
      eventPattern: toEventPattern(bucketEventPattern(velero.bucket, velero.prefix)),
      targets: [new targets.SqsQueue(backupEvents.queue)],
    });
  }

  // --- Functions ------------------------------------------------------------------------------
  const logGroups: Record<string, logs.LogGroup> = {};
  const fn = (
    id: string,
    handler: string,
    timeout: Duration,
    description: string,
    permissions: iam.PolicyStatement[],
    extra?: Partial<FunctionProps>,
  ) => {
    const { fn: f, logGroup } = ourFunction(stack, id, {
      handler,
      timeout,
      description,
      environment: {
        ...configToEnv({ ...config, ledgerTable: table.tableName }),
        POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
      },
      permissions,
      removalPolicy: isProtected ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
      ...(extra ? { extra } : {}),
    });
    logGroups[id] = logGroup;
    return f;
  };
  // copy-completed, the sweep and the copy poller also judge backups DR-ready and publish their
  // failover metadata.
  const bucketAccess = velero
    ? [...veleroBucketPermissions(stack, velero), ...copyRetentionPermissions(stack, config.failoverRegion)]
    : [];

  const replicate = fn(
    "Replicate",
    HANDLERS.replicate,
    QUEUE_CONSUMER_TIMEOUT,
    "Records Velero snapshots and admits copies",
    replicationPermissions(stack, settings, table),
  );
  replicate.addEventSource(batchSource(snapshotEvents.queue, settings.queueMaxConcurrency));

  const copyCompleted = fn(
    "CopyCompleted",
    HANDLERS.copyCompleted,
    publisherTimeout,
    "Settles finished copies and admits waiting ones",
    [...replicationPermissions(stack, settings, table), ...bucketAccess],
    publisherMemory,
  );
  copyCompleted.addEventSource(batchSource(copyEvents.queue, settings.queueMaxConcurrency));

  /**
   * A function on a schedule, with no async retries (the next scheduled run is the retry, and runs
   * must not pile up) and, as no queue would show it failing, an alarm when every run of
   * `failingFor` periods failed.
   */
  const scheduled = (
    id: string,
    handler: string,
    timeout: Duration,
    description: string,
    every: Duration,
    scheduleDescription: string,
    alarmName: string,
    alarmDescription: string,
    failingFor: number,
  ) => {
    const f = fn(
      id,
      handler,
      timeout,
      description,
      [...replicationPermissions(stack, settings, table), ...bucketAccess],
      {
        retryAttempts: 0,
        ...publisherMemory,
      },
    );
    new events.Rule(stack, `${id}Schedule`, {
      description: scheduleDescription,
      schedule: events.Schedule.rate(every),
      targets: [new targets.LambdaFunction(f)],
    });
    alarm(
      new cloudwatch.Alarm(stack, `${id}ErrorsAlarm`, {
        alarmName: `${prefix}${alarmName}`,
        alarmDescription,
        metric: f.metricErrors({ period: every, statistic: cloudwatch.Stats.SUM }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: failingFor,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    );
    return f;
  };

  const sweep = scheduled(
    "Sweep",
    HANDLERS.sweep,
    velero ? PUBLISHING_SWEEP_TIMEOUT : SWEEP_TIMEOUT,
    "Reconciles the ledger and admits copies",
    Duration.minutes(5),
    "Every 5 minutes: reconcile the ledger with EC2 and admit waiting copies",
    "sweep-errors",
    "The reconciliation sweep failed on every run for 15 minutes",
    3,
  );

  // The copy poller (DR_POLL_SECONDS, 0 = off): every minute, while copies wait for a slot, it
  // looks every pollSeconds for finished copies, settles them before their events arrive and fills
  // the freed slots; idle, a run is one ledger read. It settles and judges backups exactly as
  // copy-completed does, so it has copy-completed's permissions.
  const poll =
    config.pollSeconds > 0
      ? scheduled(
          "CopyPoller",
          HANDLERS.poll,
          velero ? PUBLISH_TIMEOUT : POLL_TIMEOUT,
          "Settles finished copies before their events while copies wait, and admits waiting ones",
          Duration.minutes(1),
          `Every minute: while copies wait for a slot, look for finished copies every ${config.pollSeconds} s`,
          "poller-errors",
          "The copy poller failed on every run for 5 minutes",
          5,
        )
      : undefined;

  // --- Copy alarms (our metrics: namespace VeleroDR, dimension service as Powertools emits) ----
  const planeMetric = (metricName: string, statistic: string) =>
    new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName,
      dimensionsMap: { service: SERVICE_NAME },
      statistic,
      period: Duration.minutes(5),
    });
  alarm(
    new cloudwatch.Alarm(stack, "CopyFailuresAlarm", {
      alarmName: `${prefix}copy-failures`,
      alarmDescription: `A snapshot copy failed for good (after ${config.maxCopyAttempts} attempts): its backup cannot become DR-ready`,
      metric: planeMetric(METRIC.copyFailures, cloudwatch.Stats.SUM),
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
  );
  // The sweep publishes the count every 5 minutes; a period it missed keeps the alarm's state
  // (its own errors alarm covers a sweep that stopped).
  alarm(
    new cloudwatch.Alarm(stack, "CopiesStuckAlarm", {
      alarmName: `${prefix}copies-stuck`,
      alarmDescription: `A copy has been pending for more than ${config.stuckAfterMinutes} minutes`,
      metric: planeMetric(METRIC.copiesStuck, cloudwatch.Stats.MAXIMUM),
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.IGNORE,
    }),
  );

  // --- DR-ready backups (with Velero's bucket) ----------------------------------------------------
  let register: SstFunction | undefined;
  let recoveryPoint: SstFunction | undefined;
  if (velero && backupEvents) {
    register = fn(
      "Register",
      HANDLERS.register,
      PUBLISH_TIMEOUT,
      "Registers Velero backups from their bucket, copies their CSI snapshots, publishes the DR-ready ones",
      // A backup's CSI snapshots are named only in its files: registration records and copies them
      // as replicate does for Velero-tagged snapshots, so it has replicate's permissions too.
      [...replicationPermissions(stack, settings, table), ...bucketAccess],
      publisherMemory,
    );
    register.addEventSource(batchSource(backupEvents.queue, settings.queueMaxConcurrency));

    // Reads the ledger's index only: no EC2, no S3, no writes.
    recoveryPoint = fn(
      "RecoveryPoint",
      HANDLERS.recoveryPoint,
      RECOVERY_POINT_TIMEOUT,
      "Publishes the recovery point (age of the newest DR-ready backup) every minute",
      [
        new iam.PolicyStatement({
          sid: "LedgerStatusIndexRead",
          actions: ["dynamodb:Query"],
          resources: [`${table.tableArn}/index/${STATUS_INDEX}`],
        }),
      ],
      { retryAttempts: 0 },
    );
    new events.Rule(stack, "RecoveryPointSchedule", {
      description: "Every minute: publish the recovery point age (published even when nothing changed)",
      schedule: events.Schedule.rate(Duration.minutes(1)),
      targets: [new targets.LambdaFunction(recoveryPoint)],
    });
    // No recovery point publishes no age (functions/app/recovery-point.ts), and a stopped function
    // publishes nothing either: both are a breach. Three minutes in a row, so that one late or
    // skipped run does not page anyone.
    alarm(
      new cloudwatch.Alarm(stack, "RecoveryPointAgeAlarm", {
        alarmName: `${prefix}recovery-point-age`,
        alarmDescription:
          `The newest DR-ready backup started more than ${config.rpoTargetMinutes} minutes ago (the RPO ` +
          "target), or no backup is DR-ready, or the recovery point is not being published",
        metric: new cloudwatch.Metric({
          namespace: METRICS_NAMESPACE,
          metricName: METRIC.recoveryPointAge,
          dimensionsMap: { service: SERVICE_NAME, Schedule: ALL_SCHEDULES },
          statistic: cloudwatch.Stats.MAXIMUM,
          period: Duration.minutes(1),
        }),
        threshold: config.rpoTargetMinutes * 60,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        datapointsToAlarm: 3,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      }),
    );
  }

  const dashboard = operationsDashboard(stack, {
    stage: stack.stage,
    namespace: METRICS_NAMESPACE,
    service: SERVICE_NAME,
    copyBudget: config.copyBudget,
    queues,
    alarms,
    ...(recoveryPoint && logGroups.RecoveryPoint
      ? { recoveryPoint: { rpoTargetMinutes: config.rpoTargetMinutes, logGroup: logGroups.RecoveryPoint } }
      : {}),
  });

  removeIdleCustomResourceHandler(stack);
  stack.addOutputs({
    BusArn: bus.eventBusArn,
    LedgerTableName: table.tableName,
    SnapshotEventsQueueUrl: snapshotEvents.queue.queueUrl,
    CopyEventsQueueUrl: copyEvents.queue.queueUrl,
    AlertsTopicArn: alerts.topicArn,
    DashboardName: dashboard.dashboardName,
    ...(backupEvents ? { BackupEventsQueueUrl: backupEvents.queue.queueUrl } : {}),
    // Where the standby cluster's read-only BackupStorageLocation points (README, "The standby's Velero").
    ...(velero
      ? {
          FailoverMetadataLocation: `s3://${velero.failoverBucket}${velero.failoverPrefix ? `/${velero.failoverPrefix}` : ""}`,
        }
      : {}),
    // The roles that call CopySnapshot: what a source volume's customer-managed KMS key policy must
    // name (README, "KMS").
    CopyRoleArns: Fn.join(
      ",",
      [replicate, copyCompleted, sweep, poll, register].flatMap((f) => (f?.role ? [f.role.roleArn] : [])),
    ),
  });
  return {
    bus,
    table,
    alerts,
    snapshotEvents,
    copyEvents,
    backupEvents,
    dashboard,
    alarms,
    functions: { replicate, copyCompleted, sweep, poll, register, recoveryPoint },
  };
}

/** A queue consumer's event source: batches with partial failures, at most `maxConcurrency` at once. */
function batchSource(queue: sqs.IQueue, maxConcurrency: number): SqsEventSource {
  return new SqsEventSource(queue, {
    batchSize: 10,
    maxBatchingWindow: Duration.seconds(5),
    reportBatchItemFailures: true,
    maxConcurrency,
  });
}

interface QueuePair {
  queue: sqs.Queue;
  dlq: sqs.Queue;
}

function queueWithDlq(stack: Stack, id: string, consumerTimeout: Duration): QueuePair {
  const dlq = new sqs.Queue(stack, `${id}Dlq`, {
    retentionPeriod: Duration.days(14),
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
  });
  const queue = new sqs.Queue(stack, `${id}Queue`, {
    // https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html: at least 6x the
    // function timeout, so a batch retried after throttling is not redelivered while in flight.
    visibilityTimeout: Duration.seconds(consumerTimeout.toSeconds() * 6),
    retentionPeriod: Duration.days(4),
    // SQS-managed SSE: EventBridge can deliver to it without a key grant.
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    deadLetterQueue: { queue: dlq, maxReceiveCount: 5 },
  });
  return { queue, dlq };
}

/** Our alarms' names start with this, so the alerts topic and key can admit only them. */
export function alarmPrefix(stage: string): string {
  return `velero-dr-${stage}-`;
}

function queueAlarms(
  stack: Stack,
  prefix: string,
  id: string,
  { queue, dlq }: QueuePair,
): cloudwatch.Alarm[] {
  return [
    new cloudwatch.Alarm(stack, `${id}DlqAlarm`, {
      alarmName: `${prefix}${id}-dlq-depth`,
      alarmDescription: `${id}: messages in the dead-letter queue (a record failed 5 times)`,
      metric: dlq.metricApproximateNumberOfMessagesVisible({
        period: Duration.minutes(1),
        statistic: cloudwatch.Stats.MAXIMUM,
      }),
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
    new cloudwatch.Alarm(stack, `${id}AgeAlarm`, {
      alarmName: `${prefix}${id}-oldest-message-age`,
      alarmDescription: `${id}: oldest message older than ${QUEUE_AGE_ALARM_SECONDS} s (consumer stuck)`,
      metric: queue.metricApproximateAgeOfOldestMessage({
        period: Duration.minutes(1),
        statistic: cloudwatch.Stats.MAXIMUM,
      }),
      threshold: QUEUE_AGE_ALARM_SECONDS,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
  ];
}

/**
 * What every function may do: each may admit a copy, so each can copy and tag. Scoped by ARN
 * wherever the action supports it and by condition where it does not.
 * https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
 */
export function replicationPermissions(
  stack: Stack,
  { config }: Settings,
  table: dynamodb.ITable,
): iam.PolicyStatement[] {
  const snapshots = (region: string) =>
    Arn.format(
      {
        service: "ec2",
        region,
        account: "", // snapshot ARNs carry no account
        resource: "snapshot",
        resourceName: "*",
        arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
      },
      stack,
    );
  const failover = config.failoverRegion;
  const statements = [
    // DescribeSnapshots supports no resource-level permissions; the region condition keeps it to
    // the regions we replicate between.
    new iam.PolicyStatement({
      sid: "DescribeSnapshotsInReplicatedRegions",
      actions: ["ec2:DescribeSnapshots"],
      resources: ["*"],
      conditions: { StringEquals: { "aws:RequestedRegion": [...config.sourceRegions, failover] } },
    }),
    // The new snapshot, in the failover region: only copies that carry our trace tag.
    new iam.PolicyStatement({
      sid: "CopySnapshotCreateTaggedCopy",
      actions: ["ec2:CopySnapshot"],
      resources: [snapshots(failover)],
      conditions: { Null: { [`aws:RequestTag/${SOURCE_SNAPSHOT_TAG}`]: "false" } },
    }),
    // Since April 2025 CopySnapshot also authorizes the source snapshot, in its own region.
    // https://aws.amazon.com/blogs/storage/enhancing-resource-level-permissions-for-copying-amazon-ebs-snapshots/
    new iam.PolicyStatement({
      sid: "CopySnapshotFromSourceRegions",
      actions: ["ec2:CopySnapshot"],
      resources: config.sourceRegions.map(snapshots),
    }),
    // TagSpecifications on CopySnapshot need CreateTags, which this admits only as part of a copy.
    new iam.PolicyStatement({
      sid: "TagCopiesOnCreate",
      actions: ["ec2:CreateTags"],
      resources: [snapshots(failover)],
      conditions: { StringEquals: { "ec2:CreateAction": "CopySnapshot" } },
    }),
    // Transactions need no action of their own: TransactWriteItems is authorized per item as
    // Put/Update/Delete/ConditionCheckItem.
    // https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html
    new iam.PolicyStatement({
      sid: "LedgerItems",
      actions: [
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:Query",
      ],
      resources: [table.tableArn],
    }),
    new iam.PolicyStatement({
      sid: "LedgerStatusIndex",
      actions: ["dynamodb:Query"],
      resources: [`${table.tableArn}/index/${STATUS_INDEX}`],
    }),
  ];
  if (config.kmsKeyId) statements.push(...copyKeyPermissions(stack, config.kmsKeyId, failover));
  return statements;
}

/**
 * Copies encrypted with the configured key: EC2 uses it on our behalf (kms:ViaService) and makes
 * grants for itself. An alias ARN does not authorize key use, so an alias is matched through
 * kms:ResourceAliases on the keys of its account and region.
 * https://docs.aws.amazon.com/ebs/latest/userguide/ebs-encryption-requirements.html
 */
function copyKeyPermissions(stack: Stack, keyArn: string, failover: string): iam.PolicyStatement[] {
  const parts = Arn.split(keyArn, ArnFormat.SLASH_RESOURCE_NAME);
  const isAlias = parts.resource === "alias";
  const resources = isAlias
    ? [
        Arn.format(
          {
            service: "kms",
            region: parts.region,
            account: parts.account,
            resource: "key",
            resourceName: "*",
            arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
          },
          stack,
        ),
      ]
    : [keyArn];
  const aliasCondition = isAlias
    ? { "ForAnyValue:StringEquals": { "kms:ResourceAliases": `alias/${parts.resourceName}` } }
    : {};
  const viaEc2 = { StringEquals: { "kms:ViaService": `ec2.${failover}.amazonaws.com` } };
  return [
    new iam.PolicyStatement({
      sid: "CopyKeyGrantsForEbs",
      actions: ["kms:CreateGrant"],
      resources,
      conditions: { Bool: { "kms:GrantIsForAWSResource": "true" }, ...viaEc2, ...aliasCondition },
    }),
    new iam.PolicyStatement({
      sid: "CopyKeyUseViaEbs",
      actions: ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
      resources,
      conditions: { ...viaEc2, ...aliasCondition },
    }),
  ];
}

/** `<prefix>/backups/`: where a BackupStorageLocation with this prefix keeps its backups. */
export function backupsDir(prefix: string): string {
  return `${prefix ? `${prefix}/` : ""}backups/`;
}

/**
 * Velero's bucket and the failover bucket (both the user's; the stack never creates or changes
 * them, and they may be one bucket with disjoint prefixes): read the backups' metadata under
 * `<prefix>/backups/`, and write the failover copy under `<failoverPrefix>/backups/` of the failover
 * bucket.
 * CopyObject needs no more: GetObject on its source and PutObject on its target (objects without
 * S3 object tags, as Velero writes them; tagged ones would also need Get/PutObjectTagging).
 * ListBucket is limited by `s3:prefix` to the backups. It also decides whether GetObject of a
 * missing key answers 404 NoSuchKey or 403 AccessDenied, and registration relies on the 404 (a
 * deleted backup, a snapshot list not written yet); S3 evaluates that check with the requested key
 * as `s3:prefix`, which this condition admits (ceph/ceph#68577 mirrors AWS on this point).
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html (Permissions)
 */
export function veleroBucketPermissions(stack: Stack, velero: VeleroConfig): iam.PolicyStatement[] {
  const arnOf = (name: string) =>
    Arn.format(
      { service: "s3", region: "", account: "", resource: name, arnFormat: ArnFormat.NO_RESOURCE_NAME },
      stack,
    );
  const bucket = arnOf(velero.bucket);
  const failoverBucket = arnOf(velero.failoverBucket);
  const source = backupsDir(velero.prefix);
  const target = backupsDir(velero.failoverPrefix);
  const list = (sid: string, resource: string, prefixes: string[]) =>
    new iam.PolicyStatement({
      sid,
      actions: ["s3:ListBucket"],
      resources: [resource],
      conditions: { StringLike: { "s3:prefix": prefixes.map((p) => `${p}*`) } },
    });
  const sameBucket = velero.failoverBucket === velero.bucket;
  return [
    new iam.PolicyStatement({
      sid: "VeleroBackupsRead",
      actions: ["s3:GetObject"],
      resources: [`${bucket}/${source}*`],
    }),
    ...(sameBucket
      ? [list("VeleroBackupsList", bucket, [source, target])]
      : [
          list("VeleroBackupsList", bucket, [source]),
          list("FailoverMetadataList", failoverBucket, [target]),
        ]),
    // Publishing writes the failover copy (the tarball in parts, discarded when its rewrite fails);
    // retention deletes it when Velero deletes the backup.
    new iam.PolicyStatement({
      sid: "FailoverMetadataWrite",
      actions: ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
      resources: [`${failoverBucket}/${target}*`],
    }),
  ];
}

/**
 * Retention deletes copies of backups Velero deleted: only snapshots of the failover region that
 * carry our source tag, i.e. copies this pipeline made (never the user's own snapshots).
 */
export function copyRetentionPermissions(stack: Stack, failoverRegion: string): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({
      sid: "DeleteOurCopies",
      actions: ["ec2:DeleteSnapshot"],
      resources: [
        Arn.format(
          {
            service: "ec2",
            region: failoverRegion,
            account: "",
            resource: "snapshot",
            resourceName: "*",
            arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
          },
          stack,
        ),
      ],
      conditions: { Null: { [`aws:ResourceTag/${SOURCE_SNAPSHOT_TAG}`]: "false" } },
    }),
  ];
}
