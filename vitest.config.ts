import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Each integration file starts its own moto_server on a free port, so files run in parallel safely.
    pool: "forks",
    // EMF output is checked where it matters (test/unit/metrics.test.ts); elsewhere it is noise.
    env: { POWERTOOLS_METRICS_DISABLED: "true" },
  },
});
