/**
 * The approval endpoint against the emulator: the real DynamoDB store (ledger table) and the real
 * Secrets Manager adapter on moto; the Step Functions callback is a recording fake, because moto
 * accepts SendTaskSuccess/SendTaskFailure but its executions do not run, so the only observable
 * effect of a callback is the call itself (one test below does send both calls to moto through the
 * real adapter, to check their shape).
 */
import { spawnSync } from "node:child_process";
import { Logger } from "@aws-lambda-powertools/logger";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { CreateSecretCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { SFNClient } from "@aws-sdk/client-sfn";
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { SfnTaskCallback } from "../../functions/adapters/task-callback.js";
import {
  type ApprovalRuntime,
  handleApprovalRequest,
  makeApprovalHandler,
  makeApprovalRuntime,
} from "../../functions/app/approval-http.js";
import {
  type ApprovalAction,
  type ApprovalChannel,
  issueApproval,
  signApproval,
  slackSignature,
  type TaskCallback,
} from "../../functions/core/approval.js";
import { loadApprovalConfig } from "../../functions/core/approval-config.js";
import { createLedgerTable } from "../../local/resources.js";
import { LOCAL_CREDENTIALS } from "../../local/runtime.js";
import { FakeClock, useMoto } from "../support/harness.js";

const moto = useMoto();

const REGION = "us-west-2";
const KEY = "approval-key-0123456789abcdef-0123456789";
const SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5";
const EXEC = "failover-20261127-120000";
const OTHER = "failover-20261127-113000";
const ALICE = "U0ALICE01";
const BOB = "U0BOB0002";
const MALLORY = "U0MALLORY";
const SUMMARY = { backup: "cbci-dr-20261127115000", dataLossSeconds: 17 * 60, reason: "us-east-1 is down" };

/** Records every callback; the emulator's Step Functions executions do not run (see the file's comment). */
class RecordingCallback implements TaskCallback {
  calls: { kind: "succeed" | "fail"; taskToken: string; output?: object; error?: string; cause?: string }[] =
    [];
  async succeed(taskToken: string, output: object) {
    this.calls.push({ kind: "succeed", taskToken, output });
  }
  async fail(taskToken: string, error: string, cause: string) {
    this.calls.push({ kind: "fail", taskToken, error, cause });
  }
  count(kind: "succeed" | "fail") {
    return this.calls.filter((c) => c.kind === kind).length;
  }
}

let tableCounter = 0;

async function setup(options: { twoPersonRule?: boolean } = {}) {
  const common = { endpoint: moto().endpoint, region: REGION, credentials: LOCAL_CREDENTIALS };
  const dynamo = new DynamoDBClient(common);
  const secretsManager = new SecretsManagerClient(common);
  const table = `approval-${process.pid}-${++tableCounter}`;
  await createLedgerTable(dynamo, table);
  const approvalSecret = await secretsManager.send(
    new CreateSecretCommand({ Name: `${table}/approval`, SecretString: JSON.stringify({ keys: [KEY] }) }),
  );
  const slackSecret = await secretsManager.send(
    new CreateSecretCommand({
      Name: `${table}/slack`,
      SecretString: JSON.stringify({ signingSecret: SLACK_SECRET }),
    }),
  );
  const config = loadApprovalConfig({
    LEDGER_TABLE: table,
    FAILOVER_REGION: REGION,
    APPROVAL_SECRET_ARN: approvalSecret.ARN,
    SLACK_SECRET_ARN: slackSecret.ARN,
    SLACK_APPROVERS: `${ALICE},${BOB}`,
    TWO_PERSON_RULE: String(options.twoPersonRule ?? false),
  });
  const clock = new FakeClock();
  const callback = new RecordingCallback();
  const rt = makeApprovalRuntime(config, {
    dynamo,
    secretsManager,
    callback,
    clock,
    logger: new Logger({ serviceName: "velero-dr-test", logLevel: "SILENT" }),
  });
  // the request step's part: the task token server side, waiting up to two hours
  const waitUntil = new Date(clock.now().getTime() + 2 * 3600_000);
  await rt.tasks.put(EXEC, "task-token-EXEC", waitUntil, SUMMARY);
  await rt.tasks.put(OTHER, "task-token-OTHER", waitUntil, SUMMARY);

  const mint = (
    action: ApprovalAction,
    channel: ApprovalChannel,
    over: { executionId?: string; approver?: string; keys?: string[] } = {},
  ) =>
    issueApproval(
      {
        executionId: over.executionId ?? EXEC,
        action,
        channel,
        ...(over.approver ? { approver: over.approver } : {}),
      },
      over.keys ?? [KEY],
      { now: clock.now(), ttlMinutes: config.ttlMinutes },
    ).token;

  return { rt, clock, callback, mint };
}

function event(
  method: string,
  path: string,
  o: {
    query?: string;
    body?: string;
    base64?: boolean;
    headers?: Record<string, string>;
    sourceIp?: string;
  } = {},
): APIGatewayProxyEventV2 {
  const body = o.body === undefined ? undefined : o.base64 ? Buffer.from(o.body).toString("base64") : o.body;
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: path,
    rawQueryString: o.query ?? "",
    headers: { host: "abc.lambda-url.us-west-2.on.aws", ...o.headers },
    requestContext: {
      accountId: "anonymous",
      apiId: "abc",
      domainName: "abc.lambda-url.us-west-2.on.aws",
      domainPrefix: "abc",
      http: {
        method,
        path,
        protocol: "HTTP/1.1",
        sourceIp: o.sourceIp ?? "198.51.100.7",
        userAgent: "Mozilla/5.0 test",
      },
      requestId: "req",
      routeKey: "$default",
      stage: "$default",
      time: "27/Nov/2026:12:00:00 +0000",
      timeEpoch: 0,
    },
    isBase64Encoded: o.base64 ?? false,
    ...(body === undefined ? {} : { body }),
  };
}

const form = (f: Record<string, string>) => new URLSearchParams(f).toString();

function emailPost(token: string, over: { execution?: string; action?: string; base64?: boolean } = {}) {
  return event("POST", "/approval", {
    body: form({ execution: over.execution ?? EXEC, action: over.action ?? "approve", token }),
    headers: { "content-type": "application/x-www-form-urlencoded" },
    base64: over.base64 ?? true,
  });
}

function slackPost(
  token: string,
  o: { user?: string; action?: ApprovalAction; at?: number; secret?: string; tamper?: boolean } = {},
  now = Date.now(),
) {
  const body = `payload=${encodeURIComponent(
    JSON.stringify({
      type: "block_actions",
      user: { id: o.user ?? ALICE, username: o.user === BOB ? "bob" : "alice" },
      team: { id: "T0TEAM001" },
      actions: [{ action_id: o.action ?? "approve", block_id: "dr-approval", value: token, type: "button" }],
      response_url: "https://hooks.slack.com/actions/T0TEAM001/1/abc",
    }),
  )}`;
  const ts = o.at ?? Math.floor(now / 1000);
  return event("POST", "/slack", {
    body: o.tamper ? body.replace("approve", "reject") : body,
    base64: true, // function URLs hand form bodies over base64-encoded
    sourceIp: "3.80.0.1",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      "x-slack-request-timestamp": String(ts),
      "x-slack-signature": slackSignature(o.secret ?? SLACK_SECRET, ts, body),
    },
  });
}

const call = (rt: ApprovalRuntime, e: APIGatewayProxyEventV2) =>
  handleApprovalRequest(rt, e) as Promise<
    APIGatewayProxyStructuredResultV2 & { statusCode: number; body: string }
  >;

/** No decision stored, the task token still waiting, no callback. */
async function expectNoSideEffect(s: Awaited<ReturnType<typeof setup>>, executionId = EXEC) {
  expect(await s.rt.store.get(executionId)).toBeUndefined();
  expect(await s.rt.tasks.peek(executionId)).toBeDefined();
  expect(s.callback.calls).toEqual([]);
}

describe("approval links (email)", () => {
  it("GET shows the backup, the data-loss window and a POST form, and decides nothing (mail scanners prefetch)", async () => {
    // arrange
    const s = await setup();
    const token = s.mint("approve", "email");
    const get = event("GET", "/approval", { query: form({ execution: EXEC, action: "approve", token }) });

    // act: a scanner fetches the link three times
    const pages = [await call(s.rt, get), await call(s.rt, get), await call(s.rt, get)];

    // assert
    for (const p of pages) {
      expect(p.statusCode).toBe(200);
      expect(p.body).toContain("cbci-dr-20261127115000");
      expect(p.body).toContain("17 min");
      expect(p.body).toContain('<form method="post" action="approval">');
      expect(p.headers).toMatchObject({ "referrer-policy": "no-referrer", "x-frame-options": "DENY" });
    }
    await expectNoSideEffect(s);
  });

  it("POST approves once: 200, one SendTaskSuccess with who/channel/when, the decision recorded with IP and agent", async () => {
    // arrange
    const s = await setup();
    const token = s.mint("approve", "email");

    // act
    const res = await call(s.rt, emailPost(token));

    // assert
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain("Failover approved");
    expect(s.callback.calls).toEqual([
      {
        kind: "succeed",
        taskToken: "task-token-EXEC",
        output: {
          approvedBy: "email:approvers-topic",
          channel: "email",
          at: "2026-11-27T12:00:00.000Z",
          approvals: [
            { approvedBy: "email:approvers-topic", channel: "email", at: "2026-11-27T12:00:00.000Z" },
          ],
        },
      },
    ]);
    const decision = await s.rt.store.get(EXEC);
    expect(decision).toMatchObject({
      status: "approved",
      decidedAt: "2026-11-27T12:00:00.000Z",
      resumedAt: "2026-11-27T12:00:00.000Z",
      entries: [
        { action: "approve", channel: "email", sourceIp: "198.51.100.7", userAgent: "Mozilla/5.0 test" },
      ],
    });
    expect(decision?.resumeError).toBeUndefined();
    expect(await s.rt.tasks.peek(EXEC)).toBeUndefined();
  });

  it("refuses a forged signature (another key, a tampered token) with 403 and no side effect", async () => {
    // arrange
    const s = await setup();
    const forged = s.mint("approve", "email", { keys: ["attacker-key-0123456789abcdef-0123456789"] });
    const [payload, sig] = s.mint("reject", "email").split(".") as [string, string];
    const tampered = `${Buffer.from(Buffer.from(payload, "base64url").toString().replace('"reject"', '"approve"')).toString("base64url")}.${sig}`;

    // act
    const a = await call(s.rt, emailPost(forged));
    const b = await call(s.rt, emailPost(tampered));
    const c = await call(
      s.rt,
      event("GET", "/approval", { query: form({ execution: EXEC, action: "approve", token: forged }) }),
    );

    // assert
    for (const r of [a, b, c]) {
      expect(r.statusCode).toBe(403);
      expect(r.body).toContain("token signature does not verify");
    }
    await expectNoSideEffect(s);
  });

  it("refuses the reject link's token used to approve (wrong action) with 403 and no side effect", async () => {
    // arrange
    const s = await setup();
    const rejectToken = s.mint("reject", "email");

    // act
    const res = await call(s.rt, emailPost(rejectToken, { action: "approve" }));

    // assert
    expect(res.statusCode).toBe(403);
    expect(res.body).toContain("token is for reject, not approve");
    await expectNoSideEffect(s);
  });

  it("refuses another execution's token with 403 and no side effect on either execution", async () => {
    // arrange
    const s = await setup();
    const otherToken = s.mint("approve", "email", { executionId: OTHER });

    // act
    const res = await call(s.rt, emailPost(otherToken, { execution: EXEC }));

    // assert
    expect(res.statusCode).toBe(403);
    expect(res.body).toContain("token belongs to another execution");
    await expectNoSideEffect(s, EXEC);
    await expectNoSideEffect(s, OTHER);
  });

  it("refuses an expired token with 410 and no side effect (the execution still waits)", async () => {
    // arrange
    const s = await setup();
    const token = s.mint("approve", "email");
    s.clock.advance(60 * 60_000 + 1000); // the link's hour is over, the workflow's two hours are not

    // act
    const res = await call(s.rt, emailPost(token));

    // assert
    expect(res.statusCode).toBe(410);
    expect(res.body).toContain("token expired at 2026-11-27T13:00:00.000Z");
    await expectNoSideEffect(s);
  });

  it("refuses a reused token with 409: the decision and the callbacks are those of the first use", async () => {
    // arrange
    const s = await setup();
    const token = s.mint("approve", "email");
    const first = await call(s.rt, emailPost(token));
    const before = await s.rt.store.get(EXEC);

    // act
    s.clock.advance(60_000);
    const again = await call(s.rt, emailPost(token));
    const page = await call(
      s.rt,
      event("GET", "/approval", { query: form({ execution: EXEC, action: "approve", token }) }),
    );

    // assert
    expect(first.statusCode).toBe(200);
    expect(again.statusCode).toBe(409);
    expect(again.body).toContain("already approved by email:approvers-topic at 2026-11-27T12:00:00.000Z");
    expect(page.statusCode).toBe(409);
    expect(await s.rt.store.get(EXEC)).toEqual(before);
    expect(s.callback.count("succeed")).toBe(1);
  });

  it("reject then approve: only the reject counts (one SendTaskFailure, no SendTaskSuccess)", async () => {
    // arrange
    const s = await setup();
    const reject = s.mint("reject", "email");
    const approve = s.mint("approve", "email");

    // act
    const r1 = await call(s.rt, emailPost(reject, { action: "reject" }));
    const r2 = await call(s.rt, emailPost(approve));
    const r3 = await call(s.rt, slackPost(s.mint("approve", "slack"), {}, s.clock.now().getTime()));

    // assert
    expect(r1.statusCode).toBe(200);
    expect(r1.body).toContain("Failover rejected");
    expect(r2.statusCode).toBe(409);
    expect(r3.statusCode).toBe(409);
    expect(s.callback.calls).toEqual([
      {
        kind: "fail",
        taskToken: "task-token-EXEC",
        error: "Rejected",
        cause: "rejected by email:approvers-topic via email at 2026-11-27T12:00:00.000Z",
      },
    ]);
    expect(await s.rt.store.get(EXEC)).toMatchObject({ status: "rejected", version: 1 });
  });

  it("refuses a decision for an execution that no longer waits (410, nothing written)", async () => {
    // arrange: the workflow's own wait ran out before the link did
    const s = await setup();
    await s.rt.tasks.put(EXEC, "task-token-EXEC", new Date(s.clock.now().getTime() + 60_000), SUMMARY);
    const token = s.mint("approve", "email");
    s.clock.advance(2 * 60_000);

    // act
    const res = await call(s.rt, emailPost(token));

    // assert
    expect(res.statusCode).toBe(410);
    expect(res.body).toContain("not waiting for approval");
    expect(await s.rt.store.get(EXEC)).toBeUndefined();
    expect(s.callback.calls).toEqual([]);
  });

  it("answers malformed requests with 4xx and never acts on other methods", async () => {
    // arrange
    const s = await setup();
    const token = s.mint("approve", "email");

    // act
    const missing = await call(s.rt, event("POST", "/approval", { body: form({ token }) }));
    const repeated = await call(
      s.rt,
      event("POST", "/approval", {
        body: `${form({ execution: EXEC, action: "approve", token })}&token=${token}`,
      }),
    );
    const head = await call(
      s.rt,
      event("HEAD", "/approval", { query: form({ execution: EXEC, action: "approve", token }) }),
    );
    const unknown = await call(s.rt, event("GET", "/admin"));

    // assert
    expect([missing.statusCode, repeated.statusCode, head.statusCode, unknown.statusCode]).toEqual([
      400, 400, 405, 404,
    ]);
    await expectNoSideEffect(s);
  });
});

describe("Slack callbacks", () => {
  it("an allowed user's click approves: 200 JSON replacing the buttons, one SendTaskSuccess naming the user", async () => {
    // arrange
    const s = await setup();
    const token = s.mint("approve", "slack");

    // act
    const res = await call(s.rt, slackPost(token, {}, s.clock.now().getTime()));

    // assert
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ replace_original: true });
    expect(JSON.parse(res.body).text).toContain(`approved by <@${ALICE}>`);
    expect(s.callback.calls).toEqual([
      expect.objectContaining({
        kind: "succeed",
        output: expect.objectContaining({ approvedBy: `alice (slack:${ALICE})`, channel: "slack" }),
      }),
    ]);
    expect(await s.rt.store.get(EXEC)).toMatchObject({
      status: "approved",
      entries: [{ approver: `slack:${ALICE}`, approverName: "alice", sourceIp: "3.80.0.1" }],
    });
  });

  it("refuses a bad signature (another secret, a changed body) with 401/403 and no side effect", async () => {
    // arrange
    const s = await setup();
    const now = s.clock.now().getTime();
    const token = s.mint("approve", "slack");

    // act
    const otherSecret = await call(
      s.rt,
      slackPost(token, { secret: "not-the-signing-secret-0000000000" }, now),
    );
    const tampered = await call(s.rt, slackPost(token, { tamper: true }, now));
    const unsigned = await call(s.rt, { ...slackPost(token, {}, now), headers: { "content-type": "x" } });

    // assert
    expect(otherSecret.statusCode).toBe(403);
    expect(tampered.statusCode).toBe(403);
    expect(unsigned.statusCode).toBe(401);
    expect(JSON.parse(otherSecret.body).text).toBe("Slack signature does not verify");
    await expectNoSideEffect(s);
  });

  it("refuses a correctly signed request whose timestamp is 301 s old (a replay) with 401 and no side effect", async () => {
    // arrange
    const s = await setup();
    const now = s.clock.now().getTime();
    const token = s.mint("approve", "slack");

    // act
    const res = await call(s.rt, slackPost(token, { at: now / 1000 - 301 }, now));

    // assert
    expect(res.statusCode).toBe(401);
    expect(JSON.parse(res.body).text).toContain("more than 300 s off");
    await expectNoSideEffect(s);
  });

  it("refuses a Slack user not on the list with 403 and no side effect", async () => {
    // arrange
    const s = await setup();
    const token = s.mint("approve", "slack");

    // act
    const res = await call(s.rt, slackPost(token, { user: MALLORY }, s.clock.now().getTime()));

    // assert
    expect(res.statusCode).toBe(403);
    expect(JSON.parse(res.body).text).toBe("you are not on the list of failover approvers");
    await expectNoSideEffect(s);
  });

  it("refuses an email token in a Slack button and a reject button's token behind approve", async () => {
    // arrange
    const s = await setup();
    const now = s.clock.now().getTime();

    // act
    const emailToken = await call(s.rt, slackPost(s.mint("approve", "email"), {}, now));
    const wrongAction = await call(s.rt, slackPost(s.mint("reject", "slack"), { action: "approve" }, now));

    // assert
    expect(emailToken.statusCode).toBe(403);
    expect(wrongAction.statusCode).toBe(403);
    await expectNoSideEffect(s);
  });

  it("a replayed Slack request within the 300 s window is refused by the store: 409, one SendTaskSuccess", async () => {
    // arrange
    const s = await setup();
    const req = slackPost(s.mint("approve", "slack"), {}, s.clock.now().getTime());
    await call(s.rt, req);

    // act
    s.clock.advance(30_000);
    const replay = await call(s.rt, req);

    // assert
    expect(replay.statusCode).toBe(409);
    expect(s.callback.count("succeed")).toBe(1);
  });
});

describe("approving twice starts one failover", () => {
  it("the same link posted twice at once: one 200, one 409, exactly one SendTaskSuccess", async () => {
    // arrange
    const s = await setup();
    const token = s.mint("approve", "email");

    // act
    const results = await Promise.all([call(s.rt, emailPost(token)), call(s.rt, emailPost(token))]);

    // assert
    expect(results.map((r) => r.statusCode).sort()).toEqual([200, 409]);
    expect(s.callback.calls).toHaveLength(1);
    expect(s.callback.count("succeed")).toBe(1);
    expect(await s.rt.store.get(EXEC)).toMatchObject({ status: "approved", version: 1 });
  });

  it("email and Slack (two users) at once, plus a reject: one decision, exactly one callback", async () => {
    // arrange
    const s = await setup();
    const now = s.clock.now().getTime();
    const requests = [
      emailPost(s.mint("approve", "email")),
      slackPost(s.mint("approve", "slack"), { user: ALICE }, now),
      slackPost(s.mint("approve", "slack"), { user: BOB }, now),
      emailPost(s.mint("approve", "email")),
      slackPost(s.mint("reject", "slack"), { user: BOB, action: "reject" }, now),
    ];

    // act
    const results = await Promise.all(requests.map((r) => call(s.rt, r)));

    // assert
    const codes = results.map((r) => r.statusCode);
    expect(codes.filter((c) => c === 200)).toHaveLength(1);
    expect(codes.filter((c) => c === 409)).toHaveLength(4);
    expect(s.callback.calls).toHaveLength(1);
    const decision = await s.rt.store.get(EXEC);
    expect(decision?.version).toBe(1);
    expect(s.callback.calls[0]?.kind).toBe(decision?.status === "approved" ? "succeed" : "fail");
  });
});

describe("two-person rule", () => {
  it("needs two distinct identified approvers: the first waits, the same one again and a topic link are refused", async () => {
    // arrange
    const s = await setup({ twoPersonRule: true });
    const now = s.clock.now().getTime();

    // act
    const first = await call(s.rt, slackPost(s.mint("approve", "slack"), { user: ALICE }, now));
    const afterFirst = s.callback.calls.length;
    const sameAgain = await call(s.rt, slackPost(s.mint("approve", "slack"), { user: ALICE }, now));
    const topicLink = await call(s.rt, emailPost(s.mint("approve", "email")));
    s.clock.advance(60_000);
    const second = await call(s.rt, emailPost(s.mint("approve", "email", { approver: "bob@example.com" })));

    // assert
    expect(first.statusCode).toBe(200);
    expect(JSON.parse(first.body).text).toContain("a second approver is needed");
    expect(afterFirst).toBe(0);
    expect(sameAgain.statusCode).toBe(409);
    expect(topicLink.statusCode).toBe(403);
    expect(second.statusCode).toBe(200);
    expect(s.callback.calls).toEqual([
      expect.objectContaining({
        kind: "succeed",
        output: expect.objectContaining({
          approvedBy: `alice (slack:${ALICE}) and email:bob@example.com`,
          approvals: [
            { approvedBy: `alice (slack:${ALICE})`, channel: "slack", at: "2026-11-27T12:00:00.000Z" },
            { approvedBy: "email:bob@example.com", channel: "email", at: "2026-11-27T12:01:00.000Z" },
          ],
        }),
      }),
    ]);
    expect(await s.rt.store.get(EXEC)).toMatchObject({ status: "approved", version: 2 });
  });

  it("one reject while waiting for the second approver ends it", async () => {
    // arrange
    const s = await setup({ twoPersonRule: true });
    const now = s.clock.now().getTime();
    await call(s.rt, slackPost(s.mint("approve", "slack"), { user: ALICE }, now));

    // act
    const veto = await call(s.rt, slackPost(s.mint("reject", "slack"), { user: BOB, action: "reject" }, now));
    const late = await call(s.rt, emailPost(s.mint("approve", "email", { approver: "carol@example.com" })));

    // assert
    expect(veto.statusCode).toBe(200);
    expect(late.statusCode).toBe(409);
    expect(s.callback.calls.map((c) => c.kind)).toEqual(["fail"]);
  });
});

describe("adapters and entrypoint", () => {
  it("the Step Functions adapter's calls are accepted by the emulator (which runs no execution)", async () => {
    // arrange
    const sfn = new SFNClient({ endpoint: moto().endpoint, region: REGION, credentials: LOCAL_CREDENTIALS });
    const callback = new SfnTaskCallback(sfn);

    // act / assert
    await expect(
      callback.succeed("AAAAtoken", { approvedBy: "x", channel: "email", at: "t" }),
    ).resolves.toBeUndefined();
    await expect(callback.fail("AAAAtoken", "ApprovalRejected", "rejected")).resolves.toBeUndefined();
  });

  it("a secret that cannot be read answers 500 without detail and decides nothing", async () => {
    // arrange
    const s = await setup();
    const broken = makeApprovalRuntime(
      { ...s.rt.config, approvalSecretArn: `${s.rt.config.approvalSecretArn}-missing` },
      {
        dynamo: new DynamoDBClient({
          endpoint: moto().endpoint,
          region: REGION,
          credentials: LOCAL_CREDENTIALS,
        }),
        secretsManager: new SecretsManagerClient({
          endpoint: moto().endpoint,
          region: REGION,
          credentials: LOCAL_CREDENTIALS,
        }),
        callback: s.callback,
        clock: s.clock,
        logger: new Logger({ serviceName: "velero-dr-test", logLevel: "SILENT" }),
      },
    );

    // act
    const res = await call(broken, emailPost(s.mint("approve", "email")));

    // assert
    expect(res.statusCode).toBe(500);
    expect(res.body).not.toContain("secret");
    await expectNoSideEffect(s);
  });

  it("the Lambda handler (middy, with the request's context) serves the same endpoint", async () => {
    // arrange
    const s = await setup();
    const handler = makeApprovalHandler(s.rt);
    const context = {
      functionName: "approval",
      invokedFunctionArn: "arn:aws:lambda:us-west-2:123456789012:function:approval",
      awsRequestId: "req-1",
      memoryLimitInMB: "256",
      getRemainingTimeInMillis: () => 10_000,
    } as unknown as Context;

    // act
    const res = await handler(emailPost(s.mint("approve", "email")), context);

    // assert
    expect(res.statusCode).toBe(200);
    expect(s.callback.count("succeed")).toBe(1);
  });

  it("the entrypoint fails fast at cold start, naming the missing setting", () => {
    // act
    const env = { PATH: process.env.PATH ?? "", LEDGER_TABLE: "t", FAILOVER_REGION: REGION };
    const run = spawnSync("node_modules/.bin/tsx", ["functions/approval.ts"], { env, encoding: "utf8" });

    // assert
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/APPROVAL_SECRET_ARN is required but not set/);
  });

  it("signApproval tokens and issued tokens verify alike through the endpoint", async () => {
    // arrange: a token minted by hand from explicit claims (as the request step may)
    const s = await setup();
    const token = signApproval(
      {
        executionId: EXEC,
        action: "approve",
        channel: "email",
        nonce: "BBBBBBBBBBBBBBBBBBBBBB",
        expiresAt: s.clock.now().getTime() / 1000 + 600,
      },
      [KEY],
    );

    // act
    const res = await call(s.rt, emailPost(token, { base64: false }));

    // assert
    expect(res.statusCode).toBe(200);
    expect((await s.rt.store.get(EXEC))?.entries[0]?.nonce).toBe("BBBBBBBBBBBBBBBBBBBBBB");
  });
});
