/**
 * Publishing a backup of any size: the failover rewrite (functions/core/velero.ts) over the small
 * files read whole, and over the tarball as a stream (gunzip, the entry-by-entry rewrite of
 * functions/core/velero-rewrite.ts, gzip) that never holds it whole. The bytes written are the
 * in-memory rewrite's: the same tar entries (test/unit/velero-stream.test.ts compares them), and
 * gzip's output does not depend on how its input is cut into chunks.
 */
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import { errorMessage } from "./errors.js";
import type { FailoverRewrite, TarballRewrite } from "./ports.js";
import {
  backupFileNames,
  InvalidBackupError,
  isRewriteInputError,
  type rewriteBackupFileSet,
} from "./velero.js";
import { type TarEntryEditor, TarFormatError, TarRewriteStream } from "./velero-rewrite.js";

/**
 * The files the rewrite reads whole, for backup `name`: velero-backup.json, the snapshot list,
 * volumeinfo (Velero 1.13+) and the CSI lists (`-csi-volumesnapshots`, `-csi-volumesnapshotcontents`,
 * which carry CSI snapshot handles). Never the tarball (streamed) nor logs, results, item operations,
 * pod volume backups or resource lists (copied server-side, never read). Missing ones are skipped;
 * the rewrite says which it cannot do without.
 */
export function rewriteInputs(name: string): string[] {
  const n = backupFileNames(name);
  return [
    n.metadata,
    n.volumeSnapshots,
    n.volumeInfo,
    `${name}-csi-volumesnapshots.json.gz`,
    `${name}-csi-volumesnapshotcontents.json.gz`,
  ];
}

const CHUNK = 64 * 1024;

/**
 * Streams a gzip tarball from `source` through `editor` into `sink` (gzip again, at zlib's default
 * level, as the in-memory rewrite writes it). Resolves once `sink` has finished. A tarball that is
 * not gzip or not a tar stream we can read fails with InvalidBackupError naming `file`; the sink is
 * destroyed on any failure.
 */
export async function rewriteTarGz(
  source: Readable | AsyncIterable<Uint8Array>,
  sink: Writable,
  editor: TarEntryEditor,
  file: string,
): Promise<{ entries: number; replaced: number }> {
  // 64 KiB chunks rather than zlib's 16 KiB: a quarter of the calls into zlib, a third less CPU.
  const gunzip = createGunzip({ chunkSize: CHUNK });
  const tar = new TarRewriteStream(editor);
  let gunzipError: unknown;
  gunzip.once("error", (err) => {
    gunzipError = err;
  });
  try {
    await pipeline(source, gunzip, tar, createGzip({ chunkSize: CHUNK }), sink);
  } catch (err) {
    if (err instanceof TarFormatError)
      throw new InvalidBackupError(`${file}: ${err.message}`, { cause: err });
    // The editor's own errors (a missing CSI copy, an entry that is not JSON): the pipeline also
    // destroys gunzip with them, so they must not be taken for gzip's.
    if (isRewriteInputError(err)) throw err;
    if (err === gunzipError) {
      throw new InvalidBackupError(`${file} is not gzip (${errorMessage(err)})`, { cause: err });
    }
    throw err;
  }
  return { entries: tar.entries, replaced: tar.replaced };
}

/** The tarball's part of a publication: streamed through `editor`, or copied as stored when idle. */
export function streamedTarball(file: string, editor: TarEntryEditor): TarballRewrite {
  if (editor.idle) return { file };
  return { file, rewrite: (source, sink) => rewriteTarGz(source, sink, editor, file) };
}

/** `rewriteBackupFileSet(files, options, "stream")`'s result as what publishing writes. */
export function publication(rewritten: ReturnType<typeof rewriteBackupFileSet>): FailoverRewrite {
  const { replaced, tarball } = rewritten;
  return tarball ? { replaced, tarball: streamedTarball(tarball.file, tarball.editor) } : { replaced };
}
