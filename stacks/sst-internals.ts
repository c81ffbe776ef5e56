import type { Stack } from "sst/constructs";

/**
 * SST 2.49.8 adds a 1 GB, 15-minute custom-resource Lambda (and its role) to every stack, for its
 * own constructs (sites, sourcemap upload). None of ours uses it, and source maps are off
 * (stacks/functions.ts), so it would sit idle in every region, the source regions included, where
 * nothing but the forwarding rules should exist. A dangling reference to it would leave an
 * unresolvable logical id, which the stack tests' cfn-lint run rejects.
 */
export function removeIdleCustomResourceHandler(stack: Stack): void {
  if (!stack.node.tryRemoveChild("CustomResourceHandler")) {
    throw new Error(
      "SST's CustomResourceHandler was not found: check stacks/sst-internals.ts against the SST version",
    );
  }
}
