import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { DescribeSnapshotsCommand, EC2Client } from "@aws-sdk/client-ec2";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { DynamoDBDocumentClient, ScanCommand } from "@aws-sdk/lib-dynamodb";
import { DEFAULTS, type VeleroConfig } from "../functions/core/config.js";
import { SOURCE_SNAPSHOT_TAG, VELERO_BACKUP_TAG, VELERO_PV_TAG } from "../functions/core/model.js";
import type { Clock } from "../functions/core/ports.js";
import { buildStatus } from "../functions/core/status.js";
import { gunzipJson, parseVolumeInfo, parseVolumeSnapshots } from "../functions/core/velero.js";
import { intOption } from "./cli.js";
import { type FailoverRunSummary, runFailoverDrill } from "./drill-failover.js";
import { type Moto, startMoto } from "./moto.js";
import { SimulatedPrimary } from "./primary.js";
import { type AgeSample, renderReport } from "./report.js";
import { LOCAL_CREDENTIALS, LocalPlane } from "./runtime.js";
import { SimulatedVelero } from "./velero.js";

/** The drill's simulated time: backups 15 minutes apart, copies taking a few minutes. */
class DrillClock implements Clock {
  constructor(private t: number) {}
  now(): Date {
    return new Date(this.t);
  }
  set(t: number): void {
    this.t = t;
  }
}

const DRILL_VELERO: VeleroConfig = {
  bucket: "velero-backups-failover",
  prefix: "",
  // The primary's location is the whole of its bucket (no prefix), so the failover metadata has a
  // bucket of its own: nothing may sit beside backups/ at the top of a location (config.ts).
  failoverBucket: "velero-dr-failover-metadata",
  failoverPrefix: "failover",
  zoneMap: { "us-east-1a": "us-west-2a", "us-east-1b": "us-west-2b", "us-east-1c": "us-west-2c" },
  allowedWarnings: 0,
  combinedIds: false,
};
const SCHEDULE_MINUTES = 15;
const COPY_MINUTES = 3;

export interface DrillOptions {
  controllers: number;
  backups: number;
  budget: number;
  copyDelayMs: number;
  endpoint?: string;
  schedule: string;
  /**
   * How many controllers' volumes Velero snapshots through CSI (the first ones), the rest natively
   * (velero-plugin-for-aws). Default 0.
   */
  csi?: number;
  /** Where the HTML report goes (default .build/drill-report.html). */
  reportPath?: string;
}

export interface DrillSummary {
  controllers: number;
  backupsTaken: number;
  /** Every backup's source snapshots, native and CSI. */
  sourceSnapshots: number;
  /** Of those, taken by the EBS CSI driver (Velero's CSI support), and their copies. */
  csiSnapshots: number;
  csiCopies: number;
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
  /** Backups registered from Velero's bucket. */
  backups: number;
  drReadyBackups: number;
  notReady: Array<{ backup: string; reason: string }>;
  recoveryPointAgeSeconds: number | null;
  rpoTargetSeconds: number;
  /** Objects under the failover prefix (what the standby cluster's read-only location reads). */
  failoverMetadataObjects: number;
  /** Records of the published snapshot lists, and those naming a completed copy of their own PV. */
  failoverRecords: number;
  failoverRecordsVerified: number;
  report: string;
  /** A failover drill through the local runner: everything but the DNS switch, node group scaled back. */
  drill: FailoverRunSummary;
  /** Then a real failover: the record's alias ends on the failover load balancer. */
  failover: FailoverRunSummary;
  /** The standby cluster's Kubernetes API, a local stand-in (it says so). */
  standIn: string;
  /** The record's alias targets before (the primary load balancer) and after a failover. */
  primaryTarget: string;
  failoverTarget: string;
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
    const clock = new DrillClock(Math.floor(Date.now() / 1000) * 1000); // Velero keeps whole seconds
    const plane = await LocalPlane.create({
      endpoint,
      config: {
        copyBudget: o.budget,
        velero: {
          ...DRILL_VELERO,
          bucket: `${DRILL_VELERO.bucket}-${Date.now()}`,
          failoverBucket: `${DRILL_VELERO.failoverBucket}-${Date.now()}`,
        },
      },
      copyDelayMs: o.copyDelayMs,
      prefix: `velero-dr-drill-${Date.now()}`,
      clock,
    });
    const velero = plane.rt.config.velero ?? DRILL_VELERO;
    const bucket = new SimulatedVelero(plane.clients.s3, velero);
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
    const base = clock.now().getTime();
    const samples: AgeSample[] = [];
    const sample = async () => {
      const r = buildStatus(await plane.rt.ledger.listBackups(100), [], {
        now: clock.now(),
        rpoTargetMinutes: plane.rt.config.rpoTargetMinutes,
        budget: o.budget,
      });
      const rp = r.recoveryPoint;
      samples.push({
        t: clock.now().toISOString(),
        ageSeconds: rp.backup === null ? null : rp.ageSeconds,
        backup: rp.backup,
      });
    };
    await sample();
    for (let k = 0; k < o.backups; k++) {
      const at = base + k * SCHEDULE_MINUTES * 60_000;
      clock.set(at - 1000);
      if (k > 0) await sample();
      clock.set(at);
      const stamp = new Date(at).toISOString().replace(/[-:T]/g, "").slice(0, 14);
      const name = `${o.schedule}-${stamp}`;
      const csiCount = Math.min(o.csi ?? 0, primary.controllers.length);
      const native = await primary.takeBackup(name, {
        schedule: o.schedule,
        controllers: primary.controllers.slice(csiCount),
      });
      const csi = await primary.takeCsiSnapshots(name, primary.controllers.slice(0, csiCount));
      const snaps = [...native, ...csi];
      clock.set(at + 90_000);
      await bucket.writeBackup(
        {
          name,
          schedule: o.schedule,
          start: new Date(at),
          controllers: primary.controllers,
          methods: [...native.map(() => "native" as const), ...csi.map(() => "csi" as const)],
        },
        snaps,
        "us-east-1a",
      );
      clock.set(at + COPY_MINUTES * 60_000);
      await plane.drain();
      await sample();
      const b = await plane.rt.ledger.getBackup(name);
      log(
        `backup ${name}: ${snaps.length} snapshots copied to ${failoverRegion}; ${b?.verdict ?? "?"}: ${b?.reason ?? ""}`,
      );
    }
    await plane.settle();
    clock.set(base + o.backups * SCHEDULE_MINUTES * 60_000 - 1000);
    await sample();

    const csiSources = await describeAll(primary.ec2, "CSIVolumeSnapshotName");
    const sources = [...(await describeAll(primary.ec2, VELERO_BACKUP_TAG)), ...csiSources];
    const csiIds = new Set(csiSources.map((s) => s.SnapshotId));
    const ec2F = new EC2Client({ endpoint, region: failoverRegion, credentials: LOCAL_CREDENTIALS });
    const copies = await describeAll(ec2F, SOURCE_SNAPSHOT_TAG);
    const sourceOf = copies.map((c) => c.Tags?.find((t) => t.Key === SOURCE_SNAPSHOT_TAG)?.Value);
    const tagged = copies.filter(
      (c) => c.Tags?.some((t) => t.Key === VELERO_BACKUP_TAG) && c.Tags?.some((t) => t.Key === VELERO_PV_TAG),
    );
    const db = DynamoDBDocumentClient.from(plane.clients.dynamo);
    const items = (await db.send(new ScanCommand({ TableName: plane.rt.config.ledgerTable }))).Items ?? [];
    const count = (status: string) => items.filter((i) => i.sk === "SNAP" && i.status === status).length;
    const registered = await plane.rt.ledger.listBackups(1000);
    const status = buildStatus(registered, [], {
      now: clock.now(),
      rpoTargetMinutes: plane.rt.config.rpoTargetMinutes,
      budget: o.budget,
    });
    const published = await verifyFailoverMetadata(plane, velero, ec2F);
    const failoverPart = await runFailoverDrill(
      { plane, endpoint, clock, primaryRegion, schedule: o.schedule },
      log,
    );
    const summary: DrillSummary = {
      controllers: o.controllers,
      backupsTaken: o.backups,
      sourceSnapshots: sources.length,
      csiSnapshots: csiSources.length,
      csiCopies: sourceOf.filter((id) => csiIds.has(id)).length,
      copies: copies.length,
      duplicateCopies: copies.length - new Set(sourceOf).size,
      superseded: count("superseded"),
      failed: count("failed"),
      waiting: count("waiting"),
      copying: count("copying"),
      taggedCopies: tagged.length,
      maxInFlight: plane.emitter.maxPending,
      budget: o.budget,
      seconds: 0,
      primaryRegion,
      failoverRegion,
      backups: registered.length,
      drReadyBackups: registered.filter((b) => b.drReadyAt).length,
      notReady: registered
        .filter((b) => !b.drReadyAt)
        .map((b) => ({ backup: b.name, reason: b.reason ?? "not evaluated" })),
      recoveryPointAgeSeconds: status.recoveryPoint.backup === null ? null : status.recoveryPoint.ageSeconds,
      rpoTargetSeconds: status.rpoTargetSeconds,
      ...published,
      report: resolve(o.reportPath ?? ".build/drill-report.html"),
      ...failoverPart,
    };
    summary.seconds = Math.round((performance.now() - started) / 10) / 100;
    mkdirSync(dirname(summary.report), { recursive: true });
    writeFileSync(
      summary.report,
      renderReport({
        title: `Velero DR drill: ${primaryRegion} -> ${failoverRegion}`,
        rpoTargetSeconds: status.rpoTargetSeconds,
        samples,
        backups: status.backups.map((b) => ({ name: b.name, verdict: b.verdict, reason: b.reason })),
        summary: { ...summary },
      }),
    );
    return summary;
  } finally {
    await moto?.stop();
  }
}

/**
 * Reads the published failover metadata the way Velero's restore does: every record's
 * providerSnapshotID must name a completed copy in the failover region whose velero.io/pv tag is
 * the record's PV.
 */
async function verifyFailoverMetadata(plane: LocalPlane, velero: VeleroConfig, ec2F: EC2Client) {
  const list = await plane.clients.s3.send(
    new ListObjectsV2Command({ Bucket: velero.failoverBucket, Prefix: `${velero.failoverPrefix}/` }),
  );
  const keys = (list.Contents ?? []).map((c) => c.Key ?? "");
  let failoverRecords = 0;
  let failoverRecordsVerified = 0;
  const native = (k: string) =>
    k.endsWith("-volumesnapshots.json.gz") && !k.endsWith("-csi-volumesnapshots.json.gz");
  for (const key of keys.filter(native)) {
    const o = await plane.clients.s3.send(new GetObjectCommand({ Bucket: velero.failoverBucket, Key: key }));
    const records = parseVolumeSnapshots(
      gunzipJson((await o.Body?.transformToByteArray()) ?? new Uint8Array(), key),
    );
    const ids = records.map((r) => r.providerSnapshotID ?? "");
    const found = await ec2F.send(
      new DescribeSnapshotsCommand({ Filters: [{ Name: "snapshot-id", Values: ids }] }),
    );
    const byId = new Map((found.Snapshots ?? []).map((c) => [c.SnapshotId, c]));
    for (const r of records) {
      failoverRecords++;
      const c = byId.get(r.providerSnapshotID ?? "");
      const pv = c?.Tags?.find((t) => t.Key === VELERO_PV_TAG)?.Value;
      if (
        c?.State === "completed" &&
        pv === r.persistentVolumeName &&
        r.volumeAZ?.startsWith(plane.rt.config.failoverRegion)
      ) {
        failoverRecordsVerified++;
      }
    }
  }
  // CSI volumes: each handle in the published volumeinfo must be a completed copy of that PV in the
  // failover region (a CSI volume is re-provisioned from its VolumeSnapshot: no zone in the records).
  for (const key of keys.filter((k) => k.endsWith("-volumeinfo.json.gz"))) {
    const o = await plane.clients.s3.send(new GetObjectCommand({ Bucket: velero.failoverBucket, Key: key }));
    const csi = parseVolumeInfo(
      gunzipJson((await o.Body?.transformToByteArray()) ?? new Uint8Array(), key),
    ).filter((e) => e.backupMethod === "CSISnapshot" && !e.snapshotDataMoved);
    if (csi.length === 0) continue;
    const found = await ec2F.send(
      new DescribeSnapshotsCommand({
        Filters: [{ Name: "snapshot-id", Values: csi.map((e) => e.csiSnapshot?.snapshotHandle ?? "") }],
      }),
    );
    const byId = new Map((found.Snapshots ?? []).map((c) => [c.SnapshotId, c]));
    for (const e of csi) {
      failoverRecords++;
      const c = byId.get(e.csiSnapshot?.snapshotHandle ?? "");
      const pv = c?.Tags?.find((t) => t.Key === VELERO_PV_TAG)?.Value;
      if (c?.State === "completed" && pv === e.pvName) failoverRecordsVerified++;
    }
  }
  return { failoverMetadataObjects: keys.length, failoverRecords, failoverRecordsVerified };
}

const target = (dns: string | null, s: DrillSummary) =>
  dns === null
    ? "unknown"
    : `${dns} (${dns === s.failoverTarget ? "failover" : dns === s.primaryTarget ? "primary" : "other"} load balancer)`;

function runLine(r: FailoverRunSummary, s: DrillSummary): string {
  if (r.status !== "SUCCEEDED") return `${r.status}: ${r.failure ?? "see the report"}`;
  const loss = r.dataLossSeconds === null ? "n/a" : `${Math.round(r.dataLossSeconds / 60)} min`;
  return [
    `approved by ${r.approvedBy} over HTTP; backup ${r.backup}, data loss ${loss};`,
    `restore ${r.restoreName} ${r.restorePhase}; node group to ${r.nodegroupDesired}, now ${r.nodegroupDesiredAfter};`,
    `DNS on ${target(r.dnsTarget, s)}; RTO ${r.rtoSeconds} s`,
  ].join("\n                           ");
}

const stepLine = (r: FailoverRunSummary) =>
  Object.entries(r.stepSeconds)
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(", ");

function render(s: DrillSummary): string {
  const ok =
    s.copies === s.sourceSnapshots &&
    s.duplicateCopies === 0 &&
    s.failed === 0 &&
    s.drReadyBackups === s.backups &&
    s.failoverRecordsVerified === s.failoverRecords;
  return [
    "",
    `Velero DR drill: ${s.primaryRegion} -> ${s.failoverRegion}`,
    `  controllers              ${s.controllers}`,
    `  backups taken            ${s.backupsTaken}`,
    `  source snapshots         ${s.sourceSnapshots}  (of which CSI: ${s.csiSnapshots}, copied: ${s.csiCopies})`,
    `  copies in failover       ${s.copies}  (duplicates: ${s.duplicateCopies}, tagged with backup+pv: ${s.taggedCopies})`,
    `  superseded / failed      ${s.superseded} / ${s.failed}`,
    `  still waiting / copying  ${s.waiting} / ${s.copying}`,
    `  max copies in flight     ${s.maxInFlight}  (budget ${s.budget}, AWS limit 20)`,
    `  backups registered       ${s.backups}  (DR-ready: ${s.drReadyBackups}${s.notReady.length ? `; not ready: ${s.notReady.map((n) => `${n.backup}: ${n.reason}`).join("; ")}` : ""})`,
    `  recovery point age       ${s.recoveryPointAgeSeconds === null ? "NONE" : `${Math.round(s.recoveryPointAgeSeconds / 60)} min`}  (target ${s.rpoTargetSeconds / 60} min, drill time)`,
    `  failover metadata        ${s.failoverMetadataObjects} objects; ${s.failoverRecordsVerified} of ${s.failoverRecords} PV records and CSI handles resolve to a completed copy of their PV`,
    `  standby Kubernetes API   ${s.standIn}`,
    `  failover drill           ${runLine(s.drill, s)}`,
    `  failover                 ${runLine(s.failover, s)}`,
    `  failover step times      ${stepLine(s.failover)}`,
    `  report                   ${s.report}`,
    `  took                     ${s.seconds} s`,
    `  verdict                  ${ok ? "every snapshot has exactly one copy; every backup is DR-ready" : "INCOMPLETE: see above"}`,
  ].join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      controllers: { type: "string", default: "20" },
      csi: { type: "string", default: "5" },
      backups: { type: "string", default: "3" },
      budget: { type: "string", default: String(DEFAULTS.copyBudget) },
      "copy-delay-ms": { type: "string", default: "300" },
      endpoint: { type: "string" },
      schedule: { type: "string", default: "cbci-dr" },
      report: { type: "string", default: ".build/drill-report.html" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      "usage: npm start -- [--controllers N] [--csi C] [--backups K] [--budget B] [--copy-delay-ms MS] [--endpoint URL] [--report FILE] [--json]\n",
    );
    return;
  }
  const endpoint = values.endpoint ?? process.env.AWS_ENDPOINT_URL;
  const options: DrillOptions = {
    controllers: intOption("controllers", values.controllers, 1, 1000),
    csi: intOption("csi", values.csi, 0, 1000),
    backups: intOption("backups", values.backups, 1, 100),
    budget: intOption("budget", values.budget, 1, 20),
    copyDelayMs: intOption("copy-delay-ms", values["copy-delay-ms"], 0, 60_000),
    schedule: values.schedule,
    reportPath: values.report,
    ...(endpoint ? { endpoint } : {}),
  };
  const summary = await runDrill(options, values.json ? () => {} : (l) => process.stdout.write(`${l}\n`));
  process.stdout.write(values.json ? `${JSON.stringify(summary)}\n` : `${render(summary)}\n`);
  if (summary.copies !== summary.sourceSnapshots - summary.superseded - summary.failed) process.exitCode = 1;
  if (summary.drill.status !== "SUCCEEDED" || summary.failover.status !== "SUCCEEDED") process.exitCode = 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.env.POWERTOOLS_METRICS_DISABLED ??= "true";
  main().catch((err: unknown) => {
    process.stderr.write(`drill failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
