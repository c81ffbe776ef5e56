import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { DynamoLedger } from "../functions/adapters/dynamo-ledger.js";
import { DEFAULTS, ENV } from "../functions/core/config.js";
import { buildStatus, renderStatus } from "../functions/core/status.js";
import type { Command } from "./dr.js";

/**
 * `dr status`: the recovery point and its age against the target, each recent backup's progress
 * and verdict, copies in flight and waiting. Reads the ledger only (works against the emulator
 * with --endpoint or AWS_ENDPOINT_URL, and against AWS with the usual credentials).
 */
export const statusCommand: Command = {
  path: ["status"],
  args: "[--table T] [--region R] [--endpoint URL] [--limit N] [--json]",
  summary: "recovery point, recent backups' DR-ready verdicts, copies in flight and waiting",
  options: {
    table: { type: "string" },
    region: { type: "string" },
    endpoint: { type: "string" },
    limit: { type: "string", default: "20" },
    "rpo-minutes": { type: "string" },
    budget: { type: "string" },
    json: { type: "boolean", default: false },
  },
  async run({ values, io }) {
    const v = values as Record<string, string | boolean | undefined>;
    const env = process.env;
    const table = (v.table as string | undefined) ?? env[ENV.ledgerTable];
    const region = (v.region as string | undefined) ?? env[ENV.failoverRegion] ?? env.AWS_REGION;
    if (!table || !region) {
      io.stderr(`dr: status needs --table (or ${ENV.ledgerTable}) and --region (or ${ENV.failoverRegion})\n`);
      return 64;
    }
    const int = (name: string, raw: string | undefined, dflt: number) => {
      const n = raw === undefined ? dflt : Number(raw);
      if (!Number.isInteger(n) || n < 1)
        throw new Error(`--${name} must be a positive integer, got "${raw}"`);
      return n;
    };
    const limit = int("limit", v.limit as string | undefined, 20);
    const rpoTargetMinutes = int(
      "rpo-minutes",
      (v["rpo-minutes"] as string | undefined) ?? env[ENV.rpoTargetMinutes],
      DEFAULTS.rpoTargetMinutes,
    );
    const budget = int(
      "budget",
      (v.budget as string | undefined) ?? env[ENV.copyBudget],
      DEFAULTS.copyBudget,
    );
    const endpoint = v.endpoint as string | undefined;
    const dynamo = new DynamoDBClient({ region, ...(endpoint ? { endpoint } : {}) });
    const ledger = new DynamoLedger(DynamoDBDocumentClient.from(dynamo), table);
    const report = buildStatus(await ledger.listBackups(limit), (await ledger.loadOpen()).open, {
      now: new Date(),
      rpoTargetMinutes,
      budget,
    });
    io.stdout(v.json ? `${JSON.stringify(report)}\n` : renderStatus(report));
    return 0;
  },
};
