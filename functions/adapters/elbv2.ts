import {
  DescribeLoadBalancersCommand,
  DescribeTagsCommand,
  type ElasticLoadBalancingV2Client,
  type LoadBalancer,
  paginateDescribeLoadBalancers,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { classifyAwsError, TerminalError } from "../core/errors.js";
import type { LoadBalancerLookup } from "../core/failover.js";

type Found = { arn: string; name: string; dnsName: string; canonicalHostedZoneId: string };

function found(lb: LoadBalancer): Found {
  if (!lb.LoadBalancerArn || !lb.DNSName || !lb.CanonicalHostedZoneId) {
    throw new TerminalError(
      `load balancer ${lb.LoadBalancerName ?? "?"} has no DNS name or canonical zone`,
      "Incomplete",
    );
  }
  return {
    arn: lb.LoadBalancerArn,
    name: lb.LoadBalancerName ?? "",
    dnsName: lb.DNSName,
    canonicalHostedZoneId: lb.CanonicalHostedZoneId,
  };
}

/**
 * The failover region's ingress load balancer, found by name (one DescribeLoadBalancers) or by a tag
 * (every load balancer of the region, then DescribeTags 20 ARNs at a time; exactly one must match).
 * Read-only.
 */
export class Elbv2LoadBalancerLookup implements LoadBalancerLookup {
  constructor(
    private readonly elb: ElasticLoadBalancingV2Client,
    private readonly by: { name: string } | { tag: { key: string; value: string } },
  ) {}

  async find(): Promise<Found> {
    return "name" in this.by ? this.byName(this.by.name) : this.byTag(this.by.tag);
  }

  private async byName(name: string): Promise<Found> {
    try {
      const out = await this.elb.send(new DescribeLoadBalancersCommand({ Names: [name] }));
      const lb = out.LoadBalancers?.[0];
      if (!lb) throw new TerminalError(`no load balancer named ${name}`, "LoadBalancerNotFound");
      return found(lb);
    } catch (err) {
      if ((err as { name?: string })?.name === "LoadBalancerNotFoundException") {
        throw new TerminalError(`no load balancer named ${name}`, "LoadBalancerNotFound", { cause: err });
      }
      throw classifyAwsError(err, `DescribeLoadBalancers ${name}`);
    }
  }

  private async byTag(tag: { key: string; value: string }): Promise<Found> {
    const all: LoadBalancer[] = [];
    try {
      for await (const page of paginateDescribeLoadBalancers({ client: this.elb }, {})) {
        all.push(...(page.LoadBalancers ?? []));
      }
      const matches: LoadBalancer[] = [];
      for (let i = 0; i < all.length; i += 20) {
        const batch = all.slice(i, i + 20);
        const arns = batch.map((lb) => lb.LoadBalancerArn).filter((a): a is string => Boolean(a));
        if (arns.length === 0) continue;
        const tags = await this.elb.send(new DescribeTagsCommand({ ResourceArns: arns }));
        for (const d of tags.TagDescriptions ?? []) {
          if (d.Tags?.some((t) => t.Key === tag.key && t.Value === tag.value)) {
            const lb = batch.find((b) => b.LoadBalancerArn === d.ResourceArn);
            if (lb) matches.push(lb);
          }
        }
      }
      if (matches.length !== 1) {
        throw new TerminalError(
          `${matches.length} load balancers carry the tag ${tag.key}=${tag.value}; exactly one must` +
            (matches.length ? ` (${matches.map((m) => m.LoadBalancerName).join(", ")})` : ""),
          "LoadBalancerNotFound",
        );
      }
      return found(matches[0] as LoadBalancer);
    } catch (err) {
      throw classifyAwsError(err, `finding the load balancer tagged ${tag.key}=${tag.value}`);
    }
  }
}
