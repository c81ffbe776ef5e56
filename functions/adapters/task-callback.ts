import { SendTaskFailureCommand, SendTaskSuccessCommand, type SFNClient } from "@aws-sdk/client-sfn";
import type { TaskCallback } from "../core/approval.js";

/** Step Functions' limits on SendTaskFailure: `error` 256 characters, `cause` 32,768. */
const ERROR_MAX = 256;
const CAUSE_MAX = 32_768;

/**
 * Resumes a workflow waiting on `.waitForTaskToken`: SendTaskSuccess with the approval as the
 * task's output, or SendTaskFailure for a reject. Step Functions accepts one outcome per task
 * token; the endpoint calls this only for the one request that made the decision final.
 * https://docs.aws.amazon.com/step-functions/latest/dg/connect-to-resource.html#connect-wait-token
 */
export class SfnTaskCallback implements TaskCallback {
  constructor(private readonly sfn: SFNClient) {}

  async succeed(taskToken: string, output: object): Promise<void> {
    await this.sfn.send(new SendTaskSuccessCommand({ taskToken, output: JSON.stringify(output) }));
  }

  async fail(taskToken: string, error: string, cause: string): Promise<void> {
    await this.sfn.send(
      new SendTaskFailureCommand({
        taskToken,
        error: error.slice(0, ERROR_MAX),
        cause: cause.slice(0, CAUSE_MAX),
      }),
    );
  }
}
