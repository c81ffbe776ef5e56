import {
  DescribeClusterCommand,
  DescribeNodegroupCommand,
  DescribeUpdateCommand,
  type EKSClient,
  type Nodegroup,
  UpdateNodegroupConfigCommand,
} from "@aws-sdk/client-eks";
import { classifyAwsError, RetryableError } from "../core/errors.js";
import {
  type NodegroupState,
  type Scaling,
  type StandbyCluster,
  StepFailed,
  StillWaiting,
} from "../core/failover.js";
import type { Log } from "../core/ports.js";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const notFound = (err: unknown) => (err as { name?: string })?.name === "ResourceNotFoundException";

/** Node group statuses from which no update will bring it to ACTIVE. */
const BROKEN = new Set(["CREATE_FAILED", "DELETING", "DELETE_FAILED"]);

const sameScaling = (a: Scaling, b: Scaling) => a.min === b.min && a.max === b.max && a.desired === b.desired;

function stateOf(ng: Nodegroup | undefined): NodegroupState | undefined {
  if (!ng) return undefined;
  return {
    status: ng.status ?? "UNKNOWN",
    scaling: {
      min: ng.scalingConfig?.minSize ?? 0,
      max: ng.scalingConfig?.maxSize ?? 0,
      desired: ng.scalingConfig?.desiredSize ?? 0,
    },
    health: (ng.health?.issues ?? []).map((i) => `${i.code ?? "?"}: ${i.message ?? ""}`),
  };
}

/**
 * The standby EKS cluster and its node group, in the failover region. Every call is idempotent:
 * reads are reads; `scale` calls UpdateNodegroupConfig only when the node group is not already at
 * the target, and with a clientRequestToken derived from the execution and the step, so that even
 * a repeated call returns EKS's first update for that token rather than starting another.
 */
export class EksStandbyCluster implements StandbyCluster {
  constructor(
    private readonly eks: EKSClient,
    private readonly clusterName: string,
    private readonly nodegroupName: string,
    private readonly log?: Log,
    private readonly pause: (ms: number) => Promise<void> = sleep,
  ) {}

  async clusterStatus(): Promise<string | undefined> {
    try {
      const out = await this.eks.send(new DescribeClusterCommand({ name: this.clusterName }));
      return out.cluster?.status;
    } catch (err) {
      if (notFound(err)) return undefined;
      throw classifyAwsError(err, `DescribeCluster ${this.clusterName}`);
    }
  }

  /** The API server's URL and CA bundle (PEM), for the Kubernetes client. */
  async access(): Promise<{ endpoint: string; caPem?: string }> {
    const out = await this.eks
      .send(new DescribeClusterCommand({ name: this.clusterName }))
      .catch((err: unknown) => {
        throw classifyAwsError(err, `DescribeCluster ${this.clusterName}`);
      });
    const endpoint = out.cluster?.endpoint;
    if (!endpoint) throw new StepFailed(`cluster ${this.clusterName} reports no API endpoint`);
    const ca = out.cluster?.certificateAuthority?.data;
    return ca ? { endpoint, caPem: Buffer.from(ca, "base64").toString("utf8") } : { endpoint };
  }

  async nodegroup(): Promise<NodegroupState | undefined> {
    try {
      const out = await this.eks.send(
        new DescribeNodegroupCommand({ clusterName: this.clusterName, nodegroupName: this.nodegroupName }),
      );
      return stateOf(out.nodegroup);
    } catch (err) {
      if (notFound(err)) return undefined;
      throw classifyAwsError(err, `DescribeNodegroup ${this.clusterName}/${this.nodegroupName}`);
    }
  }

  async scale(target: Scaling, token: string): Promise<{ changed: boolean; updateId?: string }> {
    const now = await this.nodegroup();
    if (!now) throw new StepFailed(`node group ${this.clusterName}/${this.nodegroupName} does not exist`);
    if (sameScaling(now.scaling, target)) return { changed: false };
    try {
      const out = await this.eks.send(
        new UpdateNodegroupConfigCommand({
          clusterName: this.clusterName,
          nodegroupName: this.nodegroupName,
          scalingConfig: { minSize: target.min, maxSize: target.max, desiredSize: target.desired },
          clientRequestToken: token,
        }),
      );
      const updateId = out.update?.id;
      return updateId ? { changed: true, updateId } : { changed: true };
    } catch (err) {
      // An update already in progress (ours, with another token, or someone's): wait and look again.
      if ((err as { name?: string })?.name === "ResourceInUseException") {
        throw new RetryableError(
          `node group ${this.nodegroupName} is being updated; retry`,
          "ResourceInUseException",
          { cause: err },
        );
      }
      throw classifyAwsError(err, `UpdateNodegroupConfig ${this.clusterName}/${this.nodegroupName}`);
    }
  }

  /**
   * Waits until the node group is ACTIVE with `target` as its scaling configuration. With an update
   * id it asks DescribeUpdate first (Failed or Cancelled ends the wait with EKS's errors); when
   * DescribeUpdate does not answer usefully it falls back to DescribeNodegroup alone. The emulator
   * answers DescribeUpdate with an HTML 404 (a SyntaxError in the SDK), which is why the fallback
   * exists; a real EKS update id that is unknown falls back the same way, since the node group's
   * own state is what the restore needs.
   */
  async waitFor(
    target: Scaling,
    updateId: string | undefined,
    o: { timeoutMs: number; pollMs: number },
  ): Promise<{ via: "DescribeUpdate" | "DescribeNodegroup"; polls: number; updateStatus?: string }> {
    const deadline = Date.now() + o.timeoutMs;
    let useUpdate = updateId !== undefined;
    let updateStatus: string | undefined;
    let polls = 0;
    let last = "not read yet";
    for (;;) {
      polls++;
      if (useUpdate && updateId !== undefined) {
        const u = await this.describeUpdate(updateId);
        if (u === "unavailable") useUpdate = false;
        else {
          updateStatus = u.status;
          if (u.status === "Failed" || u.status === "Cancelled") {
            throw new StepFailed(
              `node group update ${updateId} ${u.status}: ${u.errors.join("; ") || "no error reported"}`,
            );
          }
        }
      }
      const ng = await this.nodegroup();
      if (!ng) throw new StepFailed(`node group ${this.clusterName}/${this.nodegroupName} does not exist`);
      if (BROKEN.has(ng.status)) {
        throw new StepFailed(`node group ${this.nodegroupName} is ${ng.status}: ${ng.health.join("; ")}`);
      }
      const updateDone = !useUpdate || updateStatus === "Successful";
      if (ng.status === "ACTIVE" && sameScaling(ng.scaling, target) && updateDone) {
        const via = useUpdate ? ("DescribeUpdate" as const) : ("DescribeNodegroup" as const);
        return updateStatus ? { via, polls, updateStatus } : { via, polls };
      }
      last =
        `node group ${ng.status} at desired ${ng.scaling.desired} (want ${target.desired})` +
        `${updateStatus ? `, update ${updateStatus}` : ""}${ng.health.length ? `, health: ${ng.health.join("; ")}` : ""}`;
      if (Date.now() + o.pollMs > deadline) throw new StillWaiting(`${last}; still waiting`);
      await this.pause(o.pollMs);
    }
  }

  private async describeUpdate(
    updateId: string,
  ): Promise<{ status: string; errors: string[] } | "unavailable"> {
    try {
      const out = await this.eks.send(
        new DescribeUpdateCommand({ name: this.clusterName, nodegroupName: this.nodegroupName, updateId }),
      );
      return {
        status: out.update?.status ?? "InProgress",
        errors: (out.update?.errors ?? []).map((e) => `${e.errorCode ?? "?"}: ${e.errorMessage ?? ""}`),
      };
    } catch (err) {
      const typed = classifyAwsError(err, "DescribeUpdate");
      if (typed instanceof RetryableError && typed.code !== "SyntaxError") throw typed;
      this.log?.warn("DescribeUpdate unavailable; falling back to DescribeNodegroup", {
        updateId,
        error: typed.message,
      });
      return "unavailable";
    }
  }
}
