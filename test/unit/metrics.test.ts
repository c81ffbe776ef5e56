import { Metrics } from "@aws-lambda-powertools/metrics";
import { describe, expect, it, vi } from "vitest";
import { METRIC, publishAdmit, publishCopyOutcome } from "../../functions/app/metrics.js";
import type { SnapshotRecord } from "../../functions/core/model.js";
import type { AdmitReport, CopyEventOutcome } from "../../functions/core/plane.js";
import { captureStdout } from "../support/emf.js";

/** One CloudWatch Embedded Metric Format document, as much of it as these tests read. */
interface Emf {
  _aws: {
    Timestamp: number;
    CloudWatchMetrics: Array<{
      Namespace: string;
      Dimensions: string[][];
      Metrics: Array<{ Name: string; Unit: string }>;
    }>;
  };
  [key: string]: unknown;
}

function isEmf(v: unknown): v is Emf {
  return typeof v === "object" && v !== null && "_aws" in v;
}

// vitest.config disables metrics for every test; this file checks the output, so enable them
const stdout = captureStdout();

function newMetrics(): Metrics {
  return new Metrics({ namespace: "VeleroDR", serviceName: "replication" });
}

/** Every EMF document written so far. */
function emitted(): Emf[] {
  return stdout
    .text()
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as unknown)
    .filter(isEmf);
}

/** The document that defines `name`, with that metric's unit and dimension set. */
function find(docs: Emf[], name: string) {
  for (const doc of docs) {
    for (const directive of doc._aws.CloudWatchMetrics) {
      const metric = directive.Metrics.find((m) => m.Name === name);
      if (metric) {
        return {
          doc,
          value: doc[name],
          unit: metric.Unit,
          namespace: directive.Namespace,
          dimensions: directive.Dimensions,
        };
      }
    }
  }
  return undefined;
}

function record(schedule?: string): SnapshotRecord {
  const r: SnapshotRecord = {
    sourceSnapshotId: "snap-0a1b2c3d4e5f60718",
    sourceRegion: "us-east-1",
    volumeId: "vol-0f1e2d3c4b5a69788",
    backup: "cbci-dr-20261127120000",
    startTime: "2026-11-27T12:00:00.000Z",
    status: "copying",
    tags: {},
    attempts: 0,
  };
  if (schedule !== undefined) r.schedule = schedule;
  return r;
}

function completed(over: Partial<Extract<CopyEventOutcome, { status: "completed" }>> = {}): CopyEventOutcome {
  return {
    status: "completed",
    record: record("cbci-dr"),
    copySnapshotId: "snap-09f8e7d6c5b4a3210",
    lagSeconds: 1234.5,
    ...over,
  };
}

describe("publishCopyOutcome", () => {
  it("emits the copy lag in seconds with a Schedule dimension, and counts the copy", () => {
    // arrange
    const metrics = newMetrics();
    // act
    publishCopyOutcome(metrics, completed({ incremental: true }));
    metrics.publishStoredMetrics();
    // assert
    const docs = emitted();
    const lag = find(docs, METRIC.copyLag);
    expect(lag).toMatchObject({ value: 1234.5, unit: "Seconds", namespace: "VeleroDR" });
    expect(lag?.dimensions).toEqual([["service", "Schedule"]]);
    expect(lag?.doc.Schedule).toBe("cbci-dr");
    const count = find(docs, METRIC.copiesCompleted);
    expect(count).toMatchObject({ value: 1, unit: "Count", namespace: "VeleroDR" });
    expect(count?.dimensions).toEqual([["service"]]);
    expect(find(docs, METRIC.copiesIncremental)).toMatchObject({ value: 1, unit: "Count" });
    expect(find(docs, METRIC.copiesFull)).toBeUndefined();
  });

  it("puts the lag of an ad-hoc backup under Schedule=none", () => {
    // arrange
    const metrics = newMetrics();
    // act
    publishCopyOutcome(metrics, completed({ record: record(undefined), lagSeconds: 60 }));
    metrics.publishStoredMetrics();
    // assert
    const lag = find(emitted(), METRIC.copyLag);
    expect(lag?.value).toBe(60);
    expect(lag?.doc.Schedule).toBe("none");
  });

  it("counts a full copy as full, and says nothing of incrementality when unknown", () => {
    // arrange
    const metrics = newMetrics();
    // act
    publishCopyOutcome(metrics, completed({ incremental: false }));
    metrics.publishStoredMetrics();
    const full = emitted();
    stdout.clear();
    publishCopyOutcome(metrics, completed());
    metrics.publishStoredMetrics();
    const unknown = emitted();
    // assert
    expect(find(full, METRIC.copiesFull)).toMatchObject({ value: 1, unit: "Count" });
    expect(find(full, METRIC.copiesIncremental)).toBeUndefined();
    expect(find(unknown, METRIC.copiesFull)).toBeUndefined();
    expect(find(unknown, METRIC.copiesIncremental)).toBeUndefined();
    expect(find(unknown, METRIC.copiesCompleted)?.value).toBe(1);
  });

  it.each([
    ["failed", METRIC.copyFailures],
    ["retrying", METRIC.copiesRetried],
  ] as const)("counts a %s copy as %s and nothing else", (status, name) => {
    // arrange
    const metrics = newMetrics();
    // act
    publishCopyOutcome(metrics, { status, record: record("cbci-dr"), reason: "copy failed" });
    metrics.publishStoredMetrics();
    // assert
    const docs = emitted();
    expect(docs).toHaveLength(1);
    expect(docs[0]?._aws.CloudWatchMetrics[0]?.Metrics).toEqual([{ Name: name, Unit: "Count" }]);
    expect(docs[0]?.[name]).toBe(1);
  });

  it("counts a missed completion duration", () => {
    // arrange
    const metrics = newMetrics();
    // act
    publishCopyOutcome(metrics, { status: "flagged", record: record("cbci-dr") });
    metrics.publishStoredMetrics();
    // assert
    expect(find(emitted(), METRIC.copiesMissedDeadline)).toMatchObject({ value: 1, unit: "Count" });
  });

  it("emits nothing for an ignored event", () => {
    // arrange
    const metrics = newMetrics();
    // act
    publishCopyOutcome(metrics, { status: "ignored", reason: "duplicate" });
    metrics.publishStoredMetrics();
    // assert
    expect(emitted()).toEqual([]);
  });
});

describe("publishAdmit", () => {
  it("emits one count per admission figure in one document", () => {
    // arrange
    const metrics = newMetrics();
    const report: AdmitReport = {
      admitted: ["snap-1", "snap-2", "snap-3"],
      superseded: 10,
      throttled: 1,
      failed: 2,
      lostRaces: 0,
      inFlight: 16,
      waiting: 40,
    };
    // act
    publishAdmit(metrics, report);
    metrics.publishStoredMetrics();
    // assert
    const docs = emitted();
    expect(docs).toHaveLength(1);
    const expected: Record<string, number> = {
      [METRIC.copiesStarted]: 3,
      [METRIC.copiesSuperseded]: 10,
      [METRIC.copiesThrottled]: 1,
      [METRIC.copyFailures]: 2,
      [METRIC.copiesInFlight]: 16,
      [METRIC.copiesWaiting]: 40,
    };
    for (const [name, value] of Object.entries(expected)) {
      expect(find(docs, name), name).toMatchObject({ value, unit: "Count", namespace: "VeleroDR" });
    }
    expect(docs[0]?._aws.CloudWatchMetrics[0]?.Metrics).toHaveLength(6);
    expect(docs[0]?.service).toBe("replication");
  });

  it("writes nothing while metrics are disabled (as the rest of the suite runs)", () => {
    // arrange
    vi.stubEnv("POWERTOOLS_METRICS_DISABLED", "true");
    const metrics = newMetrics();
    // act
    publishAdmit(metrics, {
      admitted: ["snap-1"],
      superseded: 0,
      throttled: 0,
      failed: 0,
      lostRaces: 0,
      inFlight: 1,
      waiting: 0,
    });
    metrics.publishStoredMetrics();
    // assert
    expect(emitted()).toEqual([]);
  });
});
