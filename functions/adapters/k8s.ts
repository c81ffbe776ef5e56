import * as http from "node:http";
import * as https from "node:https";
import { Sha256 } from "@aws-crypto/sha256-js";
import { SignatureV4 } from "@smithy/signature-v4";
import * as z from "zod/mini";
import { RetryableError, TerminalError } from "../core/errors.js";
import {
  type RestoreRequest,
  type RestoreStatus,
  StepFailed,
  type VeleroRestores,
} from "../core/failover.js";

/**
 * A very small Kubernetes API client (node's http/https, JSON only) for the standby cluster, and
 * Velero's Restore on top of it. No Kubernetes client library: three calls do not need one.
 */

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}
export type CredentialProvider = () => Promise<Credentials>;

/** The token prefix aws-iam-authenticator (and EKS) accept. */
export const EKS_TOKEN_PREFIX = "k8s-aws-v1.";
/** The header the presigned GetCallerIdentity request signs, binding the token to one cluster. */
export const CLUSTER_ID_HEADER = "x-k8s-aws-id";

/** STS's regional endpoint (not the global sts.amazonaws.com, which is served from us-east-1). */
export const stsHost = (region: string) =>
  `sts.${region}.${region.startsWith("cn-") ? "amazonaws.com.cn" : "amazonaws.com"}`;

/** RFC 3986 encoding, as SigV4 canonicalises query strings. */
const uriEscape = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * An EKS bearer token, as `aws eks get-token` makes it: `k8s-aws-v1.` + base64url (no padding) of
 * a presigned STS GetCallerIdentity URL, valid 60 s, whose signature covers the `x-k8s-aws-id`
 * header set to the cluster's name (the header is signed, not put in the URL: the API server adds
 * it when it calls STS, so the token works for that cluster only). Signed with the function's own
 * credentials (the default provider chain) for the failover region's STS endpoint. Nothing is sent
 * to STS here: the API server does that.
 */
export async function eksToken(o: {
  clusterName: string;
  region: string;
  credentials: CredentialProvider | Credentials;
  now?: Date;
}): Promise<string> {
  const host = stsHost(o.region);
  const signer = new SignatureV4({
    service: "sts",
    region: o.region,
    credentials: o.credentials,
    sha256: Sha256,
  });
  const signed = await signer.presign(
    {
      method: "GET",
      protocol: "https:",
      hostname: host,
      path: "/",
      query: { Action: "GetCallerIdentity", Version: "2011-06-15" },
      headers: { host, [CLUSTER_ID_HEADER]: o.clusterName },
    },
    {
      expiresIn: 60,
      unhoistableHeaders: new Set([CLUSTER_ID_HEADER]),
      ...(o.now ? { signingDate: o.now } : {}),
    },
  );
  const query = Object.entries(signed.query ?? {})
    .flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x]) : [[k, v ?? ""]]))
    .sort(([a], [b]) => (a ?? "").localeCompare(b ?? ""))
    .map(([k, v]) => `${uriEscape(k ?? "")}=${uriEscape(v ?? "")}`)
    .join("&");
  return `${EKS_TOKEN_PREFIX}${Buffer.from(`https://${host}/?${query}`, "utf8").toString("base64url")}`;
}

export interface KubeAccess {
  /** The API server, e.g. https://XXXX.gr7.us-west-2.eks.amazonaws.com (no path). */
  endpoint: string;
  /** The cluster's CA bundle (PEM), from DescribeCluster's certificateAuthority. */
  caPem?: string;
}

export interface KubeResponse {
  status: number;
  body: unknown;
}

/**
 * Kubernetes' API over node's http/https. The server and its CA are resolved once per container
 * (DescribeCluster); the token is made fresh for every request (a local HMAC, no call).
 */
export class KubeClient {
  private access?: Promise<KubeAccess>;
  requests = 0;

  constructor(
    private readonly resolveAccess: () => Promise<KubeAccess>,
    private readonly token: () => Promise<string>,
    private readonly timeoutMs = 15_000,
  ) {}

  private server(): Promise<KubeAccess> {
    if (!this.access) {
      this.access = this.resolveAccess();
      this.access.catch(() => {
        this.access = undefined; // resolve again next time
      });
    }
    return this.access;
  }

  async request(method: "GET" | "POST", path: string, body?: unknown): Promise<KubeResponse> {
    const { endpoint, caPem } = await this.server();
    const url = new URL(path, `${endpoint.replace(/\/$/, "")}/`);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), "utf8");
    const headers: Record<string, string> = {
      accept: "application/json",
      authorization: `Bearer ${await this.token()}`,
      "user-agent": "velero-xregion-dr/failover",
    };
    if (payload) {
      headers["content-type"] = "application/json";
      headers["content-length"] = String(payload.length);
    }
    this.requests++;
    const transport = url.protocol === "https:" ? https : http;
    return new Promise<KubeResponse>((resolve, reject) => {
      const req = transport.request(
        url,
        {
          method,
          headers,
          timeout: this.timeoutMs,
          ...(caPem && url.protocol === "https:" ? { ca: caPem } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", (err) =>
            reject(new RetryableError(`${method} ${path}: ${err.message}`, "NetworkingError")),
          );
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: unknown = text;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              // not JSON: keep the text for the message
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
        },
      );
      req.on("timeout", () => req.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })));
      req.on("error", (err: Error & { code?: string }) =>
        reject(
          new RetryableError(`${method} ${url.host}${path}: ${err.message}`, err.code ?? "NetworkingError", {
            cause: err,
          }),
        ),
      );
      req.end(payload);
    });
  }
}

const StatusSchema = z.looseObject({ message: z.optional(z.string()), reason: z.optional(z.string()) });

/** A non-2xx answer as a typed error: 429 and 5xx are retryable, 401/403 say what to fix. */
export function kubeError(what: string, res: KubeResponse): RetryableError | TerminalError {
  const s = z.safeParse(StatusSchema, res.body);
  const detail = s.success ? (s.data.message ?? s.data.reason ?? "") : String(res.body ?? "").slice(0, 200);
  const message = `${what}: HTTP ${res.status}${detail ? ` ${detail}` : ""}`;
  if (res.status === 429 || res.status >= 500) return new RetryableError(message, `HTTP${res.status}`);
  if (res.status === 401 || res.status === 403) {
    return new TerminalError(
      `${message} (the function's role needs access to the standby cluster: an EKS access entry ` +
        "allowed to create and read velero.io Restores and read the velero Deployment)",
      `HTTP${res.status}`,
    );
  }
  return new TerminalError(message, `HTTP${res.status}`);
}

const RestoreSchema = z.looseObject({
  metadata: z.looseObject({ name: z.string() }),
  spec: z.optional(z.looseObject({ backupName: z.optional(z.string()) })),
  status: z.optional(
    z.looseObject({
      phase: z.optional(z.string()),
      warnings: z.optional(z.number()),
      errors: z.optional(z.number()),
      failureReason: z.optional(z.string()),
      validationErrors: z.optional(z.array(z.string())),
    }),
  ),
});

function restoreStatus(body: unknown, what: string): RestoreStatus {
  const p = z.safeParse(RestoreSchema, body);
  if (!p.success) throw new TerminalError(`${what}: the API server's answer is not a Restore`, "BadResponse");
  const r = p.data;
  const out: RestoreStatus = {
    name: r.metadata.name,
    backupName: r.spec?.backupName ?? "",
    phase: r.status?.phase || "New",
    warnings: r.status?.warnings ?? 0,
    errors: r.status?.errors ?? 0,
  };
  if (r.status?.failureReason) out.failureReason = r.status.failureReason;
  if (r.status?.validationErrors?.length) out.validationErrors = r.status.validationErrors;
  return out;
}

/** What the snapshot class check reads of a VolumeSnapshotClassList. */
const SnapshotClassListSchema = z.looseObject({
  items: z.array(
    z.looseObject({
      driver: z.optional(z.string()),
      metadata: z.optional(z.looseObject({ name: z.optional(z.string()) })),
    }),
  ),
});

const DeploymentSchema = z.looseObject({
  spec: z.optional(
    z.looseObject({
      template: z.optional(
        z.looseObject({
          spec: z.optional(
            z.looseObject({
              initContainers: z.optional(
                z.array(z.looseObject({ name: z.optional(z.string()), image: z.optional(z.string()) })),
              ),
            }),
          ),
        }),
      ),
    }),
  ),
});

/** The plugin's name as its image and init container carry it (cloudbees-oss/inject-metadata-velero-plugin). */
export const INJECT_METADATA_PLUGIN = "inject-metadata-velero-plugin";

/**
 * Velero's Restores in the standby cluster (velero.io/v1, in Velero's namespace). The Restore's name
 * comes from the execution, so creating it twice is impossible: a second POST gets 409
 * AlreadyExists, which is success, and the existing Restore is read instead.
 */
export class KubeVeleroRestores implements VeleroRestores {
  constructor(
    private readonly kube: KubeClient,
    private readonly namespace: string,
  ) {}

  private path(name?: string) {
    return `/apis/velero.io/v1/namespaces/${this.namespace}/restores${name ? `/${encodeURIComponent(name)}` : ""}`;
  }

  async ensure(r: RestoreRequest): Promise<{ created: boolean; restore: RestoreStatus }> {
    const spec: Record<string, unknown> = {
      backupName: r.backupName,
      includedNamespaces: r.includedNamespaces,
      restorePVs: true,
    };
    if (r.namespaceMapping && Object.keys(r.namespaceMapping).length > 0)
      spec.namespaceMapping = r.namespaceMapping;
    const body = {
      apiVersion: "velero.io/v1",
      kind: "Restore",
      metadata: { name: r.name, namespace: this.namespace, labels: r.labels, annotations: r.annotations },
      spec,
    };
    const res = await this.kube.request("POST", this.path(), body);
    if (res.status === 201 || res.status === 200 || res.status === 202) {
      return { created: true, restore: restoreStatus(res.body, `create Restore ${r.name}`) };
    }
    if (res.status !== 409) throw kubeError(`create Restore ${r.name}`, res);
    const existing = await this.get(r.name);
    if (!existing) throw new RetryableError(`Restore ${r.name} conflicted but cannot be read`, "Conflict");
    if (existing.backupName !== r.backupName) {
      throw new StepFailed(
        `a Restore named ${r.name} already exists for backup ${existing.backupName}, not ${r.backupName}`,
      );
    }
    return { created: false, restore: existing };
  }

  async get(name: string): Promise<RestoreStatus | undefined> {
    const res = await this.kube.request("GET", this.path(name));
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw kubeError(`get Restore ${name}`, res);
    return restoreStatus(res.body, `get Restore ${name}`);
  }

  /**
   * Velero loads plugins from init containers of its Deployment (`velero install --plugins` and
   * `velero plugin add` put them there), so the plugin is present when the `velero` Deployment in
   * Velero's namespace has an init container whose image or name contains
   * `inject-metadata-velero-plugin`. That is what is checked: not that the plugin registered
   * (`velero plugin get` asks the server, which the API does not expose).
   */
  /**
   * Lists the cluster's VolumeSnapshotClasses (snapshot.storage.k8s.io/v1, cluster-scoped: the
   * README's ClusterRole grants `list`) and looks for one of the driver. 404: the external-snapshotter
   * CRDs are not installed, so no CSI volume can be restored.
   */
  async snapshotClassCheck(driver: string): Promise<{ present: boolean; detail: string }> {
    const res = await this.kube.request("GET", "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses");
    if (res.status === 404) {
      return {
        present: false,
        detail:
          "the snapshot.storage.k8s.io API is not served (the external-snapshotter CRDs are not installed)",
      };
    }
    if (res.status !== 200) throw kubeError("list VolumeSnapshotClasses", res);
    const list = z.safeParse(SnapshotClassListSchema, res.body);
    const items = list.success ? list.data.items : [];
    const match = items.find((c) => c.driver === driver);
    return match
      ? { present: true, detail: `VolumeSnapshotClass ${match.metadata?.name ?? "?"} (driver ${driver})` }
      : {
          present: false,
          detail:
            `no VolumeSnapshotClass for driver ${driver} ` +
            `(classes: ${items.map((c) => `${c.metadata?.name ?? "?"} (${c.driver ?? "?"})`).join(", ") || "none"})`,
        };
  }

  async pluginCheck(): Promise<{ present: boolean; detail: string }> {
    const path = `/apis/apps/v1/namespaces/${this.namespace}/deployments/velero`;
    const res = await this.kube.request("GET", path);
    if (res.status === 404) {
      return { present: false, detail: `no velero Deployment in namespace ${this.namespace}` };
    }
    if (res.status !== 200) throw kubeError("get the velero Deployment", res);
    const d = z.safeParse(DeploymentSchema, res.body);
    const inits = d.success ? (d.data.spec?.template?.spec?.initContainers ?? []) : [];
    const plugin = inits.find(
      (c) => c.image?.includes(INJECT_METADATA_PLUGIN) || c.name?.includes(INJECT_METADATA_PLUGIN),
    );
    return plugin
      ? {
          present: true,
          detail: `velero Deployment init container ${plugin.name ?? "?"} (${plugin.image ?? "?"})`,
        }
      : {
          present: false,
          detail:
            `the velero Deployment has no ${INJECT_METADATA_PLUGIN} init container ` +
            `(init containers: ${inits.map((c) => c.image ?? c.name).join(", ") || "none"})`,
        };
  }
}
