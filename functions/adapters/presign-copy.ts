import { Sha256 } from "@aws-crypto/sha256-js";
import type { EC2Client } from "@aws-sdk/client-ec2";
import { SignatureV4 } from "@smithy/signature-v4";

/**
 * The source-region presigned URL of a cross-region CopySnapshot, built here rather than by the SDK:
 * the pure part (which parameters, how serialised) and the signing with the sending client's
 * credentials and endpoint rules. Why: see {@link presignCopySnapshot}.
 */

/** The EC2 API version the Query protocol names in every request (the SDK's, 2016-11-15). */
export const EC2_API_VERSION = "2016-11-15";

/** How long the presigned URL is valid, in seconds (the SDK's value). */
export const PRESIGN_EXPIRES_SECONDS = 3600;

/** What the presigned URL says about the copy. */
export interface CopySnapshotPresign {
  sourceRegion: string;
  sourceSnapshotId: string;
  /** The region the CopySnapshot request is sent to (where the copy is created). */
  destinationRegion: string;
  /** Present when the copy is encrypted with this key (the URL then carries Encrypted=true too). */
  kmsKeyId?: string;
}

/** Where the source region's EC2 endpoint is. */
export interface EndpointUrl {
  protocol: string;
  hostname: string;
  port?: number;
  path: string;
}

/** A scalar as EC2's Query protocol serialises it: booleans `true`/`false`, numbers and strings as is. */
export function queryValue(value: string | number | boolean): string {
  return typeof value === "boolean" ? (value ? "true" : "false") : String(value);
}

/** RFC 3986 percent-encoding (unreserved characters stay, everything else is %XX, upper case). */
export function rfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * The unsigned query of the presigned URL: exactly the members EC2 checks for a copy (no tags,
 * description or completion duration: those stay in the request itself), in Query protocol form.
 */
export function copySnapshotPresignQuery(p: CopySnapshotPresign): Record<string, string> {
  return {
    Action: "CopySnapshot",
    Version: EC2_API_VERSION,
    SourceRegion: p.sourceRegion,
    SourceSnapshotId: p.sourceSnapshotId,
    DestinationRegion: p.destinationRegion,
    ...(p.kmsKeyId ? { Encrypted: queryValue(true), KmsKeyId: p.kmsKeyId } : {}),
  };
}

/** The `Host` header value of an endpoint (with the port when there is one). */
export function hostOf(endpoint: EndpointUrl): string {
  return endpoint.port ? `${endpoint.hostname}:${endpoint.port}` : endpoint.hostname;
}

/** The URL of a (signed) query, each key and value RFC 3986-encoded, in the query's order. */
export function formatPresignedUrl(endpoint: EndpointUrl, query: Record<string, string>): string {
  const qs = Object.entries(query)
    .map(([k, v]) => `${rfc3986(k)}=${rfc3986(v)}`)
    .join("&");
  return `${endpoint.protocol}//${hostOf(endpoint)}${endpoint.path || "/"}?${qs}`;
}

async function resolved<T>(v: T | (() => Promise<T>) | undefined): Promise<T | undefined> {
  return typeof v === "function" ? (v as () => Promise<T>)() : v;
}

/**
 * The source region's EC2 endpoint as the client would resolve it for that region: its custom
 * endpoint when it has one (the emulator in tests and local mode), else one configured for the
 * environment (AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL, `endpoint_url`), else the SDK's endpoint
 * rules for the source region with the client's FIPS and dual-stack settings (partition-aware:
 * ec2.cn-north-1.amazonaws.com.cn, ec2.us-gov-west-1.amazonaws.com).
 */
export async function sourceRegionEndpoint(client: EC2Client, sourceRegion: string): Promise<EndpointUrl> {
  const c = client.config;
  let custom: string | undefined;
  if (c.isCustomEndpoint && c.endpoint) {
    const e = await c.endpoint();
    custom = `${e.protocol}//${e.hostname}${e.port ? `:${e.port}` : ""}${e.path ?? ""}`;
  } else if (!c.ignoreConfiguredEndpointUrls) {
    custom = await c.serviceConfiguredEndpoint?.();
  }
  const { url } = c.endpointProvider({
    Region: sourceRegion,
    UseFIPS: (await resolved(c.useFipsEndpoint)) ?? false,
    UseDualStack: (await resolved(c.useDualstackEndpoint)) ?? false,
    ...(custom ? { Endpoint: custom } : {}),
  });
  return {
    protocol: url.protocol,
    hostname: url.hostname,
    ...(url.port ? { port: Number(url.port) } : {}),
    path: url.pathname || "/",
  };
}

/**
 * The presigned source-region URL for a CopySnapshot sent through `client` (the destination
 * region's client): SigV4 for the source region and service `ec2`, with that client's credentials
 * (their session token included), valid for an hour, signed at the client's skew-corrected time.
 *
 * Why: EC2 requires this URL when the source snapshot is encrypted (`PresignedUrl`,
 * https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CopySnapshot.html), and the SDK v3
 * middleware (`@aws-sdk/middleware-sdk-ec2`) presigns one from every input member with `String(v)`,
 * so with `TagSpecifications` it signs `TagSpecifications=[object Object]`. Given a `PresignedUrl`
 * the middleware leaves the request alone, and then adds no `DestinationRegion` either: the caller
 * sets both.
 */
export async function presignCopySnapshot(
  client: EC2Client,
  p: CopySnapshotPresign,
  options: { signingDate?: Date } = {},
): Promise<string> {
  const endpoint = await sourceRegionEndpoint(client, p.sourceRegion);
  const signer = new SignatureV4({
    credentials: client.config.credentials,
    region: p.sourceRegion,
    service: "ec2",
    sha256: Sha256,
  });
  const signed = await signer.presign(
    {
      method: "GET",
      protocol: endpoint.protocol,
      hostname: endpoint.hostname,
      ...(endpoint.port ? { port: endpoint.port } : {}),
      path: endpoint.path,
      headers: { host: hostOf(endpoint) },
      query: copySnapshotPresignQuery(p),
    },
    {
      expiresIn: PRESIGN_EXPIRES_SECONDS,
      signingDate: options.signingDate ?? new Date(Date.now() + (client.config.systemClockOffset ?? 0)),
    },
  );
  const query: Record<string, string> = {};
  for (const [k, v] of Object.entries(signed.query ?? {})) if (typeof v === "string") query[k] = v;
  return formatPresignedUrl(endpoint, query);
}
