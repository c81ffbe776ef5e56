/**
 * Typed errors. Retryable ones (throttling, quota, 5xx) back off and never drop work; terminal ones
 * (bad input, missing snapshot, misconfiguration) are recorded with their reason and not retried.
 */

export class DrError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Input that can never be processed (malformed event, hostile payload). */
export class InvalidEventError extends DrError {}

/** Configuration missing or invalid: fail fast at synth time or cold start, naming the setting. */
export class ConfigError extends DrError {}

/** A call that may succeed later: throttling, copy quota, server errors, lost races. */
export class RetryableError extends DrError {
  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A call that will not succeed by retrying: the source snapshot is gone, the key is unusable... */
export class TerminalError extends DrError {
  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** EC2 error codes that mean "slow down / try later". */
const RETRYABLE_CODES = new Set([
  "RequestLimitExceeded",
  "ResourceLimitExceeded",
  "SnapshotCopyLimitExceeded",
  "Throttling",
  "ThrottlingException",
  "ProvisionedThroughputExceededException",
  "RequestThrottled",
  "InternalError",
  "InternalFailure",
  "ServiceUnavailable",
  "Unavailable",
  "InsufficientInstanceCapacity",
  "IncorrectState",
  "ConcurrentSnapshotLimitExceeded",
]);

/** Failures to get any answer at all: the SDK's timeout, or a socket error. */
const NETWORK_CODES = new Set([
  "TimeoutError",
  "NetworkingError",
  "ECONNRESET",
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EPIPE",
  "EAI_AGAIN",
  "ENOTFOUND",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/**
 * Map an SDK (or network) error to a typed error. Throttling, quota, 5xx and network failures are
 * retryable; everything else (4xx verdicts, and errors that are neither AWS's nor the network's,
 * such as a bug) is terminal, so it is counted against the copy's attempts instead of retried forever.
 */
export function classifyAwsError(err: unknown, what: string): RetryableError | TerminalError {
  if (err instanceof RetryableError || err instanceof TerminalError) return err;
  const e = err as {
    name?: string;
    code?: string;
    Code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
    $fault?: string;
  };
  const code = e?.Code ?? e?.code ?? e?.name ?? "UnknownError";
  const status = e?.$metadata?.httpStatusCode;
  const detail = e?.message ? `${code}: ${e.message}` : code;
  if (
    RETRYABLE_CODES.has(code) ||
    NETWORK_CODES.has(code) ||
    e?.$fault === "server" ||
    (status !== undefined && status >= 500)
  ) {
    return new RetryableError(`${what} failed (${detail})`, code, { cause: err });
  }
  return new TerminalError(`${what} failed (${detail})`, code, { cause: err });
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
