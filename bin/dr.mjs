#!/usr/bin/env node
// The `dr` command: runs cli/dr.ts through tsx, so there is no build step.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../cli/dr.ts");
process.exitCode = await main(process.argv.slice(2));
