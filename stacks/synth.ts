import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
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
  return withSynthLock(() => synthesize(region, options));
}

async function synthesize(region: string, options: SynthOptions): Promise<SynthesizedStack[]> {
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

/**
 * SST keeps per-project state under .sst/ (a new App empties .sst/types; each function is built
 * into .sst/artifacts/<function id>/), so two syntheses at once, in this process or in parallel
 * test files (vitest forks), would overwrite each other's files. This runs `fn` alone: queued within
 * the process, and across processes behind a lock directory (mkdir is atomic) naming its owner's
 * pid, taken over when that process is gone.
 */
export function withSynthLock<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(async () => {
    const release = await lockAcross();
    try {
      return await fn();
    } finally {
      release();
    }
  });
  queue = run.then(
    () => undefined,
    () => undefined,
  );
  return run;
}

let queue: Promise<void> = Promise.resolve();

const LOCK_WAIT_MS = 10 * 60_000;

async function lockAcross(): Promise<() => void> {
  const dir = path.resolve(".sst", "synth.lock");
  const owner = path.join(dir, "pid");
  mkdirSync(path.dirname(dir), { recursive: true });
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(owner, String(process.pid));
      return () => rmSync(dir, { recursive: true, force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    if (isStale(dir, owner)) {
      rmSync(dir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `another synthesis has held ${dir} for ${LOCK_WAIT_MS / 60_000} minutes; remove it if stale`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Held by a process that is gone (or, with no pid written yet, for more than 10 s). */
function isStale(dir: string, owner: string): boolean {
  try {
    const pid = Number(readFileSync(owner, "utf8"));
    if (!Number.isInteger(pid) || pid <= 0) return false;
    process.kill(pid, 0);
    return false;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ESRCH") return true;
    if (code === "ENOENT") {
      try {
        return Date.now() - statSync(dir).mtimeMs > 10_000;
      } catch {
        return false; // released meanwhile
      }
    }
    return false; // EPERM: alive, someone else's
  }
}
