/** Small readers over synthesized CloudFormation templates, for the stack tests. */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface Resource {
  id: string;
  type: string;
  props: Record<string, Json>;
  raw: Record<string, Json>;
}

const isObject = (v: unknown): v is Record<string, Json> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

export function resources(template: Record<string, unknown>, type?: string): Resource[] {
  const all = isObject(template.Resources) ? template.Resources : {};
  return Object.entries(all).flatMap(([id, r]) => {
    if (!isObject(r) || typeof r.Type !== "string") return [];
    if (type && r.Type !== type) return [];
    return [{ id, type: r.Type, props: isObject(r.Properties) ? r.Properties : {}, raw: r }];
  });
}

export function countByType(template: Record<string, unknown>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of resources(template)) counts[r.type] = (counts[r.type] ?? 0) + 1;
  return counts;
}

/**
 * Renders intrinsics as readable strings: Fn::Join is joined, the partition becomes "aws", other
 * Refs become `ref:<id>` and Fn::GetAtt `<id>.<attribute>`. Everything else is kept as is.
 */
export function flat(value: Json | undefined): Json | undefined {
  if (Array.isArray(value)) return value.map((v) => flat(v) ?? null);
  if (!isObject(value)) return value;
  const join = value["Fn::Join"];
  if (Array.isArray(join) && typeof join[0] === "string" && Array.isArray(join[1])) {
    return join[1].map((part) => String(flat(part))).join(join[0]);
  }
  const ref = value.Ref;
  if (typeof ref === "string") {
    if (ref === "AWS::Partition") return "aws";
    if (ref === "AWS::URLSuffix") return "amazonaws.com";
    return `ref:${ref}`;
  }
  const getAtt = value["Fn::GetAtt"];
  if (Array.isArray(getAtt)) return getAtt.map(String).join(".");
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, flat(v) ?? null]));
}

export interface Statement {
  /** Which resource holds the policy, and its kind. */
  holder: string;
  kind: "identity" | "trust" | "resource" | "key";
  effect: string;
  actions: string[];
  resources: string[];
  principal: Json | undefined;
  condition: Record<string, Json> | undefined;
}

const list = (v: Json | undefined): string[] =>
  v === undefined ? [] : Array.isArray(v) ? v.map((x) => String(x)) : [String(v)];

function statementsOf(holder: string, kind: Statement["kind"], doc: Json | undefined): Statement[] {
  const flatDoc = flat(doc);
  if (!isObject(flatDoc)) return [];
  const raw = flatDoc.Statement;
  const statements = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  return statements.filter(isObject).map((s) => ({
    holder,
    kind,
    effect: String(s.Effect),
    actions: list(s.Action),
    resources: list(s.Resource),
    principal: s.Principal,
    condition: isObject(s.Condition) ? s.Condition : undefined,
  }));
}

/** Every policy statement in the template, wherever it lives, with intrinsics flattened. */
export function allStatements(template: Record<string, unknown>): Statement[] {
  return resources(template).flatMap((r): Statement[] => {
    switch (r.type) {
      case "AWS::IAM::Policy":
        return statementsOf(r.id, "identity", r.props.PolicyDocument);
      case "AWS::IAM::Role": {
        const inline = Array.isArray(r.props.Policies) ? r.props.Policies : [];
        return [
          ...statementsOf(r.id, "trust", r.props.AssumeRolePolicyDocument),
          ...inline.flatMap((p) => (isObject(p) ? statementsOf(r.id, "identity", p.PolicyDocument) : [])),
        ];
      }
      case "AWS::SQS::QueuePolicy":
      case "AWS::SNS::TopicPolicy":
        return statementsOf(r.id, "resource", r.props.PolicyDocument);
      case "AWS::Events::EventBusPolicy":
        return statementsOf(r.id, "resource", { Statement: r.props.Statement ?? null });
      case "AWS::KMS::Key":
        return statementsOf(r.id, "key", r.props.KeyPolicy);
      default:
        return [];
    }
  });
}

/** The roles an AWS::IAM::Policy is attached to (logical ids). */
export function policyRoles(policy: Resource): string[] {
  const roles = Array.isArray(policy.props.Roles) ? policy.props.Roles : [];
  return roles.flatMap((r) => (isObject(r) && typeof r.Ref === "string" ? [r.Ref] : []));
}
