import { AsyncLocalStorage } from "node:async_hooks";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DescribeSnapshotsCommand, EC2Client } from "@aws-sdk/client-ec2";
import type { S3Client } from "@aws-sdk/client-s3";
import { pollCopies } from "../functions/app/poll.js";
import { DEFAULTS, type VeleroConfig } from "../functions/core/config.js";
import { SOURCE_SNAPSHOT_TAG } from "../functions/core/model.js";
import { intOption } from "../local/cli.js";
import { type Moto, startMoto } from "../local/moto.js";
import { SimulatedPrimary } from "../local/primary.js";
import { LOCAL_CREDENTIALS, LocalPlane } from "../local/runtime.js";
import { SimulatedVelero } from "../local/velero.js";

/**
 * Handler benchmark on the emulator: a simulated primary takes Velero backups of N volumes, the
 * real replicate and copy-completed handlers copy them through the real queues, and SDK middleware
 * counts the AWS calls those handlers make, per handler and operation, per source snapshot.
 */

/**
 * bursts: each backup drained before the next (batches as Velero's events come); trickle: one
 * message per invocation (the worst case); backlog: every backup queued before one drain, with
 * copies BACKLOG_SLOWDOWN times slower, so copies cannot keep up and the scheduler supersedes
 * backups in between.
 */
const BACKLOG_SLOWDOWN = 10;
export type Mode = "bursts" | "trickle" | "backlog";
const MODES: readonly Mode[] = ["bursts", "trickle", "backlog"];
/** Whose calls: the handler's own, or copy-completed's backup evaluation (the registry). */
type Part = "handler" | "registry";
interface Scope {
  fn: string;
  part: Part;
}

export interface CallRow {
  fn: string;
  part: Part;
  /** "DynamoDB TransactWriteItems", "EC2 CopySnapshot", ... */
  operation: string;
  calls: number;
}

export interface ModeResult {
  mode: Mode;
  sourceSnapshots: number;
  /** Copies in the failover region, and the distinct source snapshots they copy (from the emulator). */
  copies: number;
  copiedSources: number;
  /** Source snapshots skipped because a newer backup was copied instead (from the ledger). */
  superseded: number;
  seconds: number;
  snapshotsPerSecond: number;
  invocations: Record<string, { count: number; meanBatch: number }>;
  /** Calls by replicate, copy-completed and register (register is out of scope, kept for the cross-check). */
  calls: CallRow[];
  /** Copy path: replicate + copy-completed, without the registry. */
  copyPathPerSnapshot: number;
  registryPerSnapshot: number;
  drReadyBackups: number;
  /** Per service and operation: what the middleware counted vs what the emulator logged receiving. */
  mismatches: Array<{ operation: string; counted: number; emulator: number }>;
}

export interface BenchOptions {
  controllers: number;
  backups: number;
  modes: readonly Mode[];
  /** How long a simulated copy stays pending (the drill's default is 300 ms). */
  copyDelayMs?: number;
  /**
   * The copy poller's interval here: DEFAULTS.pollSeconds scaled as a ~80 s copy is scaled to
   * `copyDelayMs` (300 ms -> 38 ms), so it looks as often per copy as deployed; 0: no poller.
   */
  pollMs?: number;
}

export function scaledPollMs(copyDelayMs: number): number {
  return Math.max(1, Math.round((copyDelayMs * DEFAULTS.pollSeconds) / TYPICAL_COPY_SECONDS));
}

/** As local/drill.ts: the Velero bucket attached, so copy-completed evaluates backups as in AWS. */
const VELERO: VeleroConfig = {
  bucket: "velero-backups-failover",
  prefix: "",
  failoverBucket: "velero-dr-failover-metadata",
  failoverPrefix: "failover",
  zoneMap: { "us-east-1a": "us-west-2a", "us-east-1b": "us-west-2b", "us-east-1c": "us-west-2c" },
  allowedWarnings: 0,
  combinedIds: false,
};
const SCHEDULE = "cbci-dr";
const COUNTED = ["replicate", "copy-completed", "poll"];
/** A typical incremental copy in AWS (bench/MODEL.md): the poller's interval is scaled to it. */
const TYPICAL_COPY_SECONDS = 80;

const scope = new AsyncLocalStorage<Scope>();

/** Counts every call sent through this client made inside a handler invocation (once per call, not per retry). */
function countCalls(client: DynamoDBClient | S3Client | EC2Client, tally: Map<string, number>): void {
  (client as EC2Client).middlewareStack.add(
    (next, context) => async (args) => {
      const s = scope.getStore();
      if (s) {
        const service = String(context.clientName).replace(/Client$/, "");
        const op = String(context.commandName).replace(/Command$/, "");
        const key = `${s.fn}|${s.part}|${service} ${op}`;
        tally.set(key, (tally.get(key) ?? 0) + 1);
      }
      return next(args);
    },
    { step: "initialize", name: "benchCountCalls" },
  );
}

/**
 * The emulator's own log of the requests it served (moto's recorder): an independent count of
 * DynamoDB, EC2 and S3 calls, by operation (S3's REST operations are counted as one "S3 *").
 */
async function emulatorCounts(endpoint: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${endpoint}/moto-api/recorder/download-recording`)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as { headers: Record<string, string>; body?: string; body_encoded?: boolean };
    const header = (name: string) =>
      Object.entries(r.headers).find(([k]) => k.toLowerCase() === name)?.[1] ?? "";
    const service = /Credential=[^/]+\/[^/]+\/[^/]+\/([^/]+)\//.exec(header("authorization"))?.[1];
    let op: string | undefined;
    if (service === "dynamodb") op = `DynamoDB ${header("x-amz-target").split(".")[1]}`;
    else if (service === "ec2") {
      const body = r.body_encoded ? Buffer.from(r.body ?? "", "base64").toString() : (r.body ?? "");
      op = `EC2 ${new URLSearchParams(body).get("Action")}`;
    } else if (service === "s3") op = "S3 *";
    if (op) out.set(op, (out.get(op) ?? 0) + 1);
  }
  return out;
}

const recorder = (endpoint: string, action: "start" | "stop" | "reset") =>
  fetch(`${endpoint}/moto-api/recorder/${action}-recording`, { method: "POST" });

async function runMode(moto: Moto, o: BenchOptions, mode: Mode): Promise<ModeResult> {
  // The poller's interval scales with the copies' duration (scaledPollMs), in every mode.
  const delayMs = (o.copyDelayMs ?? 300) * (mode === "backlog" ? BACKLOG_SLOWDOWN : 1);
  await moto.reset();
  await recorder(moto.endpoint, "reset");
  const tally = new Map<string, number>();
  const invocations = new Map<string, { count: number; messages: number }>();
  const stamp = Date.now();
  const plane = await LocalPlane.create({
    endpoint: moto.endpoint,
    prefix: `bench-${mode}-${stamp}`,
    config: {
      copyBudget: DEFAULTS.copyBudget,
      velero: {
        ...VELERO,
        bucket: `${VELERO.bucket}-${stamp}`,
        failoverBucket: `${VELERO.failoverBucket}-${stamp}`,
      },
    },
    copyDelayMs: delayMs,
    logLevel: "SILENT",
    // Trickle: every invocation gets one message, the worst case for per-batch work.
    batchSize: mode === "trickle" ? 1 : 10,
    instrument: {
      client: (c) => countCalls(c, tally),
      invoke: (fn, event, run) => {
        const i = invocations.get(fn) ?? { count: 0, messages: 0 };
        invocations.set(fn, { count: i.count + 1, messages: i.messages + event.Records.length });
        return scope.run({ fn, part: "handler" }, run);
      },
    },
  });
  // Backup evaluation runs inside copy-completed (functions/app/copy-completed.ts); wrapping the
  // registry's method from here attributes its calls separately without touching functions/.
  const registry = plane.rt.registry;
  if (registry) {
    const evaluate = registry.evaluate.bind(registry);
    registry.evaluate = (name) => {
      const s = scope.getStore();
      return s ? scope.run({ ...s, part: "registry" }, () => evaluate(name)) : evaluate(name);
    };
  }
  const velero = new SimulatedVelero(plane.clients.s3, plane.rt.config.velero ?? VELERO);
  const primary = new SimulatedPrimary(
    moto.endpoint,
    plane.rt.config.sourceRegions[0] ?? "us-east-1",
    plane.clients.events,
    plane.resources.busName,
  );
  await primary.addControllers(o.controllers);

  // As the drill: each backup's snapshots appear at once (PutEvents in tens), Velero writes the
  // bucket, and the plane drains before the next backup. Only the drains are recorded by the
  // emulator, so its log holds the handlers' calls and none of the simulators'.
  let sourceSnapshots = 0;
  const names: string[] = [];
  // The copy poller as deployed (functions/app/poll.ts), time-scaled: a run every "minute" of
  // 60 / pollSeconds intervals, looking every interval while copies wait, during each drain.
  const pollMs = o.pollMs ?? scaledPollMs(delayMs);
  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
  const poller = () => {
    let stop = false;
    const done = (async () => {
      const minute = pollMs * Math.round(60 / DEFAULTS.pollSeconds);
      while (!stop) {
        const started = performance.now();
        const i = invocations.get("poll") ?? { count: 0, messages: 0 };
        invocations.set("poll", { count: i.count + 1, messages: i.messages });
        await scope.run({ fn: "poll", part: "handler" }, () =>
          pollCopies(plane.rt, { sleep: () => sleep(pollMs) }),
        );
        await sleep(Math.max(0, minute - (performance.now() - started)));
      }
    })();
    return async () => {
      stop = true;
      await done;
    };
  };
  const drain = async () => {
    await recorder(moto.endpoint, "start");
    const stopPoller = pollMs > 0 ? poller() : async () => {};
    await plane.drain(600_000);
    await stopPoller();
    await recorder(moto.endpoint, "stop");
  };
  const started = performance.now();
  for (let k = 0; k < o.backups; k++) {
    const name = `${SCHEDULE}-${stamp}-${k + 1}`;
    names.push(name);
    const taken = await primary.takeBackup(name, { schedule: SCHEDULE });
    sourceSnapshots += taken.length;
    // Velero completes 90 s after its start; started two minutes ago, it completed before the copies.
    const start = new Date(Date.now() - 120_000);
    await velero.writeBackup(
      { name, schedule: SCHEDULE, start, controllers: primary.controllers },
      taken,
      "us-east-1a",
    );
    if (mode !== "backlog") await drain();
  }
  if (mode === "backlog") await drain();
  const seconds = (performance.now() - started) / 1000;

  const failover = new EC2Client({
    endpoint: moto.endpoint,
    region: plane.rt.config.failoverRegion,
    credentials: LOCAL_CREDENTIALS,
  });
  const described = await failover.send(
    new DescribeSnapshotsCommand({ Filters: [{ Name: "tag-key", Values: [SOURCE_SNAPSHOT_TAG] }] }),
  );
  const copies = described.Snapshots?.length ?? 0;
  const copiedSources = new Set(
    described.Snapshots?.map((c) => c.Tags?.find((t) => t.Key === SOURCE_SNAPSHOT_TAG)?.Value),
  ).size;

  const calls = [...tally].map(([key, n]): CallRow => {
    const [fn = "", part = "handler", operation = ""] = key.split("|");
    return { fn, part: part as Part, operation, calls: n };
  });
  const sum = (rows: CallRow[]) => rows.reduce((a, r) => a + r.calls, 0);
  const counted = calls.filter((r) => COUNTED.includes(r.fn));

  // Every counted call, register's included, against the emulator's log of the drains.
  const emulator = await emulatorCounts(moto.endpoint);
  const byOp = new Map<string, number>();
  for (const r of calls) {
    const op = r.operation.startsWith("S3 ") ? "S3 *" : r.operation;
    byOp.set(op, (byOp.get(op) ?? 0) + r.calls);
  }
  const mismatches = [...new Set([...byOp.keys(), ...emulator.keys()])]
    .map((operation) => ({
      operation,
      counted: byOp.get(operation) ?? 0,
      emulator: emulator.get(operation) ?? 0,
    }))
    .filter((m) => m.counted !== m.emulator);

  let superseded = 0;
  for (const name of names) {
    superseded += (await plane.rt.ledger.listBackup(name)).filter((r) => r.status === "superseded").length;
  }

  return {
    mode,
    sourceSnapshots,
    copies,
    copiedSources,
    superseded,
    seconds,
    snapshotsPerSecond: sourceSnapshots / seconds,
    invocations: Object.fromEntries(
      [...invocations].map(([fn, i]) => [fn, { count: i.count, meanBatch: i.messages / i.count }]),
    ),
    calls,
    copyPathPerSnapshot: sum(counted.filter((r) => r.part === "handler")) / sourceSnapshots,
    registryPerSnapshot: sum(counted.filter((r) => r.part === "registry")) / sourceSnapshots,
    drReadyBackups: (await plane.rt.ledger.listBackups(100)).filter((b) => b.drReadyAt).length,
    mismatches,
  };
}

export async function runHandlerBench(o: BenchOptions): Promise<ModeResult[]> {
  // moto's recorder appends to this file; by default it would land in the working directory.
  const dir = mkdtempSync(join(tmpdir(), "bench-handlers-"));
  const previous = process.env.MOTO_RECORDER_FILEPATH;
  process.env.MOTO_RECORDER_FILEPATH = join(dir, "recording.jsonl");
  const moto = await startMoto();
  try {
    const results: ModeResult[] = [];
    for (const mode of o.modes) results.push(await runMode(moto, o, mode));
    return results;
  } finally {
    await moto.stop();
    if (previous === undefined) delete process.env.MOTO_RECORDER_FILEPATH;
    else process.env.MOTO_RECORDER_FILEPATH = previous;
    rmSync(dir, { recursive: true, force: true });
  }
}

/** All calls of one operation ("EC2 CopySnapshot") by the copy path's handlers, registry included. */
export function callsOf(r: ModeResult, operation: string): number {
  return r.calls
    .filter((c) => COUNTED.includes(c.fn) && c.operation === operation)
    .reduce((a, c) => a + c.calls, 0);
}

/** Calls per source snapshot of one row key in one mode's result. */
function perSnapshot(r: ModeResult, fn: string, part: Part, operation?: string): number {
  const n = r.calls
    .filter((c) => c.fn === fn && c.part === part && (operation === undefined || c.operation === operation))
    .reduce((a, c) => a + c.calls, 0);
  return n / r.sourceSnapshots;
}

export function renderTable(results: readonly ModeResult[]): string {
  const col = (s: string) => s.padStart(10);
  const row = (label: string, cells: string[]) => `${label.padEnd(46)}${cells.map(col).join("")}`;
  const num = (x: number) => x.toFixed(3);
  const lines = [
    row(
      "",
      results.map((r) => r.mode),
    ),
  ];
  lines.push(
    row(
      "source snapshots",
      results.map((r) => String(r.sourceSnapshots)),
    ),
  );
  lines.push(
    row(
      "copies in the failover region (emulator)",
      results.map((r) => String(r.copies)),
    ),
  );
  lines.push(
    row(
      "superseded (newer backup copied instead)",
      results.map((r) => String(r.superseded)),
    ),
  );
  lines.push(
    row(
      "wall time, s",
      results.map((r) => r.seconds.toFixed(1)),
    ),
  );
  lines.push(
    row(
      "snapshots/s",
      results.map((r) => r.snapshotsPerSecond.toFixed(1)),
    ),
  );
  for (const fn of COUNTED) {
    lines.push(
      row(
        fn === "poll" ? "poll runs (scheduled)" : `${fn} invocations`,
        results.map((r) => String(r.invocations[fn]?.count ?? 0)),
      ),
    );
    if (fn === "poll") continue;
    lines.push(
      row(
        `${fn} mean batch`,
        results.map((r) => (r.invocations[fn]?.meanBatch ?? 0).toFixed(2)),
      ),
    );
  }
  lines.push("", row("AWS API calls per source snapshot", []));
  const section = (fn: string, part: Part, label: string) => {
    const ops = [
      ...new Set(
        results.flatMap((r) => r.calls.filter((c) => c.fn === fn && c.part === part).map((c) => c.operation)),
      ),
    ].sort();
    for (const op of ops)
      lines.push(
        row(
          `  ${fn}  ${op}`,
          results.map((r) => num(perSnapshot(r, fn, part, op))),
        ),
      );
    lines.push(
      row(
        `  ${label}`,
        results.map((r) => num(perSnapshot(r, fn, part))),
      ),
    );
  };
  section("replicate", "handler", "replicate total");
  section("copy-completed", "handler", "copy-completed total");
  section("poll", "handler", "poll total");
  lines.push(
    row(
      "copy path total (acceptance: <= 3)",
      results.map((r) => num(r.copyPathPerSnapshot)),
    ),
  );
  lines.push("", row("backup evaluation in copy-completed (registry)", []));
  section("copy-completed", "registry", "copy-completed registry total (separate from the copy path)");
  section("poll", "registry", "poll registry total (separate from the copy path)");
  lines.push(
    row(
      "backups DR-ready (registry ran to the end)",
      results.map((r) => String(r.drReadyBackups)),
    ),
  );
  for (const r of results) {
    const copySnapshot = callsOf(r, "EC2 CopySnapshot");
    const copied = r.sourceSnapshots - r.superseded;
    const ok =
      r.mismatches.length === 0 &&
      copySnapshot === copied &&
      r.copies === copied &&
      r.copiedSources === copied;
    lines.push(
      `cross-check ${r.mode}: CopySnapshot calls ${copySnapshot}, copies in the emulator ${r.copies} ` +
        `(of ${r.copiedSources} distinct sources), ` +
        `source snapshots ${r.sourceSnapshots} of which superseded ${r.superseded}; counted vs emulator's request log: ${
          r.mismatches.length === 0
            ? "all operations equal"
            : r.mismatches.map((m) => `${m.operation} ${m.counted} vs ${m.emulator}`).join(", ")
        } ${ok ? "(ok)" : "(MISMATCH)"}`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      controllers: { type: "string", default: "100" },
      backups: { type: "string", default: "3" },
      mode: { type: "string", default: "both" },
      "copy-delay-ms": { type: "string", default: "300" },
      "poll-ms": { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      "usage: npm run bench:handlers -- [--controllers N] [--backups K] [--mode bursts|trickle|backlog|both|all] [--copy-delay-ms MS] [--poll-ms MS (default: the deployed interval scaled to the copy delay; 0: no poller)] [--json]\n",
    );
    return;
  }
  const modes: Mode[] =
    values.mode === "both"
      ? ["bursts", "trickle"]
      : values.mode === "all"
        ? [...MODES]
        : values.mode.split(",").map((m) => m.trim() as Mode);
  if (!modes.every((m) => MODES.includes(m)))
    throw new Error(`unknown --mode ${values.mode} (bursts, trickle, backlog, both, all)`);
  const options: BenchOptions = {
    controllers: intOption("controllers", values.controllers, 1, 10_000),
    backups: intOption("backups", values.backups, 1, 100),
    modes,
    copyDelayMs: intOption("copy-delay-ms", values["copy-delay-ms"], 1, 60_000),
    ...(values["poll-ms"] === undefined
      ? {}
      : { pollMs: intOption("poll-ms", values["poll-ms"], 0, 60_000) }),
  };
  // EMF goes to stdout and would bury the table, which reports the figures instead.
  process.env.POWERTOOLS_METRICS_DISABLED ??= "true";
  const started = performance.now();
  const results = await runHandlerBench(options);
  const total = (performance.now() - started) / 1000;
  if (values.json)
    process.stdout.write(`${JSON.stringify({ options, results, totalSeconds: total }, null, 2)}\n`);
  else
    process.stdout.write(
      `handler benchmark: ${options.controllers} controllers x ${options.backups} backups, copy delay ${options.copyDelayMs} ms ` +
        `(backlog: x${BACKLOG_SLOWDOWN}), poller every ${options.pollMs ?? scaledPollMs(options.copyDelayMs ?? 300)} ms (scaled likewise), ` +
        `budget ${DEFAULTS.copyBudget}, Velero bucket attached (as the drill)\n${renderTable(results)}\n` +
        `total ${total.toFixed(1)} s (emulator start, setup and every mode)\n`,
    );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
