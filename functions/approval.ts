import { approvalRuntimeFromEnv, makeApprovalHandler } from "./app/approval-http.js";

/** Lambda entrypoint (function URL): approval links and Slack callbacks. Configuration is validated at cold start. */
export const handler = makeApprovalHandler(approvalRuntimeFromEnv());
