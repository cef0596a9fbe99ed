/**
 * @module Listening on a unix socket path: a socket file left behind by a
 * crashed process is replaced, one that another process still listens on is
 * an error, and the file gets the rule's permissions. Abstract names
 * (`@name`, Linux) have no file. oi makes the socket itself (through libc)
 * and hands the descriptor to Bun, so that the file is removed by oi, not by
 * Bun's stop(): after an upgrade handed the socket to the new process, the
 * old one must leave the file in place.
 */
import { lstatSync, unlinkSync } from "node:fs";
import { constants } from "node:os";
import { bunUnixPath } from "../endpoint.ts";
import { encodeUnixAddress } from "../fd/address.ts";
import { AF_UNIX, loadLibc, O_CLOEXEC, O_NONBLOCK, SOCK_STREAM } from "../libc.ts";
import type { StreamListener } from "./stream-socket.ts";

/** Whether something accepts connections on the socket file at `path`. */
async function inUse(path: string): Promise<boolean> {
  try {
    const socket = await Bun.connect({ unix: path, socket: { data() {} } });
    socket.end();
    return true;
  } catch {
    return false;
  }
}

/** Make `path` free to listen on, or throw why it is not. */
export async function clearStaleSocket(path: string): Promise<void> {
  if (path.startsWith("@")) return;
  let stats;
  try {
    stats = lstatSync(path);
  } catch {
    return;
  }
  if (!stats.isSocket()) throw new Error(`${path} exists and is not a socket`);
  if (await inUse(path)) throw new Error(`another process is listening on ${path}`);
  unlinkSync(path);
}

/**
 * Run `bind` with the umask set so that the socket file is born with `mode`
 * (`[mode=0660]`), never wider and never through a later chmod by path,
 * which would follow a symbolic link swapped in meanwhile. bind(2) itself
 * creates the file and fails on anything already there, a link included.
 */
function withSocketMode<T>(mode: number | undefined, bind: () => T): T {
  if (mode === undefined) return bind();
  const previous = process.umask(~mode & 0o777);
  try {
    return bind();
  } finally {
    process.umask(previous);
  }
}

/** `ENOENT`, for an errno number. */
function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(constants.errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

/** The backlog of unix listeners: 512, as when Bun made them (`listen-backlog` is about TCP on direct sockets). */
const UNIX_BACKLOG = 512;

/** Set once an upgrade handed the listening sockets to a new process: their files are its now. */
let socketFilesHandedOver = false;

export function handOverSocketFiles(): void {
  socketFilesHandedOver = true;
}

/** A unix listener whose file oi removes when it stops listening (unless an upgrade handed it over). */
class UnixListener implements StreamListener {
  constructor(
    private readonly listener: StreamListener,
    private readonly path: string | undefined,
  ) {}

  stop(closeActiveConnections?: boolean): void {
    this.listener.stop(closeActiveConnections);
    if (this.path === undefined || socketFilesHandedOver) return;
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone.
    }
  }

  reload(options: { socket: object }): void {
    this.listener.reload(options);
  }
}

/**
 * Listen on the unix socket `path` (made free first). The
 * socket is made through libc where it can be; elsewhere Bun makes it (and
 * removes the file when it stops, upgrade or not).
 */
export async function listenUnix(path: string, handlers: object, mode?: number): Promise<StreamListener> {
  await clearStaleSocket(path);
  const loaded = await loadLibc();
  const address = encodeUnixAddress(path);
  // Abstract sockets have no file, hence no mode.
  const fileMode = path.startsWith("@") ? undefined : mode;
  // Half-close must pass through unix sockets as through TCP.
  if ("unavailable" in loaded || address === undefined) {
    return withSocketMode(fileMode, () => Bun.listen<unknown>({ unix: bunUnixPath(path), allowHalfOpen: true, socket: handlers }));
  }
  const { libc } = loaded;
  const fd = libc.socket(AF_UNIX, SOCK_STREAM | O_NONBLOCK | O_CLOEXEC, 0);
  if (fd < 0) throw new Error(errnoName(libc.errno()));
  if (withSocketMode(fileMode, () => libc.bind(fd, address.bytes, address.length)) !== 0 || libc.listen(fd, UNIX_BACKLOG) !== 0) {
    const errno = libc.errno();
    libc.close(fd);
    throw new Error(errnoName(errno));
  }
  return adoptUnix(fd, path.startsWith("@") ? undefined : path, handlers);
}

/** Serve on the listening unix socket `fd`; its file `path` (if any) is removed when oi stops listening on it. */
export function adoptUnix(fd: number, path: string | undefined, handlers: object): StreamListener {
  // Bun's listen takes a descriptor though its types leave `fd` out; given a path too, it would bind that instead.
  const listener = Bun.listen<unknown>({ fd, allowHalfOpen: true, socket: handlers } as unknown as Bun.TCPSocketListenOptions<unknown>);
  return new UnixListener(listener, path);
}
