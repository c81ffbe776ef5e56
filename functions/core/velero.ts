/**
 * Velero's backup files, parsed at the edge, and the rewrite that makes a backup restorable by STOCK
 * Velero + velero-plugin-for-aws in the failover region from copies of its EBS snapshots.
 *
 * ## What Velero reads at restore (sources read: vmware-tanzu/velero and velero-plugin-for-aws)
 * - pkg/persistence/object_store_layout.go, object_store.go: a backup is `backups/<name>/` with
 *   `velero-backup.json`, `<name>.tar.gz`, `<name>-volumesnapshots.json.gz`, `<name>-volumeinfo.json.gz`
 *   (1.13+) and others; the `.json.gz` files are gzip JSON read with Go's encoding/json
 *   (`decode()`), which matches keys case-insensitively. pkg/controller/backup_controller.go
 *   (`encodeToJSONGzip`) writes them with `json.NewEncoder`: compact, `<>&` escaped, trailing newline.
 * - pkg/volume/snapshot.go (internal/volume/native_snapshot.go from 1.14): a volumesnapshots record
 *   is `{spec: {backupName, backupUID, location, persistentVolumeName, providerVolumeID, volumeType,
 *   volumeAZ, volumeIOPS}, status: {providerSnapshotID, phase}}`. Velero 1.11 and later write
 *   `persistentVolumeName`; 1.10 and older wrote `PersistentVolumeName` (a malformed struct tag,
 *   `json:persistentVolumeName` unquoted, made Go use the field name; fixed for 1.11). Go's decoder
 *   matches keys case-insensitively, so every version reads both; we read keys as Go does
 *   (case-insensitive, last wins) and write values back under the key the file used.
 * - pkg/restore/restore.go (restoreItem): a PV with a snapshot record goes through
 *   `pvRestorer.executePVAction` *before* restore item actions and resource modifiers run.
 *   pkg/restore/pv_restorer.go (getSnapshotInfo): the FIRST record whose PersistentVolumeName is the
 *   PV's name wins; the VolumeSnapshotLocation named `spec.location` is fetched from the restoring
 *   cluster; then `CreateVolumeFromSnapshot(status.providerSnapshotID, spec.volumeType,
 *   spec.volumeAZ, spec.volumeIOPS)` and `SetVolumeID(pv, newVolumeID)`.
 * - velero-plugin-for-aws/volume_snapshotter.go: CreateVolumeFromSnapshot describes the snapshot by
 *   id (in the VSL's region) and creates the volume in `volumeAZ` (IOPS only for io1/io2).
 *   SetVolumeID sets `spec.csi.volumeHandle` for `ebs.csi.aws.com` PVs, and for in-tree PVs
 *   `spec.awsElasticBlockStore.volumeID = aws://<failure-domain.beta.kubernetes.io/zone label>/<id>`
 *   (the bare id when the label is absent). It touches no label and no nodeAffinity.
 * - pkg/backup/item_backupper.go: each item is in the tarball twice,
 *   `resources/persistentvolumes/cluster/<pv>.json` and
 *   `resources/persistentvolumes/v1-preferredversion/cluster/<pv>.json` (the one restore reads
 *   depends on the API-group-versions feature), so both are rewritten.
 * - internal/volume/volumes_information.go: a volumeinfo entry is `{pvcName, pvcNamespace, pvName,
 *   backupMethod, snapshotDataMoved, skipped, ..., result (1.15+), nativeSnapshotInfo:
 *   {snapshotHandle (= providerSnapshotID), volumeType, volumeAZ, iops (a string), Phase},
 *   pvInfo: {reclaimPolicy, labels (the PV's)}}`, with `csiSnapshotInfo: {snapshotHandle, driver,
 *   vscName, ...}` for CSISnapshot, `snapshotDataMovementInfo` when the data mover moved it and
 *   `pvbInfo` for PodVolumeBackup (file-system backup); restore picks the PV's method from it and
 *   `velero backup describe` shows the snapshot ids from it. Only native snapshots have a
 *   volumesnapshots record; CSI ones are counted in the status's `csiVolumeSnapshotsAttempted`.
 * - pkg/controller/backup_sync_controller.go: the standby cluster's sync overwrites
 *   `spec.storageLocation` (and its label) with its own BSL's name, so velero-backup.json is kept
 *   byte for byte.
 *
 * ## The rewrite
 * volumesnapshots: `status.providerSnapshotID` -> the copy's id (or the CloudBees fork's
 * `SRC_REGION/snap-src;DST_REGION/snap-copy`, which only the fork's plugin understands),
 * `spec.volumeAZ` -> the mapped failover zone; every other field, unknown ones included, kept
 * (`spec.location` too: the standby cluster needs a VolumeSnapshotLocation of that name whose
 * region is the failover region, and its BSL must be ReadOnly so its GC never deletes the copies).
 * volumeinfo: the same id and zone in `nativeSnapshotInfo`, and the zone/region labels in `pvInfo`.
 * tarball: each PV that has a record is moved to the zone its volume will be created in: the zone and
 * region labels (`topology.kubernetes.io/*`, `failure-domain.beta.kubernetes.io/*`), `In` terms of
 * its required nodeAffinity on those keys and on `topology.ebs.csi.aws.com/zone`, and an in-tree
 * `aws://<zone>/vol-...` volumeID prefix (SetVolumeID rebuilds it from the failure-domain label,
 * which is why that label must already name the failover zone).
 * CSI snapshots (Velero 1.14+): each handle is replaced by its copy's plain id (never a combined
 * id) wherever a restore reads it: volumeinfo `csiSnapshotInfo.snapshotHandle` (CSISnapshot, not
 * data-moved), the VolumeSnapshotContents' `status.snapshotHandle` (and `spec.source.snapshotHandle`
 * when set) and the VolumeSnapshots' `velero.io/csi-volumesnapshot-handle` annotation, in the
 * tarball under both resource paths and in `<name>-csi-volumesnapshot(content)s.json.gz`. Those
 * objects are edited as text (swapJsonStrings) so their int64 fields keep every digit. A CSI handle
 * without a copy fails the rewrite like a native one (MissingCopyError). Other entries are untouched.
 *
 * ## Why no restore resource-modifier ConfigMap
 * The tarball rewrite is necessary and sufficient. Necessary: SetVolumeID reads the in-tree PV's
 * zone label during executePVAction, before resource modifiers run, and a modifier's JSON patch
 * cannot write the volumeID itself (the new volume's id is unknown until restore). Sufficient: the
 * labels and nodeAffinity are plain data in the PV objects we rewrite. A ConfigMap would add
 * nothing but a step every restore must remember (`--resource-modifier-configmap`), and index-based
 * patches of nodeSelectorTerms that break on the next PV's shape.
 */

import { gunzipSync, gzipSync } from "node:zlib";
import * as z from "zod/mini";
import { REGION_PATTERN } from "./config.js";
import { ConfigError, DrError, errorMessage } from "./errors.js";
import {
  listTarEntries,
  replaceTarData,
  type TarEntry,
  type TarEntryEditor,
  TarFormatError,
  tarEntryData,
} from "./velero-rewrite.js";

/** A Velero file that is not what Velero writes: not JSON, not gzip, not a Backup, a bad record or tarball. */
export class InvalidBackupError extends DrError {}

/**
 * A snapshot a restore would read that has no copy in the failover region, and the volume it is
 * of: a native snapshot's PV, or a CSI snapshot's PV (from volumeinfo), VolumeSnapshotContent and,
 * when only a VolumeSnapshot names it, that VolumeSnapshot (`namespace/name`).
 */
export interface MissingCopy {
  sourceSnapshotId: string;
  pvName?: string;
  volumeSnapshotContent?: string;
  volumeSnapshot?: string;
}

const describeMissing = (m: MissingCopy) => {
  const names = [
    m.pvName !== undefined ? `PV ${m.pvName}` : undefined,
    m.volumeSnapshotContent !== undefined ? `VolumeSnapshotContent ${m.volumeSnapshotContent}` : undefined,
    m.volumeSnapshot !== undefined ? `VolumeSnapshot ${m.volumeSnapshot}` : undefined,
  ].filter((n) => n !== undefined);
  return `${m.sourceSnapshotId} (${names.join(", ") || "no volume named"})`;
};

/** Records whose source snapshot has no copy in the failover region: restoring them would fail. */
export class MissingCopyError extends DrError {
  constructor(readonly missing: readonly MissingCopy[]) {
    const list = missing.map(describeMissing);
    super(
      missing.length === 1
        ? `no failover copy of snapshot ${list[0]}`
        : `no failover copy of ${missing.length} snapshots: ${list.join(", ")}`,
    );
  }
}

/** A volume's zone that the zone map does not cover (and no default zone is set), or of another region. */
export class UnknownZoneError extends DrError {
  constructor(
    message: string,
    readonly zone: string | null,
  ) {
    super(message);
  }
}

/** The errors that mean "this backup, with these copies and zones, cannot be rewritten". */
export const isRewriteInputError = (err: unknown): err is DrError =>
  err instanceof InvalidBackupError || err instanceof MissingCopyError || err instanceof UnknownZoneError;

export const SNAPSHOT_ID = /^snap-[0-9a-f]{8,17}$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

export const ZONE_KEYS = [
  "topology.kubernetes.io/zone",
  "failure-domain.beta.kubernetes.io/zone",
  "topology.ebs.csi.aws.com/zone",
] as const;
export const REGION_KEYS = [
  "topology.kubernetes.io/region",
  "failure-domain.beta.kubernetes.io/region",
] as const;
const IN_TREE_VOLUME_ID = /^aws:\/\/[^/]*\//;
const PV_ENTRY = /^(?:\.\/)?resources\/persistentvolumes\/(?:[^/]+\/)?cluster\/[^/]+\.json$/;

// ---------------------------------------------------------------------------------------------
// Reading JSON the way Go's encoding/json does

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Keys of `o` that Go would decode into field `name` (case-insensitive; the last one wins). */
const goKeys = (o: Obj, name: string) => Object.keys(o).filter((k) => k.toLowerCase() === name.toLowerCase());
const goGet = (o: Obj, name: string): unknown => {
  const keys = goKeys(o, name);
  const last = keys[keys.length - 1];
  return last === undefined ? undefined : o[last];
};
/** Sets field `name` under every key Go would read it from, or adds it under `name`. */
function goSet(o: Obj, name: string, value: unknown): void {
  const keys = goKeys(o, name);
  if (keys.length === 0) o[name] = value;
  for (const k of keys) o[k] = value;
}

/** A zod object over Go's view of a JSON object: each field read as Go would read it. */
function goObject<S extends Record<string, z.core.$ZodType>>(shape: S) {
  const names = Object.keys(shape);
  return z.pipe(
    z.transform((v: unknown) => {
      if (!isObj(v)) return v;
      const view: Obj = {};
      for (const n of names) {
        const value = goGet(v, n);
        if (value !== undefined) view[n] = value;
      }
      return view;
    }),
    z.object(shape),
  );
}

const maybe = <T extends z.core.$ZodType>(s: T) => z.optional(z.nullable(s));
const text = z.string();
const nonEmpty = z.string().check(z.minLength(1, { error: "must not be empty" }));
const count = z.number().check(z.int(), z.gte(0, { error: "must be a whole number >= 0" }));
const time = z.pipe(
  z.string(),
  z.transform((s: string, ctx) => {
    const ms = RFC3339.test(s) ? Date.parse(s) : Number.NaN;
    if (!Number.isNaN(ms)) return new Date(ms).toISOString();
    ctx.issues.push({ code: "custom", message: `is not an RFC 3339 time: ${JSON.stringify(s)}`, input: s });
    return z.NEVER;
  }),
);

function typeName(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

const messages: z.core.$ZodErrorMap = (issue) => {
  if (issue.code === "invalid_type") {
    if (issue.input === undefined) return "is required";
    const expected = issue.expected === "record" ? "object" : issue.expected;
    return `must be ${/^[aeiou]/.test(expected) ? "an" : "a"} ${expected}, got ${typeName(issue.input)}`;
  }
  if (issue.code === "invalid_value")
    return `must be ${issue.values.map((v) => JSON.stringify(v)).join(" or ")}`;
  return undefined;
};

function parseWith<S extends z.core.$ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const parsed = z.safeParse(schema, input, { error: messages });
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = (issue?.path ?? []).map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("");
  throw new InvalidBackupError(`${what}${path} ${issue?.message ?? "is invalid"}`);
}

// ---------------------------------------------------------------------------------------------
// velero-backup.json

const BackupSchema = z.object({
  apiVersion: z.literal("velero.io/v1"),
  kind: z.literal("Backup"),
  metadata: z.object({
    name: z.string().check(
      z.maxLength(253, { error: "is longer than 253 characters" }),
      z.regex(DNS_SUBDOMAIN, {
        error: (i) => `is not a Kubernetes object name: ${JSON.stringify(i.input)}`,
      }),
    ),
    namespace: maybe(text),
    uid: maybe(text),
    labels: maybe(z.record(z.string(), z.string())),
  }),
  spec: maybe(z.object({ storageLocation: maybe(text) })),
  status: maybe(
    z.object({
      phase: maybe(text),
      startTimestamp: maybe(time),
      completionTimestamp: maybe(time),
      expiration: maybe(time),
      errors: maybe(count),
      warnings: maybe(count),
      volumeSnapshotsAttempted: maybe(count),
      volumeSnapshotsCompleted: maybe(count),
      csiVolumeSnapshotsAttempted: maybe(count),
      csiVolumeSnapshotsCompleted: maybe(count),
    }),
  ),
});

/** What velero-backup.json says of a backup. Absent optional fields are null (counts 0). */
export interface VeleroBackup {
  name: string;
  namespace: string | null;
  uid: string | null;
  labels: Record<string, string>;
  /** The `velero.io/schedule-name` label. */
  schedule: string | null;
  storageLocation: string | null;
  phase: string | null;
  startTimestamp: string | null;
  completionTimestamp: string | null;
  expiration: string | null;
  errors: number;
  warnings: number;
  volumeSnapshotsAttempted: number;
  volumeSnapshotsCompleted: number;
  /** VolumeSnapshots Velero's CSI support took (none with the data mover), and those that completed. */
  csiVolumeSnapshotsAttempted: number;
  csiVolumeSnapshotsCompleted: number;
}

/** Parses `velero-backup.json` (a velero.io/v1 Backup). Throws InvalidBackupError for anything else. */
export function parseVeleroBackup(json: unknown): VeleroBackup {
  if (!isObj(json))
    throw new InvalidBackupError(`velero-backup.json must be an object, got ${typeName(json)}`);
  if (json.apiVersion !== "velero.io/v1" || json.kind !== "Backup") {
    throw new InvalidBackupError(
      `velero-backup.json is not a velero.io/v1 Backup (apiVersion ${JSON.stringify(json.apiVersion ?? null)}, kind ${JSON.stringify(json.kind ?? null)})`,
    );
  }
  const b = parseWith(BackupSchema, json, "velero-backup.json");
  const labels = b.metadata.labels ?? {};
  const s = b.status ?? {};
  return {
    name: b.metadata.name,
    namespace: b.metadata.namespace || null,
    uid: b.metadata.uid || null,
    labels,
    schedule: labels["velero.io/schedule-name"] || null,
    storageLocation: b.spec?.storageLocation || null,
    phase: s.phase || null,
    startTimestamp: s.startTimestamp ?? null,
    completionTimestamp: s.completionTimestamp ?? null,
    expiration: s.expiration ?? null,
    errors: s.errors ?? 0,
    warnings: s.warnings ?? 0,
    volumeSnapshotsAttempted: s.volumeSnapshotsAttempted ?? 0,
    volumeSnapshotsCompleted: s.volumeSnapshotsCompleted ?? 0,
    csiVolumeSnapshotsAttempted: s.csiVolumeSnapshotsAttempted ?? 0,
    csiVolumeSnapshotsCompleted: s.csiVolumeSnapshotsCompleted ?? 0,
  };
}

// ---------------------------------------------------------------------------------------------
// <name>-volumesnapshots.json.gz

const RecordSchema = goObject({
  spec: goObject({
    backupName: nonEmpty,
    backupUID: maybe(text),
    location: nonEmpty,
    persistentVolumeName: nonEmpty,
    providerVolumeID: maybe(text),
    volumeType: maybe(text),
    volumeAZ: maybe(text),
    volumeIOPS: maybe(count),
  }),
  status: maybe(goObject({ providerSnapshotID: maybe(text), phase: maybe(text) })),
});

/** One native volume snapshot of a backup, as Velero's restore reads it, with the record it came from. */
export interface VolumeSnapshotRecord {
  backupName: string;
  backupUID: string | null;
  /** The VolumeSnapshotLocation's name; restore looks it up in the restoring cluster. */
  location: string;
  persistentVolumeName: string;
  providerVolumeID: string | null;
  volumeType: string | null;
  volumeAZ: string | null;
  volumeIOPS: number | null;
  providerSnapshotID: string | null;
  phase: string | null;
  /** The record as it was in the file (every field, unknown ones too); never mutated. */
  raw: Obj;
}

/** Parses the (gunzipped) array of `<name>-volumesnapshots.json.gz`; `null` (no snapshots) is []. */
export function parseVolumeSnapshots(records: unknown): VolumeSnapshotRecord[] {
  if (records === null) return [];
  if (!Array.isArray(records)) {
    throw new InvalidBackupError(`volumesnapshots must be an array of records, got ${typeName(records)}`);
  }
  return records.map((raw, i) => {
    if (!isObj(raw))
      throw new InvalidBackupError(`volumesnapshots[${i}] must be an object, got ${typeName(raw)}`);
    const { spec, status } = parseWith(RecordSchema, raw, `volumesnapshots[${i}]`);
    return {
      backupName: spec.backupName,
      backupUID: spec.backupUID || null,
      location: spec.location,
      persistentVolumeName: spec.persistentVolumeName,
      providerVolumeID: spec.providerVolumeID || null,
      volumeType: spec.volumeType || null,
      volumeAZ: spec.volumeAZ || null,
      volumeIOPS: spec.volumeIOPS ?? null,
      providerSnapshotID: status?.providerSnapshotID || null,
      phase: status?.phase || null,
      raw,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// <name>-volumeinfo.json.gz (Velero 1.13+)

const VolumeInfoSchema = goObject({
  pvcName: maybe(text),
  pvcNamespace: maybe(text),
  pvName: maybe(text),
  backupMethod: maybe(text),
  snapshotDataMoved: maybe(z.boolean()),
  skipped: maybe(z.boolean()),
  skippedReason: maybe(text),
  result: maybe(text),
  csiSnapshotInfo: maybe(
    goObject({ snapshotHandle: maybe(text), driver: maybe(text), vscName: maybe(text) }),
  ),
  snapshotDataMovementInfo: maybe(goObject({ snapshotHandle: maybe(text), dataMover: maybe(text) })),
  nativeSnapshotInfo: maybe(
    goObject({
      snapshotHandle: maybe(text),
      volumeType: maybe(text),
      volumeAZ: maybe(text),
      iops: maybe(z.union([z.string(), z.number()])),
    }),
  ),
  pvbInfo: maybe(
    goObject({
      snapshotHandle: maybe(text),
      uploaderType: maybe(text),
      volumeName: maybe(text),
      podName: maybe(text),
      podNamespace: maybe(text),
    }),
  ),
  pvInfo: maybe(goObject({ labels: maybe(z.record(z.string(), z.string())) })),
});

/**
 * One entry of `<name>-volumeinfo.json.gz`. `backupMethod` is NativeSnapshot, CSISnapshot (with
 * `snapshotDataMoved` when the data mover moved it: a DataUpload) or PodVolumeBackup (file-system
 * backup); empty for a skipped volume. `result` is "succeeded" or "failed" from Velero 1.15 on.
 */
export interface VolumeInfoEntry {
  pvcName: string | null;
  pvcNamespace: string | null;
  pvName: string | null;
  backupMethod: string | null;
  snapshotDataMoved: boolean;
  skipped: boolean;
  skippedReason: string | null;
  result: string | null;
  nativeSnapshot: {
    snapshotHandle: string | null;
    volumeAZ: string | null;
    volumeType: string | null;
  } | null;
  /** CSISnapshot: the EBS snapshot (`snapshotHandle`; "unknown" when the data mover took it). */
  csiSnapshot: { snapshotHandle: string | null; driver: string | null; vscName: string | null } | null;
  /** The data mover's snapshot in the backup repository. */
  dataMovement: { snapshotHandle: string | null; dataMover: string | null } | null;
  /** PodVolumeBackup: the uploader's snapshot in the backup repository, and the pod's volume. */
  podVolumeBackup: {
    snapshotHandle: string | null;
    uploaderType: string | null;
    volumeName: string | null;
    podName: string | null;
    podNamespace: string | null;
  } | null;
  raw: Obj;
}

/** Parses the (gunzipped) array of `<name>-volumeinfo.json.gz`; `null` is []. */
export function parseVolumeInfo(entries: unknown): VolumeInfoEntry[] {
  if (entries === null) return [];
  if (!Array.isArray(entries)) {
    throw new InvalidBackupError(`volumeinfo must be an array, got ${typeName(entries)}`);
  }
  return entries.map((raw, i) => {
    if (!isObj(raw)) throw new InvalidBackupError(`volumeinfo[${i}] must be an object, got ${typeName(raw)}`);
    const v = parseWith(VolumeInfoSchema, raw, `volumeinfo[${i}]`);
    const n = v.nativeSnapshotInfo;
    const c = v.csiSnapshotInfo;
    const d = v.snapshotDataMovementInfo;
    const p = v.pvbInfo;
    return {
      pvcName: v.pvcName || null,
      pvcNamespace: v.pvcNamespace || null,
      pvName: v.pvName || null,
      backupMethod: v.backupMethod || null,
      snapshotDataMoved: v.snapshotDataMoved ?? false,
      skipped: v.skipped ?? false,
      skippedReason: v.skippedReason || null,
      result: v.result || null,
      nativeSnapshot: n
        ? {
            snapshotHandle: n.snapshotHandle || null,
            volumeAZ: n.volumeAZ || null,
            volumeType: n.volumeType || null,
          }
        : null,
      csiSnapshot: c
        ? { snapshotHandle: c.snapshotHandle || null, driver: c.driver || null, vscName: c.vscName || null }
        : null,
      dataMovement: d ? { snapshotHandle: d.snapshotHandle || null, dataMover: d.dataMover || null } : null,
      podVolumeBackup: p
        ? {
            snapshotHandle: p.snapshotHandle || null,
            uploaderType: p.uploaderType || null,
            volumeName: p.volumeName || null,
            podName: p.podName || null,
            podNamespace: p.podNamespace || null,
          }
        : null,
      raw,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Encoding as Velero does

/** Go's json.Marshal of already-ordered data: compact, with `<`, `>`, `&`, U+2028, U+2029 escaped. */
export function goJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** `<name>-*.json.gz` as Velero writes it (json.Encoder: compact, then a newline; gzip). */
export function gzipJson(value: unknown): Buffer {
  return gzipSync(`${goJson(value)}\n`);
}

/** A `.json.gz` file's text, gunzipped. */
export function gunzipText(bytes: Uint8Array, file: string): string {
  try {
    return gunzipSync(bytes).toString("utf8");
  } catch (err) {
    throw new InvalidBackupError(`${file} is not gzip (${errorMessage(err)})`, { cause: err });
  }
}

export function gunzipJson(bytes: Uint8Array, file: string): unknown {
  const textValue = gunzipText(bytes, file);
  try {
    return JSON.parse(textValue);
  } catch (err) {
    throw new InvalidBackupError(`${file} is not gzip JSON (${errorMessage(err)})`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// CSI snapshot handles (Velero 1.14 and later: CSI support built in)

/** The VolumeSnapshot annotation Velero 1.14 and 1.15's restore builds a VolumeSnapshotContent from. */
export const CSI_HANDLE_ANNOTATION = "velero.io/csi-volumesnapshot-handle";

const VSC_ENTRY =
  /^(?:\.\/)?resources\/volumesnapshotcontents\.snapshot\.storage\.k8s\.io\/(?:[^/]+\/)?cluster\/[^/]+\.json$/;
const VS_ENTRY =
  /^(?:\.\/)?resources\/volumesnapshots\.snapshot\.storage\.k8s\.io\/(?:[^/]+\/)?namespaces\/[^/]+\/[^/]+\.json$/;

export type SnapshotObjectKind = "VolumeSnapshot" | "VolumeSnapshotContent";

/**
 * The CSI snapshot handles a restore reads from one VolumeSnapshotContent (`status.snapshotHandle`,
 * which Velero 1.16+ copies into `spec.source.snapshotHandle`, and `spec.source.snapshotHandle`
 * when already set: a pre-provisioned content) or one VolumeSnapshot (the
 * `velero.io/csi-volumesnapshot-handle` annotation, read by 1.14 and 1.15; a VolumeSnapshot's
 * status names only its content, never the handle), and the object's name as errors give it.
 */
export function csiHandlesOf(obj: unknown, kind: SnapshotObjectKind): { name: string; handles: string[] } {
  const o = isObj(obj) ? obj : {};
  const meta = isObj(o.metadata) ? o.metadata : {};
  const name = typeof meta.name === "string" ? meta.name : "(unnamed)";
  const handles: string[] = [];
  const add = (v: unknown) => {
    if (typeof v === "string" && v !== "" && !handles.includes(v)) handles.push(v);
  };
  if (kind === "VolumeSnapshotContent") {
    const spec = isObj(o.spec) ? o.spec : {};
    add(isObj(o.status) ? o.status.snapshotHandle : undefined);
    add(isObj(spec.source) ? spec.source.snapshotHandle : undefined);
    return { name, handles };
  }
  add(isObj(meta.annotations) ? meta.annotations[CSI_HANDLE_ANNOTATION] : undefined);
  return { name: typeof meta.namespace === "string" ? `${meta.namespace}/${name}` : name, handles };
}

const isSpace = (c: string | undefined) => c === " " || c === "\t" || c === "\n" || c === "\r";

/**
 * `json` with every string VALUE equal to a key of `swap` replaced by its value, and every other
 * byte kept: no re-encoding, so int64 fields a JavaScript number cannot hold (a
 * VolumeSnapshotContent's `status.creationTime`, in nanoseconds) and key order stay as written.
 * A string token starts after `:`, `[` or `,`; one followed by `:` is a key and is kept.
 */
export function swapJsonStrings(json: string, swap: ReadonlyMap<string, string>): string {
  let out = json;
  for (const [from, to] of swap) {
    const needle = goJson(from);
    const replacement = goJson(to);
    const parts: string[] = [];
    let at = 0;
    for (let i = out.indexOf(needle); i !== -1; i = out.indexOf(needle, i + needle.length)) {
      let before = i - 1;
      while (isSpace(out[before])) before--;
      let after = i + needle.length;
      while (isSpace(out[after])) after++;
      const prev = out[before];
      if ((prev !== ":" && prev !== "[" && prev !== ",") || out[after] === ":") continue;
      parts.push(out.slice(at, i), replacement);
      at = i + needle.length;
    }
    if (parts.length > 0) out = parts.join("") + out.slice(at);
  }
  return out;
}

/**
 * The CSI half of a rewrite: the copy of each CSI snapshot handle, and the volume each handle is of
 * (from volumeinfo) to name when it has no copy. A CSI handle is always replaced by the copy's
 * plain id (the EBS CSI driver reads it; the CloudBees fork's combined ids are for native records).
 */
export interface CsiSnapshots {
  /** Source snapshot id -> its copy's id (the rewrite's `copyOf`). */
  copyOf: ReadonlyMap<string, string>;
  /** The CSI handles the backup's small files name -> the PV volumeinfo gives for it (if any). */
  volumes: ReadonlyMap<string, string | null>;
}

/** The objects of a JSON text holding one VolumeSnapshot(Content), an array of them, or null. */
function snapshotObjects(text: string, kind: SnapshotObjectKind, where: string): Obj[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new InvalidBackupError(`${where} is not JSON (${errorMessage(err)})`, { cause: err });
  }
  if (parsed === null) return [];
  const objects = Array.isArray(parsed) ? parsed : [parsed];
  return objects.map((obj, i) => {
    if (!isObj(obj)) {
      throw new InvalidBackupError(`${where}[${i}]: a ${kind} must be an object, got ${typeName(obj)}`);
    }
    return obj;
  });
}

/**
 * Rewrites the CSI handles of a JSON text holding one VolumeSnapshot(Content) object, or an array
 * of them (the `-csi-volumesnapshots` / `-csi-volumesnapshotcontents` lists): the text with each
 * handle swapped for its copy, or undefined when nothing changes. Handles without a copy are added
 * to `missing` (the text is then not rewritten), each handle once.
 */
function rewriteSnapshotObjects(
  text: string,
  kind: SnapshotObjectKind,
  csi: CsiSnapshots,
  missing: MissingCopy[],
  where: string,
): string | undefined {
  const swap = new Map<string, string>();
  for (const obj of snapshotObjects(text, kind, where)) {
    const { name, handles } = csiHandlesOf(obj, kind);
    for (const handle of handles) {
      const copy = csi.copyOf.get(handle);
      if (copy !== undefined) {
        swap.set(handle, copy);
        continue;
      }
      if (missing.some((m) => m.sourceSnapshotId === handle)) continue;
      const pv = csi.volumes.get(handle);
      missing.push({
        sourceSnapshotId: handle,
        ...(pv ? { pvName: pv } : {}),
        ...(kind === "VolumeSnapshotContent" ? { volumeSnapshotContent: name } : { volumeSnapshot: name }),
      });
    }
  }
  const out = swapJsonStrings(text, swap);
  return out === text ? undefined : out;
}

// ---------------------------------------------------------------------------------------------
// The failover rewrite

export interface FailoverOptions {
  /** Source snapshot id -> its completed copy's id in the failover region. */
  copyOf: ReadonlyMap<string, string>;
  /** Source availability zone -> availability zone of the failover region. */
  zoneMap: Readonly<Record<string, string>>;
  /** Failover zone for source zones missing from the map. */
  defaultZone?: string;
  sourceRegion: string;
  failoverRegion: string;
  /** Write the CloudBees fork's `SRC_REGION/snap-src;DST_REGION/snap-copy` ids instead of the copy's id. */
  combinedIds?: boolean;
}

export interface BackupFiles {
  /** velero-backup.json, parsed. Returned unchanged. */
  backupJson: unknown;
  /** The gunzipped array of `<name>-volumesnapshots.json.gz`. */
  volumeSnapshots: unknown;
  /** The gunzipped array of `<name>-volumeinfo.json.gz` (Velero 1.13+). */
  volumeInfo?: unknown;
  /** `<name>.tar.gz` as stored. */
  tarball?: Uint8Array;
  /**
   * The gunzipped text of `<name>-csi-volumesnapshots.json.gz` and
   * `<name>-csi-volumesnapshotcontents.json.gz` (Velero 1.14+; `null` without CSI snapshots). Kept
   * as text: the rewrite swaps the handles in it without re-encoding (see swapJsonStrings).
   */
  csiVolumeSnapshots?: string;
  csiVolumeSnapshotContents?: string;
}

export interface RewriteSummary {
  backup: string;
  sourceRegion: string;
  failoverRegion: string;
  /** Records rewritten. */
  volumeSnapshots: number;
  /** Volumeinfo entries rewritten. */
  volumeInfos: number;
  /** PVs whose objects in the tarball were moved to the failover zone. */
  persistentVolumes: string[];
  /** Tarball entries rewritten (each PV is there under each API version directory). */
  tarEntries: number;
  /** Of the tarball entries rewritten, the VolumeSnapshot(Content) objects (under each version dir). */
  snapshotObjectEntries: number;
  /** CSI snapshot handles rewritten in volumeinfo and the CSI lists: source handle -> copy. */
  csiSnapshots: Record<string, string>;
  /** PV name -> the snapshot id and zone its restore will use. */
  volumes: Record<
    string,
    { sourceSnapshotId: string; snapshotId: string; sourceZone: string | null; zone: string }
  >;
  combinedIds: boolean;
}

export interface RewrittenBackup {
  backup: VeleroBackup;
  backupJson: unknown;
  volumeSnapshots: Obj[];
  volumeInfo?: Obj[];
  /** The rewritten `<name>.tar.gz` (the input's bytes when no PV object needed a change). */
  tarball?: Buffer;
  /** The CSI lists' rewritten text, when a handle in them changed. */
  csiVolumeSnapshots?: string;
  csiVolumeSnapshotContents?: string;
  /** What the tarball's VolumeSnapshot(Content) objects are rewritten with. */
  csi: CsiSnapshots;
  summary: RewriteSummary;
}

/** A zone of `region`: `us-west-2a`, or a Local/Wavelength Zone such as `us-west-2-lax-1a`. */
export const isZoneOf = (zone: string, region: string) =>
  zone.startsWith(region) && /^(?:[a-z]|-[a-z0-9-]*[a-z0-9])$/.test(zone.slice(region.length));

/**
 * The part of a zone map (possibly covering several source regions) that concerns one source
 * region: a backup is rewritten with the entries of its own region only.
 */
export function zoneMapFor(
  zoneMap: Readonly<Record<string, string>>,
  sourceRegion: string,
): Record<string, string> {
  return Object.fromEntries(Object.entries(zoneMap).filter(([from]) => isZoneOf(from, sourceRegion)));
}

function validateOptions(o: FailoverOptions): void {
  for (const [name, region] of [
    ["source region", o.sourceRegion],
    ["failover region", o.failoverRegion],
  ] as const) {
    if (!REGION_PATTERN.test(region)) throw new ConfigError(`${name} is not an AWS region: "${region}"`);
  }
  if (o.sourceRegion === o.failoverRegion) {
    throw new ConfigError(`source and failover region are both ${o.sourceRegion}`);
  }
  for (const [from, to] of Object.entries(o.zoneMap)) {
    if (!isZoneOf(from, o.sourceRegion)) {
      throw new ConfigError(`zone map: "${from}" is not a zone of the source region ${o.sourceRegion}`);
    }
    if (!isZoneOf(to, o.failoverRegion)) {
      throw new ConfigError(`zone map: "${to}" is not a zone of the failover region ${o.failoverRegion}`);
    }
  }
  if (o.defaultZone !== undefined && !isZoneOf(o.defaultZone, o.failoverRegion)) {
    throw new ConfigError(
      `default zone "${o.defaultZone}" is not a zone of the failover region ${o.failoverRegion}`,
    );
  }
  if (Object.keys(o.zoneMap).length === 0 && o.defaultZone === undefined) {
    throw new ConfigError("the zone map is empty and no default zone is set");
  }
  for (const [from, to] of o.copyOf) {
    for (const id of [from, to]) {
      if (!SNAPSHOT_ID.test(id)) throw new ConfigError(`copy map: "${id}" is not an EBS snapshot id`);
    }
  }
}

/** The failover zone a volume of `zone` is restored in. */
function failoverZone(zone: string | null, pvName: string, o: FailoverOptions): string {
  if (zone === null) {
    if (o.defaultZone !== undefined) return o.defaultZone;
    throw new UnknownZoneError(
      `PV ${pvName}: its record has no spec.volumeAZ and no default zone is set`,
      null,
    );
  }
  if (!isZoneOf(zone, o.sourceRegion)) {
    throw new UnknownZoneError(
      `PV ${pvName}: zone ${zone} is not in the source region ${o.sourceRegion}`,
      zone,
    );
  }
  const mapped = o.zoneMap[zone] ?? o.defaultZone;
  if (mapped !== undefined) return mapped;
  const known = Object.keys(o.zoneMap).join(", ");
  throw new UnknownZoneError(
    `PV ${pvName}: zone ${zone} is not in the zone map (${known}) and no default zone is set`,
    zone,
  );
}

/**
 * Moves one PV object to `zone` of the failover region: zone and region labels that it has, `In`
 * terms of its required nodeAffinity on zone and region keys, and an in-tree `aws://zone/` volumeID
 * prefix. Mutates `pv`; returns whether anything changed.
 */
export function retargetPersistentVolume(pv: Obj, zone: string, failoverRegion: string): boolean {
  const before = JSON.stringify(pv);
  const target = (key: unknown) =>
    (ZONE_KEYS as readonly unknown[]).includes(key)
      ? zone
      : (REGION_KEYS as readonly unknown[]).includes(key)
        ? failoverRegion
        : undefined;
  const labels = isObj(pv.metadata) ? pv.metadata.labels : undefined;
  if (isObj(labels)) {
    for (const key of Object.keys(labels)) {
      const value = target(key);
      if (value !== undefined && typeof labels[key] === "string") labels[key] = value;
    }
  }
  const spec = isObj(pv.spec) ? pv.spec : {};
  const affinity = isObj(spec.nodeAffinity) ? spec.nodeAffinity : {};
  const required = isObj(affinity.required) ? affinity.required : {};
  for (const term of Array.isArray(required.nodeSelectorTerms) ? required.nodeSelectorTerms : []) {
    if (!isObj(term) || !Array.isArray(term.matchExpressions)) continue;
    for (const e of term.matchExpressions) {
      if (!isObj(e) || e.operator !== "In") continue;
      const value = target(e.key);
      if (value !== undefined) e.values = [value];
    }
  }
  const ebs = spec.awsElasticBlockStore;
  if (isObj(ebs) && typeof ebs.volumeID === "string" && IN_TREE_VOLUME_ID.test(ebs.volumeID)) {
    ebs.volumeID = ebs.volumeID.replace(IN_TREE_VOLUME_ID, `aws://${zone}/`);
  }
  return JSON.stringify(pv) !== before;
}

interface Plan {
  sourceSnapshotId: string;
  snapshotId: string;
  sourceZone: string | null;
  zone: string;
}

/**
 * The tarball's half of the rewrite, entry by entry: each PV object (`resources/persistentvolumes/`,
 * under every API version directory) whose PV has a plan is moved to the plan's zone; every other
 * entry is kept. The in-memory rewrite below and the streaming one (functions/core/velero-stream.ts)
 * both edit through it. Idle when no PV has a plan (then no entry can change).
 */
export function failoverTarEditor(
  file: string,
  plans: ReadonlyMap<string, Pick<Plan, "zone">>,
  failoverRegion: string,
  csi?: CsiSnapshots,
): TarEntryEditor & { persistentVolumes: Set<string>; snapshotObjects: Set<string> } {
  const persistentVolumes = new Set<string>();
  const snapshotObjects = new Set<string>();
  const snapshotKind = (name: string): SnapshotObjectKind | undefined =>
    csi === undefined
      ? undefined
      : VSC_ENTRY.test(name)
        ? "VolumeSnapshotContent"
        : VS_ENTRY.test(name)
          ? "VolumeSnapshot"
          : undefined;
  return {
    // Idle (the tarball copied unread) only when nothing in it can need a change: no PV to move and
    // no CSI handles to check. With `csi` given, any VolumeSnapshot or VolumeSnapshotContent in the
    // tarball must name a copy, including ones the backup's small files do not list (users' own
    // snapshot objects in a backed-up namespace): so it is read, and fails closed, as in memory.
    idle: plans.size === 0 && csi === undefined,
    persistentVolumes,
    snapshotObjects,
    wants: (name, type) =>
      (type === "0" || type === "7") && (PV_ENTRY.test(name) || snapshotKind(name) !== undefined),
    edit(name, data) {
      const kind = snapshotKind(name);
      if (kind !== undefined && csi !== undefined) {
        const missing: MissingCopy[] = [];
        const text = data.toString("utf8");
        const out = rewriteSnapshotObjects(text, kind, csi, missing, `${file}: ${name}`);
        if (missing.length > 0) throw new MissingCopyError(missing);
        if (out === undefined) return undefined;
        snapshotObjects.add(name);
        return Buffer.from(out, "utf8");
      }
      let pv: unknown;
      try {
        pv = JSON.parse(data.toString("utf8"));
      } catch (err) {
        throw new InvalidBackupError(`${file}: ${name} is not JSON (${errorMessage(err)})`, { cause: err });
      }
      const pvName = isObj(pv) && isObj(pv.metadata) ? pv.metadata.name : undefined;
      if (typeof pvName !== "string") {
        throw new InvalidBackupError(`${file}: ${name} is not a PersistentVolume with a metadata.name`);
      }
      const plan = plans.get(pvName);
      if (!plan || !retargetPersistentVolume(pv as Obj, plan.zone, failoverRegion)) return undefined;
      persistentVolumes.add(pvName);
      return Buffer.from(goJson(pv), "utf8");
    },
  };
}

/**
 * Rewrites a backup's files so stock Velero restores it in the failover region from the copies:
 * ids and zones in the snapshot records and volumeinfo, PV topology in the tarball (see the top of
 * this file). Throws MissingCopyError (naming each PV and source snapshot without a copy),
 * UnknownZoneError, InvalidBackupError, or ConfigError for options that contradict themselves.
 */
export function rewriteBackupForFailover(files: BackupFiles, options: FailoverOptions): RewrittenBackup {
  validateOptions(options);
  const backup = parseVeleroBackup(files.backupJson);
  const records = parseVolumeSnapshots(files.volumeSnapshots);
  const infos = files.volumeInfo === undefined ? undefined : parseVolumeInfo(files.volumeInfo);
  const combined = options.combinedIds ?? false;
  const newId = (source: string, copy: string) =>
    combined ? `${options.sourceRegion}/${source};${options.failoverRegion}/${copy}` : copy;

  const missing: MissingCopy[] = [];
  const copyFor = (source: string, pvName: string) => {
    const copy = options.copyOf.get(source);
    if (copy === undefined && !missing.some((m) => m.sourceSnapshotId === source && m.pvName === pvName)) {
      missing.push({ pvName, sourceSnapshotId: source });
    }
    return copy;
  };

  // Velero's restore takes the first record of a PV; later ones are rewritten alike but not used.
  const plans = new Map<string, Plan>();
  const volumeSnapshots = records.map((r, i) => {
    const pv = r.persistentVolumeName;
    if (r.backupName !== backup.name) {
      throw new InvalidBackupError(
        `volumesnapshots[${i}] (PV ${pv}) belongs to backup ${r.backupName}, not ${backup.name}`,
      );
    }
    if (r.providerSnapshotID === null) {
      throw new InvalidBackupError(
        `volumesnapshots[${i}] (PV ${pv}) has no status.providerSnapshotID (phase ${r.phase ?? "unset"}): nothing to restore it from`,
      );
    }
    const zone = failoverZone(r.volumeAZ, pv, options);
    const copy = copyFor(r.providerSnapshotID, pv);
    const out = structuredClone(r.raw);
    if (copy === undefined) return out;
    const id = newId(r.providerSnapshotID, copy);
    const spec = goGet(out, "spec") as Obj;
    let status = goGet(out, "status");
    if (!isObj(status)) {
      status = {};
      goSet(out, "status", status);
    }
    goSet(status as Obj, "providerSnapshotID", id);
    goSet(spec, "volumeAZ", zone);
    if (!plans.has(pv)) {
      plans.set(pv, { sourceSnapshotId: r.providerSnapshotID, snapshotId: id, sourceZone: r.volumeAZ, zone });
    }
    return out;
  });

  // CSI snapshots (Velero 1.14+): the handle a restore reads, in volumeinfo, the two CSI lists and
  // the tarball's VolumeSnapshot(Content) objects, always the copy's plain id. A data-mover volume's
  // csiSnapshotInfo says "unknown": its data is in the backup repository, not in an EBS snapshot.
  const csiVolumes = new Map<string, string | null>();
  const csiSnapshots: Record<string, string> = {};
  const csiOf = (e: VolumeInfoEntry) =>
    e.backupMethod === "CSISnapshot" &&
    !e.snapshotDataMoved &&
    e.csiSnapshot?.snapshotHandle &&
    e.csiSnapshot.snapshotHandle !== "unknown"
      ? e.csiSnapshot.snapshotHandle
      : undefined;
  for (const e of infos ?? []) {
    const handle = csiOf(e);
    if (handle !== undefined && !csiVolumes.get(handle)) csiVolumes.set(handle, e.pvName);
  }

  let volumeInfos = 0;
  const volumeInfo = infos?.map((entry, i) => {
    const out = structuredClone(entry.raw);
    const csiHandle = csiOf(entry);
    if (csiHandle !== undefined) {
      const copy = options.copyOf.get(csiHandle);
      if (copy === undefined) {
        if (!missing.some((m) => m.sourceSnapshotId === csiHandle)) {
          const vsc = entry.csiSnapshot?.vscName;
          missing.push({
            sourceSnapshotId: csiHandle,
            pvName: entry.pvName ?? `volumeinfo[${i}]`,
            ...(vsc ? { volumeSnapshotContent: vsc } : {}),
          });
        }
        return out;
      }
      goSet(goGet(out, "csiSnapshotInfo") as Obj, "snapshotHandle", copy);
      csiSnapshots[csiHandle] = copy;
      volumeInfos++;
      return out;
    }
    const handle = entry.nativeSnapshot?.snapshotHandle;
    if (!entry.nativeSnapshot || !handle) return out;
    const pv = entry.pvName ?? `volumeinfo[${i}]`;
    const plan = entry.pvName ? plans.get(entry.pvName) : undefined;
    const sourceZone = entry.nativeSnapshot.volumeAZ;
    const zone = sourceZone !== null ? failoverZone(sourceZone, pv, options) : plan?.zone;
    const copy = copyFor(handle, pv);
    if (copy === undefined) return out;
    const native = goGet(out, "nativeSnapshotInfo") as Obj;
    goSet(native, "snapshotHandle", newId(handle, copy));
    if (zone !== undefined && sourceZone !== null) goSet(native, "volumeAZ", zone);
    const labels = goGet(out, "pvInfo");
    if (zone !== undefined && isObj(labels)) {
      retargetPersistentVolume(
        { metadata: { labels: goGet(labels, "labels") } },
        zone,
        options.failoverRegion,
      );
    }
    volumeInfos++;
    return out;
  });

  const csiLists: { csiVolumeSnapshots?: string; csiVolumeSnapshotContents?: string } = {};
  const lists = [
    ["csiVolumeSnapshotContents", "VolumeSnapshotContent", files.csiVolumeSnapshotContents],
    ["csiVolumeSnapshots", "VolumeSnapshot", files.csiVolumeSnapshots],
  ] as const;
  const listName = (key: (typeof lists)[number][0]) =>
    `${backup.name}-${key === "csiVolumeSnapshots" ? "csi-volumesnapshots" : "csi-volumesnapshotcontents"}.json.gz`;
  for (const [key, kind, text] of lists) {
    if (text === undefined) continue;
    for (const obj of snapshotObjects(text, kind, listName(key))) {
      for (const handle of csiHandlesOf(obj, kind).handles) {
        if (!csiVolumes.has(handle)) csiVolumes.set(handle, null);
      }
    }
  }
  const csi: CsiSnapshots = { copyOf: options.copyOf, volumes: csiVolumes };
  for (const [key, kind, text] of lists) {
    if (text === undefined) continue;
    const out = rewriteSnapshotObjects(text, kind, csi, missing, listName(key));
    if (out !== undefined) csiLists[key] = out;
  }
  for (const handle of csiVolumes.keys()) {
    const copy = options.copyOf.get(handle);
    if (copy !== undefined) csiSnapshots[handle] = copy;
  }

  if (missing.length > 0) throw new MissingCopyError(missing);

  let tarball: Buffer | undefined;
  const persistentVolumes = new Set<string>();
  let tarEntries = 0;
  let snapshotObjectEntries = 0;
  if (files.tarball !== undefined) {
    const file = `${backup.name}.tar.gz`;
    let tar: Buffer;
    try {
      tar = gunzipSync(files.tarball);
    } catch (err) {
      throw new InvalidBackupError(`${file} is not gzip (${errorMessage(err)})`, { cause: err });
    }
    let entries: TarEntry[];
    try {
      entries = listTarEntries(tar);
    } catch (err) {
      if (err instanceof TarFormatError)
        throw new InvalidBackupError(`${file}: ${err.message}`, { cause: err });
      throw err;
    }
    const editor = failoverTarEditor(file, plans, options.failoverRegion, csi);
    const replacements = new Map<TarEntry, Buffer>();
    for (const entry of entries) {
      if (!editor.wants(entry.name, entry.type)) continue;
      const data = editor.edit(entry.name, tarEntryData(tar, entry));
      if (data) replacements.set(entry, data);
    }
    for (const pv of editor.persistentVolumes) persistentVolumes.add(pv);
    snapshotObjectEntries = editor.snapshotObjects.size;
    tarEntries = replacements.size;
    try {
      tarball = gzipSync(replaceTarData(tar, replacements));
    } catch (err) {
      if (err instanceof TarFormatError)
        throw new InvalidBackupError(`${file}: ${err.message}`, { cause: err });
      throw err;
    }
  }

  return {
    backup,
    backupJson: files.backupJson,
    volumeSnapshots,
    ...(volumeInfo ? { volumeInfo } : {}),
    ...(tarball ? { tarball } : {}),
    ...csiLists,
    csi,
    summary: {
      backup: backup.name,
      sourceRegion: options.sourceRegion,
      failoverRegion: options.failoverRegion,
      volumeSnapshots: records.length,
      volumeInfos,
      persistentVolumes: [...persistentVolumes].sort(),
      tarEntries,
      snapshotObjectEntries,
      csiSnapshots,
      volumes: Object.fromEntries(plans),
      combinedIds: combined,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The same, over a backup's files by name (what `aws s3 sync` of `backups/<name>/` gives)

export const METADATA_FILE = "velero-backup.json";
export const backupFileNames = (name: string) => ({
  metadata: METADATA_FILE,
  tarball: `${name}.tar.gz`,
  volumeSnapshots: `${name}-volumesnapshots.json.gz`,
  volumeInfo: `${name}-volumeinfo.json.gz`,
  csiVolumeSnapshots: `${name}-csi-volumesnapshots.json.gz`,
  csiVolumeSnapshotContents: `${name}-csi-volumesnapshotcontents.json.gz`,
});

/**
 * Rewrites one backup given as file name -> bytes. Returns the files that change (the snapshot
 * list; volumeinfo, the two CSI lists and the tarball when something in them changed); the caller
 * keeps every other file as it is.
 * velero-backup.json, the snapshot list and the tarball are required. With `tarball` "stream" the
 * tarball is neither required nor read: the result's `tarball.editor` rewrites its entries as it
 * streams by (functions/core/velero-stream.ts), and the summary's tar counts stay 0.
 */
export function rewriteBackupFileSet(
  files: Readonly<Record<string, Uint8Array>>,
  options: FailoverOptions,
  tarball: "read" | "stream" = "read",
): {
  backup: VeleroBackup;
  replaced: Record<string, Buffer>;
  summary: RewriteSummary;
  tarball?: { file: string; editor: TarEntryEditor };
} {
  const metadata = files[METADATA_FILE];
  if (metadata === undefined)
    throw new InvalidBackupError(`no ${METADATA_FILE}: not a Velero backup directory`);
  let backupJson: unknown;
  try {
    backupJson = JSON.parse(Buffer.from(metadata).toString("utf8"));
  } catch (err) {
    throw new InvalidBackupError(`${METADATA_FILE} is not JSON (${errorMessage(err)})`, { cause: err });
  }
  const names = backupFileNames(parseVeleroBackup(backupJson).name);
  const need = (file: string) => {
    const bytes = files[file];
    if (bytes === undefined) throw new InvalidBackupError(`no ${file}: the backup is incomplete`);
    return bytes;
  };
  const volumeSnapshots = gunzipJson(need(names.volumeSnapshots), names.volumeSnapshots);
  const tarBytes = tarball === "stream" ? undefined : need(names.tarball);
  const infoBytes = files[names.volumeInfo];
  const volumeInfo = infoBytes === undefined ? undefined : gunzipJson(infoBytes, names.volumeInfo);
  const csiText = (file: string) => {
    const bytes = files[file];
    return bytes === undefined ? {} : { text: gunzipText(bytes, file) };
  };
  const vsList = csiText(names.csiVolumeSnapshots).text;
  const vscList = csiText(names.csiVolumeSnapshotContents).text;
  const out = rewriteBackupForFailover(
    {
      backupJson,
      volumeSnapshots,
      volumeInfo,
      tarball: tarBytes,
      ...(vsList !== undefined ? { csiVolumeSnapshots: vsList } : {}),
      ...(vscList !== undefined ? { csiVolumeSnapshotContents: vscList } : {}),
    },
    options,
  );
  const replaced: Record<string, Buffer> = { [names.volumeSnapshots]: gzipJson(out.volumeSnapshots) };
  if (out.volumeInfo && out.summary.volumeInfos > 0) replaced[names.volumeInfo] = gzipJson(out.volumeInfo);
  // The CSI lists: the same text with the handles swapped, gzipped again.
  if (out.csiVolumeSnapshots !== undefined)
    replaced[names.csiVolumeSnapshots] = gzipSync(out.csiVolumeSnapshots);
  if (out.csiVolumeSnapshotContents !== undefined)
    replaced[names.csiVolumeSnapshotContents] = gzipSync(out.csiVolumeSnapshotContents);
  if (out.tarball && out.summary.tarEntries > 0) replaced[names.tarball] = out.tarball;
  if (tarball === "read") return { backup: out.backup, replaced, summary: out.summary };
  const plans = new Map(Object.entries(out.summary.volumes));
  const editor = failoverTarEditor(names.tarball, plans, options.failoverRegion, out.csi);
  return { backup: out.backup, replaced, summary: out.summary, tarball: { file: names.tarball, editor } };
}
