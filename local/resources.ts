import { CreateTableCommand, type DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  CreateEventBusCommand,
  type EventBridgeClient,
  PutRuleCommand,
  PutTargetsCommand,
} from "@aws-sdk/client-eventbridge";
import {
  CreateBucketCommand,
  PutBucketNotificationConfigurationCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { CreateQueueCommand, GetQueueAttributesCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { INDEX } from "../functions/adapters/dynamo-ledger.js";
import type { VeleroConfig } from "../functions/core/config.js";
import {
  bucketEventPattern,
  COPY_EVENT_PATTERNS,
  SNAPSHOT_EVENT_PATTERNS,
} from "../functions/core/patterns.js";

/** The ledger table, keyed as the stack defines it (pk/sk plus the sparse byStatus index). */
export async function createLedgerTable(dynamo: DynamoDBClient, name: string): Promise<void> {
  await dynamo.send(
    new CreateTableCommand({
      TableName: name,
      BillingMode: "PAY_PER_REQUEST",
      AttributeDefinitions: [
        { AttributeName: "pk", AttributeType: "S" },
        { AttributeName: "sk", AttributeType: "S" },
        { AttributeName: "gsi1pk", AttributeType: "S" },
        { AttributeName: "gsi1sk", AttributeType: "S" },
      ],
      KeySchema: [
        { AttributeName: "pk", KeyType: "HASH" },
        { AttributeName: "sk", KeyType: "RANGE" },
      ],
      GlobalSecondaryIndexes: [
        {
          IndexName: INDEX,
          KeySchema: [
            { AttributeName: "gsi1pk", KeyType: "HASH" },
            { AttributeName: "gsi1sk", KeyType: "RANGE" },
          ],
          Projection: { ProjectionType: "ALL" },
        },
      ],
    }),
  );
}

export interface QueuePair {
  url: string;
  arn: string;
  dlqUrl: string;
}

/** A queue with its DLQ (redrive after `maxReceiveCount` receives), as the stack builds it. */
export async function createQueue(sqs: SQSClient, name: string, visibilitySeconds = 2): Promise<QueuePair> {
  const dlq = await sqs.send(new CreateQueueCommand({ QueueName: `${name}-dlq` }));
  const dlqUrl = dlq.QueueUrl ?? "";
  const dlqArn = await queueArn(sqs, dlqUrl);
  const q = await sqs.send(
    new CreateQueueCommand({
      QueueName: name,
      Attributes: {
        VisibilityTimeout: String(visibilitySeconds),
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 5 }),
      },
    }),
  );
  const url = q.QueueUrl ?? "";
  return { url, arn: await queueArn(sqs, url), dlqUrl };
}

async function queueArn(sqs: SQSClient, url: string): Promise<string> {
  const a = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }));
  const arn = a.Attributes?.QueueArn;
  if (!arn) throw new Error(`queue ${url} has no ARN`);
  return arn;
}

export interface LocalPlaneResources {
  busName: string;
  snapshotQueue: QueuePair;
  copyQueue: QueuePair;
}

/**
 * The failover region's event plumbing on the emulator: the DR bus (where the primary region's
 * rule forwards snapshot events) -> snapshot-events queue; the default bus (where EBS reports our
 * copies) -> copy-events queue.
 */
export async function createEventPlumbing(
  events: EventBridgeClient,
  sqs: SQSClient,
  prefix: string,
): Promise<LocalPlaneResources> {
  const busName = `${prefix}-bus`;
  await events.send(new CreateEventBusCommand({ Name: busName }));
  const snapshotQueue = await createQueue(sqs, `${prefix}-snapshot-events`);
  const copyQueue = await createQueue(sqs, `${prefix}-copy-events`);
  for (const [name, pattern] of Object.entries(SNAPSHOT_EVENT_PATTERNS)) {
    await routeTo(events, `${prefix}-${name}`, busName, pattern, snapshotQueue.arn);
  }
  for (const [name, pattern] of Object.entries(COPY_EVENT_PATTERNS)) {
    await routeTo(events, `${prefix}-${name}`, "default", pattern, copyQueue.arn);
  }
  return { busName, snapshotQueue, copyQueue };
}

async function routeTo(events: EventBridgeClient, rule: string, bus: string, pattern: object, arn: string) {
  await events.send(
    new PutRuleCommand({ Name: rule, EventBusName: bus, EventPattern: JSON.stringify(pattern) }),
  );
  await events.send(
    new PutTargetsCommand({ Rule: rule, EventBusName: bus, Targets: [{ Id: "queue", Arn: arn }] }),
  );
}

/**
 * Velero's bucket in the failover region, with EventBridge notifications on, and the rule that
 * routes its backup metadata events to the backup-events queue; and the failover metadata's bucket
 * when that is another one.
 */
export async function createVeleroBucket(
  s3: S3Client,
  events: EventBridgeClient,
  sqs: SQSClient,
  prefix: string,
  velero: VeleroConfig,
  region: string,
): Promise<QueuePair> {
  const create = (Bucket: string) =>
    s3.send(
      new CreateBucketCommand({
        Bucket,
        ...(region === "us-east-1"
          ? {}
          : { CreateBucketConfiguration: { LocationConstraint: region as "us-west-2" } }),
      }),
    );
  await create(velero.bucket);
  // The failover metadata's own bucket, when it has one: no notifications (nothing listens there).
  if (velero.failoverBucket !== velero.bucket) await create(velero.failoverBucket);
  await s3.send(
    new PutBucketNotificationConfigurationCommand({
      Bucket: velero.bucket,
      NotificationConfiguration: { EventBridgeConfiguration: {} },
    }),
  );
  const queue = await createQueue(sqs, `${prefix}-backup-events`);
  await routeTo(
    events,
    `${prefix}-backups`,
    "default",
    bucketEventPattern(velero.bucket, velero.prefix),
    queue.arn,
  );
  return queue;
}
