import { makeCopyCompletedHandler } from "./app/copy-completed.js";
import { withRegistry } from "./app/registry-runtime.js";
import { runtimeFromEnv } from "./app/runtime.js";

/** Lambda entrypoint: SQS (copySnapshot events in the failover region) -> ledger -> next copies, DR-ready backups. */
export const handler = makeCopyCompletedHandler(withRegistry(runtimeFromEnv()));
