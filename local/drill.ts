import { parseArgs } from "node:util";
import { DescribeSnapshotsCommand, EC2Client } from "@aws-sdk/client-ec2";
import { DynamoDBDocumentClient, ScanCommand } from "@aws-sdk/lib-dynamodb";
import { DEFAULTS } from "../functions/core/config.js";
import { SOURCE_SNAPSHOT_TAG, VELERO_BACKUP_TAG, VELERO_PV_TAG } from "../functions/core/model.js";
import { type Moto, startMoto } from "./moto.js";
import { SimulatedPrimary } from "./primary.js";
import { LOCAL_CREDENTIALS, LocalPlane } from "./runtime.js";

export interface DrillOptions {
  controllers: number;
  backups: number;
  budget: number;
  copyDelayMs: number;
  endpoint?: string;
  schedule: string;
}

export interface DrillSummary {
  controllers: number;
  backupsTaken: number;
  sourceSnapshots: number;
  copies: number;
  duplicateCopies: number;
  superseded: number;
  failed: number;
  waiting: number;
  copying: number;
  taggedCopies: number;
  maxInFlight: number;
  budget: number;
  seconds: number;
  primaryRegion: string;
  failoverRegion: string;
}

async function describeAll(ec2: EC2Client, tagKey: string) {
  const out = await ec2.send(
    new DescribeSnapshotsCommand({ OwnerIds: ["self"], Filters: [{ Name: "tag-key", Values: [tagKey] }] }),
  );
  return out.Snapshots ?? [];
}

/**
 * The local drill: a simulated primary region of N controllers takes K Velero backups spaced like
 * a schedule (each one after the previous has replicated), the real handlers replicate them on the
 * emulator, and the summary says what landed in the failover region.
 */
export async function runDrill(
  o: DrillOptions,
  log: (line: string) => void = () => {},
): Promise<DrillSummary> {
  const started = performance.now();
  const moto: Moto | undefined = o.endpoint ? undefined : await startMoto();
  const endpoint = o.endpoint ?? moto?.endpoint ?? "";
  try {
    log(`emulator: ${endpoint}${moto ? " (moto_server started for this drill)" : ""}`);
    const plane = await LocalPlane.create({
      endpoint,
      config: { copyBudget: o.budget },
      copyDelayMs: o.copyDelayMs,
      prefix: `velero-dr-drill-${Date.now()}`,
    });
    const { sourceRegions, failoverRegion } = plane.rt.config;
    const primaryRegion = sourceRegions[0] ?? "us-east-1";
    const primary = new SimulatedPrimary(
      endpoint,
      primaryRegion,
      plane.clients.events,
      plane.resources.busName,
    );
    await primary.addControllers(o.controllers);
    log(`primary ${primaryRegion}: ${o.controllers} controllers, one EBS volume each`);
    const base = Date.now();
    for (let k = 0; k < o.backups; k++) {
      const stamp = new Date(base + k * 15 * 60_000).toISOString().replace(/[-:T]/g, "").slice(0, 14);
      const name = `${o.schedule}-${stamp}`;
      await primary.takeBackup(name, { schedule: o.schedule });
      await plane.drain();
      log(`backup ${name}: ${o.controllers} snapshots taken and replicated to ${failoverRegion}`);
    }
    await plane.sweep();
    await plane.drain();

    const sources = await describeAll(primary.ec2, VELERO_BACKUP_TAG);
    const ec2F = new EC2Client({ endpoint, region: failoverRegion, credentials: LOCAL_CREDENTIALS });
    const copies = await describeAll(ec2F, SOURCE_SNAPSHOT_TAG);
    const sourceOf = copies.map((c) => c.Tags?.find((t) => t.Key === SOURCE_SNAPSHOT_TAG)?.Value);
    const tagged = copies.filter(
      (c) => c.Tags?.some((t) => t.Key === VELERO_BACKUP_TAG) && c.Tags?.some((t) => t.Key === VELERO_PV_TAG),
    );
    const db = DynamoDBDocumentClient.from(plane.clients.dynamo);
    const items = (await db.send(new ScanCommand({ TableName: plane.rt.config.ledgerTable }))).Items ?? [];
    const count = (status: string) => items.filter((i) => i.sk === "SNAP" && i.status === status).length;
    return {
      controllers: o.controllers,
      backupsTaken: o.backups,
      sourceSnapshots: sources.length,
      copies: copies.length,
      duplicateCopies: copies.length - new Set(sourceOf).size,
      superseded: count("superseded"),
      failed: count("failed"),
      waiting: count("waiting"),
      copying: count("copying"),
      taggedCopies: tagged.length,
      maxInFlight: plane.emitter.maxPending,
      budget: o.budget,
      seconds: Math.round((performance.now() - started) / 10) / 100,
      primaryRegion,
      failoverRegion,
    };
  } finally {
    await moto?.stop();
  }
}

function render(s: DrillSummary): string {
  const ok = s.copies === s.sourceSnapshots && s.duplicateCopies === 0 && s.failed === 0;
  return [
    "",
    `Velero DR drill: ${s.primaryRegion} -> ${s.failoverRegion}`,
    `  controllers              ${s.controllers}`,
    `  backups taken            ${s.backupsTaken}`,
    `  source snapshots         ${s.sourceSnapshots}`,
    `  copies in failover       ${s.copies}  (duplicates: ${s.duplicateCopies}, tagged with backup+pv: ${s.taggedCopies})`,
    `  superseded / failed      ${s.superseded} / ${s.failed}`,
    `  still waiting / copying  ${s.waiting} / ${s.copying}`,
    `  max copies in flight     ${s.maxInFlight}  (budget ${s.budget}, AWS limit 20)`,
    `  took                     ${s.seconds} s`,
    `  verdict                  ${ok ? "every snapshot has exactly one copy" : "INCOMPLETE: see above"}`,
  ].join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      controllers: { type: "string", default: "20" },
      backups: { type: "string", default: "3" },
      budget: { type: "string", default: String(DEFAULTS.copyBudget) },
      "copy-delay-ms": { type: "string", default: "300" },
      endpoint: { type: "string" },
      schedule: { type: "string", default: "cbci-dr" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      "usage: npm start -- [--controllers N] [--backups K] [--budget B] [--copy-delay-ms MS] [--endpoint URL] [--json]\n",
    );
    return;
  }
  const int = (name: string, v: string, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new Error(`--${name} must be an integer ${min}..${max}, got "${v}"`);
    return n;
  };
  const endpoint = values.endpoint ?? process.env.AWS_ENDPOINT_URL;
  const options: DrillOptions = {
    controllers: int("controllers", values.controllers, 1, 1000),
    backups: int("backups", values.backups, 1, 100),
    budget: int("budget", values.budget, 1, 20),
    copyDelayMs: int("copy-delay-ms", values["copy-delay-ms"], 0, 60_000),
    schedule: values.schedule,
    ...(endpoint ? { endpoint } : {}),
  };
  const summary = await runDrill(options, values.json ? () => {} : (l) => process.stdout.write(`${l}\n`));
  process.stdout.write(values.json ? `${JSON.stringify(summary)}\n` : `${render(summary)}\n`);
  if (summary.copies !== summary.sourceSnapshots - summary.superseded - summary.failed) process.exitCode = 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.env.POWERTOOLS_METRICS_DISABLED ??= "true";
  main().catch((err: unknown) => {
    process.stderr.write(`drill failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
