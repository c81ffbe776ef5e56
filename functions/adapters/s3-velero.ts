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
import type { VeleroBackupFiles, VeleroBucket } from "../core/ports.js";

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

  async files(name: string): Promise<Record<string, Uint8Array>> {
    const dir = this.dir(this.config.prefix, name);
    const out: Record<string, Uint8Array> = {};
    for (const key of await this.list(dir)) {
      const o = await this.get(key);
      if (o) out[key.slice(dir.length)] = o.body;
    }
    return out;
  }

  async publish(
    name: string,
    replaced: Record<string, Uint8Array>,
  ): Promise<{ prefix: string; objects: number }> {
    const from = this.dir(this.config.prefix, name);
    const to = this.dir(this.config.failoverPrefix, name);
    const names = new Set([
      ...(await this.list(from)).map((k) => k.slice(from.length)),
      ...Object.keys(replaced),
    ]);
    const ordered = [...names].sort(
      (a, b) => Number(a === "velero-backup.json") - Number(b === "velero-backup.json"),
    );
    for (const file of ordered) {
      const body = replaced[file];
      if (body) {
        await this.s3.send(
          new PutObjectCommand({ Bucket: this.config.failoverBucket, Key: `${to}${file}`, Body: body }),
        );
      } else {
        await this.s3.send(
          new CopyObjectCommand({
            Bucket: this.config.failoverBucket,
            Key: `${to}${file}`,
            CopySource: `${this.config.bucket}/${encodeURIComponent(`${from}${file}`).replace(/%2F/g, "/")}`,
          }),
        );
      }
    }
    return { prefix: to, objects: ordered.length };
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
