/**
 * @module Running in the background, as rinetd does without `-f`. Bun cannot
 * fork, so the starting process runs a copy of this program in a session of
 * its own (setsid) with `-f` added, and waits for the copy's word that every
 * rule listens: then it exits 0 and the copy carries on as the daemon (a
 * service manager waiting for the start to return, or reading the pid file
 * after it, sees a running, listening service). If the copy exits first (a
 * config or bind error), the starting process exits with its code.
 *
 * As daemon(3) leaves rinetd, the daemon holds nothing of whoever started it
 * (a terminal, an ssh session, a `$(...)` that waits for the end of its
 * output): its standard streams are /dev/null from the start, and the console
 * lines it writes until it listens (or the errors that stop it) go to the
 * starter's stdout and stderr through two more descriptors, closed once it
 * listens. Under systemd, whose journal is the stdout (JOURNAL_STREAM) and
 * waits for nobody, the daemon keeps writing there instead.
 *
 * The word is one line on a pipe; the environment names its descriptor and
 * the console's.
 */
import { closeSync, fstatSync, writeSync } from "node:fs";
import type { LineStream } from "./log/bounded-stream.ts";
import { consoleLog } from "./log/console.ts";

export const READY_ENV = "OI_READY_FD";
const CONSOLE_ENV = "OI_STARTUP_CONSOLE_FDS";
/** The copy's descriptors: the pipe for its word, then the starter's stdout and stderr. */
const READY_FD = 3;
const STARTUP_STDOUT_FD = 4;
const STARTUP_STDERR_FD = 5;
export const READY_WORD = "listening\n";

/** Where `bun build --compile` puts a binary's own entry point (argv[1] is then not a script to pass on). */
export const EMBEDDED_ROOT = "/$bunfs/";

/** The command that runs this program again, with `args`. */
function selfCommand(args: string[]): string[] {
  const script = process.argv[1];
  if (script === undefined || script.startsWith(EMBEDDED_ROOT)) return [process.execPath, ...args];
  return [process.execPath, script, ...args];
}

/** Whether stdout is systemd's journal: JOURNAL_STREAM names it as device:inode. */
function stdoutIsJournal(): boolean {
  const journal = process.env.JOURNAL_STREAM;
  if (journal === undefined) return false;
  try {
    const { dev, ino } = fstatSync(1);
    return journal === `${dev}:${ino}`;
  } catch {
    return false;
  }
}

/** Start the daemon copy and exit once it listens (0), or once it failed (its code). */
export async function detach(args: string[]): Promise<never> {
  const journal = stdoutIsJournal();
  const child = Bun.spawn(selfCommand([...args, "-f"]), {
    // The copy is started under the same name, so it takes the same defaults (config, pid file).
    argv0: process.argv0,
    detached: true,
    stdio: journal ? ["ignore", "inherit", "inherit", "pipe"] : ["ignore", "ignore", "ignore", "pipe", 1, 2],
    env: { ...process.env, [READY_ENV]: String(READY_FD), ...(journal ? {} : { [CONSOLE_ENV]: `${STARTUP_STDOUT_FD},${STARTUP_STDERR_FD}` }) },
  });
  const ready = child.stdio[READY_FD];
  let word = "";
  if (typeof ready === "number") {
    const decoder = new TextDecoder();
    // Ends with the word, or at EOF: the copy exited (or closed the pipe) without listening.
    for await (const chunk of Bun.file(ready).stream()) {
      word += decoder.decode(chunk, { stream: true });
      if (word.includes("\n")) break;
    }
  }
  if (word === READY_WORD) {
    child.unref();
    process.exit(0);
  }
  const code = await child.exited;
  process.exit(code === 0 ? 1 : code);
}

/** A console stream on a descriptor: each line written at once; one the descriptor cannot take is counted lost. */
function descriptorStream(fd: number): LineStream {
  return {
    write(text, callback) {
      try {
        writeSync(fd, text);
        callback(null);
      } catch (error) {
        callback(error instanceof Error ? error : new Error(String(error)));
      }
      return true;
    },
    on() {
      return this;
    },
  };
}

/** In the daemon copy, at start: write the console to the starter's streams until it listens. */
export function useStartupConsole(): void {
  const fds = process.env[CONSOLE_ENV]?.split(",").map(Number);
  if (fds?.length !== 2 || !fds.every((fd) => Number.isInteger(fd) && fd > 2)) return;
  consoleLog.useStreams(descriptorStream(fds[0]!), descriptorStream(fds[1]!));
}

/**
 * In the daemon copy, once every rule listens: tell the starting process,
 * then let go of its streams (nothing to do when there is no starter).
 */
export function announceListening(): void {
  const ready = Number(process.env[READY_ENV]);
  const startupConsole = process.env[CONSOLE_ENV]?.split(",").map(Number) ?? [];
  delete process.env[READY_ENV];
  delete process.env[CONSOLE_ENV];
  if (!Number.isInteger(ready) || ready < 0) return;
  if (startupConsole.length > 0) {
    // From here on the console is the daemon's own stdout and stderr: /dev/null, as daemon(3) leaves them.
    consoleLog.useStreams(process.stdout, process.stderr);
    for (const fd of startupConsole) closeQuietly(fd);
  }
  try {
    writeSync(ready, READY_WORD);
  } catch {
    // The starting process is gone (killed while it waited): there is no one to tell.
  }
  closeQuietly(ready);
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Not open: nothing to let go of.
  }
}
