import { createRequire } from "node:module";
import path from "node:path";
import type { Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import type * as iam from "aws-cdk-lib/aws-iam";
import * as logs from "aws-cdk-lib/aws-logs";
import type * as Esbuild from "esbuild";
import { type FunctionProps, Function as SstFunction } from "sst/constructs";

/**
 * The entrypoints (ESM, each exporting `handler`). scripts/bundle.ts builds the same files. The
 * copy poller is deployed unless DR_POLL_SECONDS is 0; the last two only with Velero's bucket
 * configured (DR_VELERO_BUCKET).
 */
export const HANDLERS = {
  replicate: "functions/replicate.handler",
  copyCompleted: "functions/copy-completed.handler",
  sweep: "functions/sweep.handler",
  poll: "functions/poll.handler",
  register: "functions/register.handler",
  recoveryPoint: "functions/recovery-point.handler",
} as const;

/**
 * The failover plane's entrypoints (stacks/Failover.ts): one function per step of the workflow, all
 * from functions/failover-steps.ts, plus the approval request (sends the links, keeps the task
 * token) and the approval endpoint (the function URL the links and Slack's buttons call).
 */
export const FAILOVER_HANDLERS = {
  preflight: "functions/failover-steps.preflight",
  scaleNodegroup: "functions/failover-steps.scaleNodegroup",
  waitNodegroup: "functions/failover-steps.waitNodegroup",
  startRestore: "functions/failover-steps.startRestore",
  waitRestore: "functions/failover-steps.waitRestore",
  switchDns: "functions/failover-steps.switchDns",
  scaleBack: "functions/failover-steps.scaleBack",
  report: "functions/failover-steps.report",
  requestApproval: "functions/request-approval.handler",
  approval: "functions/approval.handler",
} as const;

/**
 * Every handler: Node 22 on Graviton, one ESM file per function, minified and tree-shaken with
 * the SDK bundled. `mainFields` makes esbuild take the SDK's ES modules (tree-shakable) over its
 * CommonJS build. No source maps: SST would upload them for its console only, which we do not
 * use, and Lambda does not apply them without --enable-source-maps (a cold-start cost). SST's
 * default keepNames stays on: error classes name themselves after `new.target.name`. X-Ray is off
 * (we trace nothing), which also keeps its `Resource: *` grant out of the roles.
 * scripts/bundle.ts builds with the same options.
 */
export const functionDefaults = {
  runtime: "nodejs22.x",
  architecture: "arm_64",
  memorySize: 256,
  tracing: "disabled",
  nodejs: {
    format: "esm",
    minify: true,
    sourcemap: false,
    esbuild: { mainFields: ["module", "main"], target: "node22", treeShaking: true },
  },
} as const satisfies Partial<FunctionProps>;

/**
 * The esbuild SST bundles with: its own pinned copy (0.18.x under sst/node_modules), not the
 * project's. scripts/bundle.ts and the stack tests use it so that their bundles are the deployed ones.
 */
export function sstEsbuild(root = process.cwd()): typeof Esbuild {
  return createRequire(path.join(root, "node_modules/sst/package.json"))("esbuild");
}

/**
 * What SST 2.49.8 hands esbuild for an ESM Node function when deploying
 * (node_modules/sst/runtime/handlers/node.js), with `functionDefaults.nodejs` applied on top.
 * Output options (outfile/outdir, write, metafile) are the caller's.
 */
export function sstBuildOptions(entry: string): Esbuild.BuildOptions {
  const { nodejs } = functionDefaults;
  return {
    entryPoints: [entry],
    platform: "node",
    bundle: true,
    external: ["sharp", "pg-native"],
    keepNames: true,
    logLevel: "silent",
    format: "esm", // SST's target (esnext) and mainFields are replaced by ours below
    banner: {
      js: [
        `import { createRequire as topLevelCreateRequire } from 'module';`,
        `const require = topLevelCreateRequire(import.meta.url);`,
        `import { fileURLToPath as topLevelFileUrlToPath, URL as topLevelURL } from "url"`,
        `const __dirname = topLevelFileUrlToPath(new topLevelURL(".", import.meta.url))`,
        "",
      ].join("\n"),
    },
    sourcemap: nodejs.sourcemap,
    minify: nodejs.minify,
    ...nodejs.esbuild,
    mainFields: [...nodejs.esbuild.mainFields],
  };
}

/**
 * One of our functions: the shared defaults, its own log group (one month, kept with the stage's
 * stateful resources), its environment and its own least-privilege statements.
 */
export function ourFunction(
  stack: Stack,
  id: string,
  o: {
    handler: string;
    timeout: Duration;
    description: string;
    environment: Record<string, string>;
    permissions: iam.PolicyStatement[];
    removalPolicy: RemovalPolicy;
    extra?: Partial<FunctionProps>;
  },
): { fn: SstFunction; logGroup: logs.LogGroup } {
  const logGroup = new logs.LogGroup(stack, `${id}Logs`, {
    retention: logs.RetentionDays.ONE_MONTH,
    removalPolicy: o.removalPolicy,
  });
  const fn = new SstFunction(stack, id, {
    ...functionDefaults,
    handler: o.handler,
    description: o.description,
    timeout: o.timeout.toSeconds(),
    logGroup,
    environment: o.environment,
    ...o.extra,
  });
  for (const statement of o.permissions) fn.addToRolePolicy(statement);
  return { fn, logGroup };
}
