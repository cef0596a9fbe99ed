/**
 * @module The zero-downtime upgrade (SIGUSR2): start this program again from
 * the path it was started from (so a binary replaced on disk is the one that
 * runs) with the same arguments, handing it every listening socket as
 * inherited descriptors with socket activation's convention (LISTEN_FDS,
 * LISTEN_FDNAMES; systemd/inherited.ts adopts them), and wait for its word
 * that every rule listens (detach.ts's ready pipe). Both processes accept
 * from the same kernel queues meanwhile, so no client is refused; the daemon
 * then stops accepting and drains. A new process that cannot start (a config
 * that no longer loads, a binary that does not run) exits, and this one
 * carries on.
 */
import { readdirSync } from "node:fs";
import { EMBEDDED_ROOT, READY_ENV, READY_WORD } from "./detach.ts";
import { loadLibc } from "./libc.ts";
import { portAt, portCount } from "./endpoint.ts";
import { bindAddress, describeSocket, LISTEN_FDS_START, unclaimedInherited, UPGRADE_NAME_PREFIX } from "./systemd/inherited.ts";
import type { ForwardRule } from "./types.ts";

/** Set in the new process: the pid of the oi it takes over from. */
export const UPGRADED_FROM_ENV = "OI_UPGRADED_FROM";
/**
 * The executable's path as it was at start: once the file is replaced, the
 * kernel's name for the running one (/proc/self/exe) gets " (deleted)", and
 * the upgrade must run what is at the path now.
 */
const STARTED_FROM = process.execPath.replace(/ \(deleted\)$/, "");

/** The command that runs this program again with its own arguments: the binary's path, or bun with its flags and the script. */
function ownCommand(): string[] {
  const script = process.argv[1];
  // argv[1] is the script, or the compiled binary's embedded entry point: the arguments start after it.
  const args = process.argv.slice(2);
  if (script === undefined || script.startsWith(EMBEDDED_ROOT)) return [STARTED_FROM, ...args];
  return [STARTED_FROM, ...process.execArgv, script, ...args];
}

/** How long the new process gets to load its config and listen. */
const START_TIMEOUT_MS = 60_000;

/** A listening socket to hand over: its descriptor here and its address (`tcp 127.0.0.1 80`, `unix /run/x.sock`). */
export interface HandedSocket {
  fd: number;
  address: string;
  label: string;
}

/** Which listening sockets an upgrade hands over: those of the rules' binds (every port of a range), and inherited ones no rule took. */
export function handedAddresses(rules: readonly ForwardRule[]): (address: string) => boolean {
  const exact = new Set<string>(unclaimedInherited().map((socket) => socket.address ?? ""));
  // A bind on a host name: the socket's address is what the name resolved to, so any address on that port and transport.
  const anyHost = new Set<string>();
  for (const rule of rules) {
    for (let offset = 0; offset < portCount(rule.bind); offset++) {
      const endpoint = portAt(rule.bind, offset);
      const address = bindAddress(endpoint);
      if (address !== undefined) exact.add(address);
      else anyHost.add(`${endpoint.transport} ${endpoint.port}`);
    }
  }
  return (address) => {
    if (exact.has(address)) return true;
    const [transport, , port] = address.split(" ");
    return anyHost.has(`${transport} ${port}`);
  };
}

/** The listening sockets of this process that `wanted` accepts, one per address (from /proc/self/fd and the kernel's view of each). */
export async function listeningSockets(wanted: (address: string) => boolean): Promise<HandedSocket[] | string> {
  const loaded = await loadLibc();
  if ("unavailable" in loaded) return `cannot look at the listening sockets: ${loaded.unavailable}`;
  const found = new Map<string, HandedSocket>();
  for (const entry of readdirSync("/proc/self/fd")) {
    const fd = Number(entry);
    if (!Number.isInteger(fd) || fd < LISTEN_FDS_START) continue;
    const socket = describeSocket(loaded.libc, fd, "");
    if (socket.address === undefined || found.has(socket.address) || !wanted(socket.address)) continue;
    found.set(socket.address, { fd, address: socket.address, label: socket.label });
  }
  return [...found.values()];
}

/** LISTEN_FDNAMES allows no `:`; the name is for people (the socket itself says what it is). */
function nameOf(socket: HandedSocket): string {
  return `${UPGRADE_NAME_PREFIX},${socket.address.replaceAll(" ", ",").replaceAll(":", ".")}`;
}

/** What an upgrade runs, for the log. */
export function upgradeCommand(): string {
  return ownCommand().join(" ");
}

export type Successor = { pid: number } | { failed: string };

/**
 * Start the new process with `sockets` as descriptors 3, 4, ... and wait
 * until it listens (its pid) or gives up (why: its exit code, or a timeout,
 * after which it is killed).
 */
export async function startSuccessor(sockets: HandedSocket[]): Promise<Successor> {
  const readyFd = LISTEN_FDS_START + sockets.length;
  const env: Record<string, string | undefined> = {
    ...process.env,
    LISTEN_FDS: String(sockets.length),
    LISTEN_FDNAMES: sockets.map(nameOf).join(":"),
    [READY_ENV]: String(readyFd),
    [UPGRADED_FROM_ENV]: String(process.pid),
  };
  // The new process checks no pid (it is not known before the spawn); the watchdog follows the main pid, which it becomes.
  delete env.LISTEN_PID;
  delete env.WATCHDOG_PID;
  let child;
  try {
    child = Bun.spawn(ownCommand(), {
      // The same name: the same defaults (config, pid file) as this process.
      argv0: process.argv0,
      stdio: ["ignore", "inherit", "inherit", ...sockets.map((socket) => socket.fd), "pipe"],
      env,
    });
  } catch (error) {
    return { failed: `cannot start ${STARTED_FROM}: ${error instanceof Error ? error.message : String(error)}` };
  }
  const ready = child.stdio[readyFd];
  let word = "";
  const heard = (async () => {
    if (typeof ready !== "number") return;
    const decoder = new TextDecoder();
    // Ends with the word, or at EOF: the new process exited (or closed the pipe) without listening.
    for await (const chunk of Bun.file(ready).stream()) {
      word += decoder.decode(chunk, { stream: true });
      if (word.includes("\n")) break;
    }
  })();
  let timer: Timer | undefined;
  const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), START_TIMEOUT_MS)));
  const outcome = await Promise.race([heard.then(() => "heard" as const), timedOut]);
  clearTimeout(timer);
  if (outcome === "heard" && word === READY_WORD) return { pid: child.pid };
  if (outcome === "timeout") {
    child.kill("SIGKILL");
    return { failed: `pid ${child.pid} did not listen within ${START_TIMEOUT_MS / 1000} s (killed)` };
  }
  const code = await child.exited;
  return { failed: `pid ${child.pid} exited with ${code} before listening` };
}
