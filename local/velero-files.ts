/**
 * The files of a Velero 1.15+ backup directory (`backups/<name>/` in its bucket), built the way Velero
 * builds them, for any backup of EBS-backed PersistentVolumes. Pure functions: no I/O, no clock, no
 * randomness (the same options give the same bytes).
 *
 * - velero-backup.json: the Backup as Velero's pretty JSON encoder writes it (kind first);
 * - `<name>-volumesnapshots.json.gz`: the native snapshots' records in pkg/volume/snapshot.go's struct
 *   order (internal/volume/native_snapshot.go from 1.14), with the `persistentVolumeName` key Velero
 *   1.11 and later write (`pvNameKey: "PersistentVolumeName"` gives 1.10 and older's spelling, from
 *   a malformed struct tag); `json.Encoder` output (newline) gzipped;
 * - `<name>-volumeinfo.json.gz`: internal/volume/volumes_information.go's BackupVolumeInfo (1.15+:
 *   with `result`), one entry per volume: a native snapshot, a CSI snapshot, a file-system backup
 *   (PodVolumeBackup) or the data mover's upload, as each PV's `method` says;
 * - `<name>.tar.gz`: Go archive/tar USTAR entries (mode 0755, names over 100 bytes split into the
 *   prefix field), every item under its group dir and again under `v1-preferredversion`, items as
 *   json.Marshal of unstructured content (keys sorted);
 * - `<name>-resource-list.json.gz`: pkg/backup/request.go's BackupResourceList (`<group/version>/<Kind>`
 *   -> sorted `[namespace/]name`);
 * - `<name>-logs.gz`, `<name>-results.gz` and the (null) pod volume backup and item operation lists;
 * - CSI snapshots (Velero 1.14+, shaped as 1.16 writes them): the claim's VolumeSnapshot (with
 *   Velero's `velero.io/csi-volumesnapshot-handle` annotation) and its VolumeSnapshotContent
 *   (`status.snapshotHandle`) in the tarball under both paths, and the
 *   `<name>-csi-volumesnapshots.json.gz` / `<name>-csi-volumesnapshotcontents.json.gz` lists of
 *   them; a backup without CSI snapshots has the null VolumeSnapshot list only, as before.
 * CSI PVs (the EBS CSI driver's) have a nodeAffinity on topology.ebs.csi.aws.com/zone and the
 * topology.kubernetes.io labels; in-tree PVs (awsElasticBlockStore) the failure-domain labels and terms.
 *
 * The JSON and tar encoders here are independent of functions/core (the code they test reads them).
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";

/**
 * How Velero backed a volume up: a native snapshot (velero-plugin-for-aws), a CSI snapshot (the
 * EBS CSI driver's, through a VolumeSnapshot), a file-system backup (PodVolumeBackup, kopia) or the
 * data mover (a CSI snapshot whose data a DataUpload moved into the backup repository).
 */
export type VeleroVolumeMethod = "native" | "csi" | "fs-backup" | "data-mover";

/** One PersistentVolume of the backup, and how Velero backed it up (default: a native EBS snapshot). */
export interface VeleroPv {
  /** The PV's name (`pvc-<uid of the claim>` when dynamically provisioned). */
  name: string;
  /** Its PersistentVolumeClaim's name (in the backup's namespace). */
  claim: string;
  /** Availability zone of the volume. */
  zone: string;
  volumeId: string;
  /**
   * native and csi: the EBS snapshot taken of it; fs-backup and data-mover: the snapshot's id in
   * Velero's backup repository (kopia's, 32 hex digits).
   */
  sourceSnapshotId: string;
  /** Default "native". */
  method?: VeleroVolumeMethod;
  /** EBS CSI driver (`spec.csi`) or in-tree (`spec.awsElasticBlockStore`). */
  kind: "csi" | "in-tree";
  volumeType: string;
  iops: number;
  /** Kubernetes quantity, e.g. "50Gi". */
  size: string;
  /**
   * CSI PVs: the zone keys of the required nodeAffinity, one nodeSelectorTerm each (default
   * `topology.ebs.csi.aws.com/zone`, as the EBS CSI driver writes it). Ignored for in-tree PVs.
   */
  affinityZoneKeys?: readonly string[];
}

type Json = unknown;
type Time = Date | string;

export const DEFAULT_NAMESPACE = "cbci";
const CSI_ZONE_KEY = "topology.ebs.csi.aws.com/zone";

/** Go's json.Marshal of a map: keys sorted at every level. */
export function sorted(v: Json): Json {
  if (Array.isArray(v)) return v.map(sorted);
  if (v === null || typeof v !== "object") return v;
  const o = v as Record<string, Json>;
  return Object.fromEntries(
    Object.keys(o)
      .sort()
      .map((k) => [k, sorted(o[k])]),
  );
}

/** Go's json.Marshal of already-ordered data: compact, HTML-safe (`<`, `>`, `&`, U+2028, U+2029 escaped). */
export const goJson = (v: Json): string =>
  JSON.stringify(v).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );

/** `json.NewEncoder(gzip).Encode(v)`, as Velero writes its `.json.gz` files. */
export const gzipJson = (v: Json): Buffer => gzipSync(`${goJson(v)}\n`);

/** metav1.Time: RFC 3339 in UTC, whole seconds. */
export function rfc3339(t: Time): string {
  const ms = typeof t === "string" ? Date.parse(t) : t.getTime();
  if (Number.isNaN(ms)) throw new Error(`not a time: ${String(t)}`);
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

const millis = (t: Time) => (typeof t === "string" ? Date.parse(t) : t.getTime());

/** Go's time.Duration.String() of whole seconds: "1h0m0s", "30m0s", "45s", "0s". */
export function goDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s === 0) return "0s";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (h > 0) return `${h}h${m}m${rest}s`;
  if (m > 0) return `${m}m${rest}s`;
  return `${rest}s`;
}

const sha256 = (seed: string) => createHash("sha256").update(seed).digest("hex");

/** A UUID-shaped hash of `seed`: stable UIDs for objects the options do not name. */
function uuidOf(seed: string): string {
  const h = sha256(seed);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** A stable UID for a backup without one: a UUID-shaped hash of its name. */
export const backupUid = (name: string): string => uuidOf(`velero.io/v1/Backup/${name}`);

/** A stable id for a volume's snapshot in Velero's backup repository (kopia's: 32 hex digits). */
export const repositorySnapshotId = (backup: string, pv: string): string =>
  sha256(`kopia/${backup}/${pv}`).slice(0, 32);

export const methodOf = (p: Pick<VeleroPv, "method">): VeleroVolumeMethod => p.method ?? "native";

// ---------------------------------------------------------------------------------------------
// The tarball's items

export function persistentVolume(p: VeleroPv, region: string, namespace = DEFAULT_NAMESPACE): Json {
  const labels: Record<string, string> =
    p.kind === "csi"
      ? { "topology.kubernetes.io/region": region, "topology.kubernetes.io/zone": p.zone }
      : {
          "failure-domain.beta.kubernetes.io/region": region,
          "failure-domain.beta.kubernetes.io/zone": p.zone,
          "app.kubernetes.io/part-of": "cloudbees-core",
        };
  const zoneTerm = (key: string, value: string) => ({ key, operator: "In", values: [value] });
  const source =
    p.kind === "csi"
      ? {
          csi: {
            driver: "ebs.csi.aws.com",
            fsType: "ext4",
            volumeAttributes: {
              "storage.kubernetes.io/csiProvisionerIdentity": "1736499000000-8081-ebs.csi.aws.com",
            },
            volumeHandle: p.volumeId,
          },
          nodeAffinity: {
            required: {
              nodeSelectorTerms: (p.affinityZoneKeys ?? [CSI_ZONE_KEY]).map((key) => ({
                matchExpressions: [zoneTerm(key, p.zone)],
              })),
            },
          },
        }
      : {
          awsElasticBlockStore: { fsType: "ext4", volumeID: `aws://${p.zone}/${p.volumeId}` },
          nodeAffinity: {
            required: {
              nodeSelectorTerms: [
                {
                  matchExpressions: [
                    zoneTerm("failure-domain.beta.kubernetes.io/zone", p.zone),
                    zoneTerm("failure-domain.beta.kubernetes.io/region", region),
                  ],
                },
              ],
            },
          },
        };
  return sorted({
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: {
      annotations: {
        "pv.kubernetes.io/provisioned-by": p.kind === "csi" ? "ebs.csi.aws.com" : "kubernetes.io/aws-ebs",
        "kubernetes.io/description": "controller <home> & workspace",
      },
      creationTimestamp: "2025-01-10T09:00:00Z",
      finalizers: ["kubernetes.io/pv-protection"],
      labels,
      name: p.name,
      resourceVersion: "48213",
      uid: `5e${p.name.slice(6)}`,
    },
    spec: {
      accessModes: ["ReadWriteOnce"],
      capacity: { storage: p.size },
      claimRef: {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        name: p.claim,
        namespace,
        resourceVersion: "48190",
        uid: p.name.slice(4),
      },
      persistentVolumeReclaimPolicy: "Delete",
      storageClassName: p.kind === "csi" ? "gp3" : "gp2",
      volumeMode: "Filesystem",
      ...source,
    },
    status: { lastPhaseTransitionTime: "2025-01-10T09:00:03Z", phase: "Bound" },
  });
}

export function persistentVolumeClaim(p: VeleroPv, namespace = DEFAULT_NAMESPACE): Json {
  return sorted({
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: {
      annotations: {
        "pv.kubernetes.io/bind-completed": "yes",
        "volume.kubernetes.io/selected-node": "ip-10-0-1-23.ec2.internal",
      },
      labels: { "com.cloudbees.cje.tenant": p.claim.replace(/^jenkins-home-|-0$/g, "") },
      name: p.claim,
      namespace,
    },
    spec: {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: p.size } },
      storageClassName: p.kind === "csi" ? "gp3" : "gp2",
      volumeMode: "Filesystem",
      volumeName: p.name,
    },
    status: { accessModes: ["ReadWriteOnce"], capacity: { storage: p.size }, phase: "Bound" },
  });
}

export interface TarEntry {
  name: string;
  data: Buffer;
  /** Tar type flag, default "0" (a regular file); tests add PAX ("x") or GNU long-name ("L") entries. */
  type?: string;
}

/** Every item twice, as pkg/backup/item_backupper.go writes it: group dir, then `<version>-preferredversion`. */
function item(resource: string, namespace: string | null, name: string, obj: Json): TarEntry[] {
  const scope = namespace === null ? "cluster" : `namespaces/${namespace}`;
  const data = Buffer.from(typeof obj === "string" ? obj : goJson(obj));
  return [
    { name: `resources/${resource}/${scope}/${name}.json`, data },
    { name: `resources/${resource}/v1-preferredversion/${scope}/${name}.json`, data },
  ];
}

/** What a CSI snapshot's objects say of their backup: its name and when it started. */
export interface SnapshotObjectContext {
  name: string;
  start: Time;
}

const SNAPSHOT_API = "snapshot.storage.k8s.io/v1";
const SNAPSHOT_CLASS = "ebs-csi-vsc";

/**
 * The VolumeSnapshot Velero's CSI support took of a CSI PV's claim, as Velero 1.14+'s VolumeSnapshot
 * backup action returns it for the tarball: the driver's status plus Velero's annotations, among
 * them `velero.io/csi-volumesnapshot-handle` (the EBS snapshot), which 1.14 and 1.15's restore
 * builds a VolumeSnapshotContent from.
 */
export function volumeSnapshot(
  p: VeleroPv,
  backup: SnapshotObjectContext,
  namespace = DEFAULT_NAMESPACE,
): Json {
  const name = volumeSnapshotName(p);
  return sorted({
    apiVersion: SNAPSHOT_API,
    kind: "VolumeSnapshot",
    metadata: {
      annotations: {
        "velero.io/csi-driver-name": "ebs.csi.aws.com",
        "velero.io/csi-volumesnapshot-handle": p.sourceSnapshotId,
        "velero.io/csi-volumesnapshot-restore-size": p.size,
        "velero.io/csi-vsc-deletion-policy": "Delete",
      },
      creationTimestamp: rfc3339(backup.start),
      generation: 1,
      labels: { "velero.io/backup-name": backup.name },
      name,
      namespace,
      resourceVersion: "48302",
      uid: uuidOf(`vs/${name}`),
    },
    spec: { source: { persistentVolumeClaimName: p.claim }, volumeSnapshotClassName: SNAPSHOT_CLASS },
    status: {
      boundVolumeSnapshotContentName: volumeSnapshotContentName(p),
      creationTime: rfc3339(backup.start),
      readyToUse: true,
      restoreSize: p.size,
    },
  });
}

/** A stable int64 nanosecond time past 2^53: what a JavaScript number cannot hold exactly. */
const nanos = (t: Time, p: Pick<VeleroPv, "name">) =>
  `${Math.floor(millis(t) / 1000)}${sha256(`ns/${p.name}`)
    .replace(/[^0-9]/g, "")
    .padEnd(9, "7")
    .slice(0, 9)}`;

/**
 * The VolumeSnapshotContent bound to it, as JSON text (Go's json.Marshal, keys sorted):
 * `status.snapshotHandle` is the EBS snapshot (Velero 1.16+'s restore copies it into
 * `spec.source.snapshotHandle`), `status.creationTime` an int64 of nanoseconds written as Go
 * writes it, digit for digit (which is why this is text: a JavaScript number would round it).
 */
export function volumeSnapshotContentJson(
  p: VeleroPv,
  backup: SnapshotObjectContext,
  namespace = DEFAULT_NAMESPACE,
): string {
  const vs = volumeSnapshotName(p);
  const marker = "@@creationTime@@";
  const obj = sorted({
    apiVersion: SNAPSHOT_API,
    kind: "VolumeSnapshotContent",
    metadata: {
      annotations: { "snapshot.storage.kubernetes.io/volumesnapshot-being-created": "no" },
      creationTimestamp: rfc3339(backup.start),
      finalizers: ["snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"],
      generation: 1,
      labels: { "velero.io/backup-name": backup.name },
      name: volumeSnapshotContentName(p),
      resourceVersion: "48305",
      uid: uuidOf(`vsc/${vs}`),
    },
    spec: {
      deletionPolicy: "Retain",
      driver: "ebs.csi.aws.com",
      source: { volumeHandle: p.volumeId },
      sourceVolumeMode: "Filesystem",
      volumeSnapshotClassName: SNAPSHOT_CLASS,
      volumeSnapshotRef: {
        apiVersion: SNAPSHOT_API,
        kind: "VolumeSnapshot",
        name: vs,
        namespace,
        resourceVersion: "48302",
        uid: uuidOf(`vs/${vs}`),
      },
    },
    status: {
      creationTime: marker,
      readyToUse: true,
      restoreSize: bytesOf(p.size),
      snapshotHandle: p.sourceSnapshotId,
    },
  });
  return goJson(obj).replace(`"${marker}"`, nanos(backup.start, p));
}

/** The items besides the PVs and PVCs: the namespace, a ConfigMap and the operations center's StatefulSet. */
const OTHER_ITEMS = 3;

/**
 * The tarball's entries: format version, the namespace, each PV's claim and PV (and, for a CSI
 * snapshot, given the backup, the claim's VolumeSnapshot and its VolumeSnapshotContent, the CSI
 * actions' additional items), a ConfigMap, a StatefulSet.
 */
export function tarEntries(
  namespace: string,
  pvs: readonly VeleroPv[],
  region: string,
  backup?: SnapshotObjectContext,
): { name: string; data: Buffer }[] {
  return [
    { name: "metadata/version", data: Buffer.from("1.1.0") },
    ...item(
      "namespaces",
      null,
      namespace,
      sorted({ apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } }),
    ),
    ...pvs.flatMap((p) => [
      ...item("persistentvolumeclaims", namespace, p.claim, persistentVolumeClaim(p, namespace)),
      ...item("persistentvolumes", null, p.name, persistentVolume(p, region, namespace)),
      ...(backup !== undefined && methodOf(p) === "csi"
        ? [
            ...item(
              "volumesnapshots.snapshot.storage.k8s.io",
              namespace,
              volumeSnapshotName(p),
              volumeSnapshot(p, backup, namespace),
            ),
            ...item(
              "volumesnapshotcontents.snapshot.storage.k8s.io",
              null,
              volumeSnapshotContentName(p),
              volumeSnapshotContentJson(p, backup, namespace),
            ),
          ]
        : []),
    ]),
    ...item(
      "configmaps",
      namespace,
      "cjoc-configure-jenkins-groovy",
      sorted({
        apiVersion: "v1",
        data: { "location.groovy": "x < y && y > z" },
        kind: "ConfigMap",
        metadata: {},
      }),
    ),
    ...item(
      "statefulsets.apps",
      namespace,
      "cjoc",
      sorted({
        apiVersion: "apps/v1",
        kind: "StatefulSet",
        metadata: { name: "cjoc", namespace },
        spec: { replicas: 1, serviceName: "cjoc" },
      }),
    ),
  ];
}

/** `<name>-resource-list.json.gz`: pkg/backup/request.go's BackupResourceList of the tarball's items. */
export function resourceList(namespace: string, pvs: readonly VeleroPv[]): Record<string, string[]> {
  const csi = pvs.filter((p) => methodOf(p) === "csi");
  return sorted({
    ...(csi.length > 0
      ? {
          "snapshot.storage.k8s.io/v1/VolumeSnapshot": csi
            .map((p) => `${namespace}/${volumeSnapshotName(p)}`)
            .sort(),
          "snapshot.storage.k8s.io/v1/VolumeSnapshotContent": csi.map(volumeSnapshotContentName).sort(),
        }
      : {}),
    "apps/v1/StatefulSet": [`${namespace}/cjoc`],
    "v1/ConfigMap": [`${namespace}/cjoc-configure-jenkins-groovy`],
    "v1/Namespace": [namespace],
    "v1/PersistentVolume": pvs.map((p) => p.name).sort(),
    "v1/PersistentVolumeClaim": pvs.map((p) => `${namespace}/${p.claim}`).sort(),
  }) as Record<string, string[]>;
}

// ---------------------------------------------------------------------------------------------
// Go's archive/tar

/** Go's archive/tar writes an ASCII name over 100 bytes as USTAR prefix + name (splitUSTARPath). */
function splitUstar(name: string): [string, string] {
  if (name.length <= 100) return ["", name];
  const cut = name.lastIndexOf("/", 155);
  if (cut <= 0 || name.length - cut - 1 > 100) throw new Error(`name too long for USTAR: ${name}`);
  return [name.slice(0, cut), name.slice(cut + 1)];
}

function octal(header: Buffer, start: number, length: number, value: number) {
  header.write(`${value.toString(8).padStart(length - 1, "0")}\0`, start, length, "latin1");
}

/**
 * A tar stream as Go's archive/tar writes Velero's tarball: USTAR headers (mode 0755, uid/gid 0,
 * modification time `mtime`, default the Unix epoch), two zero blocks at the end.
 */
export function goTar(entries: readonly TarEntry[], mtime: Time = new Date(0)): Buffer {
  const seconds = Math.floor(millis(mtime) / 1000);
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const header = Buffer.alloc(512);
    const [prefix, name] = splitUstar(e.name);
    header.write(name, 0, 100, "latin1");
    octal(header, 100, 8, 0o755);
    octal(header, 108, 8, 0);
    octal(header, 116, 8, 0);
    octal(header, 124, 12, e.data.length);
    octal(header, 136, 12, seconds);
    header.write(e.type ?? "0", 156, 1, "latin1");
    header.write("ustar\u000000", 257, 8, "latin1");
    octal(header, 329, 8, 0);
    octal(header, 337, 8, 0);
    header.write(prefix, 345, 155, "latin1");
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "latin1");
    blocks.push(header, e.data, Buffer.alloc((512 - (e.data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

// ---------------------------------------------------------------------------------------------
// velero-backup.json

export interface BackupJsonOptions {
  name: string;
  /** The namespace backed up (`spec.includedNamespaces`). Default "cbci". */
  namespace?: string;
  /** The schedule that created it (`velero.io/schedule-name` label); none for a manual backup. */
  schedule?: string;
  phase: string;
  start: Time;
  /** `status.completionTimestamp`; omitted when absent (a backup in progress). */
  completion?: Time;
  /** `spec.ttl`, and `status.expiration` = start + TTL. Default 60. */
  ttlMinutes?: number;
  /** `status.errors` / `status.warnings`; omitted when undefined (Velero omits them when 0). */
  errors?: number;
  warnings?: number;
  /** `metadata.uid`; default a hash of the name (see backupUid). */
  uid?: string;
  /** BackupStorageLocation / VolumeSnapshotLocation names. Default "default". */
  storageLocation?: string;
  volumeSnapshotLocation?: string;
  /** The PVs; the snapshot and operation counts and the item count default from them. */
  pvs?: readonly VeleroPv[];
  /** Default the number of PVs with a native snapshot. */
  volumeSnapshotsAttempted?: number;
  /** Default the attempted count once the phase is Completed or PartiallyFailed; omitted before. */
  volumeSnapshotsCompleted?: number;
  /** Default the number of PVs with a CSI snapshot (the data mover's are not counted). */
  csiVolumeSnapshotsAttempted?: number;
  /** Default the CSI attempted count once the phase is Completed or PartiallyFailed; omitted before. */
  csiVolumeSnapshotsCompleted?: number;
  /** `status.progress`; default the number of items in the tarball. */
  totalItems?: number;
}

export interface VeleroBackupObject {
  kind: "Backup";
  apiVersion: "velero.io/v1";
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    resourceVersion: string;
    generation: number;
    creationTimestamp: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  };
  spec: {
    metadata: Record<string, never>;
    includedNamespaces: string[];
    excludedResources: string[];
    ttl: string;
    hooks: Record<string, never>;
    storageLocation: string;
    volumeSnapshotLocations: string[];
    defaultVolumesToFsBackup: boolean;
    csiSnapshotTimeout: string;
    itemOperationTimeout: string;
  };
  status: {
    version: number;
    formatVersion: string;
    expiration: string;
    phase: string;
    startTimestamp: string;
    completionTimestamp?: string;
    volumeSnapshotsAttempted?: number;
    volumeSnapshotsCompleted?: number;
    warnings?: number;
    errors?: number;
    progress: { totalItems: number; itemsBackedUp: number };
    csiVolumeSnapshotsAttempted?: number;
    csiVolumeSnapshotsCompleted?: number;
    backupItemOperationsAttempted?: number;
    backupItemOperationsCompleted?: number;
  };
}

const FINISHED = new Set(["Completed", "PartiallyFailed"]);

/**
 * `velero-backup.json`: the velero.io/v1 Backup, fields in the Go structs' order, zero counts left
 * out (`omitempty`). Native snapshots count in `volumeSnapshots*`, CSI snapshots in
 * `csiVolumeSnapshots*` (the data mover's not: Velero keeps no VolumeSnapshot of them), and each
 * CSI snapshot and data-mover upload is an asynchronous item operation.
 */
export function backupJson(o: BackupJsonOptions): VeleroBackupObject {
  const namespace = o.namespace ?? DEFAULT_NAMESPACE;
  const ttl = o.ttlMinutes ?? 60;
  const location = o.storageLocation ?? "default";
  const finished = FINISHED.has(o.phase);
  const by = (m: VeleroVolumeMethod) => (o.pvs ?? []).filter((p) => methodOf(p) === m).length;
  const attempted = o.volumeSnapshotsAttempted ?? by("native");
  const completed = o.volumeSnapshotsCompleted ?? (finished ? attempted : undefined);
  const csiAttempted = o.csiVolumeSnapshotsAttempted ?? by("csi");
  const csiCompleted = o.csiVolumeSnapshotsCompleted ?? (finished ? csiAttempted : undefined);
  const operations = by("csi") + by("data-mover");
  const count = <K extends string>(key: K, n: number | undefined) =>
    (n ? { [key]: n } : {}) as Partial<Record<K, number>>;
  const items = o.totalItems ?? OTHER_ITEMS + 2 * (o.pvs?.length ?? attempted);
  const start = rfc3339(o.start);
  return {
    kind: "Backup",
    apiVersion: "velero.io/v1",
    metadata: {
      name: o.name,
      namespace: "velero",
      uid: o.uid ?? backupUid(o.name),
      resourceVersion: "902113",
      generation: 6,
      creationTimestamp: start,
      labels: {
        ...(o.schedule ? { "velero.io/schedule-name": o.schedule } : {}),
        "velero.io/storage-location": location,
      },
      annotations: {
        "velero.io/resource-timeout": "10m0s",
        "velero.io/source-cluster-k8s-gitversion": "v1.30.4-eks-a737599",
        "velero.io/source-cluster-k8s-major-version": "1",
        "velero.io/source-cluster-k8s-minor-version": "30+",
      },
    },
    spec: {
      metadata: {},
      includedNamespaces: [namespace],
      excludedResources: ["pods", "events", "events.events.k8s.io"],
      ttl: goDuration(ttl * 60),
      hooks: {},
      storageLocation: location,
      volumeSnapshotLocations: [o.volumeSnapshotLocation ?? "default"],
      defaultVolumesToFsBackup: false,
      csiSnapshotTimeout: "10m0s",
      itemOperationTimeout: "4h0m0s",
    },
    status: {
      version: 1,
      formatVersion: "1.1.0",
      expiration: rfc3339(new Date(millis(o.start) + ttl * 60_000)),
      phase: o.phase,
      startTimestamp: start,
      ...(o.completion !== undefined ? { completionTimestamp: rfc3339(o.completion) } : {}),
      ...count("volumeSnapshotsAttempted", attempted),
      ...count("volumeSnapshotsCompleted", completed),
      ...(o.warnings !== undefined ? { warnings: o.warnings } : {}),
      ...(o.errors !== undefined ? { errors: o.errors } : {}),
      progress: { totalItems: items, itemsBackedUp: items },
      ...count("csiVolumeSnapshotsAttempted", csiAttempted),
      ...count("csiVolumeSnapshotsCompleted", csiCompleted),
      ...count("backupItemOperationsAttempted", operations),
      ...count("backupItemOperationsCompleted", finished ? operations : 0),
    },
  };
}

/** velero-backup.json's bytes: Velero's pretty encoder (two-space indent). */
export const backupJsonBytes = (backup: VeleroBackupObject): Buffer =>
  Buffer.from(JSON.stringify(backup, null, 2));

// ---------------------------------------------------------------------------------------------
// The snapshot list and volumeinfo

/**
 * The key of a record's PV name: `persistentVolumeName` in Velero 1.11 and later; 1.10 and older
 * wrote `PersistentVolumeName` (the struct tag was malformed, so Go used the field's name). Go
 * decodes keys case-insensitively, so every version reads either.
 */
export type PvNameKey = "persistentVolumeName" | "PersistentVolumeName";

export interface VolumeSnapshotRecord {
  spec: {
    backupName: string;
    backupUID: string;
    location: string;
  } & Partial<Record<PvNameKey, string>> & {
      providerVolumeID: string;
      volumeType: string;
      volumeAZ: string;
      volumeIOPS: number;
    };
  status: { providerSnapshotID: string; phase: string };
}

/**
 * The backup a record belongs to: its name, or name, UID (default backupUid), VolumeSnapshotLocation
 * and the PV name key (default Velero 1.11+'s `persistentVolumeName`).
 */
export type BackupRef = string | { name: string; uid?: string; location?: string; pvNameKey?: PvNameKey };

/**
 * `<name>-volumesnapshots.json.gz` records of the PVs with a native snapshot (the others have none),
 * in pkg/volume/snapshot.go's field order.
 */
export function volumeSnapshotRecords(backup: BackupRef, pvs: readonly VeleroPv[]): VolumeSnapshotRecord[] {
  const ref = typeof backup === "string" ? { name: backup } : backup;
  const uid = ref.uid ?? backupUid(ref.name);
  const key = ref.pvNameKey ?? "persistentVolumeName";
  return pvs
    .filter((p) => methodOf(p) === "native")
    .map((p) => ({
      spec: {
        backupName: ref.name,
        backupUID: uid,
        location: ref.location ?? "default",
        [key]: p.name,
        providerVolumeID: p.volumeId,
        volumeType: p.volumeType,
        volumeAZ: p.zone,
        volumeIOPS: p.iops,
      },
      status: { providerSnapshotID: p.sourceSnapshotId, phase: "Completed" },
    }));
}

/** A Kubernetes quantity ("50Gi") in bytes, as Velero records sizes. */
export function bytesOf(size: string): number {
  const m = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(size);
  if (!m) throw new Error(`not a quantity: ${size}`);
  const unit: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return Number(m[1]) * (unit[m[2] ?? ""] ?? 1);
}

/** What volumeinfo says of the backup besides its PVs (all optional: times and ids left out without them). */
export interface VolumeInfoContext {
  /** The backup's UID (the data mover's operation id). Default backupUid(name) when `name` is given. */
  name?: string;
  uid?: string;
  /** The backup's start and completion (the volumes' start and completion times). */
  start?: Time;
  completion?: Time;
}

/** The VolumeSnapshot Velero's CSI support creates for a claim (`velero-<claim>-` plus 5 characters). */
export const volumeSnapshotName = (p: Pick<VeleroPv, "name" | "claim">) =>
  `velero-${p.claim}-${sha256(`vs/${p.name}`).slice(0, 5)}`;

/** The VolumeSnapshotContent bound to it (`snapcontent-<VolumeSnapshot UID>`). */
export const volumeSnapshotContentName = (p: Pick<VeleroPv, "name" | "claim">) =>
  `snapcontent-${uuidOf(`vs/${volumeSnapshotName(p)}`)}`;

/** The pod that mounts a CloudBees CI claim: StatefulSet `mc-1`'s claim `jenkins-home-mc-1-0` is pod `mc-1-0`'s. */
const podOf = (claim: string) => (claim.startsWith("jenkins-home-") ? claim.slice(13) : `${claim}-pod`);

/**
 * `<name>-volumeinfo.json.gz` entries, one per PV, as internal/volume/volumes_information.go's
 * BackupVolumeInfo of Velero 1.15 and later (1.13 and 1.14 wrote no `result`, `Phase` or
 * `ReadyToUse`), in its field order, by each PV's method:
 * - native: `nativeSnapshotInfo` (the EBS snapshot, type, zone, IOPS as a string);
 * - csi: `csiSnapshotInfo` with the EBS snapshot as `snapshotHandle` (the VolumeSnapshotContent's
 *   status), the EBS CSI driver, the VolumeSnapshotContent and the VolumeSnapshot's operation;
 * - fs-backup (PodVolumeBackup): `pvbInfo`, kopia's snapshot and the pod that mounts the claim;
 * - data-mover: CSISnapshot with `snapshotDataMoved`, `csiSnapshotInfo` all "unknown" and
 *   `snapshotDataMovementInfo` (kopia's snapshot, the DataUpload's operation), as the finalizer
 *   leaves it.
 */
export function volumeInfos(
  pvs: readonly VeleroPv[],
  region: string,
  namespace = DEFAULT_NAMESPACE,
  backup: VolumeInfoContext = {},
) {
  const uid = backup.uid ?? (backup.name ? backupUid(backup.name) : "");
  const times = {
    ...(backup.start !== undefined ? { startTimestamp: rfc3339(backup.start) } : {}),
    ...(backup.completion !== undefined ? { completionTimestamp: rfc3339(backup.completion) } : {}),
  };
  return pvs.map((p) => {
    const method = methodOf(p);
    const head = (backupMethod: string, moved: boolean, preserve: boolean) => ({
      pvcName: p.claim,
      pvcNamespace: namespace,
      pvName: p.name,
      backupMethod,
      snapshotDataMoved: moved,
      preserveLocalSnapshot: preserve,
      skipped: false,
    });
    const pvInfo = {
      reclaimPolicy: "Delete",
      labels: (persistentVolume(p, region, namespace) as { metadata: { labels: Record<string, string> } })
        .metadata.labels,
    };
    switch (method) {
      case "native":
        return {
          ...head("NativeSnapshot", false, false),
          result: "succeeded",
          nativeSnapshotInfo: {
            snapshotHandle: p.sourceSnapshotId,
            volumeType: p.volumeType,
            volumeAZ: p.zone,
            iops: String(p.iops),
            Phase: "Completed",
          },
          pvInfo,
        };
      case "csi":
        return {
          ...head("CSISnapshot", false, true),
          ...times,
          result: "succeeded",
          csiSnapshotInfo: {
            snapshotHandle: p.sourceSnapshotId,
            size: bytesOf(p.size),
            driver: "ebs.csi.aws.com",
            vscName: volumeSnapshotContentName(p),
            ...(backup.start !== undefined
              ? { operationID: `${namespace}/${volumeSnapshotName(p)}/${rfc3339(backup.start)}` }
              : {}),
            ReadyToUse: true,
          },
          pvInfo,
        };
      case "fs-backup":
        return {
          ...head("PodVolumeBackup", false, false),
          ...times,
          result: "succeeded",
          pvbInfo: {
            snapshotHandle: p.sourceSnapshotId,
            size: bytesOf(p.size),
            uploaderType: "kopia",
            volumeName: "jenkins-home",
            podName: podOf(p.claim),
            podNamespace: namespace,
            nodeName: "ip-10-0-1-23.ec2.internal",
            Phase: "Completed",
          },
          pvInfo,
        };
      default: // "data-mover"
        return {
          ...head("CSISnapshot", true, false),
          ...times,
          result: "succeeded",
          csiSnapshotInfo: {
            snapshotHandle: "unknown",
            size: 0,
            driver: "ebs.csi.aws.com",
            vscName: "unknown",
            operationID: "unknown",
            ReadyToUse: null,
          },
          snapshotDataMovementInfo: {
            dataMover: "velero",
            uploaderType: "kopia",
            retainedSnapshot: volumeSnapshotName(p),
            snapshotHandle: p.sourceSnapshotId,
            operationID: `du-${uid}.${p.name.slice(4)}`,
            size: bytesOf(p.size),
            Phase: "Completed",
          },
          pvInfo,
        };
    }
  });
}

// ---------------------------------------------------------------------------------------------
// The whole directory

export interface BackupOptions extends BackupJsonOptions {
  /** The source region (the PVs' region labels and terms). */
  region: string;
  pvs: readonly VeleroPv[];
  /** The snapshot list's PV name key: default Velero 1.11+'s `persistentVolumeName` (see PvNameKey). */
  pvNameKey?: PvNameKey;
  /** The tar entries' modification time. Default `start`. */
  archivedAt?: Time;
}

/** `<name>-results.gz`: map of "errors"/"warnings" to pkg/util/results.Result, one Velero message each. */
export function results(errors = 0, warnings = 0) {
  const result = (n: number, what: string) =>
    n > 0 ? { velero: Array.from({ length: n }, (_, i) => `simulated ${what} ${i + 1}`) } : {};
  return { errors: result(errors, "error"), warnings: result(warnings, "warning") };
}

/** `<name>-logs.gz`: logrus text lines of the backup log. */
export function backupLog(o: BackupOptions): string {
  const line = (t: Time, level: string, msg: string) => `time="${rfc3339(t)}" level=${level} msg="${msg}"\n`;
  const end = o.completion ?? o.start;
  return [
    line(o.start, "info", "Setting up backup log"),
    ...Array.from({ length: o.warnings ?? 0 }, (_, i) => line(end, "warning", `simulated warning ${i + 1}`)),
    ...Array.from({ length: o.errors ?? 0 }, (_, i) => line(end, "error", `simulated error ${i + 1}`)),
  ].join("");
}

/**
 * The backup directory, file name -> bytes, velero-backup.json first (with `o.phase`), then the
 * tarball, the snapshot list, volumeinfo and the rest.
 */
export function backupFiles(o: BackupOptions): Record<string, Buffer> {
  const namespace = o.namespace ?? DEFAULT_NAMESPACE;
  const name = o.name;
  const context = { name, start: o.start };
  const csi = o.pvs.filter((p) => methodOf(p) === "csi");
  return {
    "velero-backup.json": backupJsonBytes(backupJson(o)),
    [`${name}.tar.gz`]: gzipSync(
      goTar(tarEntries(namespace, o.pvs, o.region, context), o.archivedAt ?? o.start),
    ),
    [`${name}-volumesnapshots.json.gz`]: gzipJson(
      volumeSnapshotRecords(
        {
          name,
          ...(o.uid !== undefined ? { uid: o.uid } : {}),
          ...(o.volumeSnapshotLocation !== undefined ? { location: o.volumeSnapshotLocation } : {}),
          ...(o.pvNameKey !== undefined ? { pvNameKey: o.pvNameKey } : {}),
        },
        o.pvs,
      ),
    ),
    [`${name}-volumeinfo.json.gz`]: gzipJson(
      volumeInfos(o.pvs, o.region, namespace, {
        name,
        ...(o.uid !== undefined ? { uid: o.uid } : {}),
        start: o.start,
        ...(o.completion !== undefined ? { completion: o.completion } : {}),
      }),
    ),
    [`${name}-logs.gz`]: gzipSync(backupLog(o)),
    [`${name}-resource-list.json.gz`]: gzipJson(resourceList(namespace, o.pvs)),
    [`${name}-results.gz`]: gzipJson(results(o.errors, o.warnings)),
    [`${name}-podvolumebackups.json.gz`]: gzipJson(null),
    [`${name}-itemoperations.json.gz`]: gzipJson(null),
    // Without CSI snapshots, the null list (and no contents list) this file always wrote.
    [`${name}-csi-volumesnapshots.json.gz`]: gzipJson(
      csi.length > 0 ? csi.map((p) => volumeSnapshot(p, context, namespace)) : null,
    ),
    ...(csi.length > 0
      ? {
          [`${name}-csi-volumesnapshotcontents.json.gz`]: gzipSync(
            `[${csi.map((p) => volumeSnapshotContentJson(p, context, namespace)).join(",")}]\n`,
          ),
        }
      : {}),
  };
}
