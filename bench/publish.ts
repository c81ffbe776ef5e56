/**
 * Publishing a large backup: peak memory and time of one publication through the real adapter.
 *
 *   npm run bench:publish -- [--resources 50000] [--item-bytes 4400] [--volumes 20] [--in-memory] [--json]
 *
 * On the emulator (stock threaded moto_server: only S3 is used, and the tarball is read while its
 * rewrite is uploaded), writes a Velero backup of `--resources` items (a namespace, a PVC and a PV
 * per volume, the rest Secrets holding `--item-bytes` random bytes each, base64 as Kubernetes
 * stores them; every item twice in the tarball, under its group directory and again under
 * `v1-preferredversion`, as Velero writes it), its tarball streamed up gzipped (Go's default level,
 * as Velero), with the snapshot list, volumeinfo, logs and the rest as local/velero-files.ts
 * writes them. Then one child process, bundled as the stack bundles a handler and run by Node 22,
 * registers the backup with every snapshot copied and publishes it (functions/core/registry.ts
 * through functions/adapters/s3-velero.ts), and reports its RSS high-water mark, CPU and time.
 * The published tarball is read back, each PV object checked to be in a failover zone.
 * `--in-memory` also measures what publishing did before (every file read whole, the tarball
 * gunzipped and rewritten in memory), for comparison.
 * Prints JSON (--json) or a short summary.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import { createGzip } from "node:zlib";
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { S3UploadSink } from "../functions/adapters/s3-upload.js";
import type { VeleroConfig } from "../functions/core/config.js";
import { TarRewriteStream } from "../functions/core/velero-rewrite.js";
import { intOption } from "../local/cli.js";
import { startMoto } from "../local/moto.js";
import { LOCAL_CREDENTIALS } from "../local/runtime.js";
import {
  backupFiles,
  goJson,
  goTar,
  persistentVolume,
  persistentVolumeClaim,
  type TarEntry,
  type VeleroPv,
} from "../local/velero-files.js";
import { sstBuildOptions, sstEsbuild } from "../stacks/functions.js";
import type { ChildInput, ChildResult } from "./publish-child.js";

const SOURCE_REGION = "us-east-1";
const FAILOVER_REGION = "us-west-2";
const NAMESPACE = "cbci";
const BACKUP = "cbci-dr-20261127120000";
const ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"];
const ZONE_MAP: Record<string, string> = {
  "us-east-1a": "us-west-2a",
  "us-east-1b": "us-west-2b",
  "us-east-1c": "us-west-2c",
};
const VELERO: VeleroConfig = {
  bucket: "velero-bench",
  prefix: "cbci",
  failoverBucket: "velero-bench-failover",
  failoverPrefix: "cbci-failover",
  zoneMap: ZONE_MAP,
  allowedWarnings: 0,
  combinedIds: false,
};
const MTIME = new Date("2026-11-27T12:00:30Z");
const MiB = 1024 * 1024;
const mib = (bytes: number) => Math.round((bytes / MiB) * 10) / 10;
const hex = (i: number, width: number) => i.toString(16).padStart(width, "0");

interface Options {
  resources: number;
  itemBytes: number;
  volumes: number;
  inMemory: boolean;
}

function volumes(n: number): VeleroPv[] {
  return Array.from({ length: n }, (_, i) => ({
    name: `pvc-${hex(i, 8)}-0000-4000-a000-000000000000`,
    claim: `jenkins-home-mc-${i + 1}-0`,
    zone: ZONES[i % ZONES.length] ?? "us-east-1a",
    volumeId: `vol-${hex(i, 17)}`,
    sourceSnapshotId: `snap-0a${hex(i, 15)}`,
    kind: i % 4 === 3 ? "in-tree" : "csi",
    volumeType: "gp3",
    iops: 3000,
    size: "50Gi",
  }));
}

/** One item's two entries (group directory, then `v1-preferredversion`), as Go's archive/tar writes them. */
function item(resource: string, namespace: string | null, name: string, obj: unknown): Buffer {
  const scope = namespace === null ? "cluster" : `namespaces/${namespace}`;
  const data = Buffer.from(goJson(obj));
  const entries: TarEntry[] = [
    { name: `resources/${resource}/${scope}/${name}.json`, data },
    { name: `resources/${resource}/v1-preferredversion/${scope}/${name}.json`, data },
  ];
  const tar = goTar(entries, MTIME);
  return tar.subarray(0, tar.length - 1024); // without the end-of-archive blocks
}

/** The tarball, item by item: never held whole. */
function* tarball(o: Options, pvs: readonly VeleroPv[]): Generator<Buffer> {
  const version = goTar([{ name: "metadata/version", data: Buffer.from("1.1.0") }], MTIME);
  yield version.subarray(0, version.length - 1024);
  yield item("namespaces", null, NAMESPACE, {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: NAMESPACE },
  });
  for (const p of pvs) {
    yield item("persistentvolumeclaims", NAMESPACE, p.claim, persistentVolumeClaim(p, NAMESPACE));
    yield item("persistentvolumes", null, p.name, persistentVolume(p, SOURCE_REGION, NAMESPACE));
  }
  const secrets = o.resources - 1 - 2 * pvs.length;
  for (let i = 0; i < secrets; i++) {
    const name = `secret-${hex(i, 6)}`;
    yield item("secrets", NAMESPACE, name, {
      apiVersion: "v1",
      data: { "payload.bin": randomBytes(o.itemBytes).toString("base64") },
      kind: "Secret",
      metadata: { name, namespace: NAMESPACE, uid: `${hex(i, 8)}-0000-4000-a000-000000000001` },
      type: "Opaque",
    });
  }
  yield Buffer.alloc(1024);
}

/** Counts what passes. */
function counter(): { stream: Writable; bytes: () => number } {
  let n = 0;
  const stream = new Writable({
    write(chunk: Buffer, _e, cb) {
      n += chunk.length;
      cb();
    },
  });
  return { stream, bytes: () => n };
}

async function writeBackup(s3: S3Client, o: Options, pvs: VeleroPv[]) {
  for (const Bucket of [VELERO.bucket, VELERO.failoverBucket]) {
    await s3.send(
      new CreateBucketCommand({ Bucket, CreateBucketConfiguration: { LocationConstraint: FAILOVER_REGION } }),
    );
  }
  const dir = `${VELERO.prefix}/backups/${BACKUP}/`;
  const start = new Date(Date.now() - 5 * 60_000);
  const { [`${BACKUP}.tar.gz`]: _, ...small } = backupFiles({
    name: BACKUP,
    namespace: NAMESPACE,
    schedule: "cbci-dr",
    phase: "Completed",
    start,
    completion: new Date(start.getTime() + 120_000),
    ttlMinutes: 720,
    region: SOURCE_REGION,
    pvs,
    totalItems: o.resources,
  });
  const began = performance.now();
  let tarBytes = 0;
  const source = Readable.from(
    (function* () {
      for (const b of tarball(o, pvs)) {
        tarBytes += b.length;
        yield b;
      }
    })(),
  );
  const sink = new S3UploadSink(s3, VELERO.bucket, `${dir}${BACKUP}.tar.gz`);
  await pipeline(source, createGzip(), sink);
  await sink.complete();
  // velero-backup.json last, as Velero does
  const files = Object.entries(small).sort(
    ([a], [b]) => Number(a === "velero-backup.json") - Number(b === "velero-backup.json"),
  );
  for (const [file, Body] of files) {
    await s3.send(new PutObjectCommand({ Bucket: VELERO.bucket, Key: `${dir}${file}`, Body }));
  }
  return {
    tarBytes,
    tarballBytes: sink.bytes,
    files: files.length + 1,
    seconds: (performance.now() - began) / 1000,
  };
}

/** Reads the published tarball back as a stream: its entries, and its PV objects' zones. */
async function verify(s3: S3Client, pvs: readonly VeleroPv[]) {
  const key = `${VELERO.failoverPrefix}/backups/${BACKUP}/${BACKUP}.tar.gz`;
  const head = await s3.send(new HeadObjectCommand({ Bucket: VELERO.failoverBucket, Key: key }));
  const out = await s3.send(new GetObjectCommand({ Bucket: VELERO.failoverBucket, Key: key }));
  const failoverZones = new Set(Object.values(ZONE_MAP));
  let pvObjects = 0;
  let inFailoverZone = 0;
  const check = new TarRewriteStream({
    wants: (name) => name.startsWith("resources/persistentvolumes/"),
    edit(_name, data) {
      const pv = JSON.parse(data.toString("utf8")) as { metadata: { labels?: Record<string, string> } };
      const labels = pv.metadata.labels ?? {};
      const zone = labels["topology.kubernetes.io/zone"] ?? labels["failure-domain.beta.kubernetes.io/zone"];
      pvObjects++;
      if (zone && failoverZones.has(zone)) inFailoverZone++;
      return undefined;
    },
  });
  const { createGunzip } = await import("node:zlib");
  await pipeline(out.Body as Readable, createGunzip(), check, counter().stream);
  if (pvObjects !== 2 * pvs.length || inFailoverZone !== pvObjects) {
    throw new Error(
      `published tarball: ${inFailoverZone} of ${pvObjects} PV objects in a failover zone, expected ${2 * pvs.length}`,
    );
  }
  return { bytes: head.ContentLength ?? 0, entries: check.entries, pvObjects };
}

async function bundleChild(): Promise<string> {
  const outfile = path.join(process.cwd(), ".build/bench/publish-child.mjs");
  mkdirSync(path.dirname(outfile), { recursive: true });
  await sstEsbuild().build({ ...sstBuildOptions("bench/publish-child.ts"), outfile, write: true });
  return outfile;
}

function runChild(bundle: string, input: ChildInput): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bundle], {
      env: { ...process.env, BENCH_PUBLISH_INPUT: JSON.stringify(input) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`publish child (${input.mode}) exited with ${code}`));
      try {
        resolve(JSON.parse(out.trim().split("\n").at(-1) ?? "") as ChildResult);
      } catch (err) {
        reject(err);
      }
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      resources: { type: "string", default: "50000" },
      "item-bytes": { type: "string", default: "4400" },
      volumes: { type: "string", default: "20" },
      "in-memory": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  const volumeCount = intOption("volumes", values.volumes, 1, 1000);
  const o: Options = {
    resources: intOption("resources", values.resources, 2 * volumeCount + 2, 10_000_000),
    itemBytes: intOption("item-bytes", values["item-bytes"], 0, 1_000_000),
    volumes: volumeCount,
    inMemory: values["in-memory"],
  };
  const pvs = volumes(o.volumes);
  const bundle = await bundleChild();
  const moto = await startMoto({ threaded: true });
  try {
    const s3 = new S3Client({
      endpoint: moto.endpoint,
      region: FAILOVER_REGION,
      credentials: LOCAL_CREDENTIALS,
      forcePathStyle: true,
    });
    const written = await writeBackup(s3, o, pvs);
    const input: ChildInput = {
      endpoint: moto.endpoint,
      velero: VELERO,
      backup: BACKUP,
      sourceRegion: SOURCE_REGION,
      failoverRegion: FAILOVER_REGION,
      copies: pvs.map((p, i) => [p.sourceSnapshotId, `snap-0c${hex(i, 15)}`]),
      mode: "stream",
    };
    const streamed = await runChild(bundle, input);
    const published = await verify(s3, pvs);
    const inMemory = o.inMemory ? await runChild(bundle, { ...input, mode: "in-memory" }) : undefined;
    const report = {
      backup: {
        resources: o.resources,
        tarEntries: published.entries,
        volumes: o.volumes,
        files: written.files,
        tarballMiB: mib(written.tarballBytes),
        tarMiB: mib(written.tarBytes),
        writeSeconds: Math.round(written.seconds * 10) / 10,
      },
      publish: streamed,
      published: { tarballMiB: mib(published.bytes), pvObjectsInFailoverZone: published.pvObjects },
      ...(inMemory ? { inMemory } : {}),
      machine: { cpus: os.cpus().length, node: process.version, emulator: "moto_server (threaded)" },
    };
    if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else {
      process.stdout.write(
        `${o.resources} resources, tarball ${report.backup.tarballMiB} MiB gzip (${report.backup.tarMiB} MiB tar): ` +
          `published in ${streamed.seconds} s (${streamed.cpuSeconds} s CPU), peak RSS ${streamed.peakRssMiB} MiB ` +
          `(${streamed.baselineRssMiB} MiB before)` +
          (inMemory ? `; in memory: ${inMemory.seconds} s, peak RSS ${inMemory.peakRssMiB} MiB` : "") +
          "\n",
      );
    }
  } finally {
    await moto.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:publish: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
