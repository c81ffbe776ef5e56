import { FAILOVER_ERRORS } from "./failover.js";

/**
 * The failover workflow as an Amazon States Language document: one definition for the stack (with
 * the Lambda ARNs) and for local mode (aws-local-stepfunctions, with the same steps bound in-process).
 *
 * Preflight -> RequestApproval (waits on a task token, with a timeout) -> Recover (in parallel:
 * scale the node group and wait; start the Velero Restore and wait) -> Merge -> SwitchDns (skipped
 * in a drill) -> ScaleBack (drills only) -> Report. Any refusal, rejection, timeout or failed step
 * goes to ReportFailure, then fails the execution with the reason. Every step is idempotent (see
 * functions/app/failover-steps.ts), so a failed execution can be re-run with the same execution id.
 */

export type FailoverTask =
  | "preflight"
  | "requestApproval"
  | "scaleNodegroup"
  | "waitNodegroup"
  | "startRestore"
  | "waitRestore"
  | "switchDns"
  | "scaleBack"
  | "report";

export interface MachineOptions {
  /** How long the approval may take (Step Functions fails the wait with States.Timeout). */
  approvalTimeoutSeconds: number;
  /** Each task's own timeout (a wait step returns StillWaiting well before it). */
  taskTimeoutSeconds: number;
  /** Interval and attempts of the StillWaiting retries of the wait steps (interval x attempts = patience). */
  waitIntervalSeconds: number;
  waitMaxAttempts: number;
}

export const DEFAULT_MACHINE_OPTIONS: MachineOptions = {
  approvalTimeoutSeconds: 3600,
  taskTimeoutSeconds: 900,
  waitIntervalSeconds: 15,
  waitMaxAttempts: 120,
};

type Json = Record<string, unknown>;

/** The state names, also the keys local mode binds handlers to. */
export const STATE_OF: Record<FailoverTask, string> = {
  preflight: "Preflight",
  requestApproval: "RequestApproval",
  scaleNodegroup: "ScaleNodegroup",
  waitNodegroup: "WaitNodegroup",
  startRestore: "StartRestore",
  waitRestore: "WaitRestore",
  switchDns: "SwitchDns",
  scaleBack: "ScaleBack",
  report: "Report",
};

/** Error the approval callback fails the task with when an approver rejects. */
export const REJECTED = "Rejected";

export function failoverDefinition(
  arns: Record<FailoverTask, string>,
  o: MachineOptions = DEFAULT_MACHINE_OPTIONS,
): Json {
  const transient = {
    ErrorEquals: [
      FAILOVER_ERRORS.retryable,
      "Lambda.ServiceException",
      "Lambda.AWSLambdaException",
      "Lambda.SdkClientException",
      "Lambda.TooManyRequestsException",
    ],
    IntervalSeconds: 5,
    MaxAttempts: 5,
    BackoffRate: 2,
    JitterStrategy: "FULL",
  };
  const waiting = {
    ErrorEquals: [FAILOVER_ERRORS.stillWaiting],
    IntervalSeconds: o.waitIntervalSeconds,
    MaxAttempts: o.waitMaxAttempts,
    BackoffRate: 1,
  };
  const toFailure = [{ ErrorEquals: ["States.ALL"], ResultPath: "$.error", Next: "ReportFailure" }];
  const task = (step: FailoverTask, next: string | null, wait = false): Json => ({
    Type: "Task",
    Resource: arns[step],
    TimeoutSeconds: o.taskTimeoutSeconds,
    ResultPath: `$.steps.${step}`,
    Retry: wait ? [waiting, transient] : [transient],
    ...(next ? { Next: next } : { End: true }),
  });
  const branch = (first: FailoverTask, wait: FailoverTask): Json => ({
    StartAt: STATE_OF[first],
    States: { [STATE_OF[first]]: task(first, STATE_OF[wait]), [STATE_OF[wait]]: task(wait, null, true) },
  });
  return {
    Comment: "Velero DR failover: preflight, approval, node group + restore, DNS, report",
    StartAt: STATE_OF.preflight,
    States: {
      [STATE_OF.preflight]: { ...task("preflight", STATE_OF.requestApproval), Catch: toFailure },
      [STATE_OF.requestApproval]: {
        Type: "Task",
        Resource: "arn:aws:states:::lambda:invoke.waitForTaskToken",
        Parameters: {
          FunctionName: arns.requestApproval,
          Payload: { "taskToken.$": "$$.Task.Token", "request.$": "$.request", "steps.$": "$.steps" },
        },
        TimeoutSeconds: o.approvalTimeoutSeconds,
        ResultPath: "$.approval",
        Retry: [transient],
        Catch: toFailure,
        Next: "Recover",
      },
      Recover: {
        Type: "Parallel",
        Branches: [branch("scaleNodegroup", "waitNodegroup"), branch("startRestore", "waitRestore")],
        // Each branch returns the whole state; keep only what each one added.
        ResultSelector: {
          "scaleNodegroup.$": "$[0].steps.scaleNodegroup",
          "waitNodegroup.$": "$[0].steps.waitNodegroup",
          "startRestore.$": "$[1].steps.startRestore",
          "waitRestore.$": "$[1].steps.waitRestore",
        },
        ResultPath: "$.recovered",
        Catch: toFailure,
        Next: "Merge",
      },
      Merge: {
        Type: "Pass",
        Parameters: {
          "request.$": "$.request",
          "approval.$": "$.approval",
          steps: {
            "preflight.$": "$.steps.preflight",
            "scaleNodegroup.$": "$.recovered.scaleNodegroup",
            "waitNodegroup.$": "$.recovered.waitNodegroup",
            "startRestore.$": "$.recovered.startRestore",
            "waitRestore.$": "$.recovered.waitRestore",
          },
        },
        Next: STATE_OF.switchDns,
      },
      [STATE_OF.switchDns]: { ...task("switchDns", STATE_OF.scaleBack, true), Catch: toFailure },
      [STATE_OF.scaleBack]: { ...task("scaleBack", STATE_OF.report), Catch: toFailure },
      [STATE_OF.report]: task("report", null),
      ReportFailure: {
        ...task("report", "Failed"),
        Retry: [transient],
        Catch: [{ ErrorEquals: ["States.ALL"], ResultPath: "$.reportError", Next: "Failed" }],
      },
      Failed: {
        Type: "Fail",
        Error: "FailoverFailed",
        Cause: "The failover did not complete; the report (ReportFailure's output) says why",
      },
    },
  };
}
