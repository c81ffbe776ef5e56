/**
 * `dr failover request` and `dr failover status`: start the failover workflow and follow it.
 *
 * Against AWS: StartExecution on the failover state machine (`--state-machine` or
 * FAILOVER_STATE_MACHINE_ARN; its region is the failover region) with the input
 * `{ request: { executionId, reason, requestedBy, drill, requestedAt } }` and the execution named
 * executionId; requestedBy is the caller's ARN (STS GetCallerIdentity), else $USER. Status reads
 * DescribeExecution, and the execution's history for why a failed one failed and what a running one
 * is doing; the report comes from the output (or from ReportFailure's on the way to Failed).
 *
 * Local mode (`--local`, or an emulator endpoint set with `--endpoint`/AWS_ENDPOINT_URL and no state
 * machine ARN): the request runs in this process through local/failover-runner.ts (the real
 * definition on aws-local-stepfunctions, the real handlers, the approval endpoint on a local HTTP
 * server) against the emulator, with the steps' own environment (LEDGER_TABLE, FAILOVER_*; a
 * Kubernetes API stand-in is started when FAILOVER_K8S_ENDPOINT is not set). The approval email is
 * printed (SNS delivers no email on the emulator): open a link in a browser, or pass `--approve` /
 * `--reject` to have the local approver follow it over HTTP. The command waits for the end.
 * Executions are recorded under DR_LOCAL_STATE_DIR (default .build/failover-executions), where
 * `dr failover status --local` reads them.
 */
import { Sha256 } from "@aws-crypto/sha256-js";
import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  ListExecutionsCommand,
  SFNClient,
  StartExecutionCommand,
} from "@aws-sdk/client-sfn";
import { SignatureV4 } from "@smithy/signature-v4";
import * as z from "zod/mini";
import { stsHost } from "../functions/adapters/k8s.js";
import { humanDuration } from "../functions/core/approval-message.js";
import { errorMessage } from "../functions/core/errors.js";
import {
  type FailoverReport,
  type FailoverRequest,
  FailoverRequestSchema,
  loadFailoverConfig,
  parseWith,
  renderReport,
} from "../functions/core/failover.js";
import { STATE_OF } from "../functions/core/failover-machine.js";
import {
  approvalLinkIn,
  followApprovalLink,
  type LocalExecutionRecord,
  LocalFailoverRunner,
  newExecutionId,
  readLocalExecutions,
} from "../local/failover-runner.js";
import { K8sStandIn } from "../local/k8s-standin.js";
import { LOCAL_CREDENTIALS } from "../local/runtime.js";
import type { Command, Io } from "./dr.js";

/** dr.ts's exit codes (not imported: dr.ts imports this module). */
const EXIT = { ok: 0, failure: 1, invalidInput: 2, usage: 64 } as const;

export const STATE_MACHINE_ENV = "FAILOVER_STATE_MACHINE_ARN";
export const LOCAL_STATE_DIR_ENV = "DR_LOCAL_STATE_DIR";
export const DEFAULT_LOCAL_STATE_DIR = ".build/failover-executions";

const STATE_MACHINE_ARN = /^arn:aws[a-z-]*:states:([a-z0-9-]+):\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$/;

type Values = Record<string, string | boolean | undefined>;
type Env = Record<string, string | undefined>;

type Mode =
  | { kind: "aws"; stateMachineArn: string; region: string; endpoint?: string }
  | { kind: "local"; endpoint?: string; stateDir: string };

/** Which Step Functions: AWS's (an ARN), or local mode's runner (see the file's comment). */
export function modeOf(v: Values, env: Env): Mode | { kind: "usage"; message: string } {
  const arn = (v["state-machine"] as string | undefined) ?? env[STATE_MACHINE_ENV];
  const endpoint = (v.endpoint as string | undefined) ?? env.AWS_ENDPOINT_URL;
  if (v.local === true || (endpoint && !arn)) {
    return {
      kind: "local",
      ...(endpoint ? { endpoint } : {}),
      stateDir: env[LOCAL_STATE_DIR_ENV] ?? DEFAULT_LOCAL_STATE_DIR,
    };
  }
  if (!arn) {
    return {
      kind: "usage",
      message: `needs the state machine: --state-machine ARN or ${STATE_MACHINE_ENV} (or --local with an emulator)`,
    };
  }
  const m = STATE_MACHINE_ARN.exec(arn);
  if (!m?.[1]) return { kind: "usage", message: `--state-machine is not a state machine ARN: "${arn}"` };
  return { kind: "aws", stateMachineArn: arn, region: m[1], ...(endpoint ? { endpoint } : {}) };
}

/** The caller's ARN from STS GetCallerIdentity (signed here: the CLI carries no STS client). */
export async function callerArn(
  region: string,
  credentials: SFNClient["config"]["credentials"],
  endpoint?: string,
): Promise<string> {
  const url = new URL(endpoint ?? `https://${stsHost(region)}/`);
  const body = "Action=GetCallerIdentity&Version=2011-06-15";
  const signer = new SignatureV4({ service: "sts", region, credentials, sha256: Sha256 });
  const signed = await signer.sign({
    method: "POST",
    protocol: url.protocol,
    hostname: url.hostname,
    ...(url.port ? { port: Number(url.port) } : {}),
    path: "/",
    headers: { host: url.host, "content-type": "application/x-www-form-urlencoded; charset=utf-8" },
    body,
  });
  const { host: _host, ...headers } = signed.headers;
  const res = await fetch(new URL("/", url), {
    method: "POST",
    headers,
    body,
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  const arn = /<Arn>([^<]+)<\/Arn>/.exec(text)?.[1];
  if (!res.ok || !arn) throw new Error(`STS GetCallerIdentity: HTTP ${res.status}`);
  return arn;
}

async function requester(v: Values, sfn: SFNClient, region: string, endpoint: string | undefined, io: Io) {
  const given = v["requested-by"] as string | undefined;
  if (given) return given;
  try {
    return await callerArn(region, sfn.config.credentials, endpoint);
  } catch (err) {
    const user = process.env.USER ?? process.env.LOGNAME ?? "unknown";
    io.stderr(`dr: the caller's identity is unknown (${errorMessage(err)}); requested by ${user}\n`);
    return user;
  }
}

// --- The status view (AWS and local alike) -----------------------------------------------------

export interface FailoverStatusView {
  executionId: string;
  executionArn: string;
  status: string;
  drill: boolean | null;
  startedAt: string | null;
  stoppedAt: string | null;
  request: FailoverRequest | null;
  /** The state a running execution is in. */
  currentState?: string;
  /** Why it failed (the error the workflow caught), or the execution's own error. */
  failure?: { error: string; cause: string };
  approval?: { approvedBy: string; channel?: string; at?: string };
  report?: FailoverReport;
}

const rec = (v: unknown): Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

const jsonOf = (text: string | undefined): unknown => {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

/** Lambda errors reach Step Functions' Catch with a JSON cause; show its message. */
function causeText(cause: unknown): string {
  const c = typeof cause === "string" ? cause : JSON.stringify(cause ?? "");
  const parsed = rec(jsonOf(c));
  return typeof parsed.errorMessage === "string" ? parsed.errorMessage : c;
}

const RequestInputSchema = z.looseObject({ request: FailoverRequestSchema });

function requestOf(input: unknown): FailoverRequest | null {
  const p = z.safeParse(RequestInputSchema, input);
  return p.success ? p.data.request : null;
}

/** Reads the report, the approval and the caught error from a state document. */
function fromState(doc: unknown, view: FailoverStatusView): void {
  const d = rec(doc);
  const report = rec(rec(rec(d.steps).report).report);
  if (typeof report.executionId === "string") view.report = report as unknown as FailoverReport;
  const approval = rec(d.approval);
  if (typeof approval.approvedBy === "string") {
    view.approval = {
      approvedBy: approval.approvedBy,
      ...(typeof approval.channel === "string" ? { channel: approval.channel } : {}),
      ...(typeof approval.at === "string" ? { at: approval.at } : {}),
    };
  }
  const caught = rec(d.error);
  if (typeof caught.Error === "string")
    view.failure = { error: caught.Error, cause: causeText(caught.Cause) };
}

export function viewOfLocal(r: LocalExecutionRecord): FailoverStatusView {
  const view: FailoverStatusView = {
    executionId: r.executionId,
    executionArn: r.executionArn,
    status: r.status,
    drill: r.input.request.drill,
    startedAt: r.startedAt,
    stoppedAt: r.stoppedAt ?? null,
    request: r.input.request,
  };
  if (r.status === "RUNNING") {
    const last = [...r.history].reverse().find((h) => h.type === "StateEntered");
    if (last?.state) view.currentState = last.state;
  }
  if (r.output) fromState(r.output, view);
  if (r.report) view.report = r.report;
  if (r.approval) view.approval = r.approval;
  if (r.failure) view.failure = r.failure;
  else if (r.status === "FAILED" && r.error) view.failure = { error: r.error, cause: r.cause ?? "" };
  return view;
}

async function viewOfAws(sfn: SFNClient, executionArn: string): Promise<FailoverStatusView> {
  const d: DescribeExecutionCommandOutput = await sfn.send(new DescribeExecutionCommand({ executionArn }));
  const request = requestOf(jsonOf(d.input));
  const view: FailoverStatusView = {
    executionId: d.name ?? executionArn.split(":").pop() ?? "",
    executionArn,
    status: d.status ?? "UNKNOWN",
    drill: request?.drill ?? null,
    startedAt: d.startDate?.toISOString() ?? null,
    stoppedAt: d.stopDate?.toISOString() ?? null,
    request,
  };
  if (d.status === "SUCCEEDED") {
    fromState(jsonOf(d.output), view);
    return view;
  }
  // Failed or running: the history says why, or where it is (newest first, one page is plenty).
  const h = await sfn.send(
    new GetExecutionHistoryCommand({
      executionArn,
      reverseOrder: true,
      maxResults: 200,
      includeExecutionData: true,
    }),
  );
  const events: HistoryEvent[] = h.events ?? [];
  const exitedReport = events.find((e) => e.stateExitedEventDetails?.name === "ReportFailure");
  if (exitedReport) fromState(jsonOf(exitedReport.stateExitedEventDetails?.output), view);
  const enteredReport = events.find((e) => e.stateEnteredEventDetails?.name === "ReportFailure");
  if (!view.failure && enteredReport) fromState(jsonOf(enteredReport.stateEnteredEventDetails?.input), view);
  const approvalExit = events.find((e) => e.stateExitedEventDetails?.name === STATE_OF.requestApproval);
  if (!view.approval && approvalExit) fromState(jsonOf(approvalExit.stateExitedEventDetails?.output), view);
  if (d.status === "RUNNING") {
    const entered = events.find((e) => e.stateEnteredEventDetails?.name);
    if (entered?.stateEnteredEventDetails?.name) view.currentState = entered.stateEnteredEventDetails.name;
  } else if (!view.failure && (d.error || d.cause)) {
    view.failure = { error: d.error ?? "", cause: causeText(d.cause) };
  }
  return view;
}

/** The status for people. */
export function renderStatusView(v: FailoverStatusView): string {
  const kind = v.drill === null ? "Execution" : v.drill ? "DR drill" : "Failover";
  const lines = [
    `${kind} ${v.executionId}: ${v.status}`,
    `  started ${v.startedAt ?? "?"}${v.stoppedAt ? `, stopped ${v.stoppedAt}` : ""}`,
  ];
  if (v.request) lines.push(`  requested by ${v.request.requestedBy}: ${v.request.reason}`);
  if (v.currentState) {
    lines.push(
      `  now in ${v.currentState}${v.currentState === STATE_OF.requestApproval ? " (waiting for an approver)" : ""}`,
    );
  }
  if (v.approval) {
    lines.push(
      `  approved by ${v.approval.approvedBy}${v.approval.channel ? ` via ${v.approval.channel}` : ""}${v.approval.at ? ` at ${v.approval.at}` : ""}`,
    );
  }
  if (v.failure) lines.push(`  failed: ${v.failure.error}: ${v.failure.cause}`);
  if (v.report) {
    lines.push("", renderReport(v.report).trimEnd());
  } else if (v.status !== "RUNNING") {
    lines.push("  no report");
  }
  return `${lines.join("\n")}\n`;
}

// --- Commands ----------------------------------------------------------------------------------

const common = {
  "state-machine": { type: "string" },
  local: { type: "boolean", default: false },
  endpoint: { type: "string" },
  json: { type: "boolean", default: false },
} as const;

export const failoverRequestCommand: Command = {
  path: ["failover", "request"],
  args: '--reason "..." [--drill] [--json] [--state-machine ARN] [--local [--approve|--reject]] [--endpoint URL]',
  summary:
    "start a failover (or a --drill): preflight, approval by email/Slack, node group + restore, DNS, report",
  options: {
    ...common,
    reason: { type: "string" },
    drill: { type: "boolean", default: false },
    "requested-by": { type: "string" },
    approve: { type: "boolean", default: false },
    reject: { type: "boolean", default: false },
    "approval-timeout": { type: "string" },
  },
  async run({ values, io }) {
    const v = values as Values;
    const reason = (v.reason as string | undefined)?.trim();
    if (!reason) {
      io.stderr(
        'dr: failover request needs --reason "why" (it goes to the approvers and the audit record)\n',
      );
      return EXIT.usage;
    }
    if (v.approve && v.reject) {
      io.stderr("dr: --approve and --reject exclude each other\n");
      return EXIT.usage;
    }
    const mode = modeOf(v, process.env);
    if (mode.kind === "usage") {
      io.stderr(`dr: failover request ${mode.message}\n`);
      return EXIT.usage;
    }
    const drill = v.drill === true;
    if (mode.kind === "local") return requestLocal(v, mode, reason, drill, io);
    if (v.approve || v.reject) {
      io.stderr(
        "dr: --approve/--reject are for local mode; in AWS the approvers decide from their email or Slack\n",
      );
      return EXIT.usage;
    }
    const sfn = new SFNClient({ region: mode.region, ...(mode.endpoint ? { endpoint: mode.endpoint } : {}) });
    const now = new Date();
    const request = parseWith(
      FailoverRequestSchema,
      {
        executionId: newExecutionId(drill, now),
        reason,
        requestedBy: await requester(v, sfn, mode.region, mode.endpoint, io),
        drill,
        requestedAt: now.toISOString(),
      },
      "request",
    );
    const out = await sfn.send(
      new StartExecutionCommand({
        stateMachineArn: mode.stateMachineArn,
        name: request.executionId,
        input: JSON.stringify({ request }),
      }),
    );
    const started = {
      executionId: request.executionId,
      executionArn: out.executionArn ?? "",
      startDate: out.startDate?.toISOString() ?? now.toISOString(),
      request,
    };
    if (v.json) io.stdout(`${JSON.stringify(started)}\n`);
    else {
      io.stdout(
        [
          `started ${drill ? "DR drill" : "FAILOVER"} ${request.executionId}`,
          `  ${started.executionArn}`,
          "  preflight runs first; then the approvers get the request by email (and Slack): nothing changes",
          "  until one of them approves.",
          `  follow it: dr failover status ${request.executionId}`,
          "",
        ].join("\n"),
      );
    }
    return EXIT.ok;
  },
};

export const failoverStatusCommand: Command = {
  path: ["failover", "status"],
  args: "[<execution>] [--json] [--state-machine ARN] [--local] [--endpoint URL]",
  summary: "a failover or drill execution (default: the newest): state, approval, why it failed, report",
  allowPositionals: true,
  options: { ...common },
  async run({ values, positionals, io }) {
    const v = values as Values;
    if (positionals.length > 1) {
      io.stderr("dr: failover status takes at most one execution\n");
      return EXIT.usage;
    }
    const which = positionals[0];
    const mode = modeOf(v, process.env);
    if (mode.kind === "usage") {
      io.stderr(`dr: failover status ${mode.message}\n`);
      return EXIT.usage;
    }
    let view: FailoverStatusView;
    if (mode.kind === "local") {
      const records = readLocalExecutions(mode.stateDir);
      const r = which
        ? records.find((x) => x.executionId === which || x.executionArn === which)
        : records.at(-1);
      if (!r) {
        io.stderr(`dr: no local execution ${which ?? ""} in ${mode.stateDir}\n`.replace("  ", " "));
        return EXIT.failure;
      }
      view = viewOfLocal(r);
    } else {
      const sfn = new SFNClient({
        region: mode.region,
        ...(mode.endpoint ? { endpoint: mode.endpoint } : {}),
      });
      let arn = which;
      if (!arn) {
        const list = await sfn.send(
          new ListExecutionsCommand({ stateMachineArn: mode.stateMachineArn, maxResults: 1 }),
        );
        arn = list.executions?.[0]?.executionArn;
        if (!arn) {
          io.stderr(`dr: ${mode.stateMachineArn} has no execution\n`);
          return EXIT.failure;
        }
      } else if (!arn.startsWith("arn:")) {
        arn = `${mode.stateMachineArn.replace(":stateMachine:", ":execution:")}:${arn}`;
      }
      view = await viewOfAws(sfn, arn);
    }
    io.stdout(v.json ? `${JSON.stringify(view)}\n` : renderStatusView(view));
    return EXIT.ok;
  },
};

/** Local mode's request: the runner in this process, until the execution ends. */
async function requestLocal(
  v: Values,
  mode: Extract<Mode, { kind: "local" }>,
  reason: string,
  drill: boolean,
  io: Io,
): Promise<number> {
  if (!mode.endpoint) {
    io.stderr("dr: local mode needs the emulator's endpoint: --endpoint URL or AWS_ENDPOINT_URL\n");
    return EXIT.usage;
  }
  const timeoutRaw = (v["approval-timeout"] as string | undefined) ?? "900";
  const approvalTimeoutSeconds = Number(timeoutRaw);
  if (
    !Number.isInteger(approvalTimeoutSeconds) ||
    approvalTimeoutSeconds < 1 ||
    approvalTimeoutSeconds > 86_400
  ) {
    io.stderr(`dr: --approval-timeout must be 1..86400 seconds, got "${timeoutRaw}"\n`);
    return EXIT.usage;
  }
  const env = process.env;
  const config = loadFailoverConfig(env);
  let standIn: K8sStandIn | undefined;
  if (!config.k8sEndpoint) {
    standIn = await K8sStandIn.start({ clusterName: config.clusterName, credentials: LOCAL_CREDENTIALS });
    config.k8sEndpoint = standIn.endpoint;
    io.stderr(`${standIn.describe()}\n`);
  }
  const runner = await LocalFailoverRunner.start({
    endpoint: mode.endpoint,
    failover: config,
    approval: {
      ...(env.APPROVAL_SECRET_ARN ? { secretArn: env.APPROVAL_SECRET_ARN } : {}),
      ...(config.topicArn ? { topicArn: config.topicArn } : {}),
    },
    machine: { approvalTimeoutSeconds },
    stateDir: mode.stateDir,
    logLevel: "ERROR",
  });
  try {
    const sfnLike = new SFNClient({ region: config.failoverRegion, credentials: LOCAL_CREDENTIALS });
    const request = runner.request({
      reason,
      requestedBy: await requester(v, sfnLike, config.failoverRegion, mode.endpoint, io),
      drill,
    });
    const execution = runner.start(request);
    io.stderr(
      `started ${drill ? "DR drill" : "FAILOVER"} ${request.executionId} (local: the real definition on aws-local-stepfunctions)\n`,
    );
    const mail = runner.mailbox.approvalRequest(request.executionId, approvalTimeoutSeconds * 1000);
    mail.catch(() => {});
    const first = await Promise.race([execution.done.then(() => undefined), mail]);
    if (first) {
      io.stderr(
        `\napproval email to ${first.topicArn} (SNS delivers no email on the emulator; here it is):\n` +
          `Subject: ${first.subject}\n\n${first.message.split("\n---\n")[0]}\n\n`,
      );
      const action = v.approve ? "approve" : v.reject ? "reject" : undefined;
      if (action) {
        const followed = await followApprovalLink(approvalLinkIn(first.message, action));
        io.stderr(
          `local approver: GET ${followed.page.status} "${followed.page.title}", POST ${followed.decision?.status ?? "-"} "${followed.decision?.title ?? ""}"\n`,
        );
      } else {
        io.stderr(
          `open the approve or reject link in a browser; waiting up to ${humanDuration(approvalTimeoutSeconds)}\n`,
        );
      }
    }
    const record = await execution.done;
    const view = viewOfLocal(record);
    io.stdout(v.json ? `${JSON.stringify(view)}\n` : renderStatusView(view));
    return record.status === "SUCCEEDED" ? EXIT.ok : EXIT.failure;
  } finally {
    await runner.stop();
    await standIn?.stop();
  }
}

export const failoverCommands: Command[] = [failoverRequestCommand, failoverStatusCommand];
