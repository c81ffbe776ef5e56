import { failoverRuntimeFromEnv, makeFailoverSteps } from "./app/failover-steps.js";

/**
 * Lambda entrypoint of the failover's steps: one function, one exported handler per step
 * (`failover-steps.preflight`, `failover-steps.scaleNodegroup`, ...). The configuration is read and
 * validated at cold start (FAILOVER_* variables, LEDGER_TABLE, ALLOWED_WARNINGS); a missing or bad
 * value fails the cold start with its name.
 */
const steps = makeFailoverSteps(failoverRuntimeFromEnv());

export const preflight = steps.preflight;
export const scaleNodegroup = steps.scaleNodegroup;
export const waitNodegroup = steps.waitNodegroup;
export const startRestore = steps.startRestore;
export const waitRestore = steps.waitRestore;
export const switchDns = steps.switchDns;
export const scaleBack = steps.scaleBack;
export const report = steps.report;
