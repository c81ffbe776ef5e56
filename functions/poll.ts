import { makePollHandler } from "./app/poll.js";
import { withRegistry } from "./app/registry-runtime.js";
import { runtimeFromEnv } from "./app/runtime.js";

/** Lambda entrypoint: the copy poller (EventBridge schedule, every minute). */
export const handler = makePollHandler(withRegistry(runtimeFromEnv()));
