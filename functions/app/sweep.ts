import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import middy from "@middy/core";
import type { SweepReport } from "../core/plane.js";
import { publishSweep } from "./metrics.js";
import type { Runtime } from "./runtime.js";

/** The scheduled reconciliation sweep: settle what events missed, flag stuck copies, admit. */
export function makeSweepHandler(rt: Runtime) {
  return middy(async (): Promise<SweepReport> => {
    const report = await rt.plane.sweep();
    publishSweep(rt.metrics, report);
    if (rt.registry) {
      const backups = await rt.registry.evaluateOpen();
      const retention = await rt.registry.sweepRetention();
      rt.logger.info("backups evaluated", { ...backups, retention });
    }
    rt.logger.info("sweep done", {
      ...report,
      admit: { ...report.admit, admitted: report.admit.admitted.length },
    });
    return report;
  })
    .use(injectLambdaContext(rt.logger))
    .use(logMetrics(rt.metrics));
}
