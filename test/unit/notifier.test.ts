import { describe, expect, it } from "vitest";
import { SecretSlackNotifier } from "../../functions/adapters/notifier.js";
import { parseSlackWebhookSecret } from "../../functions/core/approval-config.js";

const ARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:velero-dr/slack-webhook-AbCdEf";
const URL = "https://hooks.slack.com/services/T000/B000/XXXX";

describe("SecretSlackNotifier", () => {
  it("reads the webhook from its secret at the first message only, and posts each message there", async () => {
    // arrange
    const reads: string[] = [];
    const posts: Array<{ url: string; body: string }> = [];
    const secrets = {
      get: async (id: string) => {
        reads.push(id);
        return JSON.stringify({ webhookUrl: URL });
      },
    };
    const post = (async (url: string | URL | Request, init?: RequestInit) => {
      posts.push({ url: String(url), body: String(init?.body) });
      return new Response("ok", { status: 200 });
    }) as typeof fetch;
    const n = new SecretSlackNotifier(secrets, ARN, parseSlackWebhookSecret, post);

    // act
    await n.publish("DR failover f-1: preflight passed", "backup b1");
    await n.publish("DR failover f-1: restore Completed", "0 warnings");

    // assert
    expect(reads).toEqual([ARN]);
    expect(posts.map((p) => p.url)).toEqual([URL, URL]);
    expect(posts[0]?.body).toContain("DR failover f-1: preflight passed");
  });

  it("tries the secret again at the next message when reading it failed", async () => {
    let calls = 0;
    const secrets = {
      get: async () => {
        calls++;
        if (calls === 1) throw new Error("throttled");
        return JSON.stringify({ webhookUrl: URL });
      },
    };
    const post = (async () => new Response("ok", { status: 200 })) as typeof fetch;
    const n = new SecretSlackNotifier(secrets, ARN, parseSlackWebhookSecret, post);
    await expect(n.publish("s", "t")).rejects.toThrow(/throttled/);
    await expect(n.publish("s", "t")).resolves.toBeDefined();
    expect(calls).toBe(2);
  });
});
