/** The copy key's grants, for both forms of DR_KMS_KEY_ARN (a plain CDK stack: no SST synthesis). */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { App, Stack } from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import { afterAll, describe, expect, it } from "vitest";
import { replicationPermissions } from "../../stacks/Replication.js";
import { settingsFromEnv } from "../../stacks/settings.js";
import { flat, type Json } from "./cfn.js";

const KEY = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ALIAS = "arn:aws:kms:us-west-2:123456789012:alias/ebs-dr";

function kmsStatements(kmsKeyArn?: string): Array<Record<string, Json>> {
  // arrange
  const stack = new Stack(new App({ outdir }), "Permissions", {
    env: { account: "123456789012", region: "us-west-2" },
  });
  const table = new dynamodb.Table(stack, "Ledger", {
    partitionKey: { name: "pk", type: dynamodb.AttributeType.STRING },
  });
  const settings = settingsFromEnv({
    DR_SOURCE_REGIONS: "us-east-1",
    DR_FAILOVER_REGION: "us-west-2",
    ...(kmsKeyArn ? { DR_KMS_KEY_ARN: kmsKeyArn } : {}),
  });
  // act
  const statements = replicationPermissions(stack, settings, table).map(
    (s) => flat(stack.resolve(s.toStatementJson())) as Record<string, Json>,
  );
  return statements.filter((s) => JSON.stringify(s.Action).includes("kms:"));
}

// CDK apps create their output directory up front; keep them all in one we remove.
const outdir = mkdtempSync(path.join(tmpdir(), "velero-dr-permissions-"));
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

const viaEc2 = { "kms:ViaService": "ec2.us-west-2.amazonaws.com" };

describe("copy key permissions", () => {
  it("grants nothing on KMS when no key is configured (EBS's default key needs no grant)", () => {
    expect(kmsStatements()).toEqual([]);
  });

  it("grants a key ARN its use through EC2 and grants for AWS resources only", () => {
    expect(kmsStatements(KEY)).toEqual([
      expect.objectContaining({
        Action: "kms:CreateGrant",
        Resource: KEY,
        Condition: { Bool: { "kms:GrantIsForAWSResource": "true" }, StringEquals: viaEc2 },
      }),
      expect.objectContaining({
        Action: ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
        Resource: KEY,
        Condition: { StringEquals: viaEc2 },
      }),
    ]);
  });

  it("matches an alias through kms:ResourceAliases on its account's keys (an alias ARN authorizes nothing)", () => {
    const aliasCondition = { "ForAnyValue:StringEquals": { "kms:ResourceAliases": "alias/ebs-dr" } };
    const statements = kmsStatements(ALIAS);
    expect(statements).toHaveLength(2);
    for (const s of statements) {
      expect(s.Resource).toBe("arn:aws:kms:us-west-2:123456789012:key/*");
      expect(s.Condition).toMatchObject({ StringEquals: viaEc2, ...aliasCondition });
    }
    expect(statements[0]?.Condition).toMatchObject({ Bool: { "kms:GrantIsForAWSResource": "true" } });
  });
});
