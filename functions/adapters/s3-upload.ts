import { Writable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";

/** S3's smallest part but the last (5 MiB); ours is larger so that few requests are made. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
export const DEFAULT_PART_BYTES = 8 * 1024 * 1024;
/** S3's most parts per upload: 10,000 parts of 8 MiB, 78 GiB, is this sink's largest object. */
const MAX_PARTS = 10_000;

export interface UploadOptions {
  /** Bytes per part (the last may be smaller). Default 8 MiB; at least 5 MiB. */
  partBytes?: number;
  /** Parts uploading at once. Default 2: memory is (this + 1) parts. */
  concurrency?: number;
}

/**
 * A stream written to one S3 object without holding it whole: each full part is uploaded as it
 * fills (a multipart upload, created with the first one), at most `concurrency` at a time, the
 * writer held back meanwhile. Ending the stream uploads nothing more: the caller then `complete()`s
 * the object (the last part, or a single PutObject when it all fits in one part) or `abort()`s it
 * (the parts already sent are discarded; nothing appears under the key). Parts carry CRC32
 * checksums, declared when the upload is created (S3 refuses checksummed parts otherwise).
 */
export class S3UploadSink extends Writable {
  /** Bytes written so far. */
  bytes = 0;
  private readonly partBytes: number;
  private readonly concurrency: number;
  private part: Buffer;
  private filled = 0;
  private uploadId: Promise<string> | undefined;
  private readonly parts: CompletedPart[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown;
  private completing = false;
  /** Completed or aborted: nothing more to do. */
  private done = false;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    options: UploadOptions = {},
  ) {
    super();
    this.partBytes = Math.max(MIN_PART_BYTES, options.partBytes ?? DEFAULT_PART_BYTES);
    this.concurrency = Math.max(1, options.concurrency ?? 2);
    this.part = Buffer.allocUnsafe(this.partBytes);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.take(chunk).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.drain().then(() => callback(), callback);
  }

  private async take(chunk: Buffer): Promise<void> {
    let at = 0;
    while (at < chunk.length) {
      const n = Math.min(this.partBytes - this.filled, chunk.length - at);
      chunk.copy(this.part, this.filled, at, at + n);
      this.filled += n;
      at += n;
      this.bytes += n;
      if (this.filled < this.partBytes) continue;
      const full = this.part;
      this.part = Buffer.allocUnsafe(this.partBytes);
      this.filled = 0;
      this.send(full);
      while (this.inFlight.size >= this.concurrency) await Promise.race(this.inFlight);
      if (this.failure) throw this.failure;
    }
  }

  /** Waits for the parts in flight; throws the first failure. */
  private async drain(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
    if (this.failure) throw this.failure;
  }

  private start(): Promise<string> {
    this.uploadId ??= this.s3
      .send(
        new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, ChecksumAlgorithm: "CRC32" }),
      )
      .then((out) => {
        if (!out.UploadId) throw new Error(`s3://${this.bucket}/${this.key}: no UploadId`);
        return out.UploadId;
      });
    return this.uploadId;
  }

  private send(body: Buffer): void {
    const PartNumber = this.parts.length + this.inFlight.size + 1;
    if (PartNumber > MAX_PARTS) {
      this.failure ??= new Error(
        `s3://${this.bucket}/${this.key}: more than ${MAX_PARTS} parts of ${this.partBytes} bytes`,
      );
      return;
    }
    const upload = (async () => {
      const UploadId = await this.start();
      const out = await this.s3.send(
        new UploadPartCommand({
          Bucket: this.bucket,
          Key: this.key,
          UploadId,
          PartNumber,
          Body: body,
          ChecksumAlgorithm: "CRC32",
        }),
      );
      this.parts.push({
        PartNumber,
        ETag: out.ETag,
        ...(out.ChecksumCRC32 ? { ChecksumCRC32: out.ChecksumCRC32 } : {}),
      });
    })().catch((err: unknown) => {
      this.failure ??= err;
    });
    const tracked = upload.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  /** Writes the object: call once the stream has finished. */
  async complete(): Promise<void> {
    if (this.completing || this.done) {
      throw new Error(`s3://${this.bucket}/${this.key}: already completed or aborted`);
    }
    this.completing = true;
    await this.drain();
    const tail = this.part.subarray(0, this.filled);
    if (!this.uploadId) {
      await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key, Body: tail }));
      this.done = true;
      return;
    }
    if (tail.length > 0) {
      this.send(tail);
      await this.drain();
    }
    const UploadId = await this.uploadId;
    const Parts = [...this.parts].sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await this.s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: this.key,
        UploadId,
        MultipartUpload: { Parts },
      }),
    );
    this.done = true;
  }

  /** Discards what was sent, a failed `complete()` included (nothing is written). Never throws. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await Promise.allSettled([...this.inFlight]);
    const UploadId = await this.uploadId?.catch(() => undefined);
    if (!UploadId) return;
    await this.s3
      .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId }))
      .catch(() => undefined);
  }
}
