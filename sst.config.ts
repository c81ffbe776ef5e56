import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseEnv } from "node:util";
import type { SSTConfig } from "sst";
import { ConfigError } from "./functions/core/errors.js";
import { Failover } from "./stacks/Failover.js";
import { Primary } from "./stacks/Primary.js";
import { Replication } from "./stacks/Replication.js";
import { failoverSettingsFromEnv, SETTINGS, settingsFromEnv } from "./stacks/settings.js";

/**
 * Multi-region, the SST v2 way: one `sst deploy` per region. SST v2 pins every stack to the app's
 * region (its Stack sets `env` from the app and rejects an `env` prop, and `sst deploy` talks to
 * CloudFormation in that one region only), so a stack cannot be sent elsewhere from one app. The
 * app's region therefore decides what is deployed:
 *
 *   sst deploy --stage prod                        # DR_FAILOVER_REGION: Replication (+ Failover)
 *   sst deploy --stage prod --region us-east-1     # each of DR_SOURCE_REGIONS: the Primary stack
 *
 * Deploy the failover region first: the forwarding rules target its bus. The bus's ARN is built
 * from its fixed name, so no stack reads another region's outputs. The Failover stack (with
 * DR_FAILOVER_CLUSTER_NAME) sits next to Replication and uses its ledger and alerts topic: one region.
 */

/**
 * The default region, DR_FAILOVER_REGION, may come from the shell or from the .env files SST loads
 * (.env, .env.local, .env.<stage>, .env.<stage>.local, later ones winning). SST reads those only
 * after config() has answered, so they are read here too: otherwise a region set only in a .env
 * file would leave SST on the AWS profile's region while the app believed it was in us-east-1.
 */
function failoverRegion(stage: string | undefined): string | undefined {
  const files = [".env", ".env.local", ...(stage ? [`.env.${stage}`, `.env.${stage}.local`] : [])];
  let region = process.env[SETTINGS.failoverRegion];
  for (const file of files.map((f) => path.resolve(f))) {
    if (existsSync(file)) region = parseEnv(readFileSync(file, "utf8"))[SETTINGS.failoverRegion] ?? region;
  }
  return region;
}

export default {
  config(input) {
    return {
      name: "velero-dr",
      // Without --region, the failover region (where almost everything lives).
      region: input.region ?? failoverRegion(input.stage ?? process.env.SST_STAGE),
    };
  },
  stacks(app) {
    const settings = settingsFromEnv(process.env);
    const { config } = settings;
    if (app.region === config.failoverRegion) {
      // Validated before any stack is built, so that a bad setting fails the synthesis at once.
      const failover = failoverSettingsFromEnv(process.env, settings);
      app.stack(Replication);
      if (failover) app.stack(Failover);
    } else if (config.sourceRegions.includes(app.region)) {
      app.stack(Primary);
    } else {
      throw new ConfigError(
        `Region ${app.region} is neither ${SETTINGS.failoverRegion} (${config.failoverRegion}) nor one of ` +
          `${SETTINGS.sourceRegions} (${config.sourceRegions.join(", ")}); deploy with --region set to one of them`,
      );
    }
  },
} satisfies SSTConfig;
