import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { EXIT, type Io, main } from "../../cli/dr.js";
import {
  BACKUP,
  backupFiles,
  COPY_OF,
  CSI_PVS,
  FAILOVER_REGION,
  MIXED_COPY_OF,
  mixedBackupFiles,
  PVS,
  ZONE_MAP,
} from "../fixtures/velero/backup.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "velero-cli-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let dirs = 0;
/** A backup directory as `aws s3 sync s3://bucket/backups/<name>/ dir` leaves it. */
function backupDir(files = backupFiles()): string {
  const dir = join(work, `backup-${++dirs}`);
  mkdirSync(dir);
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
  return dir;
}
const outDir = () => join(work, `out-${++dirs}`);

function mapFile(map: ReadonlyMap<string, string>): string {
  const file = join(work, `map-${++dirs}.json`);
  writeFileSync(file, JSON.stringify(Object.fromEntries(map)));
  return file;
}

const zones = Object.entries(ZONE_MAP)
  .map(([a, b]) => `${a}=${b}`)
  .join(",");
const args = (dir: string, out: string, map: string) => [
  "velero",
  "rewrite",
  "--dir",
  dir,
  "--map",
  map,
  "--zones",
  zones,
  "--source-region",
  "us-east-1",
  "--failover-region",
  FAILOVER_REGION,
  "--out",
  out,
];

/** The real CLI in a child process, as an operator runs it. */
function dr(argv: string[]) {
  const r = spawnSync("npx", ["tsx", "cli/dr.ts", ...argv], { cwd: root, encoding: "utf8", timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function memoryIo() {
  const out = { stdout: "", stderr: "" };
  const io: Io = {
    readStdin: async () => "",
    stdout: (t) => {
      out.stdout += t;
    },
    stderr: (t) => {
      out.stderr += t;
    },
  };
  return { io, out };
}

type Obj = Record<string, unknown>;
/** Go's encoding/json: a key matches a field case-insensitively. */
const go = (o: unknown, field: string): unknown => {
  const obj = (o ?? {}) as Obj;
  const key = Object.keys(obj).findLast((k) => k.toLowerCase() === field.toLowerCase());
  return key === undefined ? undefined : obj[key];
};

/**
 * Reads a rewritten backup the way Velero's restore does (pkg/restore/pv_restorer.go and the AWS
 * plugin's CreateVolumeFromSnapshot/SetVolumeID): for each PV object in the tarball (extracted by
 * GNU tar), the first volumesnapshots record with its name gives the snapshot id and the zone; the
 * restored PV's volume id and topology follow from the object.
 */
function restoreAsVelero(out: string) {
  const extracted = join(out, "..", `${out.split("/").at(-1)}-extracted`);
  mkdirSync(extracted);
  const t = spawnSync("tar", ["-xzf", join(out, `${BACKUP}.tar.gz`), "-C", extracted]);
  expect(t.status).toBe(0);
  const records = JSON.parse(
    gunzipSync(readFileSync(join(out, `${BACKUP}-volumesnapshots.json.gz`))).toString(),
  );
  const infos = JSON.parse(gunzipSync(readFileSync(join(out, `${BACKUP}-volumeinfo.json.gz`))).toString());
  const restored = [];
  for (const dir of ["cluster", "v1-preferredversion/cluster"]) {
    const pvDir = join(extracted, "resources/persistentvolumes", dir);
    for (const file of readdirSync(pvDir)) {
      const pv = JSON.parse(readFileSync(join(pvDir, file), "utf8"));
      const name: string = pv.metadata.name;
      const record = (records as Obj[]).find((r) => go(go(r, "spec"), "persistentVolumeName") === name);
      const snapshotId = go(go(record, "status"), "providerSnapshotID") as string;
      const volumeAZ = go(go(record, "spec"), "volumeAZ") as string;
      const newVolume = "vol-0fff000000000aaaa";
      const volumeId = pv.spec.csi
        ? newVolume
        : pv.metadata.labels["failure-domain.beta.kubernetes.io/zone"]
          ? `aws://${pv.metadata.labels["failure-domain.beta.kubernetes.io/zone"]}/${newVolume}`
          : newVolume;
      const affinityZones = pv.spec.nodeAffinity.required.nodeSelectorTerms.flatMap(
        (t: { matchExpressions: { key: string; values: string[] }[] }) =>
          t.matchExpressions.filter((e) => e.key.endsWith("/zone")).flatMap((e) => e.values),
      );
      const labelZones = Object.entries(pv.metadata.labels as Record<string, string>)
        .filter(([k]) => k.endsWith("/zone"))
        .map(([, v]) => v);
      const info = (infos as Obj[]).find((i) => i.pvName === name) as { nativeSnapshotInfo: Obj };
      restored.push({
        name,
        snapshotId,
        volumeAZ,
        volumeId,
        affinityZones,
        labelZones,
        info: info.nativeSnapshotInfo,
      });
    }
  }
  return restored;
}

describe("dr velero rewrite (child process)", () => {
  it("writes a backup that Velero's restore resolves, for every PV, to a copy in a failover-region zone", () => {
    // arrange
    const dir = backupDir();
    const out = outDir();
    const input = backupFiles();
    // act
    const r = dr(args(dir, out, mapFile(COPY_OF)));
    // assert
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(
      `rewrote backup ${BACKUP} for us-west-2: 3 volume snapshot(s), 3 volume info(s), 3 PV(s) in 6 tarball entries; ` +
        `zones us-east-1a->us-west-2a, us-east-1b->us-west-2b, us-east-1c->us-west-2c; 10 files in ${out}\n`,
    );
    expect(readdirSync(out).sort()).toEqual(Object.keys(input).sort());
    const changed = [`${BACKUP}.tar.gz`, `${BACKUP}-volumesnapshots.json.gz`, `${BACKUP}-volumeinfo.json.gz`];
    for (const [name, bytes] of Object.entries(input)) {
      if (!changed.includes(name)) expect(readFileSync(join(out, name))).toEqual(bytes);
    }
    const restored = restoreAsVelero(out);
    expect(restored).toHaveLength(6);
    const copies = new Set(COPY_OF.values());
    for (const v of restored) {
      const pv = PVS.find((p) => p.name === v.name);
      expect(copies.has(v.snapshotId)).toBe(true);
      expect(v.snapshotId).toBe(pv?.copySnapshotId);
      expect(v.volumeAZ).toMatch(/^us-west-2[a-z]$/);
      expect(v.volumeAZ).toBe(ZONE_MAP[pv?.zone as keyof typeof ZONE_MAP]);
      expect(v.affinityZones.length).toBeGreaterThan(0);
      expect(new Set([...v.affinityZones, ...v.labelZones])).toEqual(new Set([v.volumeAZ]));
      if (pv?.kind === "in-tree") expect(v.volumeId).toBe(`aws://${v.volumeAZ}/vol-0fff000000000aaaa`);
      expect(v.info).toMatchObject({ snapshotHandle: v.snapshotId, volumeAZ: v.volumeAZ });
    }
  });

  it("fails with exit 2 and one line naming the PV and the snapshot when a copy is missing, writing nothing", () => {
    // arrange
    const dir = backupDir();
    const out = outDir();
    const missing = PVS[2];
    const copyOf = new Map(COPY_OF);
    copyOf.delete(missing?.sourceSnapshotId ?? "");
    // act
    const r = dr(args(dir, out, mapFile(copyOf)));
    // assert
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      `dr: velero rewrite: no failover copy of snapshot ${missing?.sourceSnapshotId} (PV ${missing?.name})\n`,
    );
    expect(existsSync(out)).toBe(false);
  });
});

describe("dr velero rewrite (in process)", () => {
  it("prints the summary as JSON with --json, taking an inline --map and --combined-ids", async () => {
    // arrange
    const { io, out } = memoryIo();
    const inline = [...COPY_OF].map(([a, b]) => `${a}=${b}`).join(",");
    const dest = outDir();
    // act
    const code = await main([...args(backupDir(), dest, inline), "--combined-ids", "--json"], io);
    // assert
    expect(out.stderr).toBe("");
    expect(code).toBe(EXIT.ok);
    const summary = JSON.parse(out.stdout);
    expect(summary).toMatchObject({
      backup: BACKUP,
      failoverRegion: "us-west-2",
      volumeSnapshots: 3,
      volumeInfos: 3,
      tarEntries: 6,
      combinedIds: true,
      out: dest,
      files: 10,
    });
    expect(summary.volumes[PVS[0]?.name ?? ""].snapshotId).toBe(
      `us-east-1/${PVS[0]?.sourceSnapshotId};us-west-2/${PVS[0]?.copySnapshotId}`,
    );
  });

  it("a Velero 1.16 backup mixing native and CSI volumes: every handle a restore reads names a failover copy", async () => {
    // arrange
    const { io, out } = memoryIo();
    const dest = outDir();
    const input = mixedBackupFiles();
    const inline = [...MIXED_COPY_OF].map(([a, b]) => `${a}=${b}`).join(",");
    // act
    const code = await main(args(backupDir(input), dest, inline), io);
    // assert
    expect(out.stderr).toBe("");
    expect(code).toBe(EXIT.ok);
    expect(out.stdout).toContain("2 CSI snapshot handle(s) (8 VolumeSnapshot/VolumeSnapshotContent entries)");
    const sources = new Set([...MIXED_COPY_OF.keys()]);
    const copies = new Set([...MIXED_COPY_OF.values()]);
    // no source snapshot id is left anywhere a restore reads (every file, the tarball extracted)
    const extracted = join(dest, "..", `${dest.split("/").at(-1)}-extracted`);
    mkdirSync(extracted);
    expect(spawnSync("tar", ["-xzf", join(dest, `${BACKUP}.tar.gz`), "-C", extracted]).status).toBe(0);
    const texts = [
      ...readdirSync(dest)
        .filter((n) => n.endsWith(".json.gz"))
        .map((n) => gunzipSync(readFileSync(join(dest, n))).toString()),
      ...["cluster", "v1-preferredversion/cluster"].flatMap((d) => {
        const dir = join(extracted, "resources/volumesnapshotcontents.snapshot.storage.k8s.io", d);
        return readdirSync(dir).map((f) => readFileSync(join(dir, f), "utf8"));
      }),
      ...["namespaces/cbci", "v1-preferredversion/namespaces/cbci"].flatMap((d) => {
        const dir = join(extracted, "resources/volumesnapshots.snapshot.storage.k8s.io", d);
        return readdirSync(dir).map((f) => readFileSync(join(dir, f), "utf8"));
      }),
    ];
    const ids = texts.flatMap((t) => t.match(/snap-[0-9a-f]{17}/g) ?? []);
    expect(ids.length).toBeGreaterThan(0);
    for (const id of ids) {
      expect(sources.has(id)).toBe(false);
      expect(copies.has(id)).toBe(true);
    }
    for (const p of CSI_PVS) expect(ids).toContain(p.copySnapshotId);
    // native records also get failover zones
    const records = JSON.parse(
      gunzipSync(readFileSync(join(dest, `${BACKUP}-volumesnapshots.json.gz`))).toString(),
    );
    for (const r of records) expect(r.spec.volumeAZ).toMatch(/^us-west-2[abc]$/);
  });

  it("exits 2 naming the CSI volume and its snapshot when its copy is missing, writing nothing", async () => {
    // arrange
    const { io, out } = memoryIo();
    const dest = outDir();
    const missing = CSI_PVS[0] as (typeof CSI_PVS)[number];
    const copyOf = new Map(MIXED_COPY_OF);
    copyOf.delete(missing.sourceSnapshotId);
    // act
    const code = await main(args(backupDir(mixedBackupFiles()), dest, mapFile(copyOf)), io);
    // assert
    expect(code).toBe(EXIT.invalidInput);
    expect(out.stdout).toBe("");
    expect(out.stderr).toMatch(
      new RegExp(
        `^dr: velero rewrite: no failover copy of snapshot ${missing.sourceSnapshotId} \\(PV ${missing.name}, VolumeSnapshotContent snapcontent-[0-9a-f-]+\\)\n$`,
      ),
    );
    expect(existsSync(dest)).toBe(false);
  });

  it("refuses a non-empty --out (exit 64) unless --force", async () => {
    // arrange
    const dir = backupDir();
    const dest = outDir();
    mkdirSync(dest);
    writeFileSync(join(dest, "stale"), "x");
    const first = memoryIo();
    const second = memoryIo();
    // act
    const refused = await main(args(dir, dest, mapFile(COPY_OF)), first.io);
    const forced = await main([...args(dir, dest, mapFile(COPY_OF)), "--force"], second.io);
    // assert
    expect(refused).toBe(EXIT.usage);
    expect(first.out.stderr).toBe(
      `dr: velero rewrite: --out ${dest} is not empty (--force writes into it, replacing files of the same name)\n`,
    );
    expect(forced).toBe(EXIT.ok);
    expect(readdirSync(dest)).toContain(`${BACKUP}.tar.gz`);
  });

  it("exits 64 with one line for a missing option or a malformed option value", async () => {
    // arrange
    const dir = backupDir();
    const cases: [string[], string][] = [
      [
        args(dir, outDir(), "x").filter((a, i, all) => a !== "--dir" && all[i - 1] !== "--dir"),
        "--dir is required",
      ],
      [
        [...args(dir, outDir(), mapFile(COPY_OF)), "--zones", "us-east-1a"],
        '--zones: "us-east-1a" is not FROM=TO',
      ],
      [args(dir, outDir(), "snap-1=snap-2"), '--map: "snap-1" is not an EBS snapshot id'],
      [
        [...args(dir, outDir(), mapFile(COPY_OF)), "--zones", "us-east-1a=eu-west-1a"],
        'zone map: "eu-west-1a" is not a zone of the failover region us-west-2',
      ],
    ];
    for (const [argv, message] of cases) {
      const { io, out } = memoryIo();
      // act
      const code = await main(argv, io);
      // assert
      expect(code).toBe(EXIT.usage);
      expect(out.stderr).toBe(`dr: velero rewrite: ${message}\n`);
    }
  });

  it("exits 2 with one line for an unknown zone, malformed files or an unreadable map file", async () => {
    // arrange
    const files = backupFiles();
    const broken = { ...files, "velero-backup.json": Buffer.from('{"kind":"ConfigMap","apiVersion":"v1"}') };
    const cases: [string[], RegExp][] = [
      [
        [...args(backupDir(), outDir(), mapFile(COPY_OF)), "--zones", "us-east-1a=us-west-2a"],
        /^dr: velero rewrite: PV pvc-8b2e4d61-1f3a-4c5b-8d7e-9f0a1b2c3d22: zone us-east-1b is not in the zone map \(us-east-1a\) and no default zone is set\n$/,
      ],
      [
        args(backupDir(broken), outDir(), mapFile(COPY_OF)),
        /^dr: velero rewrite: velero-backup\.json is not a velero\.io\/v1 Backup \(apiVersion "v1", kind "ConfigMap"\)\n$/,
      ],
      [
        args(backupDir(), outDir(), join(work, "nope.json")),
        /^dr: velero rewrite: --map .*nope\.json: ENOENT/,
      ],
      [
        args(join(work, "no-such-dir"), outDir(), mapFile(COPY_OF)),
        /^dr: velero rewrite: cannot read --dir .*ENOENT/,
      ],
    ];
    for (const [argv, message] of cases) {
      const { io, out } = memoryIo();
      // act
      const code = await main(argv, io);
      // assert
      expect(code).toBe(EXIT.invalidInput);
      expect(out.stderr).toMatch(message);
      expect(out.stderr.trimEnd().split("\n")).toHaveLength(1);
    }
  });

  it("is listed by dr --help", async () => {
    const { io, out } = memoryIo();
    expect(await main(["--help"], io)).toBe(EXIT.ok);
    expect(out.stdout).toContain("dr velero rewrite --dir DIR");
  });
});
