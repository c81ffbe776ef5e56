import { randomUUID } from "node:crypto";
import { Logger } from "@aws-lambda-powertools/logger";
import { Metrics } from "@aws-lambda-powertools/metrics";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  CopySnapshotCommand,
  DescribeSnapshotsCommand,
  type DescribeSnapshotsResult,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { EventBridgeClient, PutEventsCommand, type PutEventsRequestEntry } from "@aws-sdk/client-eventbridge";
import { S3Client } from "@aws-sdk/client-s3";
import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { makeCopyCompletedHandler } from "../functions/app/copy-completed.js";
import { makeRegisterHandler } from "../functions/app/register.js";
import { withRegistry } from "../functions/app/registry-runtime.js";
import { makeReplicateHandler } from "../functions/app/replicate.js";
import { makeRuntime, type Runtime } from "../functions/app/runtime.js";
import { makeSweepHandler } from "../functions/app/sweep.js";
import { DEFAULTS, type ReplicationConfig } from "../functions/core/config.js";
import type { SweepReport } from "../functions/core/plane.js";
import type { Clock } from "../functions/core/ports.js";
import {
  createEventPlumbing,
  createLedgerTable,
  createVeleroBucket,
  type LocalPlaneResources,
  type QueuePair,
} from "./resources.js";

export const LOCAL_ACCOUNT = "123456789012";
export const LOCAL_CREDENTIALS = { accessKeyId: "local", secretAccessKey: "local" };

/** The shape of a snapshot ARN in EBS events. */
export const snapshotArn = (region: string, id: string) => `arn:aws:ec2::${region}:snapshot/${id}`;

/** A fault to inject into an EC2 call: return an error to throw instead of calling the emulator. */
export type Ec2Fault = (command: string, input: Record<string, unknown>) => Error | undefined;

/** An AWS-shaped service error (what the SDK throws for an error response). */
export function awsError(code: string, message: string, status = 400): Error {
  return Object.assign(new Error(message), {
    name: code,
    Code: code,
    $fault: status >= 500 ? "server" : "client",
    $metadata: { httpStatusCode: status },
  });
}

export interface Copy {
  copySnapshotId: string;
  sourceSnapshotId: string;
  sourceRegion: string;
  startTime: string;
  /** When the simulated copy completed (set on release or after the delay). */
  endTime?: string;
  /** Order of start and completion among all copy starts and completions (for overlap checks). */
  startSeq: number;
  endSeq?: number;
}

/**
 * Plays AWS's part that the emulator cannot: EBS events. Moto completes copies at once and emits
 * nothing, so after each CopySnapshot this emits the `copySnapshot` event AWS would, either after
 * `copyDelayMs` or (mode "held") only when a test releases the copy. It also counts copies pending
 * in "AWS" at once, which is what the 20-copy quota limits.
 */
export class EbsEventEmitter {
  readonly copies: Copy[] = [];
  readonly held: Copy[] = [];
  /** Ids of the copies started and not completed yet. */
  private readonly unfinished = new Set<string>();
  private pending = 0;
  private timers = 0;
  private seq = 0;
  maxPending = 0;

  constructor(
    private readonly events: EventBridgeClient,
    private readonly failoverRegion: string,
    private readonly copyDelayMs: number | "held",
  ) {}

  /** SDK middleware for the failover region's EC2 client: sees every successful CopySnapshot. */
  attach(client: EC2Client, fault?: Ec2Fault): void {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const command = (context as { commandName?: string }).commandName ?? "";
        const input = args.input as Record<string, unknown>;
        const injected = fault?.(command, input);
        if (injected) throw injected;
        const out = await next(args);
        if (command === DescribeSnapshotsCommand.name)
          this.showHeldAsPending(out.output as DescribeSnapshotsResult);
        if (command === CopySnapshotCommand.name) {
          const output = out.output as { SnapshotId?: string };
          if (output.SnapshotId) {
            this.started({
              copySnapshotId: output.SnapshotId,
              sourceSnapshotId: String(input.SourceSnapshotId),
              sourceRegion: String(input.SourceRegion),
              startTime: new Date().toISOString(),
              startSeq: ++this.seq,
            });
          }
        }
        return out;
      },
      { step: "initialize", name: "localEbsEvents" },
    );
  }

  /**
   * The emulator completes copies at once; a copy this emitter has not completed yet (held, or
   * within its delay) must look pending to the sweep and the poller, as in AWS.
   */
  private showHeldAsPending(output: DescribeSnapshotsResult): void {
    for (const s of output.Snapshots ?? []) {
      if (s.SnapshotId && this.unfinished.has(s.SnapshotId)) {
        s.State = "pending";
        s.Progress = "42%";
      }
    }
  }

  /** Adds fault injection to a client that needs no event emission (the source regions). */
  static faults(client: EC2Client, fault: Ec2Fault): void {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const injected = fault(
          (context as { commandName?: string }).commandName ?? "",
          args.input as Record<string, unknown>,
        );
        if (injected) throw injected;
        return next(args);
      },
      { step: "initialize", name: "localFaults" },
    );
  }

  private started(copy: Copy): void {
    this.copies.push(copy);
    this.unfinished.add(copy.copySnapshotId);
    this.pending++;
    this.maxPending = Math.max(this.maxPending, this.pending);
    if (this.copyDelayMs === "held") {
      this.held.push(copy);
      return;
    }
    this.timers++;
    setTimeout(() => {
      this.complete([copy]).finally(() => this.timers--);
    }, this.copyDelayMs);
  }

  get inFlight(): number {
    return this.pending;
  }

  get busy(): boolean {
    return this.timers > 0;
  }

  isHeld(copySnapshotId: string): boolean {
    return this.held.some((c) => c.copySnapshotId === copySnapshotId);
  }

  /**
   * Completes up to `n` held copies (oldest first) and emits their events, unless `emit` is false:
   * EBS events are best effort, and a lost one is what the sweep is for.
   */
  async release(
    n = Number.POSITIVE_INFINITY,
    options: { result?: "succeeded" | "failed"; emit?: boolean } = {},
  ): Promise<Copy[]> {
    const batch = this.held.splice(0, Math.min(n, this.held.length));
    if (options.emit === false) this.finish(batch);
    else await this.complete(batch, options.result);
    return batch;
  }

  private finish(copies: readonly Copy[]): void {
    this.pending -= copies.length;
    for (const c of copies) {
      this.unfinished.delete(c.copySnapshotId);
      c.endTime = new Date().toISOString();
      c.endSeq = ++this.seq;
    }
  }

  /** Emits the copySnapshot events AWS would for these copies. */
  async complete(copies: readonly Copy[], result: "succeeded" | "failed" = "succeeded"): Promise<void> {
    this.finish(copies);
    const entries = copies.map((c) => this.copyEvent(c, result));
    await putEvents(this.events, entries);
  }

  copyEvent(c: Copy, result: "succeeded" | "failed", busName = "default"): PutEventsRequestEntry {
    const arn = snapshotArn(this.failoverRegion, c.copySnapshotId);
    return {
      Source: "aws.ec2",
      DetailType: "EBS Snapshot Notification",
      EventBusName: busName,
      Resources: [arn],
      Detail: JSON.stringify({
        event: "copySnapshot",
        result,
        cause: result === "failed" ? "Snapshot copy failed (simulated)" : "",
        "request-id": randomUUID(),
        snapshot_id: arn,
        source: snapshotArn(c.sourceRegion, c.sourceSnapshotId),
        startTime: c.startTime,
        endTime: new Date().toISOString(),
        incremental: "false",
        transferType: "standard",
      }),
    };
  }
}

/** PutEvents in batches of 10 (its limit), failing loudly on any rejected entry. */
export async function putEvents(
  events: EventBridgeClient,
  entries: readonly PutEventsRequestEntry[],
): Promise<void> {
  for (let i = 0; i < entries.length; i += 10) {
    const out = await events.send(new PutEventsCommand({ Entries: entries.slice(i, i + 10) }));
    if (out.FailedEntryCount) throw new Error(`PutEvents rejected ${out.FailedEntryCount} entries`);
  }
}

type SqsHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

export function lambdaContext(functionName: string, region: string): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: "$LATEST",
    invokedFunctionArn: `arn:aws:lambda:${region}:${LOCAL_ACCOUNT}:function:${functionName}`,
    memoryLimitInMB: "256",
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: "local",
    getRemainingTimeInMillis: () => 60_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/**
 * Plays Lambda's SQS event source mapping: receive up to 10 messages, invoke the handler, delete
 * the ones not reported in `batchItemFailures` (those come back after the visibility timeout, and
 * reach the DLQ after maxReceiveCount receives, as in AWS).
 */
export class EventSourceMapping {
  invocations = 0;

  constructor(
    private readonly sqs: SQSClient,
    readonly queue: QueuePair,
    private readonly functionName: string,
    private readonly region: string,
    private readonly handler: SqsHandler,
    private readonly batchSize = 10,
  ) {}

  async pollOnce(): Promise<number> {
    const out = await this.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: this.queue.url,
        MaxNumberOfMessages: this.batchSize,
        WaitTimeSeconds: 0,
        MessageSystemAttributeNames: ["All"],
      }),
    );
    const messages = out.Messages ?? [];
    if (messages.length === 0) return 0;
    const records: SQSRecord[] = messages.map((m) => ({
      messageId: m.MessageId ?? randomUUID(),
      receiptHandle: m.ReceiptHandle ?? "",
      body: m.Body ?? "",
      attributes: {
        ApproximateReceiveCount: m.Attributes?.ApproximateReceiveCount ?? "1",
        SentTimestamp: m.Attributes?.SentTimestamp ?? String(Date.now()),
        SenderId: "events.amazonaws.com",
        ApproximateFirstReceiveTimestamp:
          m.Attributes?.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
      },
      messageAttributes: {},
      md5OfBody: m.MD5OfBody ?? "",
      eventSource: "aws:sqs",
      eventSourceARN: this.queue.arn,
      awsRegion: this.region,
    }));
    this.invocations++;
    const response = await this.handler({ Records: records }, lambdaContext(this.functionName, this.region));
    const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
    const done = messages.filter((m) => m.MessageId && !failed.has(m.MessageId));
    if (done.length > 0) {
      await this.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.queue.url,
          Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle ?? "" })),
        }),
      );
    }
    return messages.length;
  }

  /** Messages visible plus in flight (received, not yet deleted). */
  async backlog(): Promise<number> {
    const a = await this.sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: this.queue.url,
        AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
      }),
    );
    return (
      Number(a.Attributes?.ApproximateNumberOfMessages ?? 0) +
      Number(a.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
    );
  }
}

export interface LocalPlaneOptions {
  endpoint: string;
  primaryRegion?: string;
  failoverRegion?: string;
  config?: Partial<ReplicationConfig>;
  /** How long a simulated copy stays pending; "held" = until the test releases it. */
  copyDelayMs?: number | "held";
  /** Concurrent invocations per event source mapping (Lambda runs batches in parallel). */
  concurrency?: number;
  prefix?: string;
  clock?: Clock;
  random?: () => number;
  fault?: Ec2Fault;
  logLevel?: "DEBUG" | "INFO" | "WARN" | "ERROR" | "SILENT";
  /** Messages per invocation, as the mapping's BatchSize (default 10, the most one receive returns). */
  batchSize?: number;
  /** Instrumentation (bench/handlers.ts counts the handlers' AWS calls with these). */
  instrument?: {
    /** Called on each SDK client the handlers use (DynamoDB, S3, EC2 per region) once created. */
    client?: (client: DynamoDBClient | S3Client | EC2Client) => void;
    /** Wraps every handler invocation (replicate, copy-completed, register). */
    invoke?: (
      functionName: string,
      event: SQSEvent,
      run: () => Promise<SQSBatchResponse>,
    ) => Promise<SQSBatchResponse>;
  };
}

/**
 * The replication plane running locally: the real handlers, wired to the emulator, fed by real
 * SQS queues through EventBridge rules, with the EBS event emitter standing in for AWS.
 */
export class LocalPlane {
  private constructor(
    readonly rt: Runtime,
    readonly clients: { events: EventBridgeClient; sqs: SQSClient; dynamo: DynamoDBClient; s3: S3Client },
    readonly resources: LocalPlaneResources,
    readonly emitter: EbsEventEmitter,
    readonly handlers: { replicate: SqsHandler; copyCompleted: SqsHandler },
    readonly mappings: {
      replicate: EventSourceMapping;
      copyCompleted: EventSourceMapping;
      register?: EventSourceMapping;
    },
    readonly sweepHandler: () => Promise<SweepReport>,
    private readonly concurrency: number,
  ) {}

  static async create(o: LocalPlaneOptions): Promise<LocalPlane> {
    const primaryRegion = o.primaryRegion ?? "us-east-1";
    const failoverRegion = o.failoverRegion ?? "us-west-2";
    const prefix = o.prefix ?? "velero-dr-local";
    const common = { endpoint: o.endpoint, credentials: LOCAL_CREDENTIALS, region: failoverRegion };
    const events = new EventBridgeClient(common);
    const sqs = new SQSClient(common);
    const dynamo = new DynamoDBClient(common);
    const s3 = new S3Client({ ...common, forcePathStyle: true });
    o.instrument?.client?.(dynamo);
    o.instrument?.client?.(s3);
    const config: ReplicationConfig = {
      ledgerTable: `${prefix}-ledger`,
      sourceRegions: [primaryRegion],
      failoverRegion,
      copyBudget: DEFAULTS.copyBudget,
      includeTags: {},
      excludeTags: {},
      maxCopyAttempts: DEFAULTS.maxCopyAttempts,
      stuckAfterMinutes: DEFAULTS.stuckAfterMinutes,
      rpoTargetMinutes: DEFAULTS.rpoTargetMinutes,
      pollSeconds: DEFAULTS.pollSeconds,
      ...o.config,
    };
    await createLedgerTable(dynamo, config.ledgerTable);
    const resources = await createEventPlumbing(events, sqs, prefix);
    const backupQueue = config.velero
      ? await createVeleroBucket(s3, events, sqs, prefix, config.velero, failoverRegion)
      : undefined;
    const emitter = new EbsEventEmitter(events, failoverRegion, o.copyDelayMs ?? 20);
    const logLevel = o.logLevel ?? "WARN";
    const rt = withRegistry(
      makeRuntime(config, {
        ec2: { endpoint: o.endpoint, credentials: LOCAL_CREDENTIALS },
        dynamo,
        onEc2Client: (client, region) => {
          o.instrument?.client?.(client);
          if (region === failoverRegion) emitter.attach(client, o.fault);
          else if (o.fault) EbsEventEmitter.faults(client, o.fault);
        },
        logger: new Logger({ serviceName: "velero-dr", logLevel }),
        // EMF goes to stdout; locally the summary reports the figures instead.
        metrics: new Metrics({ namespace: "VeleroDR", serviceName: "velero-dr" }),
        ...(o.clock ? { clock: o.clock } : {}),
        ...(o.random ? { random: o.random } : {}),
      }),
      { s3 },
    );
    const sweep = makeSweepHandler(rt);
    const invoke = o.instrument?.invoke;
    const instrumented = (name: string, handler: SqsHandler): SqsHandler =>
      invoke ? (event, context) => invoke(name, event, () => handler(event, context)) : handler;
    const handlers = {
      replicate: instrumented("replicate", makeReplicateHandler(rt)),
      copyCompleted: instrumented("copy-completed", makeCopyCompletedHandler(rt)),
    };
    const batchSize = o.batchSize ?? 10;
    return new LocalPlane(
      rt,
      { events, sqs, dynamo, s3 },
      resources,
      emitter,
      handlers,
      {
        replicate: new EventSourceMapping(
          sqs,
          resources.snapshotQueue,
          "replicate",
          failoverRegion,
          handlers.replicate,
          batchSize,
        ),
        copyCompleted: new EventSourceMapping(
          sqs,
          resources.copyQueue,
          "copy-completed",
          failoverRegion,
          handlers.copyCompleted,
          batchSize,
        ),
        ...(backupQueue
          ? {
              register: new EventSourceMapping(
                sqs,
                backupQueue,
                "register",
                failoverRegion,
                instrumented("register", makeRegisterHandler(rt)),
                batchSize,
              ),
            }
          : {}),
      },
      () => sweep(undefined, lambdaContext("sweep", failoverRegion)),
      o.concurrency ?? 2,
    );
  }

  private allMappings(): EventSourceMapping[] {
    const { replicate, copyCompleted, register } = this.mappings;
    return register ? [replicate, copyCompleted, register] : [replicate, copyCompleted];
  }

  /** One round: every mapping polls `concurrency` times in parallel. Returns messages handled. */
  async pump(): Promise<number> {
    const polls = this.allMappings().flatMap((m) =>
      Array.from({ length: this.concurrency }, () => m.pollOnce()),
    );
    return (await Promise.all(polls)).reduce((a, b) => a + b, 0);
  }

  /** Pumps until no message is queued or in flight and no simulated copy is about to complete. */
  async drain(timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const handled = await this.pump();
      if (handled > 0) continue;
      if (this.emitter.busy) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      const backlog =
        (await this.mappings.replicate.backlog()) + (await this.mappings.copyCompleted.backlog());
      if (backlog === 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`local plane did not drain within ${timeoutMs} ms`);
  }

  sweep(): Promise<SweepReport> {
    return this.sweepHandler();
  }

  /**
   * Drains, then sweeps, until the sweep admits nothing more and nothing is in flight (held copies
   * excepted). `between` runs before each sweep (tests advance their fake clock there).
   */
  async settle(between: () => void = () => {}, maxRounds = 100): Promise<SweepReport> {
    for (let round = 0; round < maxRounds; round++) {
      await this.drain();
      between();
      const report = await this.sweep();
      if (
        report.admit.admitted.length === 0 &&
        report.admit.waiting === 0 &&
        this.emitter.held.length === 0
      ) {
        await this.drain();
        return report;
      }
      if (report.admit.admitted.length === 0 && this.emitter.held.length > 0) return report;
    }
    throw new Error(`local plane did not settle within ${maxRounds} rounds`);
  }

  /** Invokes the replicate handler directly with these message bodies (one SQS batch). */
  invokeReplicate(bodies: readonly string[]): Promise<SQSBatchResponse> {
    return this.handlers.replicate(
      sqsEvent(bodies, this.resources.snapshotQueue.arn, this.rt.config.failoverRegion),
      lambdaContext("replicate", this.rt.config.failoverRegion),
    );
  }
}

/** An SQS event as Lambda's event source mapping delivers it. */
export function sqsEvent(bodies: readonly string[], queueArn: string, region: string): SQSEvent {
  const now = String(Date.now());
  return {
    Records: bodies.map((body) => ({
      messageId: randomUUID(),
      receiptHandle: randomUUID(),
      body,
      attributes: {
        ApproximateReceiveCount: "1",
        SentTimestamp: now,
        SenderId: "events.amazonaws.com",
        ApproximateFirstReceiveTimestamp: now,
      },
      messageAttributes: {},
      md5OfBody: "",
      eventSource: "aws:sqs",
      eventSourceARN: queueArn,
      awsRegion: region,
    })),
  };
}

/** The EventBridge event a PutEvents entry becomes (what a rule delivers to SQS). */
export function asEvent(entry: PutEventsRequestEntry, region: string): Record<string, unknown> {
  return {
    version: "0",
    id: randomUUID(),
    "detail-type": entry.DetailType,
    source: entry.Source,
    account: LOCAL_ACCOUNT,
    time: new Date().toISOString(),
    region,
    resources: entry.Resources ?? [],
    detail: JSON.parse(entry.Detail ?? "{}"),
  };
}
