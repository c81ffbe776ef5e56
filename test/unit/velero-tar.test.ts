import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { InvalidBackupError, rewriteBackupForFailover } from "../../functions/core/velero.js";
import {
  listTarEntries,
  replaceTarData,
  TarFormatError,
  tarEntryData,
} from "../../functions/core/velero-rewrite.js";
import {
  backupJson,
  COPY_OF,
  FAILOVER_REGION,
  goTar,
  PVS,
  pax,
  SOURCE_REGION,
  tarEntries,
  volumeSnapshotRecords,
  ZONE_MAP,
} from "../fixtures/velero/backup.js";

const work = mkdtempSync(join(tmpdir(), "velero-tar-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const options = {
  copyOf: COPY_OF,
  zoneMap: ZONE_MAP,
  sourceRegion: SOURCE_REGION,
  failoverRegion: FAILOVER_REGION,
};

function tar(args: string[]) {
  const r = spawnSync("tar", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tar ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

describe("tarball entries", () => {
  it("reads Go's USTAR layout, joining the prefix field of names over 100 bytes", () => {
    // arrange
    const entries = tarEntries();
    // act
    const listed = listTarEntries(goTar(entries));
    // assert
    expect(listed.map((e) => e.name)).toEqual(entries.map((e) => e.name));
    expect(listed.some((e) => e.name.length > 100)).toBe(true);
    const t = goTar(entries);
    listed.forEach((e, i) => {
      expect(tarEntryData(t, e)).toEqual(entries[i]?.data);
    });
  });

  it("folds PAX path records and GNU long names into the entry they precede", () => {
    // arrange
    const long = `resources/configmaps/namespaces/cbci/${"x".repeat(180)}.json`;
    const t = goTar([
      { name: "PaxHeaders/0", type: "x", data: pax({ path: long, mtime: "1740830407.5" }) },
      { name: "truncated-name.json", data: Buffer.from("{}") },
      { name: "././@LongLink", type: "L", data: Buffer.from(`${long}2\0`) },
      { name: "truncated-2.json", data: Buffer.from("[]") },
      { name: "plain.json", data: Buffer.from("1") },
    ]);
    // act
    const listed = listTarEntries(t);
    // assert
    expect(listed.map((e) => e.name)).toEqual([long, `${long}2`, "plain.json"]);
  });

  it("replaces an entry's data and keeps every other byte; refuses entries sized by PAX", () => {
    // arrange
    const t = goTar([
      { name: "a", data: Buffer.from("aaa") },
      { name: "b", data: Buffer.alloc(700, 0x62) },
      { name: "PaxHeaders/c", type: "x", data: pax({ size: "1" }) },
      { name: "c", data: Buffer.from("c") },
    ]);
    const [a, b, c] = listTarEntries(t);
    if (!a || !b || !c) throw new Error("entries");
    // act
    const out = replaceTarData(t, new Map([[b, Buffer.from("short")]]));
    // assert
    const [a2, b2, c2] = listTarEntries(out);
    expect(out.subarray(0, b.headerOffset)).toEqual(t.subarray(0, b.headerOffset));
    expect(b2 && tarEntryData(out, b2).toString()).toBe("short");
    expect(out.subarray(b2?.end)).toEqual(t.subarray(b.end));
    expect(a2?.name).toBe("a");
    expect(c2?.paxSize).toBe(true);
    expect(() => replaceTarData(t, new Map([[c, Buffer.from("x")]]))).toThrow(TarFormatError);
    expect(() => listTarEntries(t.subarray(0, 1024))).toThrow(/truncated at byte 1024|data runs past/);
  });
});

describe("tarballs written by GNU tar", () => {
  const extra = `resources/configmaps/namespaces/cbci/${"x".repeat(180)}.json`;
  const entries = [...tarEntries(), { name: extra, data: Buffer.from('{"kind":"ConfigMap"}') }];

  for (const format of ["gnu", "pax"]) {
    it(`rewrites a --format=${format} tarball that GNU tar then extracts with the PVs moved and the rest intact`, () => {
      // arrange
      const src = join(work, `${format}-src`);
      for (const e of entries) {
        mkdirSync(dirname(join(src, e.name)), { recursive: true });
        writeFileSync(join(src, e.name), e.data);
      }
      const tgz = join(work, `${format}.tar.gz`);
      tar([`--format=${format}`, "--no-recursion", "-C", src, "-czf", tgz, ...entries.map((e) => e.name)]);
      // act
      const out = rewriteBackupForFailover(
        { backupJson: backupJson(), volumeSnapshots: volumeSnapshotRecords(), tarball: readFileSync(tgz) },
        options,
      );
      // assert
      expect(out.summary.tarEntries).toBe(6);
      const outTgz = join(work, `${format}-out.tar.gz`);
      writeFileSync(outTgz, out.tarball ?? Buffer.alloc(0));
      const dst = join(work, `${format}-dst`);
      mkdirSync(dst);
      tar(["-xzf", outTgz, "-C", dst]);
      expect(tar(["-tzf", outTgz]).trimEnd().split("\n")).toEqual(entries.map((e) => e.name));
      for (const e of entries) {
        const got = readFileSync(join(dst, e.name));
        const pv = PVS.find((p) => e.name.endsWith(`/cluster/${p.name}.json`));
        if (!pv) {
          expect(got).toEqual(e.data);
          continue;
        }
        const obj = JSON.parse(got.toString("utf8"));
        const zone = ZONE_MAP[pv.zone as keyof typeof ZONE_MAP];
        const zoneLabel =
          pv.kind === "csi" ? "topology.kubernetes.io/zone" : "failure-domain.beta.kubernetes.io/zone";
        expect(obj.metadata.labels[zoneLabel]).toBe(zone);
        expect(obj.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values).toEqual([
          zone,
        ]);
      }
      const listed = listTarEntries(gunzipSync(out.tarball ?? Buffer.alloc(0)));
      expect(listed.map((e) => e.name)).toEqual(entries.map((e) => e.name));
    });
  }

  it("reports a tarball that GNU tar would not read as InvalidBackupError", () => {
    // arrange
    const t = goTar(tarEntries());
    const cut = gzipSync(t.subarray(0, t.length - 1024 - 512)); // no trailer, last entry's data cut
    // act / assert
    expect(() =>
      rewriteBackupForFailover(
        { backupJson: backupJson(), volumeSnapshots: volumeSnapshotRecords(), tarball: cut },
        options,
      ),
    ).toThrow(InvalidBackupError);
  });
});
