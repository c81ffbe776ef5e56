import { readdirSync, readFileSync } from "node:fs";

const root = new URL("./", import.meta.url);

/** Reads `test/events/<name>.json`, e.g. `loadEvent("aws.ec2/copy-snapshot-succeeded")`. */
export function loadEvent(name: string): unknown {
  if (!/^[\w.-]+(\/[\w.-]+)*$/.test(name) || name.split("/").includes("..")) {
    throw new Error(`not a fixture name: ${name}`);
  }
  return JSON.parse(readFileSync(new URL(`${name}.json`, root), "utf8"));
}

/** Fixture names in one directory, e.g. `eventNames("hostile")` -> ["hostile/array", ...]. */
export function eventNames(dir: string): string[] {
  return readdirSync(new URL(`${dir}/`, root))
    .filter((f) => f.endsWith(".json"))
    .map((f) => `${dir}/${f.slice(0, -".json".length)}`)
    .sort();
}
