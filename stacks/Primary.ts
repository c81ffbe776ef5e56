import { Arn, ArnFormat } from "aws-cdk-lib";
import * as events from "aws-cdk-lib/aws-events";
import * as targets from "aws-cdk-lib/aws-events-targets";
import * as iam from "aws-cdk-lib/aws-iam";
import type { StackContext } from "sst/constructs";
import { SNAPSHOT_EVENT_PATTERNS } from "../functions/core/patterns.js";
import { toEventPattern } from "./patterns.js";
import { busName, forwardRuleName, settingsFromEnv } from "./settings.js";
import { removeIdleCustomResourceHandler } from "./sst-internals.js";

/**
 * Deployed to each source region: rules on the default bus that forward EBS snapshot notifications
 * (one rule per pattern of SNAPSHOT_EVENT_PATTERNS, the patterns local mode runs too) to the
 * failover region's bus. Failed snapshots are forwarded as well: the ledger records them, so a
 * backup with a failed snapshot is never taken for DR-ready. Nothing else of ours runs here, so
 * losing this region loses nothing that failover needs.
 */
export function Primary({ stack }: StackContext) {
  const { config } = settingsFromEnv(process.env);
  // Built, not imported: the failover stack lives in another region (and another `sst deploy`).
  const failoverBusArn = Arn.format(
    {
      service: "events",
      region: config.failoverRegion,
      resource: "event-bus",
      resourceName: busName(stack.stage),
      arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
    },
    stack,
  );
  const failoverBus = events.EventBus.fromEventBusArn(stack, "FailoverBus", failoverBusArn);
  const rules = Object.entries(SNAPSHOT_EVENT_PATTERNS).map(([key, pattern]) => ({
    key,
    pattern,
    name: forwardRuleName(stack.stage, key),
  }));

  // The role EventBridge assumes to deliver cross-region: PutEvents on that one bus (the target
  // grants it), assumable only on behalf of these rules in this account (confused-deputy guard).
  const forwarderRole = new iam.Role(stack, "ForwarderRole", {
    description: "EventBridge: forward EBS snapshot events to the Velero DR bus in the failover region",
    assumedBy: new iam.ServicePrincipal("events.amazonaws.com", {
      conditions: {
        StringEquals: { "aws:SourceAccount": stack.account },
        ArnEquals: {
          "aws:SourceArn": rules.map(({ name }) =>
            Arn.format({ service: "events", resource: "rule", resourceName: name }, stack),
          ),
        },
      },
    }),
  });

  const created = rules.map(({ key, pattern, name }) => {
    const rule = new events.Rule(stack, `Forward-${key}`, {
      ruleName: name,
      description: `EBS snapshot notifications (${key}) -> Velero DR bus in ${config.failoverRegion}`,
      eventPattern: toEventPattern(pattern),
    });
    rule.addTarget(new targets.EventBus(failoverBus, { role: forwarderRole }));
    return rule;
  });

  removeIdleCustomResourceHandler(stack);
  stack.addOutputs({ FailoverBusArn: failoverBusArn });
  return { rules: created, failoverBusArn };
}
