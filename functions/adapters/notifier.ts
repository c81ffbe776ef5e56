import { PublishCommand, type SNSClient } from "@aws-sdk/client-sns";
import { classifyAwsError, RetryableError, TerminalError } from "../core/errors.js";
import { ALL_APPROVERS, APPROVER_ATTRIBUTE, type Notifier } from "../core/failover.js";

/**
 * Reports to an SNS topic of the failover region (email subscribers get the text). Every message
 * carries the String attribute `approver`: the one approver it is for, or `all` (stage messages,
 * reports, the single approval request), which every approver's filter policy accepts.
 */
export class SnsNotifier implements Notifier {
  constructor(
    private readonly sns: SNSClient,
    private readonly topicArn: string,
  ) {}

  async publish(subject: string, text: string, json: unknown, to?: { approver?: string }): Promise<string> {
    const out = await this.sns
      .send(
        new PublishCommand({
          TopicArn: this.topicArn,
          MessageAttributes: {
            [APPROVER_ATTRIBUTE]: { DataType: "String", StringValue: to?.approver ?? ALL_APPROVERS },
          },
          // SNS subjects: at most 100 printable ASCII characters, no line breaks.
          Subject: subject.replace(/[^\x20-\x7e]/g, " ").slice(0, 100),
          Message: `${text}\n---\n${JSON.stringify(json, null, 2)}`,
        }),
      )
      .catch((err: unknown) => {
        throw classifyAwsError(err, "SNS Publish");
      });
    return `sns:${out.MessageId ?? "?"}`;
  }
}

/**
 * POSTs one message to a Slack incoming webhook: 429 and 5xx (and no answer) are retryable, other
 * errors terminal. The URL is a credential: it is never put in an error.
 */
export async function postSlackWebhook(
  url: string,
  payload: object,
  post: typeof fetch = fetch,
): Promise<string> {
  const res = await post(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(payload),
    signal: AbortSignal.timeout(10_000),
  }).catch((err: unknown) => {
    throw new RetryableError(`Slack webhook: ${String(err)}`, "NetworkingError", { cause: err });
  });
  if (res.status === 429 || res.status >= 500)
    throw new RetryableError(`Slack webhook: HTTP ${res.status}`, `HTTP${res.status}`);
  if (!res.ok)
    throw new TerminalError(`Slack webhook: HTTP ${res.status} ${await res.text()}`, `HTTP${res.status}`);
  return "slack:ok";
}

/** Reports to a Slack incoming webhook (optional): the text as a code block. */
export class SlackWebhookNotifier implements Notifier {
  constructor(
    private readonly url: string,
    private readonly post: typeof fetch = fetch,
  ) {}

  publish(subject: string, text: string): Promise<string> {
    return postSlackWebhook(this.url, { text: `*${subject}*\n\`\`\`${text}\`\`\`` }, this.post);
  }
}

/** Posts approval requests (blocks with buttons) to the webhook named by a secret, read at run time. */
export interface SlackPoster {
  post(webhookUrl: string, payload: object): Promise<string>;
}

export const slackWebhookPoster = (post: typeof fetch = fetch): SlackPoster => ({
  post: (url, payload) => postSlackWebhook(url, payload, post),
});

/**
 * The Slack notifier whose webhook URL is a secret: read from Secrets Manager at the first message
 * (so a cold start makes no call and the URL never sits in the environment), then kept.
 */
export class SecretSlackNotifier implements Notifier {
  private url: Promise<string> | undefined;

  constructor(
    private readonly secrets: { get(secretId: string): Promise<string> },
    private readonly secretArn: string,
    private readonly parse: (text: string, secretArn: string) => string,
    private readonly post: typeof fetch = fetch,
  ) {}

  async publish(subject: string, text: string): Promise<string> {
    this.url ??= this.secrets.get(this.secretArn).then((t) => this.parse(t, this.secretArn));
    try {
      return await new SlackWebhookNotifier(await this.url, this.post).publish(subject, text);
    } catch (err) {
      this.url = undefined; // a failed read is tried again at the next message
      throw err;
    }
  }
}
