/**
 * What the functions really emit as CloudWatch metrics (Embedded Metric Format lines on stdout,
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html),
 * and whether a dashboard widget's metric, SEARCH expression or an alarm's metric would find any of it.
 * CloudWatch identifies a metric by namespace, name and the exact set of dimensions with their values:
 * a query naming one dimension more or less than was emitted finds nothing.
 */
import { afterEach, beforeEach, vi } from "vitest";
import { flat, type Json, type Resource } from "../stacks/cfn.js";
import { type DashboardBody, metricRows } from "../stacks/dashboard.js";

/**
 * Turns metrics on for the calling test file (vitest.config turns them off everywhere) and catches
 * what is written to stdout, where Powertools Metrics v2 writes EMF with its own
 * `new Console({ stdout: process.stdout })` (the global console only when POWERTOOLS_DEV is set).
 * `text()` is what the current test has written so far, `clear()` forgets it; stderr is silenced.
 */
export function captureStdout(): { text: () => string; clear: () => void } {
  let written: string[] = [];
  beforeEach(() => {
    vi.stubEnv("POWERTOOLS_METRICS_DISABLED", "false");
    vi.stubEnv("POWERTOOLS_DEV", "");
    written = [];
    vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      written.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
      return true;
    });
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  });
  afterEach(() => {
    vi.restoreAllMocks();
    vi.unstubAllEnvs();
  });
  return {
    text: () => written.join(""),
    clear: () => {
      written = [];
    },
  };
}

/** One metric as CloudWatch stores it from an EMF document. */
export interface EmittedMetric {
  namespace: string;
  name: string;
  /** Dimension name -> value, exactly the directive's dimension set. */
  dimensions: Record<string, string>;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Every metric of every EMF document in `text` (one JSON document per line; other lines skipped). */
export function emittedMetrics(text: string): EmittedMetric[] {
  const out: EmittedMetric[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{") || !line.includes('"_aws"')) continue;
    const doc: unknown = JSON.parse(line);
    if (!isObject(doc) || !isObject(doc._aws) || !Array.isArray(doc._aws.CloudWatchMetrics)) continue;
    for (const directive of doc._aws.CloudWatchMetrics as unknown[]) {
      if (!isObject(directive)) continue;
      const namespace = String(directive.Namespace);
      const sets = Array.isArray(directive.Dimensions) ? (directive.Dimensions as unknown[]) : [];
      const metrics = Array.isArray(directive.Metrics) ? (directive.Metrics as unknown[]) : [];
      for (const set of sets.length > 0 ? sets : [[]]) {
        const names = Array.isArray(set) ? set.map(String) : [];
        const dimensions = Object.fromEntries(names.map((n) => [n, String(doc[n])]));
        for (const m of metrics) if (isObject(m)) out.push({ namespace, name: String(m.Name), dimensions });
      }
    }
  }
  return out;
}

/** A query a widget row or an alarm makes: an exact metric, or a SEARCH over a schema. */
export type MetricQuery =
  | { kind: "metric"; where: string; namespace: string; name: string; dimensions: Record<string, string> }
  | {
      kind: "search";
      where: string;
      namespace: string;
      /** The schema's dimension names: a match has exactly these. */
      schema: string[];
      equals: Record<string, string>;
      not: Record<string, string>;
    };

/**
 * The inner query of `SEARCH('{Namespace,Dim1,Dim2} MetricName="X" Dim1="v" NOT Dim2="w"', ...)`.
 * Only the forms the stacks write are read; anything else throws, so an unreadable expression is
 * never counted as matching.
 */
export function parseSearch(expression: string, where: string): MetricQuery {
  const m = /^SEARCH\('\{([^}]*)\}((?:\s+(?:NOT\s+)?[A-Za-z_]+="[^"]*")*)',\s*'[^']+',\s*\d+\)$/.exec(
    expression,
  );
  if (!m) throw new Error(`${where}: cannot read the expression ${expression}`);
  const [namespace = "", ...schema] = (m[1] ?? "").split(",").map((s) => s.trim());
  const equals: Record<string, string> = {};
  const not: Record<string, string> = {};
  for (const t of (m[2] ?? "").matchAll(/(NOT\s+)?([A-Za-z_]+)="([^"]*)"/g)) {
    (t[1] ? not : equals)[t[2] ?? ""] = t[3] ?? "";
  }
  return { kind: "search", where, namespace, schema, equals, not };
}

/** The metric queries of every metric widget of a dashboard, each labelled with its widget's title. */
export function widgetQueries(body: DashboardBody): MetricQuery[] {
  return body.widgets
    .filter((w) => w.type === "metric")
    .flatMap((w) =>
      metricRows(w).map((row, i): MetricQuery => {
        const where = `widget "${String(w.properties.title ?? "")}" row ${i}`;
        const expression = row.options.expression;
        if (typeof expression === "string") return parseSearch(expression, where);
        return {
          kind: "metric",
          where,
          namespace: row.namespace ?? "",
          name: row.name ?? "",
          dimensions: row.dimensions,
        };
      }),
    );
}

/** The metric each CloudWatch alarm of a template watches (single-metric alarms). */
export function alarmQueries(alarms: readonly Resource[]): MetricQuery[] {
  return alarms.map((a) => {
    const where = `alarm ${String(flat(a.props.AlarmName) ?? a.id)}`;
    if (a.props.Metrics !== undefined) throw new Error(`${where}: metric-math alarms are not read here`);
    const dims = (flat(a.props.Dimensions) ?? []) as Json[];
    const dimensions: Record<string, string> = {};
    for (const d of dims) {
      if (isObject(d)) dimensions[String(d.Name)] = String(d.Value);
    }
    return {
      kind: "metric",
      where,
      namespace: String(a.props.Namespace),
      name: String(a.props.MetricName),
      dimensions,
    };
  });
}

const sameKeys = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && [...a].sort().every((k, i) => k === [...b].sort()[i]);

/** Whether `query` would find the emitted metric `m` in CloudWatch. */
export function finds(query: MetricQuery, m: EmittedMetric): boolean {
  if (m.namespace !== query.namespace) return false;
  const names = Object.keys(m.dimensions);
  if (query.kind === "metric") {
    return (
      m.name === query.name &&
      sameKeys(names, Object.keys(query.dimensions)) &&
      Object.entries(query.dimensions).every(([k, v]) => m.dimensions[k] === v)
    );
  }
  const { MetricName, ...equals } = query.equals;
  return (
    (MetricName === undefined || m.name === MetricName) &&
    sameKeys(names, query.schema) &&
    Object.entries(equals).every(([k, v]) => m.dimensions[k] === v) &&
    Object.entries(query.not).every(([k, v]) => m.dimensions[k] !== v)
  );
}

/** The queries (in our namespace) that find nothing of what was emitted, by where they are. */
export function unmatched(
  queries: readonly MetricQuery[],
  emitted: readonly EmittedMetric[],
  namespace: string,
): string[] {
  return queries
    .filter((q) => q.namespace === namespace)
    .filter((q) => !emitted.some((m) => finds(q, m)))
    .map((q) => q.where);
}
