import { Logger } from "@aws-lambda-powertools/logger";
import type { SNSClient } from "@aws-sdk/client-sns";
import { describe, expect, it } from "vitest";
import { SnsNotifier } from "../../functions/adapters/notifier.js";
import {
  makeRequestApproval,
  type RequestApprovalDeps,
  type RequestApprovalInput,
} from "../../functions/app/request-approval.js";
import {
  type ApprovalSummary,
  approverOf,
  type DecisionRecord,
  type TaskCallback,
  type TaskTokens,
  TOPIC_APPROVER,
  verifyApproval,
} from "../../functions/core/approval.js";
import { loadRequestApprovalConfig } from "../../functions/core/approval-config.js";
import type { FailoverPlan, Notifier } from "../../functions/core/failover.js";
import { REJECTED } from "../../functions/core/failover-machine.js";
import { FakeClock } from "../support/harness.js";

const KEY = "approval-key-0123456789abcdef-0123456789";
const WEBHOOK = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX";
const TASK_TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAeSECRET-TASK-TOKEN";
const EXEC = "failover-20261127T120500Z-a1b2c3";
const BASE = "https://abc123.lambda-url.us-west-2.on.aws";
const ARN = (name: string) => `arn:aws:secretsmanager:us-west-2:123456789012:secret:${name}`;

const plan = (drill = false): FailoverPlan => ({
  executionId: EXEC,
  drill,
  plannedAt: "2026-11-27T12:05:00.000Z",
  backup: {
    name: "cbci-dr-20261127115000",
    schedule: "cbci-dr",
    startTimestamp: "2026-11-27T11:50:00Z",
    completionTimestamp: "2026-11-27T11:51:30Z",
    warnings: 0,
    drReadyAt: "2026-11-27T11:55:00.000Z",
  },
  dataLossSeconds: 15 * 60,
  passedOver: [{ name: "cbci-dr-20261127120000", reason: "not DR-ready (pending: 12 of 20 copied)" }],
  cluster: "cbci-standby",
  nodegroup: {
    name: "cbci-workers",
    current: { min: 0, max: 1, desired: 0 },
    target: { min: 3, max: 6, desired: 3 },
  },
  restore: {
    name: "failover-x",
    veleroNamespace: "velero",
    includedNamespaces: ["cbci"],
    ...(drill ? { namespaceMapping: { cbci: "cbci-drill" } } : {}),
  },
  dns: {
    hostedZoneId: "Z123",
    recordName: "ci.example.com.",
    recordType: "A",
    current: { dnsName: "dualstack.primary.us-east-1.elb.amazonaws.com.", hostedZoneId: "Z35SXDOTRQ7X7K" },
    failover: { dnsName: "dualstack.failover.us-west-2.elb.amazonaws.com.", hostedZoneId: "Z1H1FL5HABSF5" },
    switch: !drill,
  },
  loadBalancer: { arn: "arn:lb", name: "cbci-failover", dnsName: "failover.us-west-2.elb.amazonaws.com" },
  plugin: { checked: true, present: true, detail: "ok" },
});

const input = (o: { drill?: boolean; taskToken?: string; reason?: string } = {}): RequestApprovalInput => ({
  taskToken: o.taskToken ?? TASK_TOKEN,
  request: {
    executionId: EXEC,
    reason: o.reason ?? "us-east-1 is unreachable <since 11:58> & paging",
    requestedBy: "arn:aws:sts::123456789012:assumed-role/Ops/alice",
    drill: o.drill ?? false,
    requestedAt: "2026-11-27T12:04:59.000Z",
  },
  steps: { preflight: { step: "preflight", plan: plan(o.drill) } },
});

class MemoryTasks implements TaskTokens {
  readonly items = new Map<string, { taskToken: string; expiresAt: Date; summary?: ApprovalSummary }>();
  async put(executionId: string, taskToken: string, expiresAt: Date, summary?: ApprovalSummary) {
    this.items.set(executionId, { taskToken, expiresAt, ...(summary ? { summary } : {}) });
  }
  async take(executionId: string) {
    const t = this.items.get(executionId);
    this.items.delete(executionId);
    return t?.taskToken;
  }
  async peek(executionId: string) {
    const t = this.items.get(executionId);
    return t ? { expiresAt: t.expiresAt, ...(t.summary ? { summary: t.summary } : {}) } : undefined;
  }
}

function fakes(
  o: { slack?: boolean; decision?: DecisionRecord; slackFails?: boolean; approvers?: string } = {},
) {
  const clock = new FakeClock(Date.parse("2026-11-27T12:05:00Z"));
  const tasks = new MemoryTasks();
  const emails: Array<{ subject: string; text: string; json: unknown; to?: { approver?: string } }> = [];
  const posts: Array<{ url: string; payload: object }> = [];
  const callbacks: Array<{
    kind: string;
    taskToken: string;
    output?: object;
    error?: string;
    cause?: string;
  }> = [];
  const email: Notifier = {
    async publish(subject, text, json, to) {
      emails.push({ subject, text, json, ...(to ? { to } : {}) });
      return `sns:${emails.length}`;
    },
  };
  const callback: TaskCallback = {
    async succeed(taskToken, output) {
      callbacks.push({ kind: "succeed", taskToken, output });
    },
    async fail(taskToken, error, cause) {
      callbacks.push({ kind: "fail", taskToken, error, cause });
    },
  };
  const config = loadRequestApprovalConfig({
    FAILOVER_REGION: "us-west-2",
    LEDGER_TABLE: "ledger",
    APPROVAL_SECRET_ARN: ARN("approval-keys"),
    APPROVAL_TTL_MINUTES: "45",
    APPROVAL_BASE_URL: `${BASE}/`,
    FAILOVER_TOPIC_ARN: "arn:aws:sns:us-west-2:123456789012:velero-dr-approvers",
    ...(o.slack ? { SLACK_WEBHOOK_SECRET_ARN: ARN("slack-webhook") } : {}),
    ...(o.approvers !== undefined ? { APPROVER_EMAILS: o.approvers } : {}),
  });
  const deps: RequestApprovalDeps = {
    config,
    tasks,
    decisions: { get: async () => o.decision },
    callback,
    secrets: async () => ({ keys: [Buffer.from(KEY)], ...(o.slack ? { slackWebhookUrl: WEBHOOK } : {}) }),
    email,
    slack: {
      async post(url, payload) {
        if (o.slackFails) throw new Error("Slack webhook: HTTP 503");
        posts.push({ url, payload });
        return "slack:ok";
      },
    },
    clock,
    logger: new Logger({ serviceName: "test", logLevel: "SILENT" }),
  };
  return { deps, run: makeRequestApproval(deps), tasks, emails, posts, callbacks, clock };
}

const linksIn = (text: string) => {
  const links = text.match(/https:\/\/\S+\/approval\?\S+/g) ?? [];
  return Object.fromEntries(links.map((l) => [new URL(l).searchParams.get("action"), new URL(l)])) as Record<
    "approve" | "reject",
    URL
  >;
};

describe("request-approval: the approval request", () => {
  it("emails the backup, the data-loss window, the reason, the requester and approve/reject links that verify", async () => {
    // arrange
    const f = fakes();

    // act
    const out = await f.run(input());

    // assert: one email
    expect(out).toMatchObject({ executionId: EXEC, outcome: "sent", sent: ["sns:1"] });
    expect(f.emails).toHaveLength(1);
    const [mail] = f.emails;
    expect(mail?.subject).toBe("Approve FAILOVER? cbci-dr-20261127115000, data loss 15 min");
    const text = mail?.text ?? "";
    expect(text).toMatch(/^FAILOVER approval requested/);
    expect(text).toContain(`Execution: ${EXEC}`);
    expect(text).toContain(
      "Requested by: arn:aws:sts::123456789012:assumed-role/Ops/alice at 2026-11-27T12:04:59.000Z",
    );
    expect(text).toContain("Reason: us-east-1 is unreachable <since 11:58> & paging");
    expect(text).toContain("Backup: cbci-dr-20261127115000; schedule cbci-dr; started 2026-11-27T11:50:00Z");
    expect(text).toContain("Data-loss window: 15 min at preflight");
    expect(text).toContain("cbci-dr-20261127120000: not DR-ready (pending: 12 of 20 copied)");
    expect(text).toContain(
      "switches ci.example.com. from dualstack.primary.us-east-1.elb.amazonaws.com. to dualstack.failover.us-west-2.elb.amazonaws.com.",
    );
    expect(text).toMatch(/The first decision for this execution wins/);
    expect(text).toMatch(/reaches you again \(the workflow retried sending it\)/);
    // the links: to the endpoint, naming the execution and the action, each token bound to them
    const links = linksIn(text);
    const now = f.clock.now();
    for (const action of ["approve", "reject"] as const) {
      const url = links[action];
      expect(`${url.origin}${url.pathname}`).toBe(`${BASE}/approval`);
      expect(url.searchParams.get("execution")).toBe(EXEC);
      const token = url.searchParams.get("token");
      const verdict = verifyApproval(token, { channel: "email", executionId: EXEC, action }, [KEY], now);
      expect(verdict).toMatchObject({ ok: true, claims: { executionId: EXEC, action, channel: "email" } });
      expect(verdict.ok && verdict.claims.expiresAt).toBe(now.getTime() / 1000 + 45 * 60);
      const other = action === "approve" ? "reject" : "approve";
      expect(
        verifyApproval(token, { channel: "email", executionId: EXEC, action: other }, [KEY], now),
      ).toMatchObject({
        ok: false,
        reason: "wrong-action",
      });
      expect(verifyApproval(token, { channel: "slack", action }, [KEY], now)).toMatchObject({
        reason: "wrong-channel",
      });
      expect(
        verifyApproval(token, { channel: "email" }, ["another-key-0123456789abcdef-0123456789"], now),
      ).toMatchObject({
        reason: "bad-signature",
      });
    }
    // no secret in the message: not the key, not the task token
    const everything = JSON.stringify(f.emails);
    expect(everything).not.toContain(KEY);
    expect(everything).not.toContain(Buffer.from(KEY).toString("base64"));
    expect(everything).not.toContain(TASK_TOKEN);
    // the JSON part carries facts, no links
    expect(mail?.json).toEqual({
      executionId: EXEC,
      drill: false,
      reason: "us-east-1 is unreachable <since 11:58> & paging",
      requestedBy: "arn:aws:sts::123456789012:assumed-role/Ops/alice",
      requestedAt: "2026-11-27T12:04:59.000Z",
      backup: "cbci-dr-20261127115000",
      backupStartedAt: "2026-11-27T11:50:00Z",
      dataLossSeconds: 900,
      expiresAt: "2026-11-27T12:50:00.000Z",
    });
    // the task token is kept server side, expiring with the links, with the confirmation page's summary
    expect(f.tasks.items.get(EXEC)).toEqual({
      taskToken: TASK_TOKEN,
      expiresAt: new Date("2026-11-27T12:50:00.000Z"),
      summary: {
        backup: "cbci-dr-20261127115000",
        dataLossSeconds: 900,
        reason: "us-east-1 is unreachable <since 11:58> & paging",
        requestedBy: "arn:aws:sts::123456789012:assumed-role/Ops/alice",
        drill: false,
      },
    });
    expect(f.callbacks).toEqual([]);
  });

  it("says a drill is a drill: separate namespaces, no DNS switch, node group scaled back", async () => {
    const f = fakes();

    await f.run(input({ drill: true }));

    const [mail] = f.emails;
    expect(mail?.subject).toBe("Approve DR drill? cbci-dr-20261127115000, data loss 15 min");
    expect(mail?.text).toMatch(/^DR DRILL approval requested/);
    expect(mail?.text).toContain("Mode: drill (no DNS switch");
    expect(mail?.text).toContain(
      "restores cbci-dr-20261127115000 into cbci -> cbci-drill (separate namespaces)",
    );
    expect(mail?.text).toContain(
      "leaves ci.example.com. on dualstack.primary.us-east-1.elb.amazonaws.com. (no DNS switch)",
    );
    expect(mail?.text).toContain("from 0 to 3 nodes, and back to 0 afterwards");
  });

  it("with approver emails, sends each approver a message of their own: attribute `approver`, links naming them", async () => {
    // arrange
    const f = fakes({ approvers: " alice@example.com,bob@example.com, alice@example.com " });

    // act
    const out = await f.run(input());

    // assert: two publishes, in the listed order, each addressed (the SNS attribute) to one approver
    expect(out).toMatchObject({ outcome: "sent", sent: ["sns:1", "sns:2"] });
    expect(f.emails.map((m) => m.to)).toEqual([
      { approver: "alice@example.com" },
      { approver: "bob@example.com" },
    ]);
    const now = f.clock.now();
    const nonces = new Set<string>();
    for (const mail of f.emails) {
      const approver = mail.to?.approver ?? "";
      expect(mail.subject).toBe("Approve FAILOVER? cbci-dr-20261127115000, data loss 15 min");
      expect(mail.text).toContain(`These links are yours (${approver})`);
      expect(mail.json).toMatchObject({ executionId: EXEC, approver });
      const links = linksIn(mail.text);
      for (const action of ["approve", "reject"] as const) {
        const token = links[action].searchParams.get("token");
        const verdict = verifyApproval(token, { channel: "email", executionId: EXEC, action }, [KEY], now);
        // the token's signed claim names the approver: the endpoint records `email:<address>`
        expect(verdict).toMatchObject({
          ok: true,
          claims: { executionId: EXEC, action, channel: "email", approver },
        });
        expect(verdict.ok && approverOf(verdict.claims)).toEqual({
          approver: `email:${approver}`,
          named: true,
        });
        if (verdict.ok) nonces.add(verdict.claims.nonce);
      }
    }
    expect(nonces.size).toBe(4); // every link its own token
    // the other approver is named nowhere in a message
    expect(f.emails[0]?.text).not.toContain("bob@example.com");
    expect(f.emails[1]?.text).not.toContain("alice@example.com");
    expect(f.tasks.items.get(EXEC)?.taskToken).toBe(TASK_TOKEN);
  });

  it("without approver emails, sends the single message to the whole topic, links naming nobody", async () => {
    const f = fakes();

    const out = await f.run(input());

    expect(out.sent).toEqual(["sns:1"]);
    expect(f.emails).toHaveLength(1);
    expect(f.emails[0]?.to).toBeUndefined(); // the notifier sends it to `all`
    expect(f.emails[0]?.text).not.toContain("These links are yours");
    const token = linksIn(f.emails[0]?.text ?? "").approve.searchParams.get("token");
    const verdict = verifyApproval(token, { channel: "email", action: "approve" }, [KEY], f.clock.now());
    expect(verdict.ok && verdict.claims.approver).toBeUndefined();
    expect(verdict.ok && approverOf(verdict.claims)).toEqual({ approver: TOPIC_APPROVER, named: false });
  });

  it("with approver emails and Slack, posts the Slack buttons once", async () => {
    const f = fakes({ slack: true, approvers: "alice@example.com,bob@example.com" });

    const out = await f.run(input());

    expect(out.sent).toEqual(["sns:1", "sns:2", "slack:ok"]);
    expect(f.posts).toHaveLength(1);
  });

  it("a retry re-sends every approver's message with fresh links; the first decision still wins (the store)", async () => {
    const f = fakes({ approvers: "alice@example.com,bob@example.com" });
    await f.run(input());

    await f.run(input({ taskToken: "SECOND-ATTEMPT-TOKEN" }));

    expect(f.emails.map((m) => m.to?.approver)).toEqual([
      "alice@example.com",
      "bob@example.com",
      "alice@example.com",
      "bob@example.com",
    ]);
    const tokens = f.emails.map((m) => linksIn(m.text).approve.searchParams.get("token"));
    expect(new Set(tokens).size).toBe(4);
    expect(f.tasks.items.get(EXEC)?.taskToken).toBe("SECOND-ATTEMPT-TOKEN");
  });

  it("posts the Slack buttons with slack-channel tokens, escaped text, and no webhook URL or key in the payload", async () => {
    // arrange
    const f = fakes({ slack: true });

    // act
    const out = await f.run(input());

    // assert
    expect(out.sent).toEqual(["sns:1", "slack:ok"]);
    expect(f.posts).toHaveLength(1);
    const [post] = f.posts;
    expect(post?.url).toBe(WEBHOOK);
    const payload = post?.payload as { text: string; blocks: Array<Record<string, unknown>> };
    const section = JSON.stringify(payload.blocks[0]);
    expect(section).toContain("us-east-1 is unreachable &lt;since 11:58&gt; &amp; paging");
    const buttons = payload.blocks[1] as { elements: Array<{ action_id: string; value: string }> };
    for (const b of buttons.elements) {
      const action = b.action_id as "approve" | "reject";
      expect(verifyApproval(b.value, { channel: "slack", action }, [KEY], f.clock.now())).toMatchObject({
        ok: true,
        claims: { executionId: EXEC, action, channel: "slack" },
      });
      expect(verifyApproval(b.value, { channel: "email", action }, [KEY], f.clock.now())).toMatchObject({
        reason: "wrong-channel",
      });
    }
    const all = JSON.stringify([f.posts.map((p) => p.payload), f.emails]);
    expect(all).not.toContain(WEBHOOK);
    expect(all).not.toContain("XXXXsecretXXXX");
    expect(all).not.toContain(KEY);
    expect(all).not.toContain(TASK_TOKEN);
  });

  it("a failed Slack post does not fail the request once the email went out", async () => {
    const f = fakes({ slack: true, slackFails: true });

    const out = await f.run(input());

    expect(out).toMatchObject({ outcome: "sent", sent: ["sns:1"], slackError: "Slack webhook: HTTP 503" });
  });

  it("a retry sends again with fresh links and the new task token; links of both copies decide the same execution", async () => {
    // arrange
    const f = fakes();
    await f.run(input());

    // act: the state retried (a new task token)
    await f.run(input({ taskToken: "SECOND-ATTEMPT-TOKEN" }));

    // assert
    expect(f.emails).toHaveLength(2);
    const [a, b] = f.emails.map((m) => linksIn(m.text).approve.searchParams.get("token"));
    expect(a).not.toBe(b);
    for (const token of [a, b]) {
      expect(
        verifyApproval(
          token,
          { channel: "email", executionId: EXEC, action: "approve" },
          [KEY],
          f.clock.now(),
        ),
      ).toMatchObject({ ok: true });
    }
    expect(f.tasks.items.get(EXEC)?.taskToken).toBe("SECOND-ATTEMPT-TOKEN");
  });

  it("an execution already approved is resumed with the recorded approval and asks nobody again", async () => {
    // arrange: a re-run of an execution whose approval was decided
    const entry = {
      action: "approve" as const,
      channel: "email" as const,
      approver: "email:approvers-topic",
      named: false,
      at: "2026-11-27T12:01:00.000Z",
      nonce: "AAAAAAAAAAAAAAAAAAAAAA",
    };
    const f = fakes({
      decision: { executionId: EXEC, status: "approved", entries: [entry], decidedAt: entry.at, version: 1 },
    });

    // act
    const out = await f.run(input());

    // assert
    expect(out).toMatchObject({ outcome: "replayed-approved", sent: [] });
    expect(f.emails).toEqual([]);
    expect(f.callbacks).toEqual([
      {
        kind: "succeed",
        taskToken: TASK_TOKEN,
        output: {
          approvedBy: "email:approvers-topic",
          channel: "email",
          at: entry.at,
          approvals: [{ approvedBy: "email:approvers-topic", channel: "email", at: entry.at }],
        },
      },
    ]);
    expect(f.tasks.items.has(EXEC)).toBe(false);
  });

  it("an execution already rejected fails again with Rejected and the recorded cause", async () => {
    const entry = {
      action: "reject" as const,
      channel: "slack" as const,
      approver: "slack:U0BOB0002",
      approverName: "bob",
      named: true,
      at: "2026-11-27T12:02:00.000Z",
      nonce: "AAAAAAAAAAAAAAAAAAAAAA",
    };
    const f = fakes({
      decision: { executionId: EXEC, status: "rejected", entries: [entry], decidedAt: entry.at, version: 1 },
    });

    const out = await f.run(input());

    expect(out.outcome).toBe("replayed-rejected");
    expect(f.callbacks).toEqual([
      {
        kind: "fail",
        taskToken: TASK_TOKEN,
        error: REJECTED,
        cause: "rejected by bob (slack:U0BOB0002) via slack at 2026-11-27T12:02:00.000Z",
      },
    ]);
    expect(f.emails).toEqual([]);
  });

  it("refuses a payload without the preflight plan, naming what is missing", async () => {
    const f = fakes();
    const bad = { ...input(), steps: {} };

    await expect(f.run(bad)).rejects.toMatchObject({
      name: "StepFailed",
      message: /steps\.preflight is required/,
    });
    expect(f.emails).toEqual([]);
    expect(f.tasks.items.size).toBe(0);
  });
});

describe("SnsNotifier: the approvers' topic's routing attribute", () => {
  it("addresses a message to one approver, or to `all` (stage messages, the report, the single request)", async () => {
    const inputs: Array<Record<string, unknown>> = [];
    const sns = {
      async send(command: { input: Record<string, unknown> }) {
        inputs.push(command.input);
        return { MessageId: `m${inputs.length}` };
      },
    } as unknown as SNSClient;
    const notifier = new SnsNotifier(sns, "arn:aws:sns:us-west-2:123456789012:approvers");

    expect(await notifier.publish("Failover step", "text", { a: 1 })).toBe("sns:m1");
    await notifier.publish("Approve?", "text", {}, { approver: "alice@example.com" });
    await notifier.publish("Report", "text", {}, {});

    expect(inputs.map((i) => i.MessageAttributes)).toEqual([
      { approver: { DataType: "String", StringValue: "all" } },
      { approver: { DataType: "String", StringValue: "alice@example.com" } },
      { approver: { DataType: "String", StringValue: "all" } },
    ]);
  });
});

describe("request-approval: configuration", () => {
  const env = {
    FAILOVER_REGION: "us-west-2",
    LEDGER_TABLE: "ledger",
    APPROVAL_SECRET_ARN: ARN("approval-keys"),
    APPROVAL_BASE_URL: BASE,
    FAILOVER_TOPIC_ARN: "arn:aws:sns:us-west-2:123456789012:velero-dr-approvers",
  };

  it("reads and validates every setting, failing with the variable's name", () => {
    expect(loadRequestApprovalConfig(env)).toEqual({
      region: "us-west-2",
      ledgerTable: "ledger",
      approvalSecretArn: ARN("approval-keys"),
      ttlMinutes: 60,
      baseUrl: BASE,
      approversTopicArn: env.FAILOVER_TOPIC_ARN,
    });
    const { APPROVAL_BASE_URL: _url, ...noUrl } = env;
    expect(() => loadRequestApprovalConfig(noUrl)).toThrow(/APPROVAL_BASE_URL is required but not set/);
    expect(() => loadRequestApprovalConfig({ ...env, APPROVAL_BASE_URL: "http://example.com" })).toThrow(
      /APPROVAL_BASE_URL must be an https URL/,
    );
    expect(() =>
      loadRequestApprovalConfig({
        ...env,
        FAILOVER_TOPIC_ARN: "arn:aws:sns:us-east-1:123456789012:approvers",
      }),
    ).toThrow(/FAILOVER_TOPIC_ARN must be a topic in the failover region us-west-2/);
    expect(() =>
      loadRequestApprovalConfig({ ...env, SLACK_WEBHOOK_SECRET_ARN: "https://hooks.slack.com/services/x" }),
    ).toThrow(/SLACK_WEBHOOK_SECRET_ARN must be a Secrets Manager secret ARN/);
    expect(loadRequestApprovalConfig({ ...env, APPROVAL_BASE_URL: "http://127.0.0.1:8080" }).baseUrl).toBe(
      "http://127.0.0.1:8080",
    );
    expect(
      loadRequestApprovalConfig({ ...env, APPROVER_EMAILS: "alice@example.com, bob@example.com," })
        .approverEmails,
    ).toEqual(["alice@example.com", "bob@example.com"]);
    expect(loadRequestApprovalConfig({ ...env, APPROVER_EMAILS: " " }).approverEmails).toBeUndefined();
    expect(() => loadRequestApprovalConfig({ ...env, APPROVER_EMAILS: "alice@example.com,bob" })).toThrow(
      /APPROVER_EMAILS must list email addresses, got "bob"/,
    );
  });
});
