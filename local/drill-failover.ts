import type { Clock } from "../functions/core/ports.js";
import { type LocalExecutionRecord, LocalFailoverRunner, runWithApprover } from "./failover-runner.js";
import { createFailoverWorld, type FailoverWorld } from "./failover-world.js";
import type { LocalPlane } from "./runtime.js";

/**
 * The drill's last part (issue 4): with the replicated, DR-ready backups in the ledger, set up the
 * failover region's standby side on the emulator (EKS cluster and node group, the Route 53 zone
 * and the alias record on the "primary" load balancer, the failover load balancer, the Kubernetes
 * API STAND-IN), then run a failover DRILL and then a real FAILOVER through the local runner (the
 * real state machine definition, the real handlers), each approved by following the emailed link
 * over HTTP. Time goes on from where the drill's simulated clock stopped, at real speed, so the
 * data-loss window is in drill time and the step times are real.
 */

export interface FailoverRunSummary {
  executionId: string;
  status: string;
  /** Who approved (the approval task's output), or null. */
  approvedBy: string | null;
  /** What the local approver saw: the confirmation page and the decision page (HTTP status, title). */
  approvalHttp: { page: string; decision: string } | null;
  backup: string | null;
  dataLossSeconds: number | null;
  /** The desired size the node group was scaled to for the recovery. */
  nodegroupDesired: number | null;
  /** Its desired size once the execution ended (back to the idle size after a drill). */
  nodegroupDesiredAfter: number | null;
  restoreName: string | null;
  restorePhase: string | null;
  /** The record's alias target after the execution (read from Route 53). */
  dnsTarget: string | null;
  rtoSeconds: number | null;
  /** Seconds per step (the steps' own timings), plus the approval wait (`requestApproval`). */
  stepSeconds: Record<string, number>;
  /** Why it failed, when it did. */
  failure: string | null;
}

/** The drill's approver (the local approver follows the links in this person's email). */
export const DRILL_APPROVER = "oncall@example.com";

export interface FailoverDrillResult {
  drill: FailoverRunSummary;
  failover: FailoverRunSummary;
  /** The Kubernetes API stand-in, as it labels itself. */
  standIn: string;
  /** The primary and failover load balancers' DNS names, as alias targets. */
  primaryTarget: string;
  failoverTarget: string;
}

async function summarise(
  world: FailoverWorld,
  record: LocalExecutionRecord,
  followed:
    | { page: { status: number; title: string }; decision?: { status: number; title: string } }
    | undefined,
): Promise<FailoverRunSummary> {
  const report = record.report;
  const stepSeconds: Record<string, number> = {};
  for (const s of report?.steps ?? []) stepSeconds[s.step] = s.seconds;
  // The approval wait and the report step's own time come from the execution's history.
  const approvalWait = record.stateSeconds.RequestApproval;
  if (approvalWait !== undefined) stepSeconds.requestApproval = approvalWait;
  const reportTime = record.stateSeconds.Report ?? record.stateSeconds.ReportFailure;
  if (reportTime !== undefined) stepSeconds.report = reportTime;
  const after = await world.nodegroup();
  return {
    executionId: record.executionId,
    status: record.status,
    approvedBy: record.approval?.approvedBy ?? null,
    approvalHttp: followed
      ? {
          page: `${followed.page.status} ${followed.page.title}`,
          decision: followed.decision ? `${followed.decision.status} ${followed.decision.title}` : "no form",
        }
      : null,
    backup: report?.backup?.name ?? null,
    dataLossSeconds: report?.dataLossSeconds ?? null,
    nodegroupDesired: report?.nodegroup.target?.desired ?? null,
    nodegroupDesiredAfter: after.desiredSize ?? null,
    restoreName: report?.restore?.name ?? null,
    restorePhase: report?.restore?.phase ?? null,
    dnsTarget: (await world.alias())?.DNSName ?? null,
    rtoSeconds: report?.rtoSeconds ?? null,
    stepSeconds,
    failure: record.failure ? `${record.failure.error}: ${record.failure.cause}` : null,
  };
}

export async function runFailoverDrill(
  o: {
    plane: LocalPlane;
    endpoint: string;
    /** Where the drill's simulated time stands now. */
    clock: Clock;
    primaryRegion: string;
    schedule: string;
  },
  log: (line: string) => void,
): Promise<FailoverDrillResult> {
  const { plane } = o;
  const began = performance.now();
  const ready = (await plane.rt.ledger.listBackups(1000)).filter((b) => b.drReadyAt).map((b) => b.name);
  const world = await createFailoverWorld({
    endpoint: o.endpoint,
    ledgerTable: plane.rt.config.ledgerTable,
    failoverRegion: plane.rt.config.failoverRegion,
    primaryRegion: o.primaryRegion,
    // Velero in the standby cluster sees the failover prefix's backups (its read-only location).
    standIn: { knownBackups: () => ready },
    env: { FAILOVER_SCHEDULE: o.schedule },
  });
  let runner: LocalFailoverRunner | undefined;
  try {
    for (const line of world.describe()) log(`failover region: ${line}`);
    const t0 = o.clock.now().getTime();
    const r0 = performance.now();
    const clock: Clock = { now: () => new Date(t0 + Math.round(performance.now() - r0)) };
    runner = await LocalFailoverRunner.start({
      endpoint: o.endpoint,
      failover: world.config(),
      clock,
      logLevel: "ERROR",
      // One named approver: the email carries links of their own, so the approval names them.
      approval: { approverEmails: [DRILL_APPROVER] },
    });
    log(
      `failover workflow: the stack's definition on aws-local-stepfunctions; approval endpoint ${runner.functionUrl.url}`,
    );
    const one = async (drill: boolean) => {
      const request = (runner as LocalFailoverRunner).request({
        reason: drill ? "quarterly DR drill (npm start)" : "primary region lost (npm start)",
        requestedBy: "operator@local-drill",
        drill,
      });
      const r = await runWithApprover(runner as LocalFailoverRunner, request, "approve");
      const s = await summarise(world, r.record, r.followed);
      log(
        `${drill ? "drill" : "failover"} ${s.executionId}: email "${r.email?.subject ?? "none"}"; ` +
          `approve link: GET ${s.approvalHttp?.page ?? "-"}, POST ${s.approvalHttp?.decision ?? "-"}; ${s.status}`,
      );
      return s;
    };
    const drill = await one(true);
    const failover = await one(false);
    log(`failover part: ${((performance.now() - began) / 1000).toFixed(2)} s (setup, drill, failover)`);
    return {
      drill,
      failover,
      standIn: world.standIn.describe(),
      primaryTarget: world.primaryAlias.DNSName,
      failoverTarget: `dualstack.${world.failoverLb.dnsName.toLowerCase()}.`,
    };
  } finally {
    await runner?.stop();
    await world.stop();
  }
}
