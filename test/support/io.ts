import type { Io } from "../../cli/dr.js";

/** An in-memory Io for the `dr` command router: what it printed, and empty stdin. */
export function captureIo(): { out: { stdout: string; stderr: string }; io: Io } {
  const out = { stdout: "", stderr: "" };
  return {
    out,
    io: {
      readStdin: async () => "",
      stdout: (t: string) => {
        out.stdout += t;
      },
      stderr: (t: string) => {
        out.stderr += t;
      },
    },
  };
}
