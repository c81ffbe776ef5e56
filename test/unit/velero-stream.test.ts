import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Readable, Writable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import {
  failoverTarEditor,
  InvalidBackupError,
  rewriteBackupFileSet,
  rewriteBackupForFailover,
} from "../../functions/core/velero.js";
import {
  listTarEntries,
  type TarEntryEditor,
  TarRewriteStream,
} from "../../functions/core/velero-rewrite.js";
import { publication, rewriteInputs, rewriteTarGz } from "../../functions/core/velero-stream.js";
import {
  BACKUP,
  backupFiles,
  backupJson,
  COPY_OF,
  FAILOVER_REGION,
  goTar,
  MIXED_COPY_OF,
  mixedBackupFiles,
  pax,
  SOURCE_REGION,
  tarEntries,
  volumeSnapshotRecords,
  ZONE_MAP,
} from "../fixtures/velero/backup.js";

const work = mkdtempSync(join(tmpdir(), "velero-stream-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const FILE = `${BACKUP}.tar.gz`;
const options = {
  copyOf: COPY_OF,
  zoneMap: ZONE_MAP,
  sourceRegion: SOURCE_REGION,
  failoverRegion: FAILOVER_REGION,
};

/** The in-memory rewrite of a gzip tarball (what `dr velero rewrite` and publishing did before). */
function inMemory(tgz: Buffer) {
  return rewriteBackupForFailover(
    { backupJson: backupJson(), volumeSnapshots: volumeSnapshotRecords(), tarball: tgz },
    options,
  );
}

/** The editor publishing streams the tarball through (the PVs' plans as the rewrite made them). */
function editor(): TarEntryEditor {
  const { summary } = inMemory(gzipSync(goTar(tarEntries())));
  return failoverTarEditor(FILE, new Map(Object.entries(summary.volumes)), FAILOVER_REGION);
}

/** `bytes` as a stream of chunks of the given sizes (cycled). */
function chunked(bytes: Buffer, sizes: readonly number[]): Readable {
  const parts: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length] ?? 1;
    parts.push(bytes.subarray(at, at + n));
    at += n;
  }
  return Readable.from(parts);
}

function collector(): { sink: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      parts.push(chunk);
      callback();
    },
  });
  return { sink, bytes: () => Buffer.concat(parts) };
}

async function streamed(tgz: Buffer, sizes: readonly number[] = [65_536]) {
  const { sink, bytes } = collector();
  const counts = await rewriteTarGz(chunked(tgz, sizes), sink, editor(), FILE);
  return { ...counts, gz: bytes() };
}

/** The uncompressed tar through TarRewriteStream alone, in chunks of the given sizes. */
async function tarThrough(tar: Buffer, sizes: readonly number[], e: TarEntryEditor = editor()) {
  const { sink, bytes } = collector();
  const stream = new TarRewriteStream(e);
  await new Promise<void>((resolve, reject) => {
    chunked(tar, sizes).pipe(stream).on("error", reject).pipe(sink).on("finish", resolve).on("error", reject);
  });
  return { out: bytes(), replaced: stream.replaced, entries: stream.entries };
}

/**
 * A backup tarball of several megabytes: the fixture's items (PVs among them) between thousands of
 * ConfigMaps of random data (sizes never a multiple of 512), long names in USTAR's prefix field, a
 * PAX path, a GNU long name, and PVs again at the end.
 */
function bigTar(): Buffer {
  const filler = Array.from({ length: 2_500 }, (_, i) => ({
    name: `resources/configmaps/namespaces/cbci${i % 7 === 0 ? `-${"n".repeat(90)}` : ""}/cm-${i}.json`,
    data: Buffer.from(
      JSON.stringify({ kind: "ConfigMap", data: { v: randomBytes(1_000 + (i % 997)).toString("base64") } }),
    ),
  }));
  const long = `resources/secrets/namespaces/cbci/${"p".repeat(200)}.json`;
  return goTar([
    ...filler.slice(0, 1_000),
    ...tarEntries(),
    { name: "PaxHeaders/0", type: "x", data: pax({ path: long, mtime: "1740830407.5" }) },
    { name: "truncated.json", data: Buffer.from('{"kind":"Secret"}') },
    { name: "././@LongLink", type: "L", data: Buffer.from(`${long}2\0`) },
    { name: "truncated-2.json", data: Buffer.from('{"kind":"Secret"}') },
    ...filler.slice(1_000),
    ...tarEntries().filter((e) => e.name.includes("/persistentvolumes/")),
  ]);
}

describe("the streaming tarball rewrite", () => {
  it("writes, for a multi-megabyte tarball, the in-memory rewrite's bytes exactly (tar and gzip)", async () => {
    // arrange
    const tar = bigTar();
    const tgz = gzipSync(tar);
    expect(tar.length).toBeGreaterThan(5_000_000);
    const reference = inMemory(tgz);
    // act
    const out = await streamed(tgz, [65_536, 1, 511, 513, 100_003]);
    // assert
    expect(reference.summary.tarEntries).toBe(12);
    expect(out.replaced).toBe(12);
    expect(out.entries).toBe(listTarEntries(tar).length);
    const tarOut = gunzipSync(out.gz);
    expect(tarOut.equals(gunzipSync(reference.tarball ?? Buffer.alloc(0)))).toBe(true);
    expect(out.gz.equals(reference.tarball ?? Buffer.alloc(0))).toBe(true);
    expect(tarOut.equals(tar)).toBe(false);
  });

  it("reads any cut of the input the same: headers, data and padding split at every kind of boundary", async () => {
    // arrange
    const tar = goTar([
      ...tarEntries(),
      { name: "PaxHeaders/1", type: "x", data: pax({ path: `resources/a/${"q".repeat(150)}.json` }) },
      { name: "x.json", data: Buffer.from("{}") },
    ]);
    const reference = gunzipSync(inMemory(gzipSync(tar)).tarball ?? Buffer.alloc(0));
    // act / assert
    for (const sizes of [[1], [7], [512], [511, 2], [1024, 3, 509], [tar.length]]) {
      const { out, replaced } = await tarThrough(tar, sizes);
      expect(out.equals(reference), `chunks of ${sizes.join(",")}`).toBe(true);
      expect(replaced).toBe(6);
    }
  });

  it("passes everything after the end-of-archive block through, as the in-memory rewrite does", async () => {
    // arrange: GNU tar pads archives to 10 KiB records; some writers add more
    const tar = Buffer.concat([goTar(tarEntries()), Buffer.alloc(10_240 - 1024), Buffer.from("trailing")]);
    const reference = gunzipSync(inMemory(gzipSync(tar)).tarball ?? Buffer.alloc(0));
    // act
    const { out } = await tarThrough(tar, [4096]);
    // assert
    expect(out.equals(reference)).toBe(true);
    expect(out.subarray(-8).toString()).toBe("trailing");
  });

  for (const format of ["gnu", "pax"]) {
    it(`matches the in-memory rewrite on a --format=${format} tarball written by GNU tar`, async () => {
      // arrange
      const entries = [
        ...tarEntries(),
        { name: `resources/configmaps/namespaces/cbci/${"x".repeat(180)}.json`, data: Buffer.from("{}") },
      ];
      const src = join(work, `${format}-src`);
      for (const e of entries) {
        mkdirSync(dirname(join(src, e.name)), { recursive: true });
        writeFileSync(join(src, e.name), e.data);
      }
      const tgz = join(work, `${format}.tar.gz`);
      const r = spawnSync("tar", [
        `--format=${format}`,
        "--no-recursion",
        "-C",
        src,
        "-czf",
        tgz,
        ...entries.map((e) => e.name),
      ]);
      expect(r.status).toBe(0);
      const bytes = readFileSync(tgz);
      // act
      const out = await streamed(bytes, [333]);
      // assert
      const reference = inMemory(bytes);
      expect(out.replaced).toBe(reference.summary.tarEntries);
      expect(gunzipSync(out.gz).equals(gunzipSync(reference.tarball ?? Buffer.alloc(0)))).toBe(true);
    });
  }

  it("fails as the in-memory rewrite does: not gzip, truncated, a bad checksum, a PV that is not JSON", async () => {
    // arrange
    const tar = goTar(tarEntries());
    const pv = listTarEntries(tar).find((e) => e.name.includes("/persistentvolumes/"));
    const badSum = Buffer.from(tar);
    badSum[(pv?.headerOffset ?? 0) + 10] = 0x7a;
    const notJson = goTar([
      { name: "resources/persistentvolumes/cluster/pv-1.json", data: Buffer.from("{oops") },
    ]);
    const cases: [string, Buffer, RegExp][] = [
      ["not gzip", Buffer.from("not gzip at all"), new RegExp(`^${FILE} is not gzip`)],
      ["truncated gzip", gzipSync(tar).subarray(0, 200), /is not gzip|truncated|data runs past/],
      [
        "no end-of-archive",
        gzipSync(tar.subarray(0, tar.length - 1024)),
        /truncated at byte \d+: no end-of-archive/,
      ],
      ["data cut", gzipSync(tar.subarray(0, tar.length - 1024 - 512)), /data runs past the end/],
      ["bad checksum", gzipSync(badSum), /bad checksum/],
      ["PV not JSON", gzipSync(notJson), /pv-1\.json is not JSON/],
    ];
    for (const [what, tgz, message] of cases) {
      // act
      const err = await streamed(tgz).then(
        () => undefined,
        (e: unknown) => e,
      );
      // assert
      expect(err, what).toBeInstanceOf(InvalidBackupError);
      expect((err as Error).message, what).toMatch(message);
      expect(() => inMemory(tgz), what).toThrow(InvalidBackupError);
    }
  });

  it("refuses, like replaceTarData, to edit a PV whose size is in a PAX header", async () => {
    // arrange
    const [pv] = tarEntries().filter((e) => e.name.includes("/persistentvolumes/"));
    if (!pv) throw new Error("fixture has PVs");
    const tgz = gzipSync(
      goTar([{ name: "PaxHeaders/pv", type: "x", data: pax({ size: String(pv.data.length) }) }, pv]),
    );
    // act
    const err = await streamed(tgz).catch((e: unknown) => e);
    // assert
    expect(err).toBeInstanceOf(InvalidBackupError);
    expect((err as Error).message).toMatch(/its size is in a PAX header/);
    expect(() => inMemory(tgz)).toThrow(/its size is in a PAX header/);
  });

  it("holds no entry larger than MAX_HELD_ENTRY", async () => {
    // arrange: an extended header claiming 64 MiB
    const header = goTar([{ name: "PaxHeaders/huge", type: "x", data: Buffer.alloc(0) }]).subarray(0, 512);
    const huge = Buffer.from(header);
    huge.write(`${(64 * 1024 * 1024).toString(8).padStart(11, "0")}\0`, 124, 12, "latin1");
    huge.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of huge) sum += b;
    huge.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "latin1");
    // act
    const err = await tarThrough(Buffer.concat([huge, Buffer.alloc(4096)]), [4096]).catch((e: unknown) => e);
    // assert
    expect((err as Error).message).toMatch(/more than the 16777216 a rewrite reads/);
  });
});

describe("the rewrite for publishing (rewriteBackupFileSet with the tarball streamed)", () => {
  it("reads only the small files, replaces the same ones as the in-memory rewrite, and streams the tarball", async () => {
    // arrange
    const files = backupFiles();
    const inputs = rewriteInputs(BACKUP);
    const small = Object.fromEntries(Object.entries(files).filter(([name]) => inputs.includes(name)));
    // act
    const reference = rewriteBackupFileSet(files, options);
    const published = publication(rewriteBackupFileSet(small, options, "stream"));
    // assert
    expect(inputs).toEqual([
      "velero-backup.json",
      `${BACKUP}-volumesnapshots.json.gz`,
      `${BACKUP}-volumeinfo.json.gz`,
      `${BACKUP}-csi-volumesnapshots.json.gz`,
      `${BACKUP}-csi-volumesnapshotcontents.json.gz`,
    ]);
    expect(Object.keys(small)).not.toContain(FILE);
    const { [FILE]: tarball, ...rest } = reference.replaced;
    expect(published.replaced).toEqual(rest);
    expect(published.tarball?.file).toBe(FILE);
    const { sink, bytes } = collector();
    const counts = await published.tarball?.rewrite?.(Readable.from([files[FILE] ?? Buffer.alloc(0)]), sink);
    expect(counts?.replaced).toBe(reference.summary.tarEntries);
    expect(bytes().equals(tarball ?? Buffer.alloc(0))).toBe(true);
  });

  it("streams a backup mixing native and CSI volumes to the in-memory rewrite's bytes, CSI lists replaced alike", async () => {
    // arrange
    const files = mixedBackupFiles();
    const mixed = { ...options, copyOf: MIXED_COPY_OF };
    const small = Object.fromEntries(
      Object.entries(files).filter(([name]) => rewriteInputs(BACKUP).includes(name)),
    );
    // act
    const reference = rewriteBackupFileSet(files, mixed);
    const published = publication(rewriteBackupFileSet(small, mixed, "stream"));
    const { sink, bytes } = collector();
    const counts = await published.tarball?.rewrite?.(
      chunked(files[FILE] ?? Buffer.alloc(0), [777, 4096]),
      sink,
    );
    // assert
    const { [FILE]: tarball, ...rest } = reference.replaced;
    expect(Object.keys(rest)).toContain(`${BACKUP}-csi-volumesnapshotcontents.json.gz`);
    expect(Object.keys(rest)).toContain(`${BACKUP}-csi-volumesnapshots.json.gz`);
    expect(published.replaced).toEqual(rest);
    expect(counts?.replaced).toBe(reference.summary.tarEntries);
    expect(bytes().equals(tarball ?? Buffer.alloc(0))).toBe(true);
  });

  it("fails the stream with MissingCopyError when a tarball CSI handle has no copy", async () => {
    // arrange: the small files name no CSI snapshot, the tarball does
    const files = mixedBackupFiles();
    const native = { ...options, copyOf: COPY_OF };
    const small = {
      "velero-backup.json": files["velero-backup.json"] ?? Buffer.alloc(0),
      [`${BACKUP}-volumesnapshots.json.gz`]: files[`${BACKUP}-volumesnapshots.json.gz`] ?? Buffer.alloc(0),
    };
    const published = publication(rewriteBackupFileSet(small, native, "stream"));
    const { sink } = collector();
    // act / assert
    await expect(
      published.tarball?.rewrite?.(Readable.from([files[FILE] ?? Buffer.alloc(0)]), sink),
    ).rejects.toThrow(/^no failover copy of snapshot snap-0a1b2c3d4e5f60004 \(VolumeSnapshot/);
  });

  it("fails closed: with no PV to move and no CSI handle in the small files, the tarball is still read, and a snapshot object naming an uncopied snapshot fails the stream", async () => {
    // arrange: no native snapshots, no volumeinfo or CSI lists (users' own VolumeSnapshots in a
    // backed-up namespace, say), but VolumeSnapshot/VolumeSnapshotContent objects in the tarball
    const files = mixedBackupFiles();
    const small = {
      "velero-backup.json": files["velero-backup.json"] ?? Buffer.alloc(0),
      [`${BACKUP}-volumesnapshots.json.gz`]: gzipSync("null\n"),
    };
    // act
    const published = publication(rewriteBackupFileSet(small, { ...options, copyOf: new Map() }, "stream"));
    // assert: not copied unread (that would publish source-region handles), and refused
    expect(published.tarball?.rewrite).toBeDefined();
    const { sink } = collector();
    await expect(
      published.tarball?.rewrite?.(Readable.from([files[FILE] ?? Buffer.alloc(0)]), sink),
    ).rejects.toThrow(/^no failover copy of snapshot snap-/);
  });
});
