import { timingSafeEqual } from "node:crypto";
import { beforeEach, describe, expect, it, vi } from "vitest";
import {
  type ApprovalClaims,
  type ApprovalEntry,
  approvalLink,
  approvalOutput,
  approverOf,
  type DecisionRecord,
  issueApproval,
  MAX_TOKEN_LENGTH,
  nextDecision,
  parseSlackInteraction,
  rejectionCause,
  SLACK_MAX_SKEW_SECONDS,
  signApproval,
  slackSignature,
  TOPIC_APPROVER,
  verifyApproval,
  verifySlackRequest,
} from "../../functions/core/approval.js";
import {
  approvalConfigToEnv,
  loadApprovalConfig,
  parseApprovalKeys,
  parseSlackSecret,
} from "../../functions/core/approval-config.js";
import { FakeClock } from "../support/harness.js";

// The real timingSafeEqual, watched: the tests assert every comparison goes through it.
vi.mock("node:crypto", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:crypto")>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});

const KEY = "k1-0123456789abcdef0123456789abcdef";
const OLD_KEY = "k0-fedcba9876543210fedcba9876543210";
const OTHER_KEY = "kX-not-our-key-not-our-key-not-our-key";
const EXEC = "failover-2026-11-27T12-00-00Z";
const clock = () => new FakeClock(Date.parse("2026-11-27T12:00:00Z"));
const counter = (start = 1) => {
  let i = start;
  return (n: number) => Buffer.alloc(n, i++);
};

function claims(over: Partial<ApprovalClaims> = {}): ApprovalClaims {
  return {
    executionId: EXEC,
    action: "approve",
    channel: "email",
    nonce: "AAAAAAAAAAAAAAAAAAAAAA",
    expiresAt: Date.parse("2026-11-27T13:00:00Z") / 1000,
    ...over,
  };
}

const emailApprove = { channel: "email" as const, executionId: EXEC, action: "approve" as const };

beforeEach(() => {
  vi.mocked(timingSafeEqual).mockClear();
});

describe("approval tokens", () => {
  it("round trip: issued, verified, claims intact, expiring after the default hour", () => {
    // arrange
    const now = clock();

    // act
    const { token, claims: issued } = issueApproval(
      { executionId: EXEC, action: "approve", channel: "email" },
      [KEY],
      { now: now.now(), random: counter() },
    );
    const verdict = verifyApproval(token, emailApprove, [KEY], now.now());

    // assert
    expect(verdict).toEqual({ ok: true, claims: issued });
    expect(issued.expiresAt).toBe(Date.parse("2026-11-27T13:00:00Z") / 1000);
    expect(issued.nonce).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect(token.length).toBeLessThan(400);
  });

  it("the TTL is configurable and every token is unique (fresh nonce)", () => {
    // arrange
    const now = clock().now();
    const grant = { executionId: EXEC, action: "reject" as const, channel: "slack" as const };

    // act
    const a = issueApproval(grant, [KEY], { now, ttlMinutes: 15, random: counter(1) });
    const b = issueApproval(grant, [KEY], { now, ttlMinutes: 15, random: counter(2) });
    const real = issueApproval(grant, [KEY], { now });

    // assert
    expect(a.claims.expiresAt - now.getTime() / 1000).toBe(15 * 60);
    expect(a.token).not.toBe(b.token);
    expect(a.claims.nonce).not.toBe(b.claims.nonce);
    expect(Buffer.from(real.claims.nonce, "base64url")).toHaveLength(16);
  });

  it("the signature covers the payload as sent; the claims are a fixed-order JSON", () => {
    // arrange
    const token = signApproval(claims({ approver: "alice@example.com" }), [KEY]);

    // act
    const [payload] = token.split(".");
    const decoded = Buffer.from(payload ?? "", "base64url").toString("utf8");

    // assert: deterministic for the same claims and key
    expect(decoded).toBe(
      `{"v":1,"e":"${EXEC}","a":"approve","c":"email","n":"AAAAAAAAAAAAAAAAAAAAAA","x":${claims().expiresAt},"s":"alice@example.com"}`,
    );
    expect(signApproval(claims({ approver: "alice@example.com" }), [KEY])).toBe(token);
  });

  it.each([
    ["not a string", 42],
    ["empty", ""],
    ["too long", `${"a".repeat(MAX_TOKEN_LENGTH)}.b`],
    ["no dot", "abcdef"],
    ["three parts", "a.b.c"],
    ["not base64url", "ab+c.def"],
    ["short signature", "abc.AAAA"],
  ])("refuses a malformed token (%s) without throwing", (_, token) => {
    // act
    const verdict = verifyApproval(token, emailApprove, [KEY], clock().now());

    // assert
    expect(verdict).toMatchObject({ ok: false, reason: "bad-format" });
  });

  it("refuses a signature that is not canonical base64url (one signature, one spelling)", () => {
    // arrange: the last character of a 32-byte base64url value carries 2 unused bits
    const token = signApproval(claims(), [KEY]);
    const last = token.at(-1) ?? "";
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const twin = alphabet[alphabet.indexOf(last) ^ 1] ?? "";

    // act
    const verdict = verifyApproval(token.slice(0, -1) + twin, emailApprove, [KEY], clock().now());

    // assert
    expect(verdict).toMatchObject({ ok: false, reason: "bad-format" });
  });

  it("refuses a forged signature: another key, a tampered payload, a flipped signature", () => {
    // arrange
    const now = clock().now();
    const good = signApproval(claims({ action: "reject" }), [KEY]);
    const [payload, sig] = good.split(".") as [string, string];
    const tampered = Buffer.from(
      Buffer.from(payload, "base64url").toString("utf8").replace('"reject"', '"approve"'),
    ).toString("base64url");
    const flipped = `${sig.slice(0, 10)}${sig[10] === "A" ? "B" : "A"}${sig.slice(11)}`;

    // act
    const forged = [signApproval(claims(), [OTHER_KEY]), `${tampered}.${sig}`, `${payload}.${flipped}`].map(
      (t) => verifyApproval(t, { channel: "email" }, [KEY], now),
    );

    // assert
    for (const v of forged) expect(v).toMatchObject({ ok: false, reason: "bad-signature" });
  });

  it("refuses a token for the other action, another execution or the other channel", () => {
    // arrange
    const now = clock().now();
    const reject = signApproval(claims({ action: "reject" }), [KEY]);
    const otherExecution = signApproval(claims({ executionId: "failover-other" }), [KEY]);
    const slack = signApproval(claims({ channel: "slack" }), [KEY]);

    // act / assert
    expect(verifyApproval(reject, emailApprove, [KEY], now)).toMatchObject({
      ok: false,
      reason: "wrong-action",
    });
    expect(verifyApproval(otherExecution, emailApprove, [KEY], now)).toMatchObject({
      ok: false,
      reason: "other-execution",
    });
    expect(verifyApproval(slack, emailApprove, [KEY], now)).toMatchObject({
      ok: false,
      reason: "wrong-channel",
    });
  });

  it("expires at expiresAt on a fake clock: valid one second before, refused at and after", () => {
    // arrange
    const now = clock();
    const { token } = issueApproval({ executionId: EXEC, action: "approve", channel: "email" }, [KEY], {
      now: now.now(),
    });

    // act
    now.advance(60 * 60_000 - 1000);
    const before = verifyApproval(token, emailApprove, [KEY], now.now());
    now.advance(1000);
    const at = verifyApproval(token, emailApprove, [KEY], now.now());
    now.advance(24 * 3600_000);
    const after = verifyApproval(token, emailApprove, [KEY], now.now());

    // assert
    expect(before.ok).toBe(true);
    expect(at).toMatchObject({
      ok: false,
      reason: "expired",
      message: "token expired at 2026-11-27T13:00:00.000Z",
    });
    expect(after).toMatchObject({ ok: false, reason: "expired" });
  });

  it("key rotation: the first key signs, every listed key verifies, a retired key no longer does", () => {
    // arrange
    const now = clock().now();
    const oldToken = signApproval(claims(), [OLD_KEY]);
    const newToken = signApproval(claims(), [KEY, OLD_KEY]);

    // act / assert
    expect(newToken).toBe(signApproval(claims(), [KEY]));
    expect(verifyApproval(oldToken, emailApprove, [KEY, OLD_KEY], now).ok).toBe(true);
    expect(verifyApproval(newToken, emailApprove, [KEY, OLD_KEY], now).ok).toBe(true);
    expect(verifyApproval(oldToken, emailApprove, [KEY], now)).toMatchObject({ reason: "bad-signature" });
  });

  it("compares in constant time, trying every key (no early exit on a match)", () => {
    // arrange
    const token = signApproval(claims(), [KEY]);

    // act
    verifyApproval(token, emailApprove, [KEY, OLD_KEY, OTHER_KEY], clock().now());

    // assert
    expect(timingSafeEqual).toHaveBeenCalledTimes(3);
    for (const [a, b] of vi.mocked(timingSafeEqual).mock.calls) {
      expect((a as Buffer).length).toBe(32);
      expect((b as Buffer).length).toBe(32);
    }
  });

  it("signing refuses claims it could not verify and keys that are too short", () => {
    expect(() => signApproval(claims({ executionId: "has space" }), [KEY])).toThrow(
      /invalid approval claims/,
    );
    expect(() => signApproval(claims({ approver: "not-an-email" }), [KEY])).toThrow(
      /invalid approval claims/,
    );
    expect(() => signApproval(claims(), ["short"])).toThrow(/32 bytes/);
    expect(() => signApproval(claims(), [])).toThrow(/no approval key/);
  });

  it("verification never throws, whatever it is given", () => {
    // arrange
    const junk: unknown[] = [
      null,
      undefined,
      {},
      [],
      "..",
      ".",
      "a.",
      ".a",
      "\u0000.\u0000",
      "é.é",
      "a".repeat(5000),
    ];

    // act / assert
    for (const j of junk) {
      expect(verifyApproval(j, emailApprove, [KEY], clock().now()).ok).toBe(false);
      expect(verifyApproval(j, emailApprove, [], clock().now()).ok).toBe(false);
    }
  });

  it("builds a link that names the execution and action and carries the token", () => {
    // arrange
    const c = claims();
    const token = signApproval(c, [KEY]);

    // act
    const url = new URL(approvalLink("https://abc.lambda-url.us-west-2.on.aws/", token, c));

    // assert
    expect(url.pathname).toBe("/approval");
    expect(url.searchParams.get("execution")).toBe(EXEC);
    expect(url.searchParams.get("action")).toBe("approve");
    expect(url.searchParams.get("token")).toBe(token);
  });
});

describe("Slack request signatures", () => {
  const SECRET = "8f742231b10e8888abcd99yyyzzz85a5";
  const body = "payload=%7B%22type%22%3A%22block_actions%22%7D";
  const now = new Date("2026-11-27T12:00:00Z");
  const ts = now.getTime() / 1000;
  const headers = (t: number, b: string | Uint8Array = body, secret = SECRET) => ({
    "x-slack-request-timestamp": String(t),
    "x-slack-signature": slackSignature(secret, t, b),
  });

  it("matches Slack's documented example", () => {
    // arrange: https://api.slack.com/authentication/verifying-requests-from-slack
    const example =
      "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const sent = {
      "X-Slack-Request-Timestamp": "1531420618",
      "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    };

    // act
    const verdict = verifySlackRequest(sent, example, SECRET, new Date(1531420618 * 1000));

    // assert
    expect(verdict).toEqual({ ok: true });
    expect(timingSafeEqual).toHaveBeenCalledTimes(1);
  });

  it("accepts a good signature over the raw bytes, header names in any case", () => {
    // arrange
    const raw = Buffer.from([0x70, 0x3d, 0xe9, 0xff, 0x00]);
    const h = headers(ts, raw);

    // act / assert
    expect(verifySlackRequest(h, raw, SECRET, now)).toEqual({ ok: true });
    expect(
      verifySlackRequest(
        { "X-SLACK-SIGNATURE": h["x-slack-signature"], "X-Slack-Request-Timestamp": String(ts) },
        raw,
        SECRET,
        now,
      ),
    ).toEqual({ ok: true });
  });

  it("refuses a bad signature: another secret, a changed body, a changed timestamp", () => {
    // arrange
    const other = headers(ts, body, "another-signing-secret-0000000000");
    const good = headers(ts);

    // act / assert
    expect(verifySlackRequest(other, body, SECRET, now)).toMatchObject({
      ok: false,
      reason: "bad-signature",
    });
    expect(verifySlackRequest(good, `${body}x`, SECRET, now)).toMatchObject({
      ok: false,
      reason: "bad-signature",
    });
    expect(
      verifySlackRequest({ ...good, "x-slack-request-timestamp": String(ts - 1) }, body, SECRET, now),
    ).toMatchObject({ ok: false, reason: "bad-signature" });
    expect(timingSafeEqual).toHaveBeenCalledTimes(3);
  });

  it("refuses a timestamp 301 s old or 301 s ahead, accepts 300 s either way", () => {
    // act
    const old301 = verifySlackRequest(headers(ts - 301), body, SECRET, now);
    const future301 = verifySlackRequest(headers(ts + 301), body, SECRET, now);
    const old300 = verifySlackRequest(headers(ts - SLACK_MAX_SKEW_SECONDS), body, SECRET, now);
    const future300 = verifySlackRequest(headers(ts + SLACK_MAX_SKEW_SECONDS), body, SECRET, now);

    // assert
    expect(old301).toMatchObject({ ok: false, reason: "stale-timestamp" });
    expect(future301).toMatchObject({ ok: false, reason: "stale-timestamp" });
    expect(old300.ok).toBe(true);
    expect(future300.ok).toBe(true);
  });

  it("refuses missing or malformed headers before any comparison", () => {
    expect(verifySlackRequest({}, body, SECRET, now)).toMatchObject({ reason: "missing-headers" });
    expect(
      verifySlackRequest({ ...headers(ts), "x-slack-signature": "v1=abc" }, body, SECRET, now),
    ).toMatchObject({ reason: "bad-format" });
    expect(
      verifySlackRequest({ ...headers(ts), "x-slack-request-timestamp": "soon" }, body, SECRET, now),
    ).toMatchObject({ reason: "bad-format" });
    expect(timingSafeEqual).not.toHaveBeenCalled();
  });
});

describe("Slack interaction payloads", () => {
  const payload = (p: unknown) => `payload=${encodeURIComponent(JSON.stringify(p))}`;
  const good = {
    type: "block_actions",
    user: { id: "U024BE7LH", username: "alice", name: "alice", team_id: "T0001" },
    team: { id: "T0001", domain: "example" },
    actions: [{ action_id: "approve", block_id: "dr-approval", value: "tok.en", type: "button" }],
    response_url: "https://hooks.slack.com/actions/T0001/123/abc",
    message: { blocks: [] },
  };

  it("parses user, action, token and response_url", () => {
    // act
    const parsed = parseSlackInteraction(Buffer.from(payload(good)));

    // assert
    expect(parsed).toEqual({
      ok: true,
      interaction: {
        userId: "U024BE7LH",
        username: "alice",
        teamId: "T0001",
        action: "approve",
        token: "tok.en",
        responseUrl: "https://hooks.slack.com/actions/T0001/123/abc",
      },
    });
  });

  it.each([
    ["no payload field", "text=hello"],
    ["two payload fields", `${payload(good)}&${payload(good)}`],
    ["not JSON", "payload=%7Bnot"],
    ["another interaction type", payload({ ...good, type: "view_submission" })],
    ["a bad user id", payload({ ...good, user: { id: "alice" } })],
    ["no action", payload({ ...good, actions: [] })],
    ["two actions", payload({ ...good, actions: [good.actions[0], good.actions[0]] })],
    ["an unknown action", payload({ ...good, actions: [{ action_id: "delete", value: "x" }] })],
    ["a foreign response_url", payload({ ...good, response_url: "https://evil.example/hook" })],
  ])("refuses %s", (_, body) => {
    // act
    const parsed = parseSlackInteraction(body);

    // assert
    expect(parsed).toMatchObject({ ok: false, reason: "bad-format" });
  });
});

describe("decisions", () => {
  const at = "2026-11-27T12:05:00.000Z";
  const entry = (over: Partial<ApprovalEntry> = {}): ApprovalEntry => ({
    action: "approve",
    channel: "slack",
    approver: "slack:U1",
    approverName: "alice",
    named: true,
    at,
    nonce: "AAAAAAAAAAAAAAAAAAAAAA",
    ...over,
  });
  const single = { twoPersonRule: false };
  const two = { twoPersonRule: true };

  it("without the two-person rule the first approve or reject is final", () => {
    // act
    const approved = nextDecision(undefined, entry(), EXEC, single);
    const rejected = nextDecision(undefined, entry({ action: "reject" }), EXEC, single);

    // assert
    expect(approved).toMatchObject({
      ok: true,
      final: true,
      record: { status: "approved", version: 1, decidedAt: at },
    });
    expect(rejected).toMatchObject({ ok: true, final: true, record: { status: "rejected" } });
  });

  it("the first final decision wins: everything after it is refused, naming who decided", () => {
    // arrange
    const first = nextDecision(undefined, entry({ action: "reject" }), EXEC, single);
    if (!first.ok) throw new Error("unexpected");

    // act
    const approveAfter = nextDecision(first.record, entry({ approver: "slack:U2" }), EXEC, single);
    const rejectAgain = nextDecision(first.record, entry({ action: "reject" }), EXEC, single);

    // assert
    expect(approveAfter).toEqual({
      ok: false,
      reason: "already-decided",
      message: `already rejected by alice (slack:U1) at ${at}`,
    });
    expect(rejectAgain).toMatchObject({ ok: false, reason: "already-decided" });
  });

  it("two-person rule: two distinct named approvers, the same one twice is refused, one reject vetoes", () => {
    // act
    const first = nextDecision(undefined, entry(), EXEC, two);
    if (!first.ok) throw new Error("unexpected");
    const again = nextDecision(first.record, entry(), EXEC, two);
    const unnamed = nextDecision(
      first.record,
      entry({ channel: "email", approver: TOPIC_APPROVER, named: false }),
      EXEC,
      two,
    );
    const second = nextDecision(
      first.record,
      entry({ channel: "email", approver: "email:bob@example.com" }),
      EXEC,
      two,
    );
    const veto = nextDecision(first.record, entry({ action: "reject", approver: "slack:U3" }), EXEC, two);

    // assert
    expect(first).toMatchObject({ final: false, record: { status: "awaiting-second", version: 1 } });
    expect(again).toMatchObject({ ok: false, reason: "same-approver" });
    expect(unnamed).toMatchObject({ ok: false, reason: "unnamed-approver" });
    expect(second).toMatchObject({ ok: true, final: true, record: { status: "approved", version: 2 } });
    expect(veto).toMatchObject({ ok: true, final: true, record: { status: "rejected" } });
  });

  it("the task output names the approvers; a reject's cause names who rejected", () => {
    // arrange
    const first = nextDecision(undefined, entry(), EXEC, two);
    if (!first.ok) throw new Error("unexpected");
    const second = nextDecision(
      first.record,
      entry({
        channel: "email",
        approver: "email:bob@example.com",
        approverName: undefined,
        at: "2026-11-27T12:06:00.000Z",
      }),
      EXEC,
      two,
    );
    if (!second.ok) throw new Error("unexpected");
    const rejected: DecisionRecord = {
      executionId: EXEC,
      status: "rejected",
      entries: [entry({ action: "reject" })],
      version: 1,
    };

    // act / assert
    expect(approvalOutput(second.record)).toEqual({
      approvedBy: "alice (slack:U1) and email:bob@example.com",
      channel: "email",
      at: "2026-11-27T12:06:00.000Z",
      approvals: [
        { approvedBy: "alice (slack:U1)", channel: "slack", at },
        { approvedBy: "email:bob@example.com", channel: "email", at: "2026-11-27T12:06:00.000Z" },
      ],
    });
    expect(rejectionCause(rejected)).toBe(`rejected by alice (slack:U1) via slack at ${at}`);
    expect(() => approvalOutput(rejected)).toThrow(/not approved/);
  });

  it("identity: a Slack user, a per-approver link, or the whole topic (not individually known)", () => {
    expect(approverOf(claims({ channel: "slack" }), { userId: "U1", username: "alice" })).toEqual({
      approver: "slack:U1",
      approverName: "alice",
      named: true,
    });
    expect(approverOf(claims({ approver: "bob@example.com" }))).toEqual({
      approver: "email:bob@example.com",
      named: true,
    });
    expect(approverOf(claims())).toEqual({ approver: TOPIC_APPROVER, named: false });
  });
});

describe("approval configuration", () => {
  const ARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:velero-dr/approval-AbCdEf";
  const SLACK_ARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:velero-dr/slack-AbCdEf";
  const base = { LEDGER_TABLE: "ledger", FAILOVER_REGION: "us-west-2", APPROVAL_SECRET_ARN: ARN };

  it("reads the minimum, with documented defaults, and round-trips through the environment", () => {
    // act
    const c = loadApprovalConfig(base);
    const withSlack = loadApprovalConfig({
      ...base,
      SLACK_SECRET_ARN: SLACK_ARN,
      SLACK_APPROVERS: "U1AAA, W2BBB,U1AAA",
      APPROVAL_TTL_MINUTES: "30",
      TWO_PERSON_RULE: "true",
    });

    // assert
    expect(c).toEqual({
      ledgerTable: "ledger",
      region: "us-west-2",
      approvalSecretArn: ARN,
      ttlMinutes: 60,
      twoPersonRule: false,
    });
    expect(withSlack).toMatchObject({
      ttlMinutes: 30,
      twoPersonRule: true,
      slack: { secretArn: SLACK_ARN, approvers: ["U1AAA", "W2BBB"] },
    });
    expect(loadApprovalConfig(approvalConfigToEnv(withSlack))).toEqual(withSlack);
  });

  it.each([
    [{ APPROVAL_SECRET_ARN: "" }, /APPROVAL_SECRET_ARN is required but not set/],
    [
      { APPROVAL_SECRET_ARN: "velero-dr/approval" },
      /APPROVAL_SECRET_ARN must be a Secrets Manager secret ARN/,
    ],
    [
      { APPROVAL_SECRET_ARN: ARN.replace("us-west-2", "us-east-1") },
      /APPROVAL_SECRET_ARN must be a secret in the failover region us-west-2/,
    ],
    [{ LEDGER_TABLE: undefined }, /LEDGER_TABLE is required/],
    [{ APPROVAL_TTL_MINUTES: "1h" }, /APPROVAL_TTL_MINUTES must be an integer/],
    [{ APPROVAL_TTL_MINUTES: "2" }, /APPROVAL_TTL_MINUTES must be between 5 and 1440, got 2/],
    [{ TWO_PERSON_RULE: "yes" }, /TWO_PERSON_RULE must be true or false/],
    [{ SLACK_SECRET_ARN: SLACK_ARN }, /SLACK_APPROVERS is required with SLACK_SECRET_ARN/],
    [{ SLACK_APPROVERS: "U1AAA" }, /SLACK_APPROVERS is set but SLACK_SECRET_ARN is not/],
    [{ SLACK_SECRET_ARN: SLACK_ARN, SLACK_APPROVERS: "@alice" }, /must list Slack user ids/],
  ])("fails fast naming the variable (%o)", (over, message) => {
    expect(() => loadApprovalConfig({ ...base, ...over })).toThrow(message);
  });

  it("parses the secrets' values; errors name the secret, never its content", () => {
    // arrange
    const key = "k".repeat(32);

    // act / assert
    expect(parseApprovalKeys(JSON.stringify({ keys: [key, `${key}2`] }), ARN)).toEqual([
      Buffer.from(key),
      Buffer.from(`${key}2`),
    ]);
    // one key as a string: the form the stack's generated secret takes (GenerateSecretString)
    expect(parseApprovalKeys(JSON.stringify({ keys: key }), ARN)).toEqual([Buffer.from(key)]);
    expect(
      parseSlackSecret(JSON.stringify({ signingSecret: "8f742231b10e8888abcd99yyyzzz85a5" }), SLACK_ARN),
    ).toBe("8f742231b10e8888abcd99yyyzzz85a5");
    const attempts = [
      () => parseApprovalKeys("s3cr3t-not-json", ARN),
      () => parseApprovalKeys(JSON.stringify({ keys: [] }), ARN),
      () => parseApprovalKeys(JSON.stringify({ keys: ["s3cr3t-too-short"] }), ARN),
      () => parseApprovalKeys(JSON.stringify({ keys: "s3cr3t-too-short" }), ARN),
      () => parseApprovalKeys(JSON.stringify({ keys: "" }), ARN),
      () => parseSlackSecret(JSON.stringify({ signing: "s3cr3t-wrong-field" }), SLACK_ARN),
    ];
    for (const attempt of attempts) {
      expect(attempt).toThrow(/secret arn:aws:secretsmanager/);
      expect(attempt).not.toThrow(/s3cr3t/);
    }
  });
});
