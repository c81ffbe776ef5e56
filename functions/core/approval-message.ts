import { slackApprovalButtons } from "./approval.js";
import type { FailoverPlan, FailoverRequest } from "./failover.js";

/**
 * The approval request as approvers read it (pure: no SDK, no I/O): what would be restored, what
 * would be lost, who asks and why, what the failover (or drill) will do, and the approve / reject
 * links. Its inputs carry no secret: links hold signed tokens (which are the capability, and are
 * meant to be in the message), never the signing key nor the workflow's task token.
 */

export interface ApprovalRequestInput {
  request: FailoverRequest;
  plan: FailoverPlan;
  /** When the links (and the stored task token) expire. */
  expiresAt: Date;
  /** The email's approve and reject links (approvalLink of an email-channel token). */
  links: { approve: string; reject: string };
  /** The Slack buttons' values (slack-channel tokens); absent: no Slack message. */
  slackTokens?: { approve: string; reject: string };
  /** The one approver (email address) this copy and its links are for; absent: the whole topic. */
  approver?: string;
}

export interface ApprovalRequestMessage {
  /** SNS subject: at most 100 printable ASCII characters. */
  subject: string;
  /** The email body (plain text). */
  text: string;
  /** The Slack incoming-webhook payload (section + buttons), when Slack tokens were given. */
  slack?: { text: string; blocks: object[] };
  /** The same facts as data, for the JSON part of the SNS message (no links, no tokens). */
  facts: Record<string, unknown>;
}

/** `17 min 5 s`, `2 h 3 min`: data-loss windows are read by people deciding in a hurry. */
export function humanDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 === 0 ? `${m} min` : `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  return m % 60 === 0 ? `${h} h` : `${h} h ${m % 60} min`;
}

const ascii = (s: string) => s.replace(/[^\x20-\x7e]/g, " ");

/** Slack mrkdwn: `&`, `<` and `>` are control characters (https://api.slack.com/reference/surfaces/formatting#escaping). */
const slackEscape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** Builds the approval request's email text, SNS subject and Slack payload. */
export function renderApprovalRequest(i: ApprovalRequestInput): ApprovalRequestMessage {
  const { request, plan } = i;
  const drill = request.drill;
  const kind = drill ? "DR DRILL" : "FAILOVER";
  const loss = humanDuration(plan.dataLossSeconds);
  const b = plan.backup;
  const target = plan.nodegroup.target.desired;
  const from = plan.nodegroup.current.desired;
  const mapping = plan.restore.namespaceMapping;
  const namespaces = plan.restore.includedNamespaces
    .map((ns) => (mapping?.[ns] ? `${ns} -> ${mapping[ns]}` : ns))
    .join(", ");
  const current = plan.dns.current?.dnsName ?? "its current target";
  const doing = [
    "What it does:",
    `  - scales node group ${plan.nodegroup.name} of cluster ${plan.cluster} from ${from} to ${target} nodes${drill ? `, and back to ${from} afterwards` : ""}`,
    `  - restores ${b.name} into ${namespaces}${drill ? " (separate namespaces)" : ""}`,
    drill
      ? `  - leaves ${plan.dns.recordName} on ${current} (no DNS switch)`
      : `  - switches ${plan.dns.recordName} from ${current} to ${plan.dns.failover.dnsName}`,
  ];
  const backupLine = [
    `Backup: ${b.name}`,
    b.schedule ? `schedule ${b.schedule}` : "ad-hoc",
    `started ${b.startTimestamp}`,
    ...(b.completionTimestamp ? [`completed ${b.completionTimestamp}`] : []),
    ...(b.drReadyAt ? [`DR-ready ${b.drReadyAt}`] : []),
  ].join("; ");
  const passed = plan.passedOver.map((p) => `  ${p.name}: ${p.reason}`);
  const text = [
    `${kind} approval requested`,
    "",
    `Execution: ${request.executionId}`,
    `Requested by: ${request.requestedBy} at ${request.requestedAt}`,
    `Reason: ${request.reason}`,
    `Mode: ${drill ? "drill (no DNS switch; restored into separate namespaces; node group scaled back)" : "FAILOVER (DNS switches to the failover region)"}`,
    backupLine,
    `Data-loss window: ${loss} at preflight (${plan.plannedAt}): everything written after ${b.startTimestamp} is lost; the window grows until the restore.`,
    ...(passed.length > 0 ? ["Newer backups passed over:", ...passed] : []),
    ...doing,
    "",
    `Approve: ${i.links.approve}`,
    `Reject:  ${i.links.reject}`,
    ...(i.approver
      ? [`These links are yours (${i.approver}): they record you as the approver. Do not forward them.`]
      : []),
    "",
    `The links expire at ${i.expiresAt.toISOString()}. Opening one shows a confirmation page; nothing`,
    "happens until you press its button. The first decision for this execution wins, whichever",
    "link, copy of this message or Slack button it comes from; every later one is refused. If this",
    "request reaches you again (the workflow retried sending it), the links of every copy decide the",
    "same execution, once.",
  ].join("\n");
  const subject = ascii(
    `${drill ? "Approve DR drill" : "Approve FAILOVER"}? ${b.name}, data loss ${loss}`,
  ).slice(0, 100);
  const facts = {
    executionId: request.executionId,
    drill,
    reason: request.reason,
    requestedBy: request.requestedBy,
    requestedAt: request.requestedAt,
    backup: b.name,
    backupStartedAt: b.startTimestamp,
    dataLossSeconds: plan.dataLossSeconds,
    expiresAt: i.expiresAt.toISOString(),
    ...(i.approver ? { approver: i.approver } : {}),
  };
  const out: ApprovalRequestMessage = { subject, text, facts };
  if (i.slackTokens) {
    const e = slackEscape;
    const summary = [
      `*${kind} approval requested* by ${e(request.requestedBy)}`,
      `*Reason:* ${e(request.reason)}`,
      `*Backup:* \`${e(b.name)}\` (started ${e(b.startTimestamp)})`,
      `*Data-loss window:* ${loss} at preflight`,
      drill
        ? `*Drill:* restores into ${e(namespaces)}, DNS stays on ${e(plan.dns.current?.dnsName ?? "its target")}, node group back to ${from} after`
        : `*Failover:* ${e(plan.dns.recordName)} -> ${e(plan.dns.failover.dnsName)}; node group to ${target}`,
      `Execution \`${e(request.executionId)}\`; the buttons expire at ${i.expiresAt.toISOString()}; the first decision wins.`,
    ].join("\n");
    out.slack = {
      text: `${kind} approval requested: ${b.name}, data loss ${loss}`,
      blocks: [
        { type: "section", text: { type: "mrkdwn", text: summary } },
        slackApprovalButtons(i.slackTokens),
      ],
    };
  }
  return out;
}
