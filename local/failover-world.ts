import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { CreateSubnetCommand, CreateVpcCommand, EC2Client } from "@aws-sdk/client-ec2";
import {
  CreateClusterCommand,
  CreateNodegroupCommand,
  DescribeNodegroupCommand,
  EKSClient,
} from "@aws-sdk/client-eks";
import {
  CreateLoadBalancerCommand,
  ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import {
  type AliasTarget,
  ChangeResourceRecordSetsCommand,
  CreateHostedZoneCommand,
  ListResourceRecordSetsCommand,
  Route53Client,
} from "@aws-sdk/client-route-53";
import { CreateTopicCommand, SNSClient, SubscribeCommand } from "@aws-sdk/client-sns";
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { DynamoLedger } from "../functions/adapters/dynamo-ledger.js";
import type { BackupVolume } from "../functions/core/backup.js";
import { type FailoverConfig, loadFailoverConfig, type Scaling } from "../functions/core/failover.js";
import { K8sStandIn, type K8sStandInOptions } from "./k8s-standin.js";
import { createLedgerTable } from "./resources.js";
import { LOCAL_ACCOUNT, LOCAL_CREDENTIALS } from "./runtime.js";

/**
 * The failover region as the failover steps need it, on the emulator: the standby EKS cluster and
 * its node group (at its idle size), the Route 53 zone with the CI's alias record pointing at the
 * primary region's load balancer, the failover region's load balancer (ELBv2 needs a VPC with two
 * subnets), a reports topic delivering to a queue, and the Kubernetes API STAND-IN of the standby
 * cluster (local/k8s-standin.ts). The primary region's load balancer is created during setup only,
 * as the alias's starting target: nothing the failover does calls the primary region.
 * Shared by the drill (local/drill.ts), local mode's runner and the integration tests.
 */

export interface LoadBalancerInfo {
  name: string;
  region: string;
  dnsName: string;
  canonicalHostedZoneId: string;
}

export interface FailoverWorldOptions {
  endpoint: string;
  failoverRegion?: string;
  primaryRegion?: string;
  /** An existing ledger table (the drill's); default: a new one. */
  ledgerTable?: string;
  clusterName?: string;
  nodegroupName?: string;
  /** The node group's idle size (default min 0, max 1, desired 0). */
  standbySize?: Scaling;
  /** What a failover scales it to (default min 3, desired 3, max 6). */
  targetSize?: Scaling;
  /** Default `example.com`; the record is `ci.<zone>`. */
  zoneName?: string;
  /** Load balancer names (default cbci-primary, cbci-failover). */
  primaryLbName?: string;
  failoverLbName?: string;
  /** Options of the Kubernetes API stand-in (default: Restores complete after 100 ms). */
  standIn?: Partial<K8sStandInOptions>;
  /** Extra FAILOVER_* settings (e.g. FAILOVER_SCHEDULE). */
  env?: Record<string, string>;
}

export interface FailoverWorld {
  endpoint: string;
  failoverRegion: string;
  primaryRegion: string;
  ledgerTable: string;
  clusterName: string;
  nodegroupName: string;
  standbySize: Scaling;
  zoneId: string;
  /** The record's name as Route 53 returns it (lower case, trailing dot). */
  recordName: string;
  primaryLb: LoadBalancerInfo;
  failoverLb: LoadBalancerInfo;
  /** The alias the record starts with (the primary region's load balancer). */
  primaryAlias: { DNSName: string; HostedZoneId: string };
  reportsTopicArn: string;
  standIn: K8sStandIn;
  /** The failover steps' environment, as their Lambda functions get it (LEDGER_TABLE, FAILOVER_*). */
  env: Record<string, string>;
  /** loadFailoverConfig(env), with waits polling every 20 ms (the stand-in and the emulator are instant). */
  config(): FailoverConfig;
  /** The record's alias target now, read with a client of its own. */
  alias(): Promise<AliasTarget | undefined>;
  nodegroup(): Promise<{ status?: string; minSize?: number; maxSize?: number; desiredSize?: number }>;
  /** Report messages the reports topic delivered since the last look (SNS envelopes). */
  reports(): Promise<Array<{ Subject?: string; Message?: string }>>;
  ledger: DynamoLedger;
  /** Lines for local mode's output. */
  describe(): string[];
  stop(): Promise<void>;
}

const defaults = {
  failoverRegion: "us-west-2",
  primaryRegion: "us-east-1",
  clusterName: "cbci-standby",
  nodegroupName: "cbci-workers",
  standbySize: { min: 0, max: 1, desired: 0 },
  targetSize: { min: 3, max: 6, desired: 3 },
  zoneName: "example.com",
};

async function createLoadBalancer(
  base: { endpoint: string; credentials: typeof LOCAL_CREDENTIALS },
  region: string,
  name: string,
): Promise<LoadBalancerInfo> {
  const ec2 = new EC2Client({ ...base, region });
  const vpc = await ec2.send(new CreateVpcCommand({ CidrBlock: "10.0.0.0/16" }));
  const subnets: string[] = [];
  for (const [i, zone] of ["a", "b"].entries()) {
    const s = await ec2.send(
      new CreateSubnetCommand({
        VpcId: vpc.Vpc?.VpcId,
        CidrBlock: `10.0.${i + 1}.0/24`,
        AvailabilityZone: `${region}${zone}`,
      }),
    );
    subnets.push(s.Subnet?.SubnetId ?? "");
  }
  const elb = new ElasticLoadBalancingV2Client({ ...base, region });
  const lb = await elb.send(
    new CreateLoadBalancerCommand({
      Name: name,
      Subnets: subnets,
      Tags: [{ Key: "velero-dr/role", Value: name }],
    }),
  );
  const made = lb.LoadBalancers?.[0];
  if (!made?.DNSName || !made.CanonicalHostedZoneId) throw new Error(`load balancer ${name} was not created`);
  return { name, region, dnsName: made.DNSName, canonicalHostedZoneId: made.CanonicalHostedZoneId };
}

/** Registers a DR-ready backup (Completed, no volume snapshots) in the ledger: what preflight looks for. */
export async function registerReadyBackup(
  ledger: DynamoLedger,
  name: string,
  started: Date,
  schedule = "cbci-dr",
  volumes?: BackupVolume[],
): Promise<void> {
  await ledger.registerBackup({
    name,
    schedule,
    phase: "Completed",
    startTimestamp: started.toISOString(),
    completionTimestamp: new Date(started.getTime() + 60_000).toISOString(),
    expiration: new Date(started.getTime() + 3600_000).toISOString(),
    errors: 0,
    warnings: 0,
    volumeSnapshotsAttempted: 0,
    expected: [],
    ...(volumes ? { volumes } : {}),
    metadataModified: new Date(started.getTime() + 60_000).toISOString(),
  });
  await ledger.recordVerdict(
    name,
    { verdict: "dr-ready", reason: "Completed with no volume snapshots", copied: 0, expectedCount: 0 },
    new Date(started.getTime() + 120_000).toISOString(),
    { prefix: "failover" },
  );
}

/** Sets up the failover region on the emulator (see the file's comment). */
export async function createFailoverWorld(o: FailoverWorldOptions): Promise<FailoverWorld> {
  const failoverRegion = o.failoverRegion ?? defaults.failoverRegion;
  const primaryRegion = o.primaryRegion ?? defaults.primaryRegion;
  const clusterName = o.clusterName ?? defaults.clusterName;
  const nodegroupName = o.nodegroupName ?? defaults.nodegroupName;
  const standbySize = o.standbySize ?? defaults.standbySize;
  const target = o.targetSize ?? defaults.targetSize;
  const zoneName = o.zoneName ?? defaults.zoneName;
  const base = { endpoint: o.endpoint, credentials: LOCAL_CREDENTIALS };

  const eks = new EKSClient({ ...base, region: failoverRegion });
  await eks.send(
    new CreateClusterCommand({
      name: clusterName,
      roleArn: `arn:aws:iam::${LOCAL_ACCOUNT}:role/eks`,
      resourcesVpcConfig: { subnetIds: [] },
    }),
  );
  await eks.send(
    new CreateNodegroupCommand({
      clusterName,
      nodegroupName,
      nodeRole: `arn:aws:iam::${LOCAL_ACCOUNT}:role/node`,
      subnets: ["subnet-1"],
      scalingConfig: { minSize: standbySize.min, maxSize: standbySize.max, desiredSize: standbySize.desired },
    }),
  );
  const primaryLb = await createLoadBalancer(base, primaryRegion, o.primaryLbName ?? "cbci-primary");
  const failoverLb = await createLoadBalancer(base, failoverRegion, o.failoverLbName ?? "cbci-failover");
  const primaryAlias = {
    DNSName: `dualstack.${primaryLb.dnsName}.`,
    HostedZoneId: primaryLb.canonicalHostedZoneId,
  };

  const route53 = new Route53Client({ ...base, region: failoverRegion });
  const zone = await route53.send(
    new CreateHostedZoneCommand({ Name: zoneName, CallerReference: `dr-${Date.now()}-${Math.random()}` }),
  );
  const zoneId = (zone.HostedZone?.Id ?? "").replace("/hostedzone/", "");
  const recordName = `ci.${zoneName}.`;
  await route53.send(
    new ChangeResourceRecordSetsCommand({
      HostedZoneId: zoneId,
      ChangeBatch: {
        Changes: [
          {
            Action: "UPSERT",
            ResourceRecordSet: {
              Name: recordName,
              Type: "A",
              AliasTarget: { ...primaryAlias, EvaluateTargetHealth: true },
            },
          },
        ],
      },
    }),
  );

  const dynamo = new DynamoDBClient({ ...base, region: failoverRegion });
  const ledgerTable = o.ledgerTable ?? `ledger-${Math.random().toString(36).slice(2, 8)}`;
  if (!o.ledgerTable) await createLedgerTable(dynamo, ledgerTable);
  const ledger = new DynamoLedger(
    DynamoDBDocumentClient.from(dynamo, { marshallOptions: { removeUndefinedValues: true } }),
    ledgerTable,
  );

  const sns = new SNSClient({ ...base, region: failoverRegion });
  const sqs = new SQSClient({ ...base, region: failoverRegion });
  const suffix = Math.random().toString(36).slice(2, 8);
  const topic = await sns.send(new CreateTopicCommand({ Name: `failover-reports-${suffix}` }));
  const queue = await sqs.send(new CreateQueueCommand({ QueueName: `failover-reports-${suffix}` }));
  const queueArn = (
    await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queue.QueueUrl, AttributeNames: ["QueueArn"] }))
  ).Attributes?.QueueArn;
  await sns.send(new SubscribeCommand({ TopicArn: topic.TopicArn, Protocol: "sqs", Endpoint: queueArn }));
  const reportsTopicArn = topic.TopicArn ?? "";

  const standIn = await K8sStandIn.start({
    clusterName,
    credentials: LOCAL_CREDENTIALS,
    completeAfterMs: 100,
    ...o.standIn,
  });

  const env: Record<string, string> = {
    FAILOVER_REGION: failoverRegion,
    LEDGER_TABLE: ledgerTable,
    FAILOVER_CLUSTER_NAME: clusterName,
    FAILOVER_NODEGROUP_NAME: nodegroupName,
    FAILOVER_NODEGROUP_MIN: String(target.min),
    FAILOVER_NODEGROUP_DESIRED: String(target.desired),
    FAILOVER_NODEGROUP_MAX: String(target.max),
    FAILOVER_HOSTED_ZONE_ID: zoneId,
    FAILOVER_RECORD_NAME: recordName.replace(/\.$/, ""),
    FAILOVER_LB_NAME: failoverLb.name,
    FAILOVER_K8S_ENDPOINT: standIn.endpoint,
    FAILOVER_TOPIC_ARN: reportsTopicArn,
    ...o.env,
  };

  return {
    endpoint: o.endpoint,
    failoverRegion,
    primaryRegion,
    ledgerTable,
    clusterName,
    nodegroupName,
    standbySize,
    zoneId,
    recordName,
    primaryLb,
    failoverLb,
    primaryAlias,
    reportsTopicArn,
    standIn,
    env,
    ledger,
    config() {
      const config = loadFailoverConfig(env);
      config.waits = { pollMs: 20, nodegroupMs: 5_000, restoreMs: 5_000, dnsMs: 5_000 };
      return config;
    },
    async alias() {
      const out = await route53.send(
        new ListResourceRecordSetsCommand({
          HostedZoneId: zoneId,
          StartRecordName: recordName,
          StartRecordType: "A",
          MaxItems: 1,
        }),
      );
      return out.ResourceRecordSets?.[0]?.AliasTarget;
    },
    async nodegroup() {
      const ng = (await eks.send(new DescribeNodegroupCommand({ clusterName, nodegroupName }))).nodegroup;
      return { status: ng?.status, ...ng?.scalingConfig };
    },
    async reports() {
      // Ten at most per receive: drain the queue (stage messages and reports), oldest first.
      const all: Array<{ Subject?: string; Message?: string; Timestamp?: string }> = [];
      for (;;) {
        const out = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: queue.QueueUrl,
            MaxNumberOfMessages: 10,
            WaitTimeSeconds: 0,
          }),
        );
        const got = out.Messages ?? [];
        for (const m of got) {
          await sqs.send(
            new DeleteMessageCommand({ QueueUrl: queue.QueueUrl, ReceiptHandle: m.ReceiptHandle }),
          );
          all.push(JSON.parse(m.Body ?? "{}") as { Subject?: string; Message?: string; Timestamp?: string });
        }
        if (got.length === 0) break;
      }
      return all.sort((a, b) => (a.Timestamp ?? "").localeCompare(b.Timestamp ?? ""));
    },
    describe() {
      return [
        `standby cluster ${clusterName} (EKS, ${failoverRegion}), node group ${nodegroupName} at desired ${standbySize.desired}`,
        `record ${recordName} (zone ${zoneId}) -> ${primaryAlias.DNSName} (primary load balancer)`,
        `failover load balancer ${failoverLb.name}: ${failoverLb.dnsName}`,
        standIn.describe(),
      ];
    },
    stop: () => standIn.stop(),
  };
}
