/**
 * A real `oi` process for end-to-end tests: started from this checkout with
 * the test's config, watched through its output, stopped by its own PID.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { withTimeout } from "./peers.ts";

const CLI = join(import.meta.dir, "..", "..", "src", "cli.ts");

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "oi-test-"));
}

/** Write `text` to a fresh temporary file named `name` and return its path. */
export function writeTempFile(name: string, text: string): string {
  const path = join(tempDir(), name);
  writeFileSync(path, text);
  return path;
}

/** Collects a stream's text as it arrives, so tests can wait for a line. */
export class OutputWatcher {
  text = "";
  private waiters: Array<() => void> = [];
  constructor(stream: ReadableStream<Uint8Array>) {
    void this.read(stream);
  }
  private async read(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      this.text += decoder.decode(chunk, { stream: true });
      for (const wake of this.waiters.splice(0)) wake();
    }
  }
  async waitFor(needle: string | RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const found = () => (typeof needle === "string" ? this.text.includes(needle) : needle.test(this.text));
    while (!found()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${String(needle)} in output:\n${this.text}`);
      await Promise.race([new Promise<void>((wake) => this.waiters.push(wake)), Bun.sleep(Math.min(left, 100))]);
    }
  }
}

export interface OiProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  stdout: OutputWatcher;
  stderr: OutputWatcher;
  /** Resident set size in KiB, from /proc. */
  rssKiB(): number;
  /** User + system CPU time in clock ticks, from /proc. */
  cpuTicks(): number;
  signal(name: NodeJS.Signals): void;
  stop(): Promise<number>;
}

/** User + system CPU time of a process in clock ticks, from /proc/PID/stat. */
export function cpuTicksOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return Number(fields[11]) + Number(fields[12]);
}

/** A command prefix that runs what follows with at most `limit` open files. */
export function withFileLimit(limit: number): string[] {
  return ["sh", "-c", `ulimit -n ${limit} && exec "$0" "$@"`];
}

/**
 * Read a process's stdout until it says its rules are listening; the text
 * read so far. Fails when the output ends first (the process exited) or
 * after `timeoutMs`.
 */
export async function readUntilListening(stdout: ReadableStream<Uint8Array>, timeoutMs: number, what: string): Promise<string> {
  const reader = stdout.getReader();
  const decoder = new TextDecoder();
  const deadline = Date.now() + timeoutMs;
  let text = "";
  try {
    while (!text.includes("listening")) {
      const { value, done } = await withTimeout(reader.read(), Math.max(1, deadline - Date.now()), `${what} to listen`);
      if (done) throw new Error(`${what} ended its output before listening:\n${text}`);
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  return text;
}

/** Run the oi CLI with `args`; resolves when it has exited, with its code and output. */
export async function runOi(args: string[], timeoutMs = 15000): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([process.execPath, CLI, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/**
 * Start `oi -c <config>` and wait until its rules are listening. Tests leave
 * half-open connections behind, so the shutdown grace is short unless a test
 * gives its own `--grace`.
 */
export async function startOi(
  configPath: string,
  extraArgs: string[] = [],
  prefix: string[] = [],
  env?: Record<string, string>,
  /** The program to run: the repository's src/cli.ts unless a test gives a copy. */
  cli = CLI,
): Promise<OiProcess> {
  const grace = extraArgs.includes("--grace") ? [] : ["--grace", "0.2"];
  const proc = Bun.spawn([...prefix, process.execPath, cli, "-c", configPath, ...grace, ...extraArgs], {
    ...(env === undefined ? {} : { env: { ...process.env, ...env } }),
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const stdout = new OutputWatcher(proc.stdout);
  const stderr = new OutputWatcher(proc.stderr);
  const oi: OiProcess = {
    proc,
    stdout,
    stderr,
    rssKiB() {
      const status = readFileSync(`/proc/${proc.pid}/status`, "utf8");
      const match = /VmRSS:\s+(\d+) kB/.exec(status);
      if (!match) throw new Error("no VmRSS in /proc status");
      return Number(match[1]);
    },
    cpuTicks() {
      return cpuTicksOf(proc.pid);
    },
    signal(name) {
      proc.kill(name);
    },
    async stop() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      const code = await proc.exited;
      clearTimeout(timer);
      return code;
    },
  };
  try {
    await Promise.race([
      stdout.waitFor("listening", 10000),
      proc.exited.then((code) => {
        throw new Error(`oi exited with ${code} before listening:\n${stdout.text}\n${stderr.text}`);
      }),
    ]);
  } catch (error) {
    await oi.stop();
    throw error;
  }
  return oi;
}
