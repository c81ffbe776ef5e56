import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";

/** A running AWS emulator (moto_server). */
export interface Moto {
  endpoint: string;
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      const port = typeof address === "object" && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * moto_server, but serving one request at a time. Stock moto_server is threaded, and its DynamoDB
 * transactions are not atomic across threads: a cancelled transaction restores a deep copy of the
 * whole table taken when it began, erasing writes other threads made meanwhile (seen here as a
 * drifting counter and a duplicate copy under 14 concurrent invocations). Real DynamoDB serialises
 * conflicting writes, so a serial emulator is the faithful one. Same CLI and flags as moto_server.
 */
const SERIAL_MOTO = [
  "import sys, werkzeug.serving as s",
  "run = s.run_simple",
  "s.run_simple = lambda *a, **k: run(*a, **{**k, 'threaded': False})",
  "from moto.server import main",
  "sys.exit(main(sys.argv[1:]))",
].join("\n");

const THREADED_MOTO = ["import sys", "from moto.server import main", "sys.exit(main(sys.argv[1:]))"].join(
  "\n",
);

/**
 * Starts the emulator on a free loopback port and waits until it answers.
 * MOTO_EC2_LOAD_DEFAULT_AMIS=false keeps each region free of ~1,200 AMI snapshots, which would
 * otherwise slow DescribeSnapshots down about sixty-fold.
 * `threaded` starts stock (threaded) moto_server instead, for S3 only: streaming one object into
 * another (a GetObject read while parts are uploaded) waits on two requests at once, which the
 * serial emulator cannot serve once the object outgrows the sockets' buffers. Never for DynamoDB.
 */
export async function startMoto(options: { timeoutMs?: number; threaded?: boolean } = {}): Promise<Moto> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let proc: ChildProcess;
  try {
    proc = spawn(
      process.env.MOTO_PYTHON ?? "python3",
      ["-c", options.threaded ? THREADED_MOTO : SERIAL_MOTO, "-H", "127.0.0.1", "-p", String(port)],
      {
        env: { ...process.env, MOTO_EC2_LOAD_DEFAULT_AMIS: "false" },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
  } catch (err) {
    throw new Error(`cannot start the emulator (python3 with moto[server] 5 is needed): ${String(err)}`);
  }
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const spawnError = new Promise<never>((_, reject) =>
    proc.once("error", (err) =>
      reject(new Error(`cannot start the emulator (python3 with moto[server] 5 is needed): ${err.message}`)),
    ),
  );
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  const ready = (async () => {
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`moto_server exited with ${proc.exitCode}: ${stderr}`);
      try {
        const res = await fetch(`${endpoint}/moto-api/`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    proc.kill("SIGKILL");
    throw new Error(`moto_server did not answer on ${endpoint} within the timeout: ${stderr}`);
  })();
  await Promise.race([ready, spawnError]);
  return {
    endpoint,
    async reset() {
      await fetch(`${endpoint}/moto-api/reset`, { method: "POST" });
    },
    async stop() {
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        const timer = setTimeout(() => proc.kill("SIGKILL"), 3000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}
