/**
 * Writes the CloudFormation templates of every region this deployment touches to
 * .build/templates/<region>/<stack>.template.json, offline, for humans and linters:
 *
 *   DR_SOURCE_REGIONS=us-east-1 DR_FAILOVER_REGION=us-west-2 NODE_ENV=test tsx scripts/synth.ts [--stage prod]
 *
 * The settings are the deployment's own DR_* variables (see README). NODE_ENV=test is SST's test
 * mode: no AWS lookups. The function bundles are built as on deploy.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { settingsFromEnv } from "../stacks/settings.js";
import { synthRegion } from "../stacks/synth.js";

const OUT = path.resolve(".build/templates");

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { stage: { type: "string", default: "dev" } } });
  const stage = values.stage ?? "dev";
  const { config } = settingsFromEnv(process.env);
  await rm(OUT, { recursive: true, force: true });
  // The failover region first, as it is deployed first.
  for (const region of [config.failoverRegion, ...config.sourceRegions]) {
    for (const s of await synthRegion(region, { stage })) {
      const dir = path.join(OUT, region);
      await mkdir(dir, { recursive: true });
      const file = path.join(dir, `${s.stackName}.template.json`);
      await writeFile(file, `${JSON.stringify(s.template, null, 2)}\n`);
      const r = s.template.Resources;
      const resources = r && typeof r === "object" ? Object.keys(r).length : 0;
      console.log(`${path.relative(process.cwd(), file)}  (${resources} resources)`);
      await rm(s.assemblyDir, { recursive: true, force: true });
    }
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
