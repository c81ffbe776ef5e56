import type { EventPattern } from "aws-cdk-lib/aws-events";

/** An EventBridge pattern as functions/core/patterns.ts writes it (the wire form). */
export interface WirePattern {
  readonly source: readonly string[];
  readonly "detail-type": readonly string[];
  /** Field -> allowed values, or nested fields (S3's `detail.bucket.name`, `detail.object.key`). */
  readonly detail?: Readonly<Record<string, unknown>>;
}

/** The same pattern for CDK, which spells `detail-type` as `detailType`. */
export function toEventPattern(p: WirePattern): EventPattern {
  const pattern: EventPattern = { source: [...p.source], detailType: [...p["detail-type"]] };
  return p.detail ? { ...pattern, detail: { ...p.detail } } : pattern;
}
