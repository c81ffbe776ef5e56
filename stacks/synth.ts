import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { App, Stack } from "sst/constructs";
import { initProject } from "sst/project.js";
import config from "../sst.config.js";

/**
 * Offline synthesis of one region's stacks, for the stack tests and scripts/synth.ts. `sst build`
 * needs AWS; in SST's test mode (NODE_ENV=test) the app skips its bootstrap lookups, and the
 * functions are still built with esbuild exactly as on deploy.
 */

export interface SynthesizedStack {
  region: string;
  stackName: string;
  template: Record<string, unknown>;
  /** Where the cloud assembly was written (function bundles live under it as assets); the caller removes it. */
  assemblyDir: string;
}

export interface SynthOptions {
  stage?: string;
  account?: string;
  /** DR_* settings to synthesize with, replacing any DR_* in process.env for the duration. */
  env?: Record<string, string | undefined>;
}

let project: Promise<void> | undefined;

/** Synthesizes the stacks sst.config.ts deploys to `region`; rejects as `sst deploy` would fail. */
export async function synthRegion(region: string, options: SynthOptions = {}): Promise<SynthesizedStack[]> {
  if (process.env.NODE_ENV !== "test") {
    throw new Error("offline synthesis needs NODE_ENV=test (SST's test mode); otherwise SST looks up AWS");
  }
  const stage = options.stage ?? "test";
  project ??= initProject({ stage });
  await project;
  const restore = options.env ? replaceSettings(options.env) : () => {};
  // Our own output directory, so that a failed synthesis leaves nothing behind.
  const outdir = mkdtempSync(path.join(tmpdir(), "velero-dr-synth-"));
  try {
    const app = new App(
      { mode: "deploy", name: "velero-dr", stage, region, account: options.account ?? "123456789012" },
      { outdir },
    );
    await config.stacks(app);
    await app.finish();
    const assembly = app.synth();
    return app.node.children
      .filter((c): c is Stack => c instanceof Stack)
      .map((stack) => ({
        region,
        stackName: stack.stackName,
        template: assembly.getStackArtifact(stack.artifactId).template,
        assemblyDir: assembly.directory,
      }));
  } catch (error) {
    rmSync(outdir, { recursive: true, force: true });
    throw error;
  } finally {
    restore();
  }
}

function replaceSettings(env: Record<string, string | undefined>): () => void {
  const saved = Object.entries(process.env).filter(([k]) => k.startsWith("DR_"));
  const clear = () => {
    for (const k of Object.keys(process.env)) if (k.startsWith("DR_")) delete process.env[k];
  };
  clear();
  for (const [k, v] of Object.entries(env)) if (v !== undefined) process.env[k] = v;
  return () => {
    clear();
    for (const [k, v] of saved) process.env[k] = v;
  };
}
