import { makeRegisterHandler } from "./app/register.js";
import { withRegistry } from "./app/registry-runtime.js";
import { runtimeFromEnv } from "./app/runtime.js";

/** Lambda entrypoint: SQS (Velero bucket events) -> backup registry. Needs VELERO_BUCKET (checked at cold start). */
export const handler = makeRegisterHandler(withRegistry(runtimeFromEnv()));
