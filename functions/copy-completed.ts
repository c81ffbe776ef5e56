import { makeCopyCompletedHandler } from "./app/copy-completed.js";
import { runtimeFromEnv } from "./app/runtime.js";

/** Lambda entrypoint: SQS (copySnapshot events in the failover region) -> ledger -> next copies. */
export const handler = makeCopyCompletedHandler(runtimeFromEnv());
