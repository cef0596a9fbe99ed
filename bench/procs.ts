/**
 * @module Every process the bench starts goes through here, so each one can
 * be stopped by its own PID: at the end of its measurement, on any error, and
 * on Ctrl-C (SIGINT) or SIGTERM. Nothing is ever stopped by name.
 */
import { closeSync, openSync, readFileSync } from "node:fs";
import type { Subprocess } from "bun";
import { alive, processTree, startTicks } from "./proc-stats.ts";

type Child = Subprocess<"ignore" | "pipe", "pipe" | number, "pipe" | number>;

export interface Started {
  readonly pid: number;
  readonly proc: Child;
  readonly name: string;
  /** Text collected from stdout while `collect` is set (see `spawnLogged`). */
  output(): string;
  /** Resolves with the exit code (or signal number + 128). */
  readonly exited: Promise<number>;
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
  /** Stop the processes it forked too (socat), whichever way it is stopped. */
  readonly withDescendants?: boolean;
}

const running = new Set<Started>();
const cleanups: Array<() => Promise<void> | void> = [];
let shuttingDown = false;

/** Register work to run when the bench ends (namespaces, temp files); last registered runs first. */
export function onCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}

export interface SpawnOptions {
  /** File that receives stderr (and stdout unless `collect` is true). */
  log: string;
  /** Capture stdout as text instead of writing it to the log. */
  collect?: boolean;
  env?: Record<string, string>;
  cwd?: string;
  /** The process forks children that may outlive it (socat): stop them too, each by its PID. */
  withDescendants?: boolean;
}

/** Start a long-running process; it stays registered until it exits or is stopped. */
export function spawnLogged(name: string, cmd: string[], options: SpawnOptions): Started {
  refuseWhileStopping(name);
  const logFd = openSync(options.log, "a");
  const proc: Child = Bun.spawn(cmd, {
    stdin: "ignore",
    stdout: options.collect === true ? "pipe" : logFd,
    stderr: logFd,
    env: { ...process.env, ...(options.env ?? {}) },
    cwd: options.cwd,
  });
  closeSync(logFd);
  let text = "";
  if (options.collect === true && proc.stdout instanceof ReadableStream) {
    const decoder = new TextDecoder();
    const stream = proc.stdout;
    void (async () => {
      for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
    })();
  }
  const exited = proc.exited.then((code) => {
    running.delete(started);
    return code;
  });
  const started: Started = {
    pid: proc.pid,
    proc,
    name,
    output: () => text,
    exited,
    withDescendants: options.withDescendants === true,
    async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 3000): Promise<void> {
      await stopProcess(started, signal, graceMs);
    },
  };
  running.add(started);
  return started;
}

/** After Ctrl-C nothing new starts: a measurement still unwinding must not leave an orphan behind. */
function refuseWhileStopping(name: string): void {
  if (shuttingDown) throw new Error(`not starting ${name}: the bench is stopping`);
}

async function stopProcess(child: Started, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
    running.delete(child);
    return;
  }
  // Listed before the parent goes: once it has, its children belong to init and no tree leads to them.
  const forked = child.withDescendants === true ? descendantsOf(child.pid) : [];
  try {
    await stopOne(child, signal, graceMs);
  } finally {
    if (forked.length > 0) await stopListed(forked);
  }
}

async function stopOne(child: Started, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  try {
    process.kill(child.pid, signal);
  } catch {
    // Already gone.
  }
  const done = await Promise.race([child.exited.then(() => true), Bun.sleep(graceMs).then(() => false)]);
  if (!done) {
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
    await Promise.race([child.exited, Bun.sleep(2000)]);
  }
  running.delete(child);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Run a bounded command to completion and collect its output. After
 * `timeoutMs` it is sent SIGINT (tools print their summary on it), then
 * SIGKILL two seconds later.
 */
export async function runBounded(
  cmd: string[],
  timeoutMs: number,
  env?: Record<string, string>,
): Promise<RunResult> {
  refuseWhileStopping(cmd[0] ?? "?");
  const proc = Bun.spawn(cmd, {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...(env ?? {}) },
  });
  const started: Started = {
    pid: proc.pid,
    proc,
    name: cmd[0] ?? "?",
    output: () => "",
    exited: proc.exited,
    stop: (signal: NodeJS.Signals = "SIGTERM", graceMs = 2000) => stopProcess(started, signal, graceMs),
  };
  running.add(started);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void stopProcess(started, "SIGINT", 2000);
  }, timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
    running.delete(started);
  }
}

/** Stop everything still running (newest first), then run the cleanups. Safe to call twice. */
export async function stopAll(): Promise<void> {
  const children = [...running].reverse();
  await Promise.all(children.map((child) => stopProcess(child, "SIGTERM", 3000)));
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      await fn();
    } catch (error) {
      console.error(`cleanup failed: ${String(error)}`);
    }
  }
}

/** On Ctrl-C or SIGTERM: stop every child by PID, clean up, exit 130/143. */
export function installSignalHandlers(): void {
  const handle = (signal: NodeJS.Signals, code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    console.error(`\n${signal}: stopping ${running.size} process(es) by PID and cleaning up`);
    void stopAll().finally(() => process.exit(code));
  };
  process.on("SIGINT", () => handle("SIGINT", 130));
  process.on("SIGTERM", () => handle("SIGTERM", 143));
  // `kill <npm's PID>` does not reach the bench (npm does not pass SIGTERM on):
  // when the parent goes away, stop as if interrupted rather than run on orphaned.
  const parent = parentPid();
  setInterval(() => {
    if (parentPid() !== parent) handle("SIGTERM", 143);
  }, 1000).unref();
}

function parentPid(): number {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return -1;
  }
}

export function interrupted(): boolean {
  return shuttingDown;
}

/** A process the bench did not spawn itself but must stop (a child a forwarder forked), told apart from a later one reusing its PID. */
export interface Listed {
  pid: number;
  start: number | undefined;
}

/** The live descendants of `pid` (not `pid` itself), to stop once their parent is gone. */
export function descendantsOf(pid: number): Listed[] {
  return processTree(pid)
    .filter((member) => member !== pid)
    .map((member) => ({ pid: member, start: startTicks(member) }));
}

/**
 * SIGTERM each listed process still alive (the same process: its PID with
 * the start time seen when it was listed), then SIGKILL what is left after
 * `graceMs`.
 */
export async function stopListed(processes: Listed[], graceMs = 2000): Promise<void> {
  const same = (each: Listed) => alive(each.pid) && each.start !== undefined && startTicks(each.pid) === each.start;
  const signal = (pid: number, name: NodeJS.Signals) => {
    try {
      process.kill(pid, name);
    } catch {
      // Gone meanwhile.
    }
  };
  for (const each of processes.filter(same)) signal(each.pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && processes.some(same)) await Bun.sleep(20);
  for (const each of processes.filter(same)) signal(each.pid, "SIGKILL");
}

/**
 * Resolves once `proc` printed `needle` on its stdout (for servers such as
 * iperf3, where a probe connection would count as a failed test). It keeps
 * reading to the end, so the process never blocks on a full pipe.
 */
export function waitForOutput(proc: Bun.Subprocess<"ignore", "pipe", "inherit">, needle: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const decoder = new TextDecoder();
    let text = "";
    void (async () => {
      for await (const chunk of proc.stdout) {
        text += decoder.decode(chunk, { stream: true });
        if (text.includes(needle)) resolve();
      }
      reject(new Error(`exited before printing '${needle}': ${text}`));
    })();
  });
}
