import {
  ChangeResourceRecordSetsCommand,
  GetChangeCommand,
  ListResourceRecordSetsCommand,
  type Route53Client,
  type RRType,
} from "@aws-sdk/client-route-53";
import { classifyAwsError } from "../core/errors.js";
import {
  type AliasTarget,
  type DnsSwitch,
  normaliseRecordName,
  StillWaiting,
  sameAliasTarget,
} from "../core/failover.js";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The CI's alias record in Route 53. Route 53's API is global: whatever region the client is
 * configured with, the SDK sends it to route53.amazonaws.com signed for us-east-1 (its control
 * plane lives there). That is the one endpoint of the primary partition's home region the failover
 * uses; if us-east-1 itself is the lost region, the control plane may be impaired too (Route 53's
 * data plane, which answers DNS queries, is not), which is why AWS suggests data-plane mechanisms
 * (health-checked failover records, ARC routing controls) for that case.
 */
export class Route53DnsSwitch implements DnsSwitch {
  constructor(
    private readonly route53: Route53Client,
    private readonly hostedZoneId: string,
    private readonly recordName: string,
    private readonly recordType: "A" | "AAAA",
    private readonly pause: (ms: number) => Promise<void> = sleep,
  ) {}

  /** The record's alias target: one ListResourceRecordSets starting at the record's name and type. */
  async current(): Promise<AliasTarget | undefined> {
    const out = await this.route53
      .send(
        new ListResourceRecordSetsCommand({
          HostedZoneId: this.hostedZoneId,
          StartRecordName: this.recordName,
          StartRecordType: this.recordType as RRType,
          MaxItems: 1,
        }),
      )
      .catch((err: unknown) => {
        throw classifyAwsError(err, `ListResourceRecordSets ${this.hostedZoneId} ${this.recordName}`);
      });
    const rr = out.ResourceRecordSets?.[0];
    if (!rr || normaliseRecordName(rr.Name ?? "") !== this.recordName || rr.Type !== this.recordType) {
      return undefined;
    }
    const a = rr.AliasTarget;
    if (!a?.DNSName || !a.HostedZoneId) return undefined;
    return {
      dnsName: a.DNSName,
      hostedZoneId: a.HostedZoneId,
      evaluateTargetHealth: a.EvaluateTargetHealth ?? false,
    };
  }

  /**
   * UPSERTs the alias to `target`, only when the record is not already that target: a re-run after
   * the switch finds it done and changes nothing.
   */
  async switchTo(
    target: AliasTarget,
    comment: string,
  ): Promise<{ changed: boolean; changeId?: string; previous?: AliasTarget }> {
    const previous = await this.current();
    if (sameAliasTarget(previous, target))
      return previous ? { changed: false, previous } : { changed: false };
    const out = await this.route53
      .send(
        new ChangeResourceRecordSetsCommand({
          HostedZoneId: this.hostedZoneId,
          ChangeBatch: {
            Comment: comment.slice(0, 256),
            Changes: [
              {
                Action: "UPSERT",
                ResourceRecordSet: {
                  Name: this.recordName,
                  Type: this.recordType,
                  AliasTarget: {
                    DNSName: target.dnsName,
                    HostedZoneId: target.hostedZoneId,
                    EvaluateTargetHealth: target.evaluateTargetHealth ?? true,
                  },
                },
              },
            ],
          },
        }),
      )
      .catch((err: unknown) => {
        throw classifyAwsError(err, `ChangeResourceRecordSets ${this.hostedZoneId} ${this.recordName}`);
      });
    const changeId = out.ChangeInfo?.Id?.replace(/^\/change\//, "");
    const result: { changed: boolean; changeId?: string; previous?: AliasTarget } = { changed: true };
    if (changeId) result.changeId = changeId;
    if (previous) result.previous = previous;
    return result;
  }

  /** GetChange until INSYNC (usually within 60 s), bounded; StillWaiting when the bound passes. */
  async waitInSync(changeId: string, o: { timeoutMs: number; pollMs: number }): Promise<string> {
    const deadline = Date.now() + o.timeoutMs;
    for (;;) {
      const out = await this.route53.send(new GetChangeCommand({ Id: changeId })).catch((err: unknown) => {
        throw classifyAwsError(err, `GetChange ${changeId}`);
      });
      const status = out.ChangeInfo?.Status ?? "PENDING";
      if (status === "INSYNC") return status;
      if (Date.now() + o.pollMs > deadline) {
        throw new StillWaiting(`Route 53 change ${changeId} is ${status}; still waiting for INSYNC`);
      }
      await this.pause(o.pollMs);
    }
  }
}
