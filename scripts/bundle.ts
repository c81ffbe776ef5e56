/**
 * Builds each Lambda handler exactly as the stack deploys it and reports what a cold start pays:
 * the bundle's size and the time to load it (module evaluation, including the handler's own
 * cold-start wiring) under Node 22, side by side with the same handler bundled without our
 * bundling choices (CommonJS, not minified, the SDK resolved the default way), as ratios.
 *
 *   tsx scripts/bundle.ts [--runs 10] [--json]
 *
 * Load time: the median of N fresh `node` processes that each load the bundle the way Lambda's
 * runtime does (`import()` for .mjs, `require` for .cjs), minus the median for an empty module of
 * the same kind (process start-up is excluded either way: the clock runs inside the child).
 * One bundle per entry file (the failover steps share one). Bundles are written to
 * .build/bundles/{ours,baseline}/functions/.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import type * as Esbuild from "esbuild";
import { requestApprovalConfigToEnv } from "../functions/core/approval-config.js";
import { configToEnv } from "../functions/core/config.js";
import { FAILOVER_ENV } from "../functions/core/failover.js";
import { intOption } from "../local/cli.js";
import { FAILOVER_HANDLERS, HANDLERS, sstBuildOptions, sstEsbuild } from "../stacks/functions.js";

const ROOT = process.cwd();
const OUT = path.join(ROOT, ".build/bundles");
/** Node 22, the Lambda runtime's major (npm scripts put node_modules/.bin first as well). */
const NODE = path.join(ROOT, "node_modules/.bin/node");

const REGION = "us-west-2";
const LEDGER = "velero-dr-bundle-check";
/** Placeholders in the failover region: the loaders check ARNs' shape and region, nothing calls AWS. */
const TOPIC_ARN = `arn:aws:sns:${REGION}:000000000000:velero-dr-bundle-check`;
const SECRET_ARN = `arn:aws:secretsmanager:${REGION}:000000000000:secret:velero-dr-bundle-check`;

/** A valid environment for every handler's cold-start configuration check; no AWS call is made. */
const HANDLER_ENV: Record<string, string> = {
  ...configToEnv({
    ledgerTable: LEDGER,
    sourceRegions: ["us-east-1"],
    failoverRegion: REGION,
    copyBudget: 16,
    includeTags: {},
    excludeTags: {},
    maxCopyAttempts: 3,
    stuckAfterMinutes: 60,
    rpoTargetMinutes: 60,
    pollSeconds: 10,
    // register refuses to start without Velero's bucket
    velero: {
      bucket: "velero-bundle-check",
      prefix: "",
      failoverBucket: "velero-bundle-check-failover",
      failoverPrefix: "failover",
      zoneMap: { "us-east-1a": "us-west-2a" },
      allowedWarnings: 0,
      combinedIds: false,
    },
  }),
  // the approval request step; the approval endpoint reads a subset of the same variables
  ...requestApprovalConfigToEnv({
    region: REGION,
    ledgerTable: LEDGER,
    approvalSecretArn: SECRET_ARN,
    ttlMinutes: 60,
    baseUrl: `https://bundle-check.lambda-url.${REGION}.on.aws`,
    approversTopicArn: TOPIC_ARN,
  }),
  // the failover steps' required settings (the region, table and topic are set above)
  [FAILOVER_ENV.clusterName]: "standby",
  [FAILOVER_ENV.nodegroupName]: "standby-workers",
  [FAILOVER_ENV.min]: "0",
  [FAILOVER_ENV.desired]: "1",
  [FAILOVER_ENV.max]: "3",
  [FAILOVER_ENV.hostedZoneId]: "Z0BUNDLECHECK",
  [FAILOVER_ENV.recordName]: "ci.example.com",
  [FAILOVER_ENV.lbName]: "standby-ingress",
  POWERTOOLS_SERVICE_NAME: "velero-dr",
  POWERTOOLS_METRICS_NAMESPACE: "VeleroDR",
  AWS_REGION: REGION,
  AWS_EC2_METADATA_DISABLED: "true",
};

/** Loads argv[1] as Lambda's runtime would: a .cjs handler is required, an .mjs one imported. */
const TIMER = [
  'import { createRequire } from "node:module";',
  'import { pathToFileURL } from "node:url";',
  "const f = process.argv[1];",
  "const t = performance.now();",
  'if (f.endsWith(".cjs")) createRequire(f)(f); else await import(pathToFileURL(f).href);',
  "process.stdout.write(String(performance.now() - t));",
].join(" ");

function loadOnce(file: string): number {
  const r = spawnSync(NODE, ["--input-type=module", "-e", TIMER, file], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...HANDLER_ENV },
    encoding: "utf8",
  });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`loading ${path.relative(ROOT, file)} failed:\n${r.stderr.trim()}`);
  return Number(r.stdout);
}

/**
 * Load times of each file, `runs` samples each, taken in turns: a busy spell on the machine then
 * weighs on every file alike, which keeps the ratios fair.
 */
function loadTimes(files: string[], runs: number): number[][] {
  const rounds = Array.from({ length: runs }, () => files.map((f) => loadOnce(f)));
  return files.map((_, j) => rounds.map((r) => r[j] ?? 0));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/** The biggest contributors to a bundle, by npm package (or "(project)"). */
function topPackages(meta: Esbuild.Metafile, n: number): Array<{ package: string; kib: number }> {
  const bytes = new Map<string, number>();
  for (const output of Object.values(meta.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
      const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
      const key = m?.[1] ?? "(project)";
      bytes.set(key, (bytes.get(key) ?? 0) + bytesInOutput);
    }
  }
  return [...bytes.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([pkg, b]) => ({ package: pkg, kib: round(b / 1024) }));
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

/**
 * The same handler without our bundling choices: esbuild's defaults for a bundled CommonJS Node
 * program. No mainFields, so the SDK (no `exports` map) resolves `main`, its CommonJS build;
 * packages with an `exports` map still resolve by condition (`import` for our import statements).
 */
function baselineBuildOptions(entry: string): Esbuild.BuildOptions {
  return { entryPoints: [entry], bundle: true, platform: "node", format: "cjs", target: "node22" };
}

interface Measured {
  file: string;
  bytes: number;
  kib: number;
  /** Median load time minus the empty module's. */
  loadMs: number;
  loadSamplesMs: number[];
  emptyMs: number;
  topPackages: Array<{ package: string; kib: number }>;
}

interface Report {
  entry: string;
  /** The deployed functions built from this entry (the failover steps share one file). */
  functions: string[];
  ours: Measured;
  baseline: Measured;
  /** baseline / ours */
  sizeRatio: number;
  loadRatio: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { json: { type: "boolean", default: false }, runs: { type: "string", default: "10" } },
  });
  const runs = intOption("runs", values.runs, 1, 1000);

  const functionsOf = new Map<string, string[]>();
  for (const [name, handler] of Object.entries({ ...HANDLERS, ...FAILOVER_HANDLERS })) {
    const base = handler.slice(0, handler.lastIndexOf("."));
    functionsOf.set(base, [...(functionsOf.get(base) ?? []), name]);
  }
  const entries = [...functionsOf].map(([base, functions]) => {
    const entry = [".ts", ".mts", ".js", ".mjs"].map((ext) => base + ext).find((f) => existsSync(f));
    if (!entry) throw new Error(`${functions.join(", ")}: no source file ${base}.ts yet, nothing to bundle`);
    return { base, functions, entry };
  });

  const esbuild = sstEsbuild();
  await rm(OUT, { recursive: true, force: true });
  await mkdir(OUT, { recursive: true });
  // An empty module of each kind: importing ESM and requiring CJS have different fixed costs.
  const empty = { mjs: path.join(OUT, "empty.mjs"), cjs: path.join(OUT, "empty.cjs") };
  await writeFile(empty.mjs, "export {};\n");
  await writeFile(empty.cjs, "module.exports = {};\n");
  const [emptyMjs = 0, emptyCjs = 0] = loadTimes([empty.mjs, empty.cjs], runs).map(median);

  const build = async (options: Esbuild.BuildOptions, file: string) => {
    const { metafile } = await esbuild.build({
      ...options,
      outfile: file,
      metafile: true,
      logLevel: "silent",
    });
    return { file, bytes: (await stat(file)).size, top: metafile ? topPackages(metafile, 5) : [] };
  };
  const measured = (b: Awaited<ReturnType<typeof build>>, samples: number[]): Measured => {
    const empty = b.file.endsWith(".cjs") ? emptyCjs : emptyMjs;
    return {
      file: path.relative(ROOT, b.file),
      bytes: b.bytes,
      kib: round(b.bytes / 1024),
      loadMs: round(Math.max(0, median(samples) - empty)),
      loadSamplesMs: samples.map((x) => round(x)),
      emptyMs: round(empty),
      topPackages: b.top,
    };
  };

  const reports: Report[] = [];
  for (const { base, entry, functions } of entries) {
    const o = await build(sstBuildOptions(entry), path.join(OUT, "ours", `${base}.mjs`));
    const b = await build(baselineBuildOptions(entry), path.join(OUT, "baseline", `${base}.cjs`));
    const [oursMs = [], baselineMs = []] = loadTimes([o.file, b.file], runs);
    const ours = measured(o, oursMs);
    const baseline = measured(b, baselineMs);
    reports.push({
      entry,
      functions,
      ours,
      baseline,
      sizeRatio: round(baseline.bytes / ours.bytes, 2),
      loadRatio: round(baseline.loadMs / ours.loadMs, 2),
    });
  }

  if (values.json) {
    console.log(JSON.stringify(reports, null, 2));
    return;
  }
  const nodeVersion = spawnSync(NODE, ["--version"], { encoding: "utf8" }).stdout.trim();
  console.log(
    `esbuild ${esbuild.version} (SST's), Node ${nodeVersion}, median of ${runs} fresh processes, ` +
      `empty module ${round(emptyMjs)} ms (ESM) / ${round(emptyCjs)} ms (CJS)`,
  );
  console.log(
    "ours: ESM, minified, SDK's ES modules; baseline: CJS, not minified, SDK's default (main) build",
  );
  const cols = ["ours KiB", "ours ms", "base KiB", "base ms", "size x", "load x"];
  console.log(
    `${"entry".padEnd(18)}${cols.map((c) => c.padStart(10)).join("")}  largest packages, ours (KiB)`,
  );
  for (const r of reports) {
    const cells = [r.ours.kib, r.ours.loadMs, r.baseline.kib, r.baseline.loadMs, r.sizeRatio, r.loadRatio];
    const pkgs = r.ours.topPackages.map((p) => `${p.package} ${p.kib}`).join(", ");
    const label = path.basename(r.entry, path.extname(r.entry));
    console.log(`${label.padEnd(18)}${cells.map((c) => String(c).padStart(10)).join("")}  ${pkgs}`);
  }
  for (const r of reports.filter((r) => r.functions.length > 1)) {
    console.log(`${path.basename(r.entry)} is one bundle for ${r.functions.join(", ")}`);
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
