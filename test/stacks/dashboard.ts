/** Reading a synthesized CloudWatch dashboard, and talking to the emulator's CloudWatch, for the stack tests. */
import { flat, type Json, type Resource } from "./cfn.js";

export interface Widget {
  type: string;
  x: number;
  y: number;
  width: number;
  height: number;
  properties: Record<string, Json>;
}

export interface DashboardBody {
  start?: string;
  widgets: Widget[];
}

const isObject = (v: unknown): v is Record<string, Json> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The dashboard's body as CloudFormation would pass it to PutDashboard: CDK writes it as an
 * Fn::Join of JSON text and references, which are rendered the way cfn.ts's `flat` does
 * (`ref:<id>`, `<id>.<attribute>`), with the stack's region filled in.
 */
export function dashboardBodyText(dashboard: Resource, region: string): string {
  const text = flat(dashboard.props.DashboardBody);
  if (typeof text !== "string") throw new Error(`${dashboard.id}: DashboardBody is not a string or a join`);
  return text.replaceAll("ref:AWS::Region", region);
}

export function parseDashboardBody(text: string): DashboardBody {
  const body: unknown = JSON.parse(text);
  if (!isObject(body) || !Array.isArray(body.widgets)) throw new Error("dashboard body has no widgets");
  return {
    ...(typeof body.start === "string" ? { start: body.start } : {}),
    widgets: body.widgets.map((w, i) => {
      if (!isObject(w) || !isObject(w.properties)) throw new Error(`widget ${i} has no properties`);
      return {
        type: String(w.type),
        x: Number(w.x),
        y: Number(w.y),
        width: Number(w.width),
        height: Number(w.height),
        properties: w.properties,
      };
    }),
  };
}

/** A metric row of a metric widget: [namespace, name, (dimension, value)*, options?] or [{ expression }]. */
export interface MetricRow {
  namespace?: string;
  name?: string;
  dimensions: Record<string, string>;
  options: Record<string, Json>;
}

export function metricRows(widget: Widget): MetricRow[] {
  const rows = widget.properties.metrics;
  if (!Array.isArray(rows)) return [];
  return rows.map((row) => {
    if (!Array.isArray(row)) throw new Error("a metric row is not an array");
    const last = row[row.length - 1];
    const options = isObject(last) ? last : {};
    const names = (isObject(last) ? row.slice(0, -1) : row).map(String);
    const [namespace, name, ...pairs] = names;
    const dimensions: Record<string, string> = {};
    for (let i = 0; i + 1 < pairs.length; i += 2) dimensions[pairs[i] ?? ""] = pairs[i + 1] ?? "";
    return { ...(namespace ? { namespace } : {}), ...(name ? { name } : {}), dimensions, options };
  });
}

/**
 * What CloudWatch's dashboard body structure requires of each widget, as far as the tests can
 * check it offline (the emulator only checks that the body is JSON): the 24-column grid without
 * overlaps, a region and well-formed metric rows on metric widgets, a SOURCE on log queries.
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html
 */
export function shapeProblems(body: DashboardBody): string[] {
  const problems: string[] = [];
  const cells = new Map<string, number>();
  body.widgets.forEach((w, i) => {
    const where = `widget ${i} (${w.type} "${String(w.properties.title ?? "")}")`;
    if (!["metric", "text", "log", "alarm"].includes(w.type)) problems.push(`${where}: unknown type`);
    for (const [k, v] of Object.entries({ x: w.x, y: w.y, width: w.width, height: w.height })) {
      if (!Number.isInteger(v) || v < 0) problems.push(`${where}: ${k} is ${v}`);
    }
    if (w.width < 1 || w.width > 24 || w.x + w.width > 24)
      problems.push(`${where}: outside the 24-column grid`);
    if (w.height < 1 || w.height > 1000) problems.push(`${where}: height ${w.height}`);
    for (let x = w.x; x < w.x + w.width; x++) {
      for (let y = w.y; y < w.y + w.height; y++) {
        const other = cells.get(`${x},${y}`);
        if (other !== undefined) problems.push(`${where} overlaps widget ${other}`);
        cells.set(`${x},${y}`, i);
      }
    }
    if (w.type === "metric") {
      if (typeof w.properties.region !== "string" || !/^[a-z]{2}-[a-z]+-\d$/.test(w.properties.region)) {
        problems.push(`${where}: no region`);
      }
      const rows = metricRows(w);
      if (rows.length === 0) problems.push(`${where}: no metrics`);
      for (const r of rows) {
        const expression = r.options.expression;
        if (expression === undefined && !(r.namespace && r.name))
          problems.push(`${where}: a row names no metric`);
        if (typeof expression === "string" && !/^SEARCH\('.+', '[A-Za-z0-9.]+', \d+\)$/.test(expression)) {
          problems.push(`${where}: unexpected expression ${expression}`);
        }
      }
    }
    if (w.type === "text" && typeof w.properties.markdown !== "string")
      problems.push(`${where}: no markdown`);
    if (w.type === "log" && !/^SOURCE '[^']+' \| /.test(String(w.properties.query))) {
      problems.push(`${where}: the query has no SOURCE`);
    }
    if (w.type === "alarm" && !Array.isArray(w.properties.alarms)) problems.push(`${where}: no alarms`);
  });
  return problems;
}

/**
 * One CloudWatch API call on the emulator, in the AWS JSON 1.0 protocol (moto does not check
 * signatures, so the Authorization header only names the region and the service). The SDK's
 * CloudWatch client is not a dependency of this project, so the call is made by hand.
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutDashboard.html
 */
export async function cloudwatch(
  endpoint: string,
  region: string,
  action: "PutDashboard" | "GetDashboard",
  input: Record<string, string>,
): Promise<{ status: number; body: Record<string, Json> }> {
  const res = await fetch(endpoint, {
    method: "POST",
    headers: {
      "content-type": "application/x-amz-json-1.0",
      "x-amz-target": `GraniteServiceVersion20100801.${action}`,
      "x-amz-date": "20260101T000000Z",
      authorization: `AWS4-HMAC-SHA256 Credential=local/20260101/${region}/monitoring/aws4_request, SignedHeaders=host;x-amz-date, Signature=0`,
    },
    body: JSON.stringify(input),
  });
  const body: unknown = await res.json();
  return { status: res.status, body: isObject(body) ? body : {} };
}
