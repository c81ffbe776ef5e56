/**
 * One publication, measured from inside its own process (bench/publish.ts bundles this file the
 * way the stack bundles a handler and runs it with Node 22): the register function's path, from
 * the bucket's files to the failover copy, through the real S3 adapter, codec and registry, with
 * a ledger in memory that says every snapshot has a completed copy. Prints one JSON line.
 *
 * `--mode in-memory` instead does what publishing did before streaming: every file of the backup
 * read whole, the in-memory rewrite (functions/core/velero.ts), the changed files put whole.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { S3VeleroBucket } from "../functions/adapters/s3-velero.js";
import { veleroCodec } from "../functions/app/velero-codec.js";
import type { BackupState } from "../functions/core/backup.js";
import type { ReplicationConfig, VeleroConfig } from "../functions/core/config.js";
import type { SnapshotRecord } from "../functions/core/model.js";
import type { BackupLedger, StoredBackup } from "../functions/core/ports.js";
import { BackupRegistry } from "../functions/core/registry.js";
import { rewriteBackupFileSet } from "../functions/core/velero.js";

export interface ChildInput {
  endpoint: string;
  velero: VeleroConfig;
  backup: string;
  sourceRegion: string;
  failoverRegion: string;
  /** Source snapshot id -> its copy's id. */
  copies: [string, string][];
  mode: "stream" | "in-memory";
}

export interface ChildResult {
  mode: ChildInput["mode"];
  verdict: string;
  seconds: number;
  /** User + system CPU time of the publication. */
  cpuSeconds: number;
  /** RSS once loaded and wired, before the publication (what any invocation holds). */
  baselineRssMiB: number;
  /** The process's RSS high-water mark (getrusage's maxrss), and the largest RSS sampled. */
  peakRssMiB: number;
  peakHeapUsedMiB: number;
  peakArrayBuffersMiB: number;
}

const MiB = 1024 * 1024;
const mib = (bytes: number) => Math.round((bytes / MiB) * 10) / 10;

/** The backups half of the ledger, in memory: every snapshot asked about has completed its copy. */
function memoryLedger(input: ChildInput): BackupLedger {
  const backups = new Map<string, StoredBackup>();
  const copyOf = new Map(input.copies);
  return {
    async registerBackup(b: BackupState) {
      backups.set(b.name, { ...backups.get(b.name), ...b });
      return "updated";
    },
    async getBackup(name) {
      return backups.get(name);
    },
    async getSnapshots(ids) {
      const out = new Map<string, SnapshotRecord>();
      for (const id of ids) {
        const copy = copyOf.get(id);
        if (!copy) continue;
        out.set(id, {
          sourceSnapshotId: id,
          sourceRegion: input.sourceRegion,
          volumeId: "vol-00000000000000000",
          backup: input.backup,
          startTime: new Date().toISOString(),
          status: "completed",
          tags: {},
          attempts: 0,
          copySnapshotId: copy,
        });
      }
      return out;
    },
    async recordVerdict(name, e, at, published) {
      const b = backups.get(name);
      if (!b) return false;
      const first = Boolean(published) && !b.drReadyAt;
      backups.set(name, {
        ...b,
        verdict: e.verdict,
        reason: e.reason,
        evaluatedAt: at,
        ...(published ? { drReadyAt: b.drReadyAt ?? at, failoverPrefix: published.prefix } : {}),
      });
      return first;
    },
    async listBackups() {
      return [...backups.values()];
    },
    async retireBackup() {},
  };
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** What publishing did before streaming (functions/adapters/s3-velero.ts `files` and `publish`). */
async function publishInMemory(s3: S3Client, input: ChildInput): Promise<string> {
  const { velero, backup } = input;
  const dir = (prefix: string) => `${prefix ? `${prefix}/` : ""}backups/${backup}/`;
  const from = dir(velero.prefix);
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: velero.bucket, Prefix: from }));
  const files: Record<string, Uint8Array> = {};
  for (const o of listed.Contents ?? []) {
    const out = await s3.send(new GetObjectCommand({ Bucket: velero.bucket, Key: o.Key }));
    files[(o.Key ?? "").slice(from.length)] = (await out.Body?.transformToByteArray()) ?? new Uint8Array();
  }
  const { replaced } = rewriteBackupFileSet(files, {
    copyOf: new Map(input.copies),
    zoneMap: velero.zoneMap,
    sourceRegion: input.sourceRegion,
    failoverRegion: input.failoverRegion,
    combinedIds: false,
  });
  for (const [file, Body] of Object.entries(replaced)) {
    await s3.send(
      new PutObjectCommand({
        Bucket: velero.failoverBucket,
        Key: `${dir(velero.failoverPrefix)}${file}`,
        Body,
      }),
    );
  }
  return "dr-ready";
}

async function main(): Promise<void> {
  const input = JSON.parse(process.env.BENCH_PUBLISH_INPUT ?? "{}") as ChildInput;
  const s3 = new S3Client({
    endpoint: input.endpoint,
    region: input.failoverRegion,
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    forcePathStyle: true,
  });
  const config = {
    sourceRegions: [input.sourceRegion],
    failoverRegion: input.failoverRegion,
    velero: input.velero,
  } as ReplicationConfig;
  const registry = new BackupRegistry(
    {
      ledger: memoryLedger(input),
      bucket: new S3VeleroBucket(s3, input.velero),
      copier: { deleteCopy: async () => false, listCopies: async () => [] },
      codec: veleroCodec(config),
      clock: { now: () => new Date() },
      log: quiet,
    },
    { allowedWarnings: 0, backupRepositoryReplicated: false },
  );

  const peak = { rss: 0, heap: 0, arrayBuffers: 0 };
  const sample = () => {
    const m = process.memoryUsage();
    peak.rss = Math.max(peak.rss, m.rss);
    peak.heap = Math.max(peak.heap, m.heapUsed);
    peak.arrayBuffers = Math.max(peak.arrayBuffers, m.arrayBuffers);
  };
  const baseline = process.memoryUsage().rss;
  const timer = setInterval(sample, 20);
  const cpu = process.cpuUsage();
  const start = performance.now();
  let verdict: string;
  if (input.mode === "in-memory") verdict = await publishInMemory(s3, input);
  else {
    const out = await registry.register(input.backup);
    verdict = out.status === "registered" ? (out.evaluation?.verdict ?? "none") : out.status;
    if (out.status === "registered" && out.evaluation?.verdict !== "dr-ready") {
      throw new Error(`not published: ${out.evaluation?.reason ?? "no evaluation"}`);
    }
  }
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  clearInterval(timer);
  sample();
  const result: ChildResult = {
    mode: input.mode,
    verdict,
    seconds: Math.round(seconds * 100) / 100,
    cpuSeconds: Math.round((used.user + used.system) / 10_000) / 100,
    baselineRssMiB: mib(baseline),
    peakRssMiB: mib(Math.max(process.resourceUsage().maxRSS * 1024, peak.rss)),
    peakHeapUsedMiB: mib(peak.heap),
    peakArrayBuffersMiB: mib(peak.arrayBuffers),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`publish-child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
