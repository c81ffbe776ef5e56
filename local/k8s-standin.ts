import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Sha256 } from "@aws-crypto/sha256-js";
import { SignatureV4 } from "@smithy/signature-v4";
import { CLUSTER_ID_HEADER, type Credentials, EKS_TOKEN_PREFIX } from "../functions/adapters/k8s.js";

/**
 * ============================== STAND-IN, NOT KUBERNETES ==============================
 *
 * A small local HTTP server playing the standby cluster's Kubernetes API for tests and local mode.
 * It is not a Kubernetes API server and runs no Velero: it stores velero.io/v1 Restores posted to
 * Velero's namespace and moves each to InProgress and then (after `completeAfterMs`) to Completed,
 * or to whatever `outcome` says; it serves Velero's Deployment so the inject-metadata plugin check
 * has something to read. Every response carries `x-stand-in`, every Restore an annotation saying so.
 *
 * Authentication: it accepts a bearer token configured for local mode, or an EKS token
 * (`k8s-aws-v1.` + base64url of a presigned STS GetCallerIdentity URL). It checks what can be
 * checked offline: the URL is STS's GetCallerIdentity, presigned with SigV4, not expired, valid for
 * at most 60 s, and signs the `x-k8s-aws-id` header. Whether that header was the cluster's name can
 * only be told from the signature (the header is signed, not in the URL): given the credentials the
 * token was signed with (the emulator's local ones), the stand-in recomputes the signature with
 * `x-k8s-aws-id: <cluster name>` and compares. It CANNOT verify AWS's signature of real credentials
 * offline: EKS does that by calling STS with the URL, which the stand-in never does.
 * =======================================================================================
 */

export const STAND_IN_LABEL = "Kubernetes API STAND-IN (local; not a Kubernetes API server, runs no Velero)";

export interface StandInRestoreOutcome {
  phase: "Completed" | "PartiallyFailed" | "Failed";
  warnings?: number;
  errors?: number;
  failureReason?: string;
}

export interface K8sStandInOptions {
  clusterName: string;
  /** Credentials EKS tokens were signed with (local mode's): lets the stand-in check the signature. */
  credentials?: Credentials;
  /** A static bearer token accepted too (local mode's FAILOVER_K8S_TOKEN). */
  bearerToken?: string;
  veleroNamespace?: string;
  /** How long a Restore stays InProgress (default 150 ms). */
  completeAfterMs?: number;
  /** Images of the velero Deployment's init containers (the plugins); default: AWS + inject-metadata. */
  pluginImages?: string[];
  /** How a Restore ends (default Completed, no warnings or errors). */
  outcome?: (restore: { name: string; backupName: string }) => StandInRestoreOutcome;
  /** VolumeSnapshotClasses the cluster has (name -> CSI driver); default one for ebs.csi.aws.com. */
  snapshotClasses?: Record<string, string>;
  /** Backups Velero knows; a Restore of another one ends FailedValidation, as Velero's would. */
  knownBackups?: () => Iterable<string>;
  now?: () => number;
}

export interface TokenSeen {
  kind: "eks" | "bearer";
  stsHost?: string;
  region?: string;
  signedHeaders?: string[];
  /** The signature was recomputed with the cluster's name and matched. */
  signatureVerified: boolean;
}

interface StoredRestore {
  body: Record<string, unknown>;
  name: string;
  backupName: string;
  createdAt: number;
}

const DEFAULT_PLUGINS = [
  "velero/velero-plugin-for-aws:v1.10.0",
  "ghcr.io/cloudbees-oss/inject-metadata-velero-plugin:v0.1.0",
];

/** Why an EKS token is refused, or its facts when accepted. */
export async function checkEksToken(
  token: string,
  o: { clusterName: string; credentials?: Credentials; now: Date },
): Promise<{ ok: true; seen: TokenSeen } | { ok: false; reason: string }> {
  if (!token.startsWith(EKS_TOKEN_PREFIX))
    return { ok: false, reason: `token does not start with ${EKS_TOKEN_PREFIX}` };
  const encoded = token.slice(EKS_TOKEN_PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(encoded))
    return { ok: false, reason: "token is not base64url without padding" };
  let url: URL;
  try {
    url = new URL(Buffer.from(encoded, "base64url").toString("utf8"));
  } catch {
    return { ok: false, reason: "token does not hold a URL" };
  }
  if (url.protocol !== "https:" || !/^sts(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?$/.test(url.hostname)) {
    return { ok: false, reason: `not an STS URL: ${url.protocol}//${url.hostname}` };
  }
  const q = url.searchParams;
  if (url.pathname !== "/" || q.get("Action") !== "GetCallerIdentity" || q.get("Version") !== "2011-06-15") {
    return { ok: false, reason: "the URL is not STS GetCallerIdentity (Version 2011-06-15)" };
  }
  if (q.get("X-Amz-Algorithm") !== "AWS4-HMAC-SHA256")
    return { ok: false, reason: "not a SigV4 presigned URL" };
  const credential = /^([^/]+)\/(\d{8})\/([a-z0-9-]+)\/sts\/aws4_request$/.exec(
    q.get("X-Amz-Credential") ?? "",
  );
  if (!credential) return { ok: false, reason: "X-Amz-Credential is not for sts" };
  const [, accessKeyId, , region] = credential;
  const amzDate = q.get("X-Amz-Date") ?? "";
  if (!/^\d{8}T\d{6}Z$/.test(amzDate)) return { ok: false, reason: "X-Amz-Date is missing or malformed" };
  const signedAt = Date.parse(
    `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`,
  );
  const expires = Number(q.get("X-Amz-Expires"));
  if (!Number.isInteger(expires) || expires < 1 || expires > 60) {
    return { ok: false, reason: `X-Amz-Expires must be 1..60, got ${q.get("X-Amz-Expires")}` };
  }
  const now = o.now.getTime();
  if (signedAt > now + 5 * 60_000) return { ok: false, reason: "token signed in the future" };
  // aws-iam-authenticator accepts a token for 15 minutes after signing, whatever X-Amz-Expires says.
  if (signedAt + 15 * 60_000 < now) return { ok: false, reason: "token expired" };
  const signedHeaders = (q.get("X-Amz-SignedHeaders") ?? "").split(";");
  if (!signedHeaders.includes("host") || !signedHeaders.includes(CLUSTER_ID_HEADER)) {
    return { ok: false, reason: `the presigned URL does not sign ${CLUSTER_ID_HEADER}` };
  }
  const signature = q.get("X-Amz-Signature") ?? "";
  if (!/^[0-9a-f]{64}$/.test(signature)) return { ok: false, reason: "X-Amz-Signature is malformed" };
  const seen: TokenSeen = {
    kind: "eks",
    stsHost: url.hostname,
    signedHeaders,
    signatureVerified: false,
    ...(region ? { region } : {}),
  };
  if (o.credentials && o.credentials.accessKeyId === accessKeyId && region) {
    const query: Record<string, string> = {};
    for (const [k, v] of q) if (k.startsWith("X-Amz-") === false) query[k] = v;
    const signer = new SignatureV4({ service: "sts", region, credentials: o.credentials, sha256: Sha256 });
    const again = await signer.presign(
      {
        method: "GET",
        protocol: "https:",
        hostname: url.hostname,
        path: "/",
        query,
        headers: { host: url.hostname, [CLUSTER_ID_HEADER]: o.clusterName },
      },
      {
        expiresIn: expires,
        signingDate: new Date(signedAt),
        unhoistableHeaders: new Set([CLUSTER_ID_HEADER]),
      },
    );
    if (again.query?.["X-Amz-Signature"] !== signature) {
      return {
        ok: false,
        reason: `signature does not match ${CLUSTER_ID_HEADER}: ${o.clusterName} (another cluster, or other credentials)`,
      };
    }
    seen.signatureVerified = true;
  }
  return { ok: true, seen };
}

/** The stand-in server. `K8sStandIn.start(...)`, then point FAILOVER_K8S_ENDPOINT at `endpoint`. */
export class K8sStandIn {
  readonly label = STAND_IN_LABEL;
  readonly counts = {
    requests: 0,
    unauthorized: 0,
    restoreCreates: 0,
    restoreConflicts: 0,
    restoreGets: 0,
    deploymentGets: 0,
    notFound: 0,
  };
  readonly tokens: TokenSeen[] = [];
  private readonly restores = new Map<string, StoredRestore>();
  private readonly ns: string;
  private readonly now: () => number;

  private constructor(
    private readonly server: Server,
    readonly endpoint: string,
    private readonly o: K8sStandInOptions,
  ) {
    this.ns = o.veleroNamespace ?? "velero";
    this.now = o.now ?? Date.now;
  }

  static async start(o: K8sStandInOptions): Promise<K8sStandIn> {
    let self: K8sStandIn | undefined;
    const server = createServer((req, res) => {
      void self
        ?.handle(req, res)
        .catch((err: unknown) => send(res, 500, status(500, "InternalError", String(err))));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    self = new K8sStandIn(server, `http://127.0.0.1:${port}`, o);
    return self;
  }

  /** One line for local mode's output. */
  describe(): string {
    return `${STAND_IN_LABEL} for cluster ${this.o.clusterName} at ${this.endpoint}`;
  }

  /** Every Restore as the API would return it now. */
  list(): Array<Record<string, unknown>> {
    return [...this.restores.values()].map((r) => this.view(r));
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }

  private async authorised(req: IncomingMessage): Promise<string | undefined> {
    const header = req.headers.authorization ?? "";
    if (!header.startsWith("Bearer ")) return "no bearer token";
    const token = header.slice("Bearer ".length);
    if (this.o.bearerToken && token === this.o.bearerToken) {
      this.tokens.push({ kind: "bearer", signatureVerified: false });
      return undefined;
    }
    const checked = await checkEksToken(token, {
      clusterName: this.o.clusterName,
      now: new Date(this.now()),
      ...(this.o.credentials ? { credentials: this.o.credentials } : {}),
    });
    if (!checked.ok) return checked.reason;
    this.tokens.push(checked.seen);
    return undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.counts.requests++;
    const body = await readBody(req);
    const why = await this.authorised(req);
    if (why !== undefined) {
      this.counts.unauthorized++;
      return send(res, 401, status(401, "Unauthorized", `stand-in refused the token: ${why}`));
    }
    const url = new URL(req.url ?? "/", "http://stand-in");
    const restores = `/apis/velero.io/v1/namespaces/${this.ns}/restores`;
    if (req.method === "POST" && url.pathname === restores) return this.create(body, res);
    if (req.method === "GET" && url.pathname.startsWith(`${restores}/`)) {
      this.counts.restoreGets++;
      const r = this.restores.get(decodeURIComponent(url.pathname.slice(restores.length + 1)));
      if (!r) {
        this.counts.notFound++;
        return send(res, 404, status(404, "NotFound", "restores.velero.io not found"));
      }
      return send(res, 200, this.view(r));
    }
    if (req.method === "GET" && url.pathname === "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses") {
      const classes = this.o.snapshotClasses ?? { "ebs-csi": "ebs.csi.aws.com" };
      return send(res, 200, {
        apiVersion: "snapshot.storage.k8s.io/v1",
        kind: "VolumeSnapshotClassList",
        items: Object.entries(classes).map(([name, driver]) => ({
          apiVersion: "snapshot.storage.k8s.io/v1",
          kind: "VolumeSnapshotClass",
          metadata: { name },
          driver,
          deletionPolicy: "Retain",
        })),
      });
    }
    if (req.method === "GET" && url.pathname === `/apis/apps/v1/namespaces/${this.ns}/deployments/velero`) {
      this.counts.deploymentGets++;
      return send(res, 200, this.deployment());
    }
    this.counts.notFound++;
    return send(
      res,
      404,
      status(404, "NotFound", `the stand-in does not serve ${req.method} ${url.pathname}`),
    );
  }

  private create(raw: string, res: ServerResponse) {
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      return send(res, 400, status(400, "BadRequest", "body is not JSON"));
    }
    const meta = (body.metadata ?? {}) as Record<string, unknown>;
    const spec = (body.spec ?? {}) as Record<string, unknown>;
    const name = typeof meta.name === "string" ? meta.name : "";
    const problems: string[] = [];
    if (body.apiVersion !== "velero.io/v1" || body.kind !== "Restore")
      problems.push("not a velero.io/v1 Restore");
    if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(name))
      problems.push(`metadata.name "${name}" is invalid`);
    if (meta.namespace !== undefined && meta.namespace !== this.ns)
      problems.push("metadata.namespace differs from the URL");
    if (typeof spec.backupName !== "string" || !spec.backupName) problems.push("spec.backupName is required");
    if (problems.length > 0) return send(res, 422, status(422, "Invalid", problems.join("; ")));
    if (this.restores.has(name)) {
      this.counts.restoreConflicts++;
      return send(res, 409, status(409, "AlreadyExists", `restores.velero.io "${name}" already exists`));
    }
    this.counts.restoreCreates++;
    const stored: StoredRestore = {
      body,
      name,
      backupName: spec.backupName as string,
      createdAt: this.now(),
    };
    this.restores.set(name, stored);
    send(res, 201, this.view(stored, true));
  }

  private view(r: StoredRestore, justCreated = false): Record<string, unknown> {
    const meta = (r.body.metadata ?? {}) as Record<string, unknown>;
    const annotations = {
      ...((meta.annotations ?? {}) as Record<string, string>),
      "dr.velero.io/served-by": STAND_IN_LABEL,
    };
    const base = {
      ...r.body,
      metadata: {
        ...meta,
        namespace: this.ns,
        annotations,
        creationTimestamp: new Date(r.createdAt).toISOString(),
      },
    };
    if (justCreated) return { ...base, status: {} };
    const known = this.o.knownBackups ? new Set(this.o.knownBackups()) : undefined;
    if (known && !known.has(r.backupName)) {
      return {
        ...base,
        status: { phase: "FailedValidation", validationErrors: [`backup ${r.backupName} not found`] },
      };
    }
    const started = new Date(r.createdAt).toISOString();
    if (this.now() - r.createdAt < (this.o.completeAfterMs ?? 150)) {
      return { ...base, status: { phase: "InProgress", startTimestamp: started } };
    }
    const end = this.o.outcome?.({ name: r.name, backupName: r.backupName }) ?? { phase: "Completed" };
    return {
      ...base,
      status: {
        phase: end.phase,
        startTimestamp: started,
        completionTimestamp: new Date(r.createdAt + (this.o.completeAfterMs ?? 150)).toISOString(),
        warnings: end.warnings ?? 0,
        errors: end.errors ?? 0,
        ...(end.failureReason ? { failureReason: end.failureReason } : {}),
      },
    };
  }

  private deployment(): Record<string, unknown> {
    const images = this.o.pluginImages ?? DEFAULT_PLUGINS;
    return {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: {
        name: "velero",
        namespace: this.ns,
        annotations: { "dr.velero.io/served-by": STAND_IN_LABEL },
      },
      spec: {
        template: {
          spec: {
            // As `velero plugin add` names them: the image's last path segment, without the tag.
            initContainers: images.map((image) => ({
              name: (image.split("/").pop() ?? image).split(":")[0],
              image,
              volumeMounts: [{ mountPath: "/target", name: "plugins" }],
            })),
            containers: [{ name: "velero", image: "velero/velero:v1.14.0" }],
          },
        },
      },
    };
  }
}

function status(code: number, reason: string, message: string) {
  return { kind: "Status", apiVersion: "v1", status: "Failure", message, reason, code };
}

function send(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "x-stand-in": STAND_IN_LABEL,
  });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
