import { makeReplicateHandler } from "./app/replicate.js";
import { runtimeFromEnv } from "./app/runtime.js";

/** Lambda entrypoint: SQS (snapshot events) -> ledger -> copies. Configuration is validated at cold start. */
export const handler = makeReplicateHandler(runtimeFromEnv());
