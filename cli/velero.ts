/**
 * `dr velero rewrite`: the failover rewrite (functions/core/velero.ts) over a local directory of one
 * backup's files, as `aws s3 sync s3://<bucket>/backups/<name>/ <dir>` leaves them. Reads the whole
 * backup, rewrites it in memory, and only then writes the output directory (velero-backup.json last,
 * since its presence is what Velero's sync looks for), so a failed rewrite writes nothing.
 */
import type { Dirent } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError, errorMessage } from "../functions/core/errors.js";
import {
  isRewriteInputError,
  METADATA_FILE,
  type RewriteSummary,
  rewriteBackupFileSet,
  SNAPSHOT_ID,
} from "../functions/core/velero.js";
import type { Command } from "./dr.js";

/** dr.ts's exit codes (not imported: dr.ts imports this module). */
const EXIT = { ok: 0, invalidInput: 2, usage: 64 } as const;

/** A command line that cannot be run as given: exit 64. */
class UsageError extends Error {}
/** Input files that cannot be read: exit 2, like malformed ones. */
class InputError extends Error {}

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim();

function pairs(value: string, option: string): [string, string][] {
  return value
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "")
    .map((p) => {
      const [from, to, ...rest] = p.split("=").map((s) => s.trim());
      if (!from || !to || rest.length > 0) throw new UsageError(`${option}: "${p}" is not FROM=TO`);
      return [from, to];
    });
}

/** `--zones us-east-1a=us-west-2a,...` */
export function parseZones(value: string): Record<string, string> {
  const map: Record<string, string> = {};
  for (const [from, to] of pairs(value, "--zones")) {
    if (map[from] !== undefined && map[from] !== to) throw new UsageError(`--zones maps ${from} twice`);
    map[from] = to;
  }
  return map;
}

/**
 * `--map src=copy,...` inline, or `--map file.json` holding `{ "snap-src": "snap-copy", ... }`. The
 * sources are native snapshots and CSI snapshot handles alike (the EBS CSI driver's handle is the
 * EBS snapshot's id).
 */
export async function readCopyMap(value: string): Promise<Map<string, string>> {
  let entries: [string, string][];
  if (value.includes("=")) {
    entries = pairs(value, "--map");
  } else {
    let json: unknown;
    try {
      json = JSON.parse(await readFile(value, "utf8"));
    } catch (err) {
      throw new InputError(`--map ${value}: ${errorMessage(err)}`);
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new InputError(`--map ${value}: must be a JSON object of source snapshot id -> copy id`);
    }
    entries = Object.entries(json).map(([from, to]) => {
      if (typeof to !== "string") throw new InputError(`--map ${value}: the copy of ${from} is not a string`);
      return [from, to];
    });
  }
  const map = new Map<string, string>();
  for (const [from, to] of entries) {
    for (const id of [from, to]) {
      if (!SNAPSHOT_ID.test(id)) throw new UsageError(`--map: "${id}" is not an EBS snapshot id`);
    }
    if (map.has(from) && map.get(from) !== to) throw new UsageError(`--map maps ${from} twice`);
    map.set(from, to);
  }
  return map;
}

async function readBackupDir(dir: string): Promise<Record<string, Buffer>> {
  const files: Record<string, Buffer> = {};
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new InputError(`cannot read --dir ${dir}: ${errorMessage(err)}`);
  }
  for (const e of entries) {
    if (!e.isFile())
      throw new InputError(`--dir ${dir}: ${e.name} is not a file (a backup directory is flat)`);
    files[e.name] = await readFile(join(dir, e.name));
  }
  return files;
}

async function prepareOut(out: string, force: boolean): Promise<void> {
  let existing: string[] = [];
  try {
    existing = await readdir(out);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new UsageError(`--out ${out}: ${errorMessage(err)}`);
    }
  }
  if (existing.length > 0 && !force) {
    throw new UsageError(
      `--out ${out} is not empty (--force writes into it, replacing files of the same name)`,
    );
  }
  await mkdir(out, { recursive: true });
}

function summaryLine(s: RewriteSummary, files: number, out: string): string {
  const zones = [
    ...new Set(Object.values(s.volumes).map((v) => `${v.sourceZone ?? "(none)"}->${v.zone}`)),
  ].sort();
  return (
    `rewrote backup ${s.backup} for ${s.failoverRegion}: ${s.volumeSnapshots} volume snapshot(s)` +
    `${s.combinedIds ? " (combined ids)" : ""}, ${s.volumeInfos} volume info(s), ` +
    (Object.keys(s.csiSnapshots).length > 0
      ? `${Object.keys(s.csiSnapshots).length} CSI snapshot handle(s) (${s.snapshotObjectEntries} VolumeSnapshot/VolumeSnapshotContent entries), `
      : "") +
    `${s.persistentVolumes.length} PV(s) in ${s.tarEntries} tarball entries; ` +
    `zones ${zones.join(", ") || "none"}; ${files} files in ${out}`
  );
}

const string = (v: unknown) => (typeof v === "string" ? v : undefined);

export const veleroRewrite: Command = {
  path: ["velero", "rewrite"],
  args:
    "--dir DIR --map FILE.json|SRC=COPY,... --zones SRC=DST,... [--default-zone AZ] " +
    "--source-region R --failover-region R [--combined-ids] --out DIR [--force] [--json]",
  summary:
    "rewrite one Velero backup's files so stock Velero restores it from snapshot copies in the failover region",
  options: {
    dir: { type: "string" },
    map: { type: "string" },
    zones: { type: "string" },
    "default-zone": { type: "string" },
    "source-region": { type: "string" },
    "failover-region": { type: "string" },
    "combined-ids": { type: "boolean" },
    out: { type: "string" },
    force: { type: "boolean" },
    json: { type: "boolean" },
  },
  async run({ values, io }) {
    const fail = (code: number, message: string) => {
      io.stderr(`dr: velero rewrite: ${oneLine(message)}\n`);
      return code;
    };
    try {
      const need = (name: string) => {
        const v = string(values[name]);
        if (!v) throw new UsageError(`--${name} is required`);
        return v;
      };
      const dir = need("dir");
      const out = need("out");
      const zoneMap = parseZones(need("zones"));
      const sourceRegion = need("source-region");
      const failoverRegion = need("failover-region");
      const copyOf = await readCopyMap(need("map"));
      const defaultZone = string(values["default-zone"]);

      const files = await readBackupDir(dir);
      const { replaced, summary } = rewriteBackupFileSet(files, {
        copyOf,
        zoneMap,
        ...(defaultZone ? { defaultZone } : {}),
        sourceRegion,
        failoverRegion,
        combinedIds: values["combined-ids"] === true,
      });

      await prepareOut(out, values.force === true);
      const names = Object.keys(files).sort(
        (a, b) => Number(a === METADATA_FILE) - Number(b === METADATA_FILE),
      );
      for (const name of names) await writeFile(join(out, name), replaced[name] ?? (files[name] as Buffer));

      io.stdout(
        values.json
          ? `${JSON.stringify({ ...summary, out, files: names.length, replaced: Object.keys(replaced).sort() })}\n`
          : `${summaryLine(summary, names.length, out)}\n`,
      );
      return EXIT.ok;
    } catch (err) {
      if (err instanceof UsageError || err instanceof ConfigError) return fail(EXIT.usage, err.message);
      if (err instanceof InputError || isRewriteInputError(err)) return fail(EXIT.invalidInput, err.message);
      throw err;
    }
  },
};
