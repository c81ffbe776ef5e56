import { Readable } from "node:stream";
import { Sha256 } from "@aws-crypto/sha256-js";
import { EC2Client, type EC2ClientConfig } from "@aws-sdk/client-ec2";
import { SignatureV4 } from "@smithy/signature-v4";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Ec2SnapshotCopier } from "../../functions/adapters/ec2.js";
import { copySnapshotPresignQuery, formatPresignedUrl } from "../../functions/adapters/presign-copy.js";
import type { CopyRequest } from "../../functions/core/ports.js";

const SOURCE_SNAPSHOT = "snap-0a1b2c3d4e5f60718";
const COPY_SNAPSHOT = "snap-0f1e2d3c4b5a69788";
const KEY = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/** Lambda's credentials are temporary: they come with a session token. */
const SESSION = {
  accessKeyId: "ASIAEXAMPLEEXAMPLE01",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  sessionToken: "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+token=",
};
const LONG_TERM = { accessKeyId: "AKIAEXAMPLEEXAMPLE02", secretAccessKey: "secretsecretsecretsecretsecret" };

/** The members the presigned URL may carry: EC2's own plus the SigV4 presign parameters. */
const COPY_MEMBERS = ["Action", "Version", "SourceRegion", "SourceSnapshotId", "DestinationRegion"];
const SIGV4 = [
  "X-Amz-Algorithm",
  "X-Amz-Credential",
  "X-Amz-Date",
  "X-Amz-Expires",
  "X-Amz-SignedHeaders",
  "X-Amz-Signature",
];

function copyRequest(extra: Partial<CopyRequest> = {}): CopyRequest {
  return {
    sourceSnapshotId: SOURCE_SNAPSHOT,
    sourceRegion: "us-east-1",
    volumeId: "vol-0a0b0c0d0e0f01234",
    description: "Copy of snap-0a1b2c3d4e5f60718 (velero backup cbci-dr-20261127120000)",
    tags: {
      "velero.io/backup": "cbci-dr-20261127120000",
      "dr.velero.io/source-snapshot-id": SOURCE_SNAPSHOT,
    },
    ...extra,
  };
}

/**
 * An EC2 client whose HTTP handler records the request it is given (signed, as it would go on the
 * wire) and answers as EC2 does, so the whole SDK stack runs without a network. Configured
 * endpoints from the environment are ignored unless a test sets them.
 */
function recordingClient(region: string, config: Partial<EC2ClientConfig> = {}) {
  const bodies: string[] = [];
  const client = new EC2Client({
    region,
    credentials: SESSION,
    useFipsEndpoint: false,
    useDualstackEndpoint: false,
    ignoreConfiguredEndpointUrls: true,
    maxAttempts: 1,
    requestHandler: {
      handle: async (request: { body?: unknown }) => {
        bodies.push(String(request.body));
        const xml = `<CopySnapshotResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b</requestId><snapshotId>${COPY_SNAPSHOT}</snapshotId></CopySnapshotResponse>`;
        return {
          response: { statusCode: 200, headers: { "content-type": "text/xml" }, body: Readable.from([xml]) },
        };
      },
    },
    ...config,
  });
  return { client, bodies };
}

/** The CopySnapshot the copier sends from `failoverRegion`: its form body and the URL in it. */
async function sentCopy(
  failoverRegion: string,
  req: CopyRequest,
  config: Partial<EC2ClientConfig> = {},
): Promise<{ body: string; form: URLSearchParams; url: URL; rawQuery: string[] }> {
  const { client, bodies } = recordingClient(failoverRegion, config);
  const copier = new Ec2SnapshotCopier(() => client, failoverRegion);
  const id = await copier.copy(req);
  expect(id).toBe(COPY_SNAPSHOT);
  expect(bodies).toHaveLength(1);
  const body = bodies[0] ?? "";
  const form = new URLSearchParams(body);
  const url = new URL(form.get("PresignedUrl") ?? "");
  return { body, form, url, rawQuery: url.search.slice(1).split("&") };
}

/** 20261127T120000Z -> the Date. */
function amzDate(s: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) throw new Error(`not an X-Amz-Date: ${s}`);
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
}

/** The signature SigV4 gives the URL's own request (its parameters minus the presign ones). */
async function expectedSignature(url: URL, region: string, credentials: typeof SESSION | typeof LONG_TERM) {
  const query: Record<string, string> = {};
  for (const [k, v] of url.searchParams) if (!k.startsWith("X-Amz-")) query[k] = v;
  const signer = new SignatureV4({ credentials, region, service: "ec2", sha256: Sha256 });
  const signed = await signer.presign(
    {
      method: "GET",
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      headers: { host: url.host },
      query,
    },
    { signingDate: amzDate(url.searchParams.get("X-Amz-Date") ?? ""), expiresIn: 3600 },
  );
  return signed.query?.["X-Amz-Signature"];
}

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("the presigned URL of a cross-region CopySnapshot, as the copier sends it", () => {
  it("carries only the copy's own members, Query-serialised, signed for the source region with the session token", async () => {
    // arrange
    const req = copyRequest({ kmsKeyId: KEY, completionDurationMinutes: 30 });
    const before = Date.now();

    // act
    const { body, form, url, rawQuery } = await sentCopy("us-west-2", req);

    // assert: one PresignedUrl and our DestinationRegion in the request
    expect(body.split("&").filter((kv) => kv.startsWith("PresignedUrl="))).toHaveLength(1);
    expect(form.getAll("DestinationRegion")).toEqual(["us-west-2"]);
    // assert: the URL's host and parameters, nothing else
    expect(url.protocol).toBe("https:");
    expect(url.host).toBe("ec2.us-east-1.amazonaws.com");
    expect(url.pathname).toBe("/");
    expect([...url.searchParams.keys()].sort()).toEqual(
      [...COPY_MEMBERS, "Encrypted", "KmsKeyId", ...SIGV4, "X-Amz-Security-Token"].sort(),
    );
    expect(decodeURIComponent(url.search)).not.toContain("[object Object]");
    expect(url.search).not.toMatch(/TagSpecification|Description|CompletionDurationMinutes/);
    // assert: each value as the Query protocol serialises it
    expect(Object.fromEntries([...url.searchParams].filter(([k]) => !k.startsWith("X-Amz-")))).toEqual({
      Action: "CopySnapshot",
      Version: "2016-11-15",
      SourceRegion: "us-east-1",
      SourceSnapshotId: SOURCE_SNAPSHOT,
      DestinationRegion: "us-west-2",
      Encrypted: "true",
      KmsKeyId: KEY,
    });
    // assert: RFC 3986 percent-encoding (only unreserved characters and upper-case %XX)
    for (const kv of rawQuery) expect(kv).toMatch(/^[A-Za-z0-9._~-]+=(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})+$/);
    expect(rawQuery).toContain(
      "KmsKeyId=arn%3Aaws%3Akms%3Aus-west-2%3A123456789012%3Akey%2F1234abcd-12ab-34cd-56ef-1234567890ab",
    );
    expect(rawQuery).toContain(
      "X-Amz-Security-Token=IQoJb3JpZ2luX2VjEXAMPLE%2F%2F%2F%2F%2F%2F%2F%2F%2F%2FwEaCXVzLWVhc3QtMSJHMEUCIQD%2Btoken%3D",
    );
    // assert: SigV4 for the source region, an hour, with the client's credentials
    const date = url.searchParams.get("X-Amz-Date") ?? "";
    expect(amzDate(date).getTime()).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(amzDate(date).getTime()).toBeLessThanOrEqual(Date.now());
    expect(url.searchParams.get("X-Amz-Credential")).toBe(
      `${SESSION.accessKeyId}/${date.slice(0, 8)}/us-east-1/ec2/aws4_request`,
    );
    expect(url.searchParams.get("X-Amz-Algorithm")).toBe("AWS4-HMAC-SHA256");
    expect(url.searchParams.get("X-Amz-Expires")).toBe("3600");
    expect(url.searchParams.get("X-Amz-SignedHeaders")).toBe("host");
    expect(url.searchParams.get("X-Amz-Security-Token")).toBe(SESSION.sessionToken);
    expect(url.searchParams.get("X-Amz-Signature")).toBe(await expectedSignature(url, "us-east-1", SESSION));
  });

  it("keeps the rest of the request: tags, description, encryption and completion duration", async () => {
    // arrange
    const req = copyRequest({ kmsKeyId: KEY, completionDurationMinutes: 30 });

    // act
    const { form } = await sentCopy("us-west-2", req);

    // assert
    expect(Object.fromEntries(form)).toMatchObject({
      Action: "CopySnapshot",
      SourceRegion: "us-east-1",
      SourceSnapshotId: SOURCE_SNAPSHOT,
      Description: req.description,
      "TagSpecification.1.ResourceType": "snapshot",
      "TagSpecification.1.Tag.1.Key": "velero.io/backup",
      "TagSpecification.1.Tag.1.Value": "cbci-dr-20261127120000",
      "TagSpecification.1.Tag.2.Key": "dr.velero.io/source-snapshot-id",
      "TagSpecification.1.Tag.2.Value": SOURCE_SNAPSHOT,
      Encrypted: "true",
      KmsKeyId: KEY,
      CompletionDurationMinutes: "30",
    });
  });

  it("leaves Encrypted and KmsKeyId out of an unencrypted copy's URL, and the token out without one", async () => {
    // arrange
    const req = copyRequest();

    // act
    const { url } = await sentCopy("us-west-2", req, { credentials: LONG_TERM });

    // assert
    expect([...url.searchParams.keys()].sort()).toEqual([...COPY_MEMBERS, ...SIGV4].sort());
    expect(url.searchParams.get("X-Amz-Credential")).toMatch(
      new RegExp(`^${LONG_TERM.accessKeyId}/\\d{8}/us-east-1/ec2/aws4_request$`),
    );
    expect(url.searchParams.get("X-Amz-Signature")).toBe(
      await expectedSignature(url, "us-east-1", LONG_TERM),
    );
  });

  it.each([
    ["aws", "us-west-2", "us-east-1", {}, "ec2.us-east-1.amazonaws.com"],
    ["aws-cn", "cn-northwest-1", "cn-north-1", {}, "ec2.cn-north-1.amazonaws.com.cn"],
    ["aws-us-gov", "us-gov-east-1", "us-gov-west-1", {}, "ec2.us-gov-west-1.amazonaws.com"],
    ["aws, FIPS", "us-west-2", "us-east-1", { useFipsEndpoint: true }, "ec2-fips.us-east-1.amazonaws.com"],
    ["aws, dual-stack", "us-west-2", "us-east-1", { useDualstackEndpoint: true }, "ec2.us-east-1.api.aws"],
  ])("points at the source region's endpoint (%s: %s <- %s)", async (_, failover, source, config, host) => {
    // arrange
    const req = copyRequest({ sourceRegion: source });

    // act
    const { url, form } = await sentCopy(failover, req, config);

    // assert
    expect(url.protocol).toBe("https:");
    expect(url.host).toBe(host);
    expect(url.searchParams.get("SourceRegion")).toBe(source);
    expect(url.searchParams.get("DestinationRegion")).toBe(failover);
    expect(form.get("DestinationRegion")).toBe(failover);
    expect(url.searchParams.get("X-Amz-Credential")).toMatch(
      new RegExp(`/\\d{8}/${source}/ec2/aws4_request$`),
    );
    expect(url.searchParams.get("X-Amz-Signature")).toBe(await expectedSignature(url, source, SESSION));
  });

  it("uses the client's custom endpoint (the emulator), port included in the signed host", async () => {
    // arrange
    const req = copyRequest({ kmsKeyId: KEY });

    // act
    const { url } = await sentCopy("us-west-2", req, { endpoint: "http://127.0.0.1:4566" });

    // assert
    expect(url.origin).toBe("http://127.0.0.1:4566");
    expect(url.searchParams.get("X-Amz-Signature")).toBe(await expectedSignature(url, "us-east-1", SESSION));
  });

  it("uses an endpoint configured in the environment (AWS_ENDPOINT_URL_EC2), as the SDK does", async () => {
    // arrange
    vi.stubEnv("AWS_ENDPOINT_URL_EC2", "http://localhost:4567");
    const req = copyRequest();

    // act
    const { url } = await sentCopy("us-west-2", req, { ignoreConfiguredEndpointUrls: false });

    // assert
    expect(url.origin).toBe("http://localhost:4567");
  });
});

describe("copySnapshotPresignQuery and formatPresignedUrl", () => {
  it("serialise the members in Query form with RFC 3986 encoding", () => {
    // arrange
    const p = {
      sourceRegion: "eu-west-1",
      sourceSnapshotId: SOURCE_SNAPSHOT,
      destinationRegion: "eu-central-1",
      kmsKeyId: "arn:aws:kms:eu-central-1:123456789012:alias/dr key(1)*!'",
    };

    // act
    const url = formatPresignedUrl(
      { protocol: "https:", hostname: "ec2.eu-west-1.amazonaws.com", path: "/" },
      copySnapshotPresignQuery(p),
    );

    // assert
    expect(url).toBe(
      "https://ec2.eu-west-1.amazonaws.com/?Action=CopySnapshot&Version=2016-11-15&SourceRegion=eu-west-1" +
        `&SourceSnapshotId=${SOURCE_SNAPSHOT}&DestinationRegion=eu-central-1&Encrypted=true` +
        "&KmsKeyId=arn%3Aaws%3Akms%3Aeu-central-1%3A123456789012%3Aalias%2Fdr%20key%281%29%2A%21%27",
    );
  });
});
