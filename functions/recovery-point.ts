import { makeRecoveryPointHandler } from "./app/recovery-point.js";
import { ledgerRuntimeFromEnv } from "./app/runtime.js";

/** Lambda entrypoint: the recovery point, every minute (EventBridge schedule) -> CloudWatch metrics. */
export const handler = makeRecoveryPointHandler(ledgerRuntimeFromEnv());
