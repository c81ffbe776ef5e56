import { spawnSync } from "node:child_process";
import type { Context, SQSBatchResponse, SQSEvent } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { asEvent, sqsEvent } from "../../local/runtime.js";
import { makePlane, useMoto } from "../support/harness.js";

const moto = useMoto();

const context = {
  functionName: "replicate",
  invokedFunctionArn: "arn:aws:lambda:us-west-2:123456789012:function:replicate",
  awsRequestId: "req-1",
  memoryLimitInMB: "256",
  getRemainingTimeInMillis: () => 60_000,
} as unknown as Context;

describe("Lambda entrypoints", () => {
  it("fail fast at cold start, naming the missing setting", () => {
    // act: import the deployed entrypoint with no configuration at all
    const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" };
    const run = spawnSync("node_modules/.bin/tsx", ["functions/replicate.ts"], {
      env,
      encoding: "utf8",
    });

    // assert
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/FAILOVER_REGION is required but not set/);
  });

  it("rejects an invalid budget at cold start with the variable's name", () => {
    const env = {
      PATH: process.env.PATH ?? "",
      LEDGER_TABLE: "t",
      SOURCE_REGIONS: "us-east-1",
      FAILOVER_REGION: "us-west-2",
      COPY_BUDGET: "25",
    };
    const run = spawnSync("node_modules/.bin/tsx", ["functions/copy-completed.ts"], {
      env,
      encoding: "utf8",
    });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/COPY_BUDGET must be between 1 and 20, got 25/);
  });

  it("rejects an invalid poll interval at cold start with the variable's name (copy poller)", () => {
    const env = {
      PATH: process.env.PATH ?? "",
      LEDGER_TABLE: "t",
      SOURCE_REGIONS: "us-east-1",
      FAILOVER_REGION: "us-west-2",
      POLL_SECONDS: "60",
    };
    const run = spawnSync("node_modules/.bin/tsx", ["functions/poll.ts"], { env, encoding: "utf8" });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/POLL_SECONDS must be between 0 and 30, got 60/);
  });

  it("the deployed replicate handler, configured from the environment only, records and copies", async () => {
    // arrange: resources on the emulator; the handler reads everything from process.env
    const { plane, primary } = await makePlane(moto(), { copyDelayMs: 1 });
    await primary.addControllers(2);
    const taken = await primary.takeBackup("adhoc-entry", { emit: false });
    Object.assign(process.env, {
      AWS_ENDPOINT_URL: moto().endpoint,
      AWS_ACCESS_KEY_ID: "local",
      AWS_SECRET_ACCESS_KEY: "local",
      AWS_REGION: "us-west-2",
      LEDGER_TABLE: plane.rt.config.ledgerTable,
      SOURCE_REGIONS: "us-east-1",
      FAILOVER_REGION: "us-west-2",
      POWERTOOLS_LOG_LEVEL: "SILENT",
    });
    const { handler } = (await import("../../functions/replicate.js")) as {
      handler: (e: SQSEvent, c: Context) => Promise<SQSBatchResponse>;
    };
    const bodies = [
      ...taken.map((s) => JSON.stringify(asEvent(primary.createdEvent(s), primary.region))),
      "not json",
    ];
    const event = sqsEvent(bodies, plane.resources.snapshotQueue.arn, "us-west-2");

    // act
    const response = await handler(event, context);

    // assert: only the bad record fails; both snapshots are copying
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: event.Records[2]?.messageId }]);
    for (const s of taken) expect((await plane.rt.ledger.get(s.snapshotId))?.status).toBe("copying");
  });
});
