import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { MetricUnit } from "@aws-lambda-powertools/metrics";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import middy from "@middy/core";
import type { Context } from "aws-lambda";
import { evaluateBackups } from "./copy-completed.js";
import { METRIC, publishAdmit, publishCopyOutcome } from "./metrics.js";
import type { Runtime } from "./runtime.js";

/** The schedule starts a run every minute; a run looks for this long at most. */
export const POLL_WINDOW_MS = 50_000;
/** Looks in one run at most: the first, then one per interval within the window. */
export function looksPerRun(intervalMs: number): number {
  return Math.floor(POLL_WINDOW_MS / intervalMs) + 1;
}
/** A look is not started with less than this (plus the interval) left before the timeout. */
const RESERVE_MS = 8_000;

export interface PollRun {
  polls: number;
  settled: number;
  admitted: number;
  /** Copies still waited for a slot when the run ended (the next run goes on). */
  busy: boolean;
}

export interface PollOptions {
  /** Waits between looks (tests pass a fake). */
  sleep?: (ms: number) => Promise<void>;
  /** Time left before the function's timeout (Lambda's context), if known. */
  remainingMs?: () => number;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * One scheduled run of the copy poller: while copies wait for a slot, look for finished copies
 * every `pollSeconds` (plane.poll settles them and fills the freed slots), for up to a minute's
 * window; stop at once when nothing waits. Settled copies are published and their backups judged
 * exactly as copy-completed does for events.
 */
export async function pollCopies(rt: Runtime, options: PollOptions = {}): Promise<PollRun> {
  const { plane, metrics } = rt;
  const intervalMs = rt.config.pollSeconds * 1000;
  const run: PollRun = { polls: 0, settled: 0, admitted: 0, busy: false };
  if (intervalMs === 0) return run;
  const sleep = options.sleep ?? realSleep;
  const maxPolls = looksPerRun(intervalMs);
  for (;;) {
    const r = await plane.poll({ busy: run.busy });
    run.polls++;
    for (const o of r.settled) publishCopyOutcome(metrics, o);
    if (r.admit) publishAdmit(metrics, r.admit);
    run.settled += r.settled.length;
    run.admitted += r.admit?.admitted.length ?? 0;
    run.busy = r.busy;
    await evaluateBackups(rt, r.drained);
    if (!r.busy || run.polls >= maxPolls) break;
    if (options.remainingMs && options.remainingMs() < intervalMs + RESERVE_MS) break;
    await sleep(intervalMs);
  }
  metrics.addMetric(METRIC.settledByPoll, MetricUnit.Count, run.settled);
  return run;
}

export function makePollHandler(rt: Runtime, options: Pick<PollOptions, "sleep"> = {}) {
  return middy(async (_event: unknown, context: Context): Promise<PollRun> => {
    const run = await pollCopies(rt, { ...options, remainingMs: () => context.getRemainingTimeInMillis() });
    rt.logger.info("poll done", { ...run });
    return run;
  })
    .use(injectLambdaContext(rt.logger))
    .use(logMetrics(rt.metrics));
}
