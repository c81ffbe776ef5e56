/**
 * `dr`: the operators' command line, `dr <group> <command> [options]`.
 * To add a command, append a {@link Command} to `commands`; the router, `--help` and option
 * parsing (node:util parseArgs, strict) come with it.
 */
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { errorMessage, InvalidEventError } from "../functions/core/errors.js";
import { classifyEvent, EVENT_MAX_BYTES } from "../functions/core/events.js";
import { failoverCommands } from "./failover.js";
import { statusCommand } from "./status.js";
import { veleroRewrite } from "./velero.js";

export const EXIT = { ok: 0, failure: 1, invalidInput: 2, usage: 64 } as const;

export interface Io {
  /** All of stdin as UTF-8, or null when it is longer than maxBytes. */
  readStdin(maxBytes: number): Promise<string | null>;
  stdout(text: string): void;
  stderr(text: string): void;
}

export interface Command {
  /** The words that select it, e.g. ["event", "classify"]. */
  path: readonly string[];
  /** What follows the path in the usage line, e.g. "< event.json". */
  args?: string;
  summary: string;
  options?: ParseArgsConfig["options"];
  allowPositionals?: boolean;
  run(ctx: {
    values: ReturnType<typeof parseArgs>["values"];
    positionals: string[];
    io: Io;
  }): Promise<number>;
}

/** stdin may hold a pretty-printed event; classifyEvent then enforces EventBridge's own limit. */
const STDIN_MAX_BYTES = 4 * EVENT_MAX_BYTES;

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim();

export const commands: Command[] = [
  {
    path: ["event", "classify"],
    args: "< event.json",
    summary: "classify one EventBridge event (JSON on stdin); print the ClassifiedEvent as JSON",
    async run({ io }) {
      try {
        const text = await io.readStdin(STDIN_MAX_BYTES);
        if (text === null) throw new InvalidEventError(`stdin is over ${STDIN_MAX_BYTES} bytes`);
        let event: unknown;
        try {
          event = JSON.parse(text);
        } catch (err) {
          throw new InvalidEventError(`not JSON (${errorMessage(err)})`);
        }
        io.stdout(`${JSON.stringify(classifyEvent(event))}\n`);
        return EXIT.ok;
      } catch (err) {
        if (!(err instanceof InvalidEventError)) throw err;
        io.stderr(`dr: invalid event: ${oneLine(err.message)}\n`);
        return EXIT.invalidInput;
      }
    },
  },
  veleroRewrite,
  statusCommand,
  ...failoverCommands,
];

const line = (c: Command) => ["dr", ...c.path, ...(c.args ? [c.args] : [])].join(" ");

export function usage(): string {
  const width = Math.max(...commands.map((c) => line(c).length));
  return [
    "usage: dr <group> <command> [options]",
    "",
    "commands:",
    ...commands.map((c) => `  ${line(c).padEnd(width)}  ${c.summary}`),
    "",
    "options: -h, --help (also after a command)",
    "exit codes: 0 ok, 1 failure, 2 invalid input, 64 usage error",
    "",
  ].join("\n");
}

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [first] = argv;
  if (first === undefined || first === "-h" || first === "--help" || first === "help") {
    if (first !== undefined) {
      io.stdout(usage());
      return EXIT.ok;
    }
    io.stderr(usage());
    return EXIT.usage;
  }
  const command = commands.find((c) => c.path.every((word, i) => argv[i] === word));
  if (!command) {
    io.stderr(`dr: unknown command: ${oneLine(argv.slice(0, 2).join(" "))}\n${usage()}`);
    return EXIT.usage;
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv.slice(command.path.length),
      options: { help: { type: "boolean", short: "h" }, ...command.options },
      allowPositionals: command.allowPositionals ?? false,
      strict: true,
    });
  } catch (err) {
    io.stderr(`dr: ${oneLine(errorMessage(err))}\nusage: ${line(command)}\n`);
    return EXIT.usage;
  }
  if (parsed.values.help) {
    io.stdout(`usage: ${line(command)}\n  ${command.summary}\n`);
    return EXIT.ok;
  }
  try {
    return await command.run({ values: parsed.values, positionals: parsed.positionals, io });
  } catch (err) {
    io.stderr(`dr: ${oneLine(errorMessage(err))}\n`);
    return EXIT.failure;
  }
}

const processIo: Io = {
  async readStdin(maxBytes) {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of process.stdin) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
      size += buf.length;
      if (size > maxBytes) return null;
      chunks.push(buf);
    }
    return Buffer.concat(chunks).toString("utf8");
  },
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === import.meta.url;
  } catch {
    return false;
  }
}

// `tsx cli/dr.ts ...` runs it directly; bin/dr.mjs imports it and calls main itself.
if (isEntryPoint()) process.exitCode = await main(process.argv.slice(2));
