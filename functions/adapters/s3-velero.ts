import { Readable } from "node:stream";
import { gunzipSync } from "node:zlib";
import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import type { VeleroConfig } from "../core/config.js";
import type { TarballRewrite, VeleroBackupFiles, VeleroBucket } from "../core/ports.js";
import { InvalidBackupError } from "../core/velero.js";
import { S3UploadSink, type UploadOptions } from "./s3-upload.js";

const notFound = (err: unknown) => {
  const name = (err as { name?: string })?.name;
  return name === "NoSuchKey" || name === "NotFound";
};

/**
 * Velero's object store layout: `<prefix>/backups/<name>/velero-backup.json`,
 * `<name>-volumesnapshots.json.gz`, `<name>.tar.gz`, ... The failover copy goes under
 * `<failoverPrefix>/backups/<name>/` of the failover bucket (Velero's own unless configured; the
 * configuration keeps the two layouts disjoint), where the standby cluster's read-only
 * BackupStorageLocation looks.
 */
export class S3VeleroBucket implements VeleroBucket {
  constructor(
    private readonly s3: S3Client,
    private readonly config: Pick<VeleroConfig, "bucket" | "prefix" | "failoverBucket" | "failoverPrefix">,
    /** How the rewritten tarball is uploaded (tests make parts small). */
    private readonly upload: UploadOptions = {},
  ) {}

  private dir(prefix: string, name: string): string {
    return `${prefix ? `${prefix}/` : ""}backups/${name}/`;
  }

  private async get(key: string): Promise<{ body: Uint8Array; modified: string } | undefined> {
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.config.bucket, Key: key }));
      const body = await out.Body?.transformToByteArray();
      return { body: body ?? new Uint8Array(), modified: (out.LastModified ?? new Date(0)).toISOString() };
    } catch (err) {
      if (notFound(err)) return undefined;
      throw err;
    }
  }

  async read(name: string): Promise<VeleroBackupFiles | undefined> {
    const dir = this.dir(this.config.prefix, name);
    const json = await this.get(`${dir}velero-backup.json`);
    if (!json) return undefined;
    const files: VeleroBackupFiles = {
      backupJson: JSON.parse(Buffer.from(json.body).toString("utf8")),
      modified: json.modified,
    };
    const snaps = await this.get(`${dir}${name}-volumesnapshots.json.gz`);
    if (snaps) files.volumeSnapshots = JSON.parse(gunzipSync(snaps.body).toString("utf8"));
    // Velero 1.13+: every volume and how it was backed up (CSI, file-system, data mover, native).
    const info = await this.get(`${dir}${name}-volumeinfo.json.gz`);
    if (info) files.volumeInfo = JSON.parse(gunzipSync(info.body).toString("utf8"));
    return files;
  }

  private async list(dir: string, bucket = this.config.bucket): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const out = await this.s3.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: dir,
          ...(token ? { ContinuationToken: token } : {}),
        }),
      );
      for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key);
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return keys;
  }

  /** Only the named files: the rest of a backup (the tarball, logs, ...) is never downloaded here. */
  async files(name: string, names: readonly string[]): Promise<Record<string, Uint8Array>> {
    const dir = this.dir(this.config.prefix, name);
    const out: Record<string, Uint8Array> = {};
    for (const file of new Set(names)) {
      const o = await this.get(`${dir}${file}`);
      if (o) out[file] = o.body;
    }
    return out;
  }

  async publish(
    name: string,
    replaced: Record<string, Uint8Array>,
    tarball?: TarballRewrite,
  ): Promise<{ prefix: string; objects: number }> {
    const from = this.dir(this.config.prefix, name);
    const to = this.dir(this.config.failoverPrefix, name);
    const stored = new Set((await this.list(from)).map((k) => k.slice(from.length)));
    if (tarball && !stored.has(tarball.file)) {
      throw new InvalidBackupError(`no ${tarball.file}: the backup is incomplete`);
    }
    const names = new Set([...stored, ...Object.keys(replaced)]);
    // The tarball first (the one file that can turn out unreadable), velero-backup.json last.
    const rank = (file: string) => (file === tarball?.file ? -1 : Number(file === "velero-backup.json"));
    const ordered = [...names].sort((a, b) => rank(a) - rank(b));
    for (const file of ordered) {
      const body = replaced[file];
      if (body) {
        await this.s3.send(
          new PutObjectCommand({ Bucket: this.config.failoverBucket, Key: `${to}${file}`, Body: body }),
        );
      } else if (file === tarball?.file && tarball.rewrite) {
        await this.rewriteTarball(`${from}${file}`, `${to}${file}`, tarball.rewrite);
      } else {
        await this.copy(`${from}${file}`, `${to}${file}`);
      }
    }
    return { prefix: to, objects: ordered.length };
  }

  /** Server-side: the bytes never pass through this function. */
  private async copy(from: string, to: string): Promise<void> {
    await this.s3.send(
      new CopyObjectCommand({
        Bucket: this.config.failoverBucket,
        Key: to,
        CopySource: `${this.config.bucket}/${encodeURIComponent(from).replace(/%2F/g, "/")}`,
      }),
    );
  }

  /**
   * Streams the tarball from the source through the rewrite into a multipart upload; when no entry
   * changed, the upload is discarded and the stored tarball copied instead (byte for byte, as before).
   */
  private async rewriteTarball(
    from: string,
    to: string,
    rewrite: NonNullable<TarballRewrite["rewrite"]>,
  ): Promise<void> {
    const sink = new S3UploadSink(this.s3, this.config.failoverBucket, to, this.upload);
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.config.bucket, Key: from }));
      if (!(out.Body instanceof Readable))
        throw new Error(`s3://${this.config.bucket}/${from}: no body stream`);
      const { replaced } = await rewrite(out.Body, sink);
      if (replaced > 0) return await sink.complete();
      await sink.abort();
    } catch (err) {
      await sink.abort();
      throw err;
    }
    await this.copy(from, to);
  }

  async unpublish(name: string): Promise<number> {
    const dir = this.dir(this.config.failoverPrefix, name);
    const keys = (await this.list(dir, this.config.failoverBucket)).sort(
      (a, b) => Number(b.endsWith("/velero-backup.json")) - Number(a.endsWith("/velero-backup.json")),
    );
    for (let i = 0; i < keys.length; i += 1000) {
      await this.s3.send(
        new DeleteObjectsCommand({
          Bucket: this.config.failoverBucket,
          Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true },
        }),
      );
    }
    return keys.length;
  }
}
