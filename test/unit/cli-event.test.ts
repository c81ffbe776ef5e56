import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { commands, EXIT, type Io, main } from "../../cli/dr.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const fixture = (name: string) => readFileSync(new URL(`../events/${name}.json`, import.meta.url), "utf8");

/** Runs the real CLI in a child process, as an operator would. */
function dr(command: string, args: string[], stdin: string) {
  const r = spawnSync(command, args, { cwd: root, input: stdin, encoding: "utf8", timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const tsx = "node_modules/.bin/tsx";

describe("dr event classify (child process)", () => {
  it("prints one JSON object for a good event and exits 0", () => {
    // arrange
    const stdin = fixture("aws.ec2/copy-snapshot-succeeded");
    // act
    const r = dr(tsx, ["cli/dr.ts", "event", "classify"], stdin);
    // assert
    expect(r.status).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout.trimEnd().split("\n")).toHaveLength(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      kind: "snapshot-copied",
      snapshotId: "snap-09f8e7d6c5b4a3210",
      region: "us-west-2",
      sourceSnapshotId: "snap-0a1b2c3d4e5f60718",
      sourceRegion: "us-east-1",
    });
  });

  it('reads "Incremental": "True" on a copy event and exits 0', () => {
    // arrange
    const stdin = fixture("aws.ec2/copy-snapshot-capitalised");
    expect(stdin).toContain('"Incremental": "True"');
    // act
    const r = dr(tsx, ["cli/dr.ts", "event", "classify"], stdin);
    // assert
    expect(r.status).toBe(0);
    expect(r.stderr).toBe("");
    const got = JSON.parse(r.stdout);
    expect(got).toMatchObject({ kind: "snapshot-copied", incremental: true, transferType: "standard" });
    expect(got).not.toHaveProperty("notes");
  });

  it("prints an odd informational value as a note, classifies the event and exits 0", () => {
    // arrange
    const stdin = fixture("aws.ec2/copy-snapshot-odd-incremental");
    // act
    const r = dr(tsx, ["cli/dr.ts", "event", "classify"], stdin);
    // assert
    expect(r.status).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout.trimEnd().split("\n")).toHaveLength(1);
    const got = JSON.parse(r.stdout);
    expect(got).toMatchObject({
      kind: "snapshot-copied",
      snapshotId: "snap-09f8e7d6c5b4a3210",
      eventId: "4c4a8a1e-5ed0-4b8c-9d5e-2f7b0e6d8a11",
      notes: ['detail.incremental: "yes" is not true or false; treated as absent'],
    });
    expect(got).not.toHaveProperty("incremental");
  });

  it("prints one line on stderr, nothing on stdout, and exits 2 for an invalid event", () => {
    // arrange
    const stdin = fixture("hostile/region-header-injection");
    // act
    const r = dr(tsx, ["cli/dr.ts", "event", "classify"], stdin);
    // assert
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      'dr: invalid event: region is not an AWS region: "us-east-1\\u000d\\u000aX-Injected: 1"\n',
    );
  });

  it("exits 2 with one line for input that is not JSON", () => {
    // arrange
    const stdin = "{\n  not json\n";
    // act
    const r = dr(tsx, ["cli/dr.ts", "event", "classify"], stdin);
    // assert
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/^dr: invalid event: not JSON \([^\n]+\)\n$/);
  });

  it("runs through the bin/dr.mjs shim too", () => {
    // arrange
    const stdin = fixture("aws.ec2/share-snapshot");
    // act
    const r = dr(process.execPath, ["bin/dr.mjs", "event", "classify"], stdin);
    // assert
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ kind: "ignored", snapshotId: "snap-0a1b2c3d4e5f60718" });
  });
});

/** An in-memory Io for the router's own behaviour (no child process needed). */
function memoryIo(stdin = "") {
  const out = { stdout: "", stderr: "" };
  const io: Io = {
    readStdin: async (maxBytes) => (Buffer.byteLength(stdin) > maxBytes ? null : stdin),
    stdout: (t) => {
      out.stdout += t;
    },
    stderr: (t) => {
      out.stderr += t;
    },
  };
  return { io, out };
}

describe("dr router", () => {
  it("lists every command on --help and exits 0", async () => {
    // arrange
    const { io, out } = memoryIo();
    // act
    const code = await main(["--help"], io);
    // assert
    expect(code).toBe(EXIT.ok);
    for (const c of commands) expect(out.stdout).toContain(`dr ${c.path.join(" ")}`);
    expect(out.stdout).toContain("64 usage error");
  });

  it("prints usage on stderr and exits 64 for no command, an unknown command or option, or stray arguments", async () => {
    // arrange
    const argvs = [
      [],
      ["failover"],
      ["event", "explode"],
      ["event", "classify", "--bogus"],
      ["event", "classify", "x"],
    ];
    // act
    const results = await Promise.all(
      argvs.map(async (argv) => {
        const { io, out } = memoryIo();
        return { code: await main(argv, io), ...out };
      }),
    );
    // assert
    for (const r of results) {
      expect(r.code).toBe(EXIT.usage);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("usage: dr");
    }
  });

  it("rejects stdin over its size cap as an invalid event", async () => {
    // arrange
    const { io, out } = memoryIo("x".repeat(2 * 1024 * 1024));
    // act
    const code = await main(["event", "classify"], io);
    // assert
    expect(code).toBe(EXIT.invalidInput);
    expect(out.stderr).toBe("dr: invalid event: stdin is over 1048576 bytes\n");
  });
});
