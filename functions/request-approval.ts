import { makeRequestApprovalHandler, requestApprovalRuntimeFromEnv } from "./app/request-approval.js";

/**
 * Lambda entrypoint of the failover's RequestApproval state (lambda:invoke.waitForTaskToken): keeps
 * the task token, sends the signed approve/reject links (SNS email, Slack). Configuration
 * (FAILOVER_REGION, LEDGER_TABLE, APPROVAL_SECRET_ARN, APPROVAL_TTL_MINUTES, APPROVAL_BASE_URL,
 * FAILOVER_TOPIC_ARN, SLACK_WEBHOOK_SECRET_ARN) is validated at cold start.
 */
export const handler = makeRequestApprovalHandler(requestApprovalRuntimeFromEnv());
