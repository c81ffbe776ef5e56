import { withRegistry } from "./app/registry-runtime.js";
import { runtimeFromEnv } from "./app/runtime.js";
import { makeSweepHandler } from "./app/sweep.js";

/** Lambda entrypoint: the scheduled reconciliation sweep (EventBridge schedule). */
export const handler = makeSweepHandler(withRegistry(runtimeFromEnv()));
