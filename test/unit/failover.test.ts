import { describe, expect, it } from "vitest";
import { CLUSTER_ID_HEADER, EKS_TOKEN_PREFIX, eksToken } from "../../functions/adapters/k8s.js";
import {
  aliasTargetFor,
  buildReport,
  type FailoverRequest,
  loadFailoverConfig,
  namespaceMappingFor,
  normaliseRecordName,
  preflightPlan,
  renderReport,
  requestTokenFor,
  restoreNameFor,
  sameAliasTarget,
} from "../../functions/core/failover.js";
import type { StoredBackup } from "../../functions/core/ports.js";
import { checkEksToken } from "../../local/k8s-standin.js";
import { at, MINUTE, storedBackup } from "../support/backups.js";
import { FakeClock } from "../support/harness.js";

/** A DR-ready backup of the 15-minute schedule with Velero's 1 h TTL, started at `start`. */
function ready(name: string, start: string, over: Partial<StoredBackup> = {}): StoredBackup {
  return storedBackup(name, start, {
    verdict: "dr-ready",
    reason: "all 2 snapshots copied",
    drReadyAt: new Date(Date.parse(start) + 5 * MINUTE).toISOString(),
    ...over,
  });
}

const OPTIONS = { allowedWarnings: 0 };

describe("preflightPlan (pure, fake clock)", () => {
  it("picks the newest DR-ready backup and states the data-loss window from its start", () => {
    // arrange
    const clock = new FakeClock(Date.parse(at("12:10")));
    const backups = [
      ready("b-1130", at("11:30")),
      ready("b-1145", at("11:45")),
      ready("b-1200", at("12:00")),
    ];

    // act
    const choice = preflightPlan(backups, clock.now(), OPTIONS);

    // assert
    expect(choice).toMatchObject({ ok: true, backup: { name: "b-1200", startTimestamp: at("12:00") } });
    expect(choice.ok && choice.dataLossSeconds).toBe(600);
    expect(choice.passedOver).toEqual([]);
  });

  it("skips expired, warned, errored, retired, PartiallyFailed, withdrawn and not-yet-ready backups, saying why", () => {
    // arrange: the newest seven are each unusable for one reason; the oldest is fine
    const clock = new FakeClock(Date.parse(at("12:20")));
    const backups = [
      ready("pending", at("12:15"), { drReadyAt: undefined, verdict: "pending", reason: "1 of 2 copied" }),
      ready("warned", at("12:10"), { warnings: 2 }),
      ready("errored", at("12:05"), { errors: 1 }),
      ready("retired", at("12:00"), { retiredAt: at("12:19") }),
      ready("partial", at("11:55"), { phase: "PartiallyFailed" }),
      ready("withdrawn", at("11:50"), { verdict: "not-ready", reason: "copy failed" }),
      ready("expired", at("11:00")), // expires 12:00
      ready("usable", at("11:45")),
    ];

    // act
    const choice = preflightPlan(backups, clock.now(), OPTIONS);

    // assert
    expect(choice.ok && choice.backup.name).toBe("usable");
    expect(choice.ok && choice.dataLossSeconds).toBe(35 * 60);
    expect(choice.passedOver.map((p) => [p.name, p.reason])).toEqual([
      ["pending", "not DR-ready (pending: 1 of 2 copied)"],
      ["warned", "2 warning(s), 0 allowed"],
      ["errored", "1 error(s)"],
      ["retired", `retired at ${at("12:19")} (Velero deleted it)`],
      ["partial", "Velero phase PartiallyFailed"],
    ]);
  });

  it("takes a backup with warnings within the allowance", () => {
    const clock = new FakeClock(Date.parse(at("12:10")));
    const choice = preflightPlan([ready("warned", at("12:00"), { warnings: 2 })], clock.now(), {
      allowedWarnings: 2,
    });
    expect(choice.ok && choice.backup).toMatchObject({ name: "warned", warnings: 2 });
  });

  it("considers only the configured schedule's backups", () => {
    const clock = new FakeClock(Date.parse(at("12:10")));
    const backups = [ready("other", at("12:05"), { schedule: "nightly" }), ready("ours", at("11:50"))];
    const choice = preflightPlan(backups, clock.now(), { allowedWarnings: 0, schedule: "cbci-dr" });
    expect(choice.ok && choice.backup.name).toBe("ours");
  });

  it("refuses with the reason when no backup can be restored", () => {
    // arrange: the only backups expired while the clock moved on
    const clock = new FakeClock(Date.parse(at("12:10")));
    const backups = [ready("b-1130", at("11:30")), ready("b-1145", at("11:45"))];
    clock.advance(60 * MINUTE);

    // act
    const choice = preflightPlan(backups, clock.now(), OPTIONS);

    // assert
    expect(choice.ok).toBe(false);
    expect(!choice.ok && choice.reason).toMatch(/^no backup can be restored .*newest: b-1145: expired at /);
  });

  it("refuses when nothing is registered at all", () => {
    const choice = preflightPlan([], new FakeClock().now(), { allowedWarnings: 0, schedule: "cbci-dr" });
    expect(choice).toEqual({
      ok: false,
      reason: "no backup of schedule cbci-dr is registered",
      passedOver: [],
    });
  });
});

describe("deterministic names", () => {
  const exec =
    "arn:aws:states:us-west-2:123456789012:execution:velero-dr-failover:Manual_Failover_2026-11-27";

  it("derives one Restore name per execution: a DNS label of at most 63 characters, drill or not", () => {
    const name = restoreNameFor(exec, false);
    expect(name).toBe(restoreNameFor(exec, false));
    expect(name).toMatch(/^failover-manual-failover-2026-11-27-[0-9a-f]{10}$/);
    expect(restoreNameFor(exec, true)).toMatch(/^drill-/);
    const long = restoreNameFor(`${exec}${"X".repeat(200)}`, true);
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(restoreNameFor(`${exec}-2`, false)).not.toBe(name);
  });

  it("derives one clientRequestToken per execution and step", () => {
    expect(requestTokenFor(exec, "scaleNodegroup")).toBe(requestTokenFor(exec, "scaleNodegroup"));
    expect(requestTokenFor(exec, "scaleNodegroup")).not.toBe(requestTokenFor(exec, "scaleBack"));
    expect(requestTokenFor(exec, "scaleNodegroup")).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
  });

  it("maps namespaces to <ns>-drill in drills only", () => {
    expect(namespaceMappingFor(["cbci", "tools"], true, "-drill")).toEqual({
      cbci: "cbci-drill",
      tools: "tools-drill",
    });
    expect(namespaceMappingFor(["cbci"], false, "-drill")).toBeUndefined();
  });

  it("writes alias targets as dualstack.<dns>. and compares them loosely", () => {
    const t = aliasTargetFor({
      dnsName: "CBCI-1.us-west-2.elb.amazonaws.com",
      canonicalHostedZoneId: "Z1H1FL5HABSF5",
    });
    expect(t).toEqual({
      dnsName: "dualstack.cbci-1.us-west-2.elb.amazonaws.com.",
      hostedZoneId: "Z1H1FL5HABSF5",
      evaluateTargetHealth: true,
    });
    expect(
      sameAliasTarget({ dnsName: "cbci-1.us-west-2.elb.amazonaws.com", hostedZoneId: "Z1H1FL5HABSF5" }, t),
    ).toBe(true);
    expect(sameAliasTarget({ dnsName: t.dnsName, hostedZoneId: "Z35SXDOTRQ7X7K" }, t)).toBe(false);
    expect(normaliseRecordName("CI.Example.com")).toBe("ci.example.com.");
  });
});

describe("buildReport (pure)", () => {
  const request: FailoverRequest = {
    executionId: "exec-1",
    reason: "us-east-1 is down",
    requestedBy: "alice@example.com",
    drill: false,
    requestedAt: at("12:00"),
  };
  const step = (name: string, start: string, end: string, extra: Record<string, unknown> = {}) => ({
    step: name,
    outcome: "succeeded",
    startedAt: start,
    endedAt: end,
    seconds: (Date.parse(end) - Date.parse(start)) / 1000,
    ...extra,
  });

  it("gives each step's start, end, duration and outcome, the RTO from the first recovery step, and the backup", () => {
    // arrange: preflight at 12:00, approval until 12:10, then the recovery steps until 12:31
    const steps = {
      preflight: step("preflight", "2026-11-27T12:00:01Z", "2026-11-27T12:00:03Z"),
      scaleNodegroup: step("scaleNodegroup", at("12:10"), "2026-11-27T12:10:02Z", {
        previous: { min: 0, max: 1, desired: 0 },
        target: { min: 3, max: 6, desired: 3 },
      }),
      waitNodegroup: step("waitNodegroup", "2026-11-27T12:10:02Z", at("12:16")),
      startRestore: step("startRestore", at("12:10"), "2026-11-27T12:10:01Z", { restoreName: "failover-x" }),
      waitRestore: step("waitRestore", "2026-11-27T12:10:01Z", at("12:30"), {
        restoreName: "failover-x",
        phase: "Completed",
        warnings: 0,
        errors: 0,
      }),
      switchDns: step("switchDns", at("12:30"), at("12:31"), {
        target: { dnsName: "dualstack.f.", hostedZoneId: "Z1" },
        previousTarget: { dnsName: "dualstack.p.", hostedZoneId: "Z2" },
        changeId: "C1",
      }),
      scaleBack: { ...step("scaleBack", at("12:31"), at("12:31")), outcome: "skipped" },
      garbage: { not: "a step" },
    };

    // act
    const report = buildReport(request, steps, undefined, new Date(Date.parse(at("12:32"))));

    // assert
    expect(report.steps.map((s) => [s.step, s.outcome, s.seconds])).toEqual([
      ["preflight", "succeeded", 2],
      ["scaleNodegroup", "succeeded", 2],
      ["waitNodegroup", "succeeded", 358],
      ["startRestore", "succeeded", 1],
      ["waitRestore", "succeeded", 1199],
      ["switchDns", "succeeded", 60],
      ["scaleBack", "skipped", 0],
    ]);
    expect(report.rtoSeconds).toBe(21 * 60);
    expect(report.sinceRequestSeconds).toBe(31 * 60);
    expect(report.restore).toEqual({ name: "failover-x", phase: "Completed", warnings: 0, errors: 0 });
    expect(report.dns).toEqual({
      switched: true,
      target: "dualstack.f.",
      previous: "dualstack.p.",
      changeId: "C1",
    });
    expect(report.nodegroup).toEqual({
      target: { min: 3, max: 6, desired: 3 },
      previous: { min: 0, max: 1, desired: 0 },
      scaledBack: false,
    });
    expect(report.drill).toBe(false);
    expect(renderReport(report)).toMatch(/FAILOVER exec-1[\s\S]*recovery time \(RTO\): 21\.0 min/);
  });

  it("says it was a drill and that DNS was left alone", () => {
    const steps = {
      switchDns: { ...step("switchDns", at("12:30"), at("12:30")), outcome: "skipped" },
      scaleBack: step("scaleBack", at("12:30"), "2026-11-27T12:30:05Z"),
    };
    const report = buildReport({ ...request, drill: true }, steps, undefined, new Date());
    expect(report).toMatchObject({ drill: true, dns: { switched: false }, nodegroup: { scaledBack: true } });
    expect(report.rtoSeconds).toBe(5);
    expect(renderReport(report)).toMatch(/^DR DRILL exec-1/);
  });
});

describe("loadFailoverConfig", () => {
  const env = {
    FAILOVER_REGION: "us-west-2",
    LEDGER_TABLE: "ledger",
    FAILOVER_CLUSTER_NAME: "standby",
    FAILOVER_NODEGROUP_NAME: "cbci",
    FAILOVER_NODEGROUP_MIN: "3",
    FAILOVER_NODEGROUP_DESIRED: "3",
    FAILOVER_NODEGROUP_MAX: "6",
    FAILOVER_HOSTED_ZONE_ID: "/hostedzone/Z0123456789ABC",
    FAILOVER_RECORD_NAME: "ci.example.com",
    FAILOVER_LB_NAME: "cbci-failover",
  };

  it("reads the settings with their defaults", () => {
    const c = loadFailoverConfig(env);
    expect(c).toMatchObject({
      scaling: { min: 3, desired: 3, max: 6 },
      hostedZoneId: "Z0123456789ABC",
      recordName: "ci.example.com.",
      recordType: "A",
      loadBalancer: { name: "cbci-failover" },
      namespaces: ["cbci"],
      drillSuffix: "-drill",
      veleroNamespace: "velero",
      requirePlugin: true,
      partialRestore: "continue",
      waits: { pollMs: 10_000, nodegroupMs: 600_000, restoreMs: 600_000, dnsMs: 300_000 },
    });
  });

  it("fails naming the setting", () => {
    const { FAILOVER_CLUSTER_NAME: _, ...noCluster } = env;
    expect(() => loadFailoverConfig(noCluster)).toThrow("FAILOVER_CLUSTER_NAME is required but not set");
    expect(() => loadFailoverConfig({ ...env, FAILOVER_NODEGROUP_DESIRED: "9" })).toThrow(
      /FAILOVER_NODEGROUP_MIN <= FAILOVER_NODEGROUP_DESIRED <= FAILOVER_NODEGROUP_MAX/,
    );
    expect(() => loadFailoverConfig({ ...env, FAILOVER_LB_TAG: "role=ingress" })).toThrow(
      "exactly one of FAILOVER_LB_NAME and FAILOVER_LB_TAG must be set",
    );
    expect(() => loadFailoverConfig({ ...env, FAILOVER_NAMESPACES: "CBCI" })).toThrow(
      /invalid namespace "CBCI"/,
    );
    expect(() =>
      loadFailoverConfig({ ...env, FAILOVER_TOPIC_ARN: "arn:aws:sns:us-east-1:123456789012:reports" }),
    ).toThrow(/must be a topic in the failover region us-west-2/);
  });
});

describe("EKS token (presigned STS GetCallerIdentity) and the stand-in's check of it", () => {
  const credentials = { accessKeyId: "AKIDLOCAL", secretAccessKey: "local-secret" };
  const now = new Date("2026-11-27T12:00:00Z");

  it("is k8s-aws-v1. + base64url of a 60 s presigned URL of the failover region's STS, signing x-k8s-aws-id", async () => {
    // act
    const token = await eksToken({ clusterName: "standby", region: "us-west-2", credentials, now });

    // assert
    expect(token.startsWith(EKS_TOKEN_PREFIX)).toBe(true);
    expect(token).not.toMatch(/=/);
    const url = new URL(Buffer.from(token.slice(EKS_TOKEN_PREFIX.length), "base64url").toString("utf8"));
    expect(url.host).toBe("sts.us-west-2.amazonaws.com");
    expect(url.searchParams.get("Action")).toBe("GetCallerIdentity");
    expect(url.searchParams.get("X-Amz-Expires")).toBe("60");
    expect(url.searchParams.get("X-Amz-SignedHeaders")).toBe(`host;${CLUSTER_ID_HEADER}`);
    expect(url.searchParams.get("X-Amz-Credential")).toBe("AKIDLOCAL/20261127/us-west-2/sts/aws4_request");
    expect(url.searchParams.has(CLUSTER_ID_HEADER)).toBe(false);
    const checked = await checkEksToken(token, { clusterName: "standby", credentials, now });
    expect(checked).toMatchObject({ ok: true, seen: { signatureVerified: true, region: "us-west-2" } });
  });

  it("is refused for another cluster, after 15 minutes, or when malformed", async () => {
    const token = await eksToken({ clusterName: "standby", region: "us-west-2", credentials, now });
    expect(await checkEksToken(token, { clusterName: "other", credentials, now })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/signature does not match x-k8s-aws-id: other/),
    });
    const later = new Date(now.getTime() + 16 * MINUTE);
    expect(await checkEksToken(token, { clusterName: "standby", credentials, now: later })).toEqual({
      ok: false,
      reason: "token expired",
    });
    expect(await checkEksToken("k8s-aws-v1.aGVsbG8", { clusterName: "standby", now })).toMatchObject({
      ok: false,
    });
    // Without the signing credentials only the shape can be checked (AWS's signature cannot be offline).
    expect(await checkEksToken(token, { clusterName: "other", now })).toMatchObject({
      ok: true,
      seen: { signatureVerified: false },
    });
  });
});
