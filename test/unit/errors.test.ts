import { EC2ServiceException } from "@aws-sdk/client-ec2";
import { describe, expect, it } from "vitest";
import {
  ConfigError,
  classifyAwsError,
  errorMessage,
  RetryableError,
  TerminalError,
} from "../../functions/core/errors.js";

const WHAT = "CopySnapshot of snap-0a1b2c3d4e5f60718";

/** An EC2 error shaped as SDK v3 throws it: name = the EC2 code, plus Code, $fault and $metadata. */
function ec2Error(code: string, httpStatusCode: number, message: string): EC2ServiceException {
  const err = new EC2ServiceException({
    name: code,
    $fault: httpStatusCode >= 500 ? "server" : "client",
    $metadata: { httpStatusCode, requestId: "5d4e3c2b-1a09-4f8e-b7d6-c5b4a3928170", attempts: 3 },
    message,
  });
  return Object.assign(err, { Code: code });
}

/** A Node socket error: no HTTP response at all. */
function networkError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 10.0.0.1:443`), { code });
}

describe("classifyAwsError: retryable", () => {
  it.each([
    ["RequestLimitExceeded", 503, "Request limit exceeded."],
    ["ResourceLimitExceeded", 400, "You have reached the limit of concurrent snapshot copies."],
    ["SnapshotCopyLimitExceeded", 400, "Too many copies in progress."],
    ["ThrottlingException", 400, "Rate exceeded"],
  ])("makes %s (HTTP %d) retryable with its code", (code, status, message) => {
    // arrange
    const err = ec2Error(code, status, message);
    // act
    const e = classifyAwsError(err, WHAT);
    // assert
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.code).toBe(code);
    expect(e.cause).toBe(err);
  });

  it.each([500, 502, 503])("makes an unknown error with HTTP %d retryable", (status) => {
    // arrange
    const err = ec2Error("SomethingNew", status, "We encountered an internal error.");
    // act
    const e = classifyAwsError(err, WHAT);
    // assert
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.code).toBe("SomethingNew");
  });

  it("makes a server fault without a status retryable", () => {
    // arrange
    const err = { name: "Unexpected", $fault: "server", message: "boom" };
    // act
    const e = classifyAwsError(err, WHAT);
    // assert
    expect(e).toBeInstanceOf(RetryableError);
  });

  it.each(["ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "EPIPE"])(
    "makes the network failure %s retryable with its code",
    (code) => {
      // arrange
      const err = networkError(code);
      // act
      const e = classifyAwsError(err, WHAT);
      // assert
      expect(e).toBeInstanceOf(RetryableError);
      expect(e.code).toBe(code);
    },
  );

  it("makes an SDK TimeoutError retryable", () => {
    // arrange
    const err = Object.assign(new Error("Connection timed out after 1000 ms"), { name: "TimeoutError" });
    // act
    const e = classifyAwsError(err, WHAT);
    // assert
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.code).toBe("TimeoutError");
  });
});

describe("classifyAwsError: terminal", () => {
  it("makes InvalidSnapshot.NotFound terminal and says what failed", () => {
    // arrange
    const err = ec2Error(
      "InvalidSnapshot.NotFound",
      400,
      "The snapshot 'snap-0a1b2c3d4e5f60718' does not exist.",
    );
    // act
    const e = classifyAwsError(err, WHAT);
    // assert
    expect(e).toBeInstanceOf(TerminalError);
    expect(e.name).toBe("TerminalError");
    expect(e.code).toBe("InvalidSnapshot.NotFound");
    expect(e.message).toBe(
      `${WHAT} failed (InvalidSnapshot.NotFound: The snapshot 'snap-0a1b2c3d4e5f60718' does not exist.)`,
    );
    expect(e.cause).toBe(err);
  });

  it.each([
    ["UnauthorizedOperation", 403],
    ["InvalidParameterValue", 400],
    ["InvalidParameterCombination", 400],
  ])("makes %s (HTTP %d) terminal", (code, status) => {
    // arrange
    const err = ec2Error(code, status, "no");
    // act
    const e = classifyAwsError(err, WHAT);
    // assert
    expect(e).toBeInstanceOf(TerminalError);
    expect(e.code).toBe(code);
  });

  it("prefers the EC2 Code over the exception name", () => {
    // arrange
    const err = Object.assign(ec2Error("EC2ServiceException", 400, "x"), { Code: "RequestLimitExceeded" });
    // act
    const e = classifyAwsError(err, WHAT);
    // assert
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.code).toBe("RequestLimitExceeded");
  });
});

describe("classifyAwsError: already typed", () => {
  it.each([new RetryableError("x", "Throttling"), new TerminalError("y", "InvalidSnapshot.NotFound")])(
    "returns %s unchanged",
    (typed) => {
      // arrange / act
      const e = classifyAwsError(typed, WHAT);
      // assert
      expect(e).toBe(typed);
    },
  );

  it("names the error classes after themselves", () => {
    // arrange / act
    const errors = [new ConfigError("c"), new RetryableError("r", "X"), new TerminalError("t", "Y")];
    // assert
    expect(errors.map((e) => e.name)).toEqual(["ConfigError", "RetryableError", "TerminalError"]);
  });
});

describe("errorMessage", () => {
  it("reads an Error's message and stringifies anything else", () => {
    // arrange / act
    const messages = [errorMessage(new Error("boom")), errorMessage("plain"), errorMessage(42)];
    // assert
    expect(messages).toEqual(["boom", "plain", "42"]);
  });
});

describe("classifyAwsError: neither AWS's nor the network's", () => {
  it("makes a programming error terminal, so it is counted against attempts rather than retried forever", () => {
    // act
    const e = classifyAwsError(new TypeError("Cannot read properties of undefined"), WHAT);
    // assert
    expect(e).toBeInstanceOf(TerminalError);
    expect(e.message).toMatch(/TypeError: Cannot read properties of undefined/);
  });
});
