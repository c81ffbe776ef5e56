import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

/** Debian's chromium (apt-get install chromium), which `npm test`'s pretest step installs when missing. */
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

/**
 * Renders a local HTML file in headless Chromium (scripts run) and returns the DOM after load.
 * The flags keep it off the network this machine does not have.
 */
export function renderedDom(file: string): string {
  const profile = mkdtempSync(join(tmpdir(), "chromium-"));
  try {
    const run = spawnSync(
      CHROMIUM,
      [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--user-data-dir=${profile}`,
        "--virtual-time-budget=5000",
        "--dump-dom",
        pathToFileURL(file).href,
      ],
      { encoding: "utf8", timeout: 60_000 },
    );
    if (run.error) throw new Error(`cannot run ${CHROMIUM} (apt-get install chromium): ${run.error.message}`);
    if (run.status !== 0) throw new Error(`chromium exited with ${run.status}: ${run.stderr.slice(-2000)}`);
    return run.stdout;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}
