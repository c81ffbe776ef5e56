import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { S3VeleroBucket } from "../../functions/adapters/s3-velero.js";
import { veleroCodec } from "../../functions/app/velero-codec.js";
import type { ReplicationConfig, VeleroConfig } from "../../functions/core/config.js";
import { InvalidBackupError, rewriteBackupFileSet } from "../../functions/core/velero.js";
import { listTarEntries } from "../../functions/core/velero-rewrite.js";
import { type Moto, startMoto } from "../../local/moto.js";
import { LOCAL_CREDENTIALS } from "../../local/runtime.js";
import {
  BACKUP,
  backupFiles,
  COPY_OF,
  FAILOVER_REGION,
  goTar,
  PVS,
  SOURCE_REGION,
  tarEntries,
  ZONE_MAP,
} from "../fixtures/velero/backup.js";

/**
 * Publishing through the real S3 adapter on the emulator: the small files read whole, the tarball
 * streamed (GetObject -> gunzip -> tar rewrite -> gzip -> upload in parts), the rest copied
 * server-side. Stock (threaded) moto: the tarball is read while its rewrite is uploaded (S3 only).
 */
let moto: Moto;
beforeAll(async () => {
  moto = await startMoto({ threaded: true });
});
afterAll(async () => {
  await moto?.stop();
});
beforeEach(async () => {
  await moto.reset();
});

const VELERO: VeleroConfig = {
  bucket: "velero-publish-test",
  prefix: "cbci",
  failoverBucket: "velero-publish-test",
  failoverPrefix: "cbci-failover",
  zoneMap: ZONE_MAP,
  allowedWarnings: 0,
  combinedIds: false,
};
const CONFIG = {
  sourceRegions: [SOURCE_REGION],
  failoverRegion: FAILOVER_REGION,
  velero: VELERO,
} as ReplicationConfig;
const OPTIONS = {
  copyOf: COPY_OF,
  zoneMap: ZONE_MAP,
  sourceRegion: SOURCE_REGION,
  failoverRegion: FAILOVER_REGION,
};
const FROM = `cbci/backups/${BACKUP}/`;
const TO = `cbci-failover/backups/${BACKUP}/`;
const TARBALL = `${BACKUP}.tar.gz`;
const PART = 5 * 1024 * 1024;

/** An S3 client that records each operation and the key it named, in order. */
function client(): { s3: S3Client; calls: string[] } {
  const s3 = new S3Client({
    endpoint: moto.endpoint,
    region: FAILOVER_REGION,
    credentials: LOCAL_CREDENTIALS,
    forcePathStyle: true,
  });
  const calls: string[] = [];
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Key?: string };
      calls.push(`${context.commandName?.replace(/Command$/, "")} ${input.Key ?? ""}`);
      return next(args);
    },
    { step: "initialize", name: "recordCalls" },
  );
  return { s3, calls };
}

async function store(s3: S3Client, files: Record<string, Buffer>): Promise<void> {
  await s3.send(
    new CreateBucketCommand({
      Bucket: VELERO.bucket,
      CreateBucketConfiguration: { LocationConstraint: FAILOVER_REGION },
    }),
  );
  for (const [file, Body] of Object.entries(files)) {
    await s3.send(new PutObjectCommand({ Bucket: VELERO.bucket, Key: `${FROM}${file}`, Body }));
  }
}

async function read(s3: S3Client, key: string): Promise<Buffer> {
  const out = await s3.send(new GetObjectCommand({ Bucket: VELERO.bucket, Key: key }));
  return Buffer.from((await out.Body?.transformToByteArray()) ?? []);
}

async function keys(s3: S3Client, prefix: string): Promise<string[]> {
  const out = await s3.send(new ListObjectsV2Command({ Bucket: VELERO.bucket, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key ?? "").sort();
}

/** What the registry does to publish (functions/core/registry.ts, `publish`). */
async function publish(s3: S3Client, copyOf = COPY_OF) {
  const bucket = new S3VeleroBucket(s3, VELERO, { partBytes: PART });
  const codec = veleroCodec(CONFIG);
  const files = await bucket.files(BACKUP, codec.rewriteInputs(BACKUP));
  const { replaced, tarball } = codec.rewrite(BACKUP, files, copyOf, SOURCE_REGION);
  return bucket.publish(BACKUP, replaced, tarball);
}

/** The fixture's backup with a tarball of `filler` random ConfigMaps besides its own items. */
function backupWith(filler: number, entries = tarEntries()): Record<string, Buffer> {
  const configMaps = Array.from({ length: filler }, (_, i) => ({
    name: `resources/configmaps/namespaces/cbci/random-${i}.json`,
    data: Buffer.from(
      JSON.stringify({ kind: "ConfigMap", data: { v: randomBytes(4_000).toString("base64") } }),
    ),
  }));
  return { ...backupFiles(), [TARBALL]: gzipSync(goTar([...configMaps, ...entries])) };
}

describe("publishing a backup through the S3 adapter, the tarball streamed", () => {
  it("writes the failover files the in-memory rewrite wrote, reading only the files it rewrites", async () => {
    // arrange
    const { s3, calls } = client();
    const files = backupFiles();
    await store(s3, files);
    const before = rewriteBackupFileSet(files, OPTIONS).replaced; // what publishing wrote until now
    calls.length = 0;
    // act
    const published = await publish(s3);
    const made = [...calls];
    // assert: every file of the backup, each the bytes the in-memory rewrite gave or the source's
    expect(published).toEqual({ prefix: TO, objects: Object.keys(files).length });
    expect(await keys(s3, TO)).toEqual(
      Object.keys(files)
        .map((f) => `${TO}${f}`)
        .sort(),
    );
    for (const file of Object.keys(files)) {
      const expected = before[file] ?? files[file];
      expect((await read(s3, `${TO}${file}`)).equals(expected ?? Buffer.alloc(0)), file).toBe(true);
    }
    expect(Object.keys(before).sort()).toEqual(
      [TARBALL, `${BACKUP}-volumesnapshots.json.gz`, `${BACKUP}-volumeinfo.json.gz`].sort(),
    );
    // read: the rewrite's inputs that exist, then the tarball, streamed; logs, results... never
    const gets = made
      .filter((c) => c.startsWith("GetObject "))
      .map((c) => c.slice(`GetObject ${FROM}`.length));
    expect(gets).toEqual([
      "velero-backup.json",
      `${BACKUP}-volumesnapshots.json.gz`,
      `${BACKUP}-volumeinfo.json.gz`,
      `${BACKUP}-csi-volumesnapshots.json.gz`,
      `${BACKUP}-csi-volumesnapshotcontents.json.gz`, // tried: this backup has none
      TARBALL,
    ]);
    // written: the tarball first (small: one PutObject), velero-backup.json last, the rest copied
    const writes = made.filter((c) => /^(PutObject|CopyObject|CompleteMultipartUpload) /.test(c));
    expect(writes[0]).toBe(`PutObject ${TO}${TARBALL}`);
    expect(writes.at(-1)).toBe(`CopyObject ${TO}velero-backup.json`);
    expect(
      writes
        .filter((c) => c.startsWith("CopyObject "))
        .map((c) => c.slice(`CopyObject ${TO}`.length))
        .sort(),
    ).toEqual(
      Object.keys(files)
        .filter((f) => !(f in before))
        .sort(),
    );
  });

  it("uploads a tarball larger than a part in parts, the same bytes as the in-memory rewrite", async () => {
    // arrange: ~16 MB of random ConfigMaps, so the rewritten tarball takes 3 parts of 5 MiB
    const { s3, calls } = client();
    const files = backupWith(3_000);
    await store(s3, files);
    const before = rewriteBackupFileSet(files, OPTIONS).replaced;
    expect(before[TARBALL]?.length).toBeGreaterThan(2 * PART);
    calls.length = 0;
    // act
    await publish(s3);
    // assert
    expect((await read(s3, `${TO}${TARBALL}`)).equals(before[TARBALL] ?? Buffer.alloc(0))).toBe(true);
    expect(calls.filter((c) => c === `UploadPart ${TO}${TARBALL}`)).toHaveLength(3);
    expect(calls.filter((c) => c === `CompleteMultipartUpload ${TO}${TARBALL}`)).toHaveLength(1);
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: VELERO.bucket }));
    expect(uploads.Uploads ?? []).toEqual([]);
  });

  it("fails on a tarball it cannot read before writing anything, and leaves no upload behind", async () => {
    // arrange: a checksum broken near the end, after parts were uploaded
    const { s3, calls } = client();
    const files = backupWith(3_000);
    const tar = goTar([
      ...Array.from({ length: 3_000 }, (_, i) => ({
        name: `resources/configmaps/namespaces/cbci/random-${i}.json`,
        data: randomBytes(4_000),
      })),
      ...tarEntries(),
    ]);
    const last = listTarEntries(tar).at(-1)?.headerOffset ?? 0;
    tar.writeUInt8((tar[last + 5] ?? 0) ^ 0xff, last + 5); // the last entry's name: its checksum fails
    await store(s3, { ...files, [TARBALL]: gzipSync(tar) });
    calls.length = 0;
    // act
    const err = await publish(s3).catch((e: unknown) => e);
    // assert
    expect(err).toBeInstanceOf(InvalidBackupError);
    expect((err as Error).message).toMatch(
      new RegExp(`^${TARBALL}: entry header at byte \\d+: bad checksum`),
    );
    expect(calls.filter((c) => c.startsWith("UploadPart ")).length).toBeGreaterThan(0);
    expect(calls.filter((c) => c.startsWith("AbortMultipartUpload "))).toHaveLength(1);
    expect(await keys(s3, TO)).toEqual([]);
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: VELERO.bucket }));
    expect(uploads.Uploads ?? []).toEqual([]);
  });

  it("discards the upload when S3 refuses a part or the completion, and says why", async () => {
    for (const refused of ["UploadPart", "CompleteMultipartUpload"]) {
      // arrange
      await moto.reset();
      const { s3, calls } = client();
      await store(s3, backupWith(3_000));
      s3.middlewareStack.add(
        (next, context) => async (args) => {
          const part = (args.input as { PartNumber?: number }).PartNumber;
          if (context.commandName === `${refused}Command` && (part === undefined || part === 2)) {
            throw Object.assign(new Error(`${refused} refused`), { name: "InternalError" });
          }
          return next(args);
        },
        { step: "initialize", name: "refuse" },
      );
      calls.length = 0;
      // act
      const err = await publish(s3).catch((e: unknown) => e);
      // assert
      expect((err as Error).message, refused).toBe(`${refused} refused`);
      expect(
        calls.filter((c) => c.startsWith("AbortMultipartUpload ")),
        refused,
      ).toHaveLength(1);
      expect(await keys(s3, TO), refused).toEqual([]);
      const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: VELERO.bucket }));
      expect(uploads.Uploads ?? [], refused).toEqual([]);
    }
  });

  it("copies the stored tarball as it is when none of its PV objects needs a change", async () => {
    // arrange: PV objects with no zone anywhere (no labels, no nodeAffinity): nothing to move
    const { s3, calls } = client();
    const entries = tarEntries().map((e) => {
      const pv = PVS.find((p) => e.name.endsWith(`/cluster/${p.name}.json`));
      return pv
        ? {
            ...e,
            data: Buffer.from(JSON.stringify({ kind: "PersistentVolume", metadata: { name: pv.name } })),
          }
        : e;
    });
    const files = backupWith(10, entries);
    await store(s3, files);
    calls.length = 0;
    // act
    await publish(s3);
    // assert
    expect((await read(s3, `${TO}${TARBALL}`)).equals(files[TARBALL] ?? Buffer.alloc(0))).toBe(true);
    expect(calls).toContain(`GetObject ${FROM}${TARBALL}`);
    expect(calls).toContain(`CopyObject ${TO}${TARBALL}`);
  });

  it("refuses a backup without its tarball, as the in-memory rewrite did, before writing anything", async () => {
    // arrange
    const { s3 } = client();
    const { [TARBALL]: _, ...files } = backupFiles();
    await store(s3, files);
    // act
    const err = await publish(s3).catch((e: unknown) => e);
    // assert
    expect(err).toBeInstanceOf(InvalidBackupError);
    expect((err as Error).message).toBe(`no ${TARBALL}: the backup is incomplete`);
    expect(await keys(s3, TO)).toEqual([]);
  });
});
