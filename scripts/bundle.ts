/**
 * Builds each Lambda handler exactly as the stack deploys it and reports what a cold start pays:
 * the bundle's size and the time to load it (module evaluation, including the handler's own
 * cold-start wiring) under Node 22.
 *
 *   tsx scripts/bundle.ts [--runs 10] [--json]
 *
 * Load time: the median of N fresh `node` processes that each time `await import(bundle)`, minus
 * the median for an empty module (process start-up is excluded either way: the clock runs inside
 * the child). Bundles are written to .build/bundles/<function>/.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import type { Metafile } from "esbuild";
import { configToEnv } from "../functions/core/config.js";
import { HANDLERS, sstBuildOptions, sstEsbuild } from "../stacks/functions.js";

const ROOT = process.cwd();
const OUT = path.join(ROOT, ".build/bundles");
/** Node 22, the Lambda runtime's major (npm scripts put node_modules/.bin first as well). */
const NODE = path.join(ROOT, "node_modules/.bin/node");

/** A valid environment for the handlers' cold-start configuration check; no AWS call is made. */
const HANDLER_ENV: Record<string, string> = {
  ...configToEnv({
    ledgerTable: "velero-dr-bundle-check",
    sourceRegions: ["us-east-1"],
    failoverRegion: "us-west-2",
    copyBudget: 16,
    includeTags: {},
    excludeTags: {},
    maxCopyAttempts: 3,
    stuckAfterMinutes: 60,
    rpoTargetMinutes: 60,
    // register refuses to start without Velero's bucket
    velero: {
      bucket: "velero-bundle-check",
      prefix: "",
      failoverPrefix: "failover",
      zoneMap: { "us-east-1a": "us-west-2a" },
      allowedWarnings: 0,
      combinedIds: false,
    },
  }),
  POWERTOOLS_SERVICE_NAME: "velero-dr",
  POWERTOOLS_METRICS_NAMESPACE: "VeleroDR",
  AWS_REGION: "us-west-2",
  AWS_EC2_METADATA_DISABLED: "true",
};

const TIMER = [
  "const u = process.argv[1];",
  "const t = performance.now();",
  "await import(u);",
  "process.stdout.write(String(performance.now() - t));",
].join(" ");

function loadOnce(file: string): number {
  const r = spawnSync(NODE, ["--input-type=module", "-e", TIMER, pathToFileURL(file).href], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...HANDLER_ENV },
    encoding: "utf8",
  });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`importing ${path.relative(ROOT, file)} failed:\n${r.stderr.trim()}`);
  return Number(r.stdout);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/** The biggest contributors to a bundle, by npm package (or "(project)"). */
function topPackages(meta: Metafile, n: number): Array<{ package: string; kib: number }> {
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

const round = (x: number) => Math.round(x * 10) / 10;

interface Report {
  function: string;
  handler: string;
  bytes: number;
  kib: number;
  loadMs: number;
  loadSamplesMs: number[];
  baselineMs: number;
  topPackages: Array<{ package: string; kib: number }>;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { json: { type: "boolean", default: false }, runs: { type: "string", default: "10" } },
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1)
    throw new Error(`--runs must be a positive integer, got ${values.runs}`);

  const entries = Object.entries(HANDLERS).map(([name, handler]) => {
    const base = handler.slice(0, handler.lastIndexOf("."));
    const entry = [".ts", ".mts", ".js", ".mjs"].map((ext) => base + ext).find((f) => existsSync(f));
    if (!entry) throw new Error(`handler ${handler} has no source file yet (${base}.ts): nothing to bundle`);
    return { name, handler, entry, outfile: path.join(OUT, name, `${base}.mjs`) };
  });

  const esbuild = sstEsbuild();
  await rm(OUT, { recursive: true, force: true });
  const empty = path.join(OUT, "empty.mjs");
  await mkdir(OUT, { recursive: true });
  await writeFile(empty, "export {};\n");
  const baselineMs = median(Array.from({ length: runs }, () => loadOnce(empty)));

  const reports: Report[] = [];
  for (const e of entries) {
    const result = await esbuild.build({ ...sstBuildOptions(e.entry), outfile: e.outfile, metafile: true });
    const { size } = await stat(e.outfile);
    const samples = Array.from({ length: runs }, () => loadOnce(e.outfile));
    reports.push({
      function: e.name,
      handler: e.handler,
      bytes: size,
      kib: round(size / 1024),
      loadMs: round(Math.max(0, median(samples) - baselineMs)),
      loadSamplesMs: samples.map(round),
      baselineMs: round(baselineMs),
      topPackages: result.metafile ? topPackages(result.metafile, 5) : [],
    });
  }

  if (values.json) {
    console.log(JSON.stringify(reports, null, 2));
    return;
  }
  const nodeVersion = spawnSync(NODE, ["--version"], { encoding: "utf8" }).stdout.trim();
  console.log(
    `esbuild ${esbuild.version} (SST's), Node ${nodeVersion}, median of ${runs} fresh processes, ` +
      `empty-module baseline ${round(baselineMs)} ms`,
  );
  console.log(
    `${"function".padEnd(16)}${"size KiB".padStart(10)}${"load ms".padStart(10)}  largest packages (KiB)`,
  );
  for (const r of reports) {
    const pkgs = r.topPackages.map((p) => `${p.package} ${p.kib}`).join(", ");
    console.log(
      `${r.function.padEnd(16)}${String(r.kib).padStart(10)}${String(r.loadMs).padStart(10)}  ${pkgs}`,
    );
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
