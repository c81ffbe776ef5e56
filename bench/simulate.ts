import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AWS_CONCURRENT_COPY_LIMIT, DEFAULTS } from "../functions/core/config.js";
import { MODEL } from "./model.js";
import { type Figures, type RunOptions, simulateDay } from "./run.js";
import { chart } from "./svg.js";

/**
 * `npm run bench`: one simulated day per N, each policy on the same workload, then a table,
 * one SVG chart per N, and with --json one JSON object on the last line. See bench/MODEL.md.
 */
const USAGE = `usage: npm run bench -- [--controllers 100,300,1000] [--hours 24] [--seed 1]
  [--interval-minutes 15] [--warmup-hours 2] [--sweep-minutes 5] [--cold-start]
  [--budget ${DEFAULTS.copyBudget}] [--also-budgets 20] [--poll-seconds ${DEFAULTS.pollSeconds}] [--out docs/bench] [--json]

Ours runs as deployed: --budget (default ${DEFAULTS.copyBudget}, the deployed default, which leaves
${AWS_CONCURRENT_COPY_LIMIT - DEFAULTS.copyBudget} of AWS's ${AWS_CONCURRENT_COPY_LIMIT} slots to other tools) and the copy poller every --poll-seconds
(default ${DEFAULTS.pollSeconds}; 0: off), and again with each of --also-budgets (default 20: the whole quota,
the slots the bound and the naive design have), on the same workload.`;

const { values } = parseArgs({
  options: {
    controllers: { type: "string", default: "100,300,1000" },
    hours: { type: "string", default: "24" },
    seed: { type: "string", default: "1" },
    "interval-minutes": { type: "string", default: "15" },
    "warmup-hours": { type: "string", default: "2" },
    "sweep-minutes": { type: "string", default: "5" },
    "cold-start": { type: "boolean", default: false },
    budget: { type: "string", default: String(DEFAULTS.copyBudget) },
    "also-budgets": { type: "string", default: "20" },
    "poll-seconds": { type: "string", default: String(DEFAULTS.pollSeconds) },
    out: { type: "string", default: "docs/bench" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const num = (name: string, raw: string, min: number) => {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) {
    console.error(`--${name} must be a number >= ${min}, got "${raw}"\n${USAGE}`);
    process.exit(2);
  }
  return n;
};
const controllers = values.controllers.split(",").map((c) => num("controllers", c.trim(), 1));
const base = {
  hours: num("hours", values.hours, 1),
  seed: num("seed", values.seed, 0),
  intervalMinutes: num("interval-minutes", values["interval-minutes"], 1),
  warmupHours: num("warmup-hours", values["warmup-hours"], 0),
  sweepMinutes: num("sweep-minutes", values["sweep-minutes"], 1),
  sampleSeconds: 10,
  warmLineages: !values["cold-start"],
  copyBudget: num("budget", values.budget, 1),
  pollSeconds: num("poll-seconds", values["poll-seconds"], 0),
  alsoBudgets: values["also-budgets"]
    .split(",")
    .filter((b) => b.trim() !== "")
    .map((b) => num("also-budgets", b.trim(), 1)),
};

const oursLabel = (d: Record<string, number> | undefined) =>
  `ours (budget ${d?.copyBudget}, ${d?.pollSeconds ? `poller ${d.pollSeconds} s` : "no poller"})`;

const wall = performance.now();
const all: Figures[] = [];
const also: Figures[] = [];
mkdirSync(values.out, { recursive: true });
for (const n of controllers) {
  const o: RunOptions = { ...base, controllers: n };
  const day = await simulateDay(o);
  all.push(...day.figures);
  also.push(...day.alsoFigures);
  const [naive, ours, bound] = day.runs;
  if (!naive || !ours || !bound) throw new Error("missing run");
  const file = join(values.out, `recovery-point-${n}.svg`);
  writeFileSync(
    file,
    chart({
      title: `Backup-set recovery point age, N = ${n} controllers, backup every ${o.intervalMinutes} min (seed ${o.seed})`,
      hours: o.hours,
      warmupHours: o.warmupHours,
      lines: [
        { label: "naive (copy all, retry 60 s)", color: "#d62728", series: naive.age },
        {
          label: oursLabel(ours.policyDetail),
          color: "#1f77b4",
          series: ours.age,
        },
        ...day.alsoRuns.map((r) => ({
          label: oursLabel(r.policyDetail),
          color: "#2ca02c",
          series: r.age,
        })),
        { label: "lower bound (p99 chain)", color: "#555", dashed: true, series: bound.age },
      ],
    }),
  );
  console.error(
    `N=${n}: ${day.figures.map((f) => `${f.policy} ${f.wallSeconds}s`).join(", ")}; wrote ${file}`,
  );
}

const m = (s: number | null) => (s === null || Number.isNaN(s) ? "-" : (s / 60).toFixed(1));
const header = [
  "N",
  "policy",
  "set p50",
  "set p99",
  "set max",
  "ctl p50",
  "ctl p99",
  "ctl max",
  "p99/bound",
  "ready/h",
  "copies",
  "superseded",
  "quota errs",
  "GiB",
  "bounded",
];
const rank = (f: Figures) => (f.policy === "naive" ? 0 : f.policy === "bound" ? 100 : 50 - f.copyBudget);
const rows = [...all, ...also]
  .sort((a, b) => a.controllers - b.controllers || rank(a) - rank(b))
  .map((f) => {
    const bound = all.find((b) => b.controllers === f.controllers && b.policy === "bound");
    const ratio = bound ? f.p99RecoveryPointAgeSeconds / bound.p99RecoveryPointAgeSeconds : Number.NaN;
    return [
      String(f.controllers),
      f.policy === "scheduler" ? `ours@${f.copyBudget}` : f.policy,
      m(f.p50RecoveryPointAgeSeconds),
      m(f.p99RecoveryPointAgeSeconds),
      m(f.maxRecoveryPointAgeSeconds),
      m(f.p50ControllerRecoveryPointAgeSeconds),
      m(f.p99ControllerRecoveryPointAgeSeconds),
      m(f.maxControllerRecoveryPointAgeSeconds),
      ratio.toFixed(2),
      f.drReadyBackupsPerHour === null ? "-" : String(f.drReadyBackupsPerHour),
      f.copiesMade === null ? "-" : String(f.copiesMade),
      f.copiesSuperseded === null ? "-" : String(f.copiesSuperseded),
      f.quotaErrors === null ? "-" : String(f.quotaErrors),
      f.gibTransferred === null ? "-" : String(f.gibTransferred),
      String(f.bounded),
    ];
  });
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i] ?? 0)).join("  ");
console.log(
  `Recovery point age in minutes ("set": newest backup with every copy completed; "ctl": each controller's newest copied snapshot, pooled),` +
    ` sampled every 10 s over hours ${base.warmupHours}-${base.hours} (the first ${base.warmupHours} h are warm-up).` +
    ` ${base.warmLineages ? "Lineages start warm (each volume already has one copy)." : "Cold start: every lineage's first copy is full."}` +
    ` Counts cover the whole day. Bound row: lower bounds on each policy's p50/p99/max (chain bound: fluid relaxation of the 20-copy quota along any one sequence of recovery points).`,
);
console.log(line(header));
for (const r of rows) console.log(line(r));
for (const f of all.filter((x) => x.policy === "bound")) {
  console.log(
    `N=${f.controllers}: pointwise bound (each instant its own chain) p50 ${m(f.pointwiseP50RecoveryPointAgeSeconds)} / p99 ${m(f.pointwiseP99RecoveryPointAgeSeconds)} / max ${m(f.pointwiseMaxRecoveryPointAgeSeconds)} min;` +
      ` single-chain fluid reference (20 slots, no latency; not a bound) p50 ${m(f.fluidNewestNextP50RecoveryPointAgeSeconds)} / p99 ${m(f.fluidNewestNextP99RecoveryPointAgeSeconds)} min`,
  );
}
const wallSeconds = Math.round((performance.now() - wall) / 10) / 100;
console.log(`wall time ${wallSeconds} s`);
if (values.json) {
  // `runs`: one entry per N and policy; ours at the other budgets beside it.
  console.log(JSON.stringify({ ...base, model: MODEL, wallSeconds, runs: all, alsoBudgetRuns: also }));
}
