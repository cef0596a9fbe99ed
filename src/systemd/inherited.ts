/**
 * @module Listening sockets oi did not open itself: systemd's socket
 * activation (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`: descriptors 3,
 * 4, ... are listening sockets) and an older oi handing its sockets over in
 * an upgrade (upgrade.ts uses the same convention). Each descriptor is
 * recognised by what it is, not by its name: its type (stream or datagram)
 * and its own address (getsockname: an IP and port, or a unix path). A rule
 * whose bind has that address takes the socket instead of binding. Sockets
 * no rule takes stay open (systemd keeps its own copy and would only queue
 * connections on it anyway) for a later reload's new rules, and are handed on
 * by an upgrade; they are named in a warning. Sockets an upgrade handed over
 * that no rule takes are closed.
 */
import { consola } from "consola";
import { formatIp, parseIp } from "../ip.ts";
import { AF_INET, AF_INET6, AF_UNIX, type Libc, loadLibc, O_NONBLOCK, SO_ACCEPTCONN, SO_TYPE, SOCK_DGRAM, SOCK_STREAM, SOL_SOCKET } from "../libc.ts";
import type { Endpoint } from "../types.ts";

/** The first inherited descriptor (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const F_GETFL = 3;
const F_SETFL = 4;
/** sockaddr_un is the largest address these sockets have (2 + 108 bytes). */
const ADDRESS_BYTES = 112;

export interface InheritedSocket {
  fd: number;
  /** Its name in LISTEN_FDNAMES ("" when none was given). */
  name: string;
  /** What it listens on, as `bindAddress` writes a rule's bind; undefined: not a socket oi can serve on. */
  address: string | undefined;
  /** How it reads in the log: `127.0.0.1:8080/tcp`, `/run/oi.sock`. */
  label: string;
  /** Handed over by the oi before an upgrade (named so), not made by systemd. */
  fromOi: boolean;
}

/** LISTEN_FDNAMES of the sockets an upgrade hands over start with this (the rest is the address, for people). */
export const UPGRADE_NAME_PREFIX = "oi-upgrade";

/** Inherited sockets not taken by a rule yet. */
const pool: InheritedSocket[] = [];

/** The key an inherited socket and a rule's bind share when they listen on the same address. */
export function bindAddress(endpoint: Endpoint): string | undefined {
  if (endpoint.transport === "unix") return `unix ${endpoint.host}`;
  const ip = parseIp(endpoint.host);
  // A host name is not compared with the address it resolves to (see README, socket activation).
  return ip === undefined ? undefined : `${endpoint.transport} ${formatIp(ip)} ${endpoint.port}`;
}

/** What descriptor `fd` listens on, from the kernel's own view of it (address undefined: not a listening socket oi can serve on). */
export function describeSocket(libc: Libc, fd: number, name: string): InheritedSocket {
  const type = libc.getIntOption(fd, SOL_SOCKET, SO_TYPE);
  const bytes = new Uint8Array(ADDRESS_BYTES);
  const length = new Uint32Array([ADDRESS_BYTES]);
  const fromOi = name.startsWith(UPGRADE_NAME_PREFIX);
  const unknown = { fd, name, fromOi, address: undefined, label: `descriptor ${fd}${name === "" ? "" : ` (${name})`}` };
  if (type < 0 || libc.getsockname(fd, bytes, length) !== 0) return { ...unknown, label: `${unknown.label}: not a socket` };
  const view = new DataView(bytes.buffer);
  const family = view.getUint16(0, true);
  if (family === AF_UNIX) {
    const raw = bytes.subarray(2, length[0]);
    // An abstract name starts with a NUL byte; a path ends with one.
    const path = raw[0] === 0 ? `@${new TextDecoder().decode(raw.subarray(1))}` : new TextDecoder().decode(raw).replace(/\0.*$/s, "");
    if (type !== SOCK_STREAM) return { ...unknown, label: `${path} (a unix datagram socket: oi serves unix stream sockets only)` };
    // An accepted connection has its listener's address too.
    if (libc.getIntOption(fd, SOL_SOCKET, SO_ACCEPTCONN) !== 1) return { ...unknown, label: `${path} is not listening` };
    return { fd, name, fromOi, address: `unix ${path}`, label: path };
  }
  if (family !== AF_INET && family !== AF_INET6) return { ...unknown, label: `${unknown.label}: address family ${family}` };
  const ip = family === AF_INET ? bytes.subarray(4, 8) : bytes.subarray(8, 24);
  const port = view.getUint16(2, false);
  const host = formatIp(ip);
  if (type === SOCK_STREAM) {
    if (libc.getIntOption(fd, SOL_SOCKET, SO_ACCEPTCONN) !== 1) return { ...unknown, label: `${host}:${port}/tcp is not listening` };
    return { fd, name, fromOi, address: `tcp ${host} ${port}`, label: `${family === AF_INET6 ? `[${host}]` : host}:${port}/tcp` };
  }
  // A connected datagram socket (a UDP backend's) is not one clients send to.
  if (type === SOCK_DGRAM && libc.getpeername(fd, bytes, new Uint32Array([ADDRESS_BYTES])) === 0) return { ...unknown, label: `${host}:${port}/udp is connected` };
  if (type === SOCK_DGRAM) return { fd, name, fromOi, address: `udp ${host} ${port}`, label: `${family === AF_INET6 ? `[${host}]` : host}:${port}/udp` };
  return { ...unknown, label: `${unknown.label}: socket type ${type}` };
}

/**
 * Read LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, remove them from the
 * environment (children must not take them as theirs) and recognise each
 * descriptor. Returns how many were passed.
 */
export async function readInheritedSockets(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const pid = env.LISTEN_PID;
  const count = Number(env.LISTEN_FDS ?? "0");
  const names = (env.LISTEN_FDNAMES ?? "").split(":");
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (!Number.isInteger(count) || count <= 0) return 0;
  if (pid !== undefined && pid !== "" && Number(pid) !== process.pid) {
    consola.warn(`LISTEN_FDS=${count} is meant for pid ${pid}, not this one (${process.pid}): ignored`);
    return 0;
  }
  const loaded = await loadLibc();
  if ("unavailable" in loaded) {
    consola.warn(`LISTEN_FDS=${count}: cannot look at the inherited sockets (${loaded.unavailable}); binding as usual`);
    return 0;
  }
  const { libc } = loaded;
  for (let index = 0; index < count; index++) {
    const fd = LISTEN_FDS_START + index;
    // Ours to hand on explicitly (an upgrade does); no other child should get them.
    libc.fcntl(fd, F_SETFD, FD_CLOEXEC);
    // systemd passes blocking sockets; both of oi's socket layers expect non-blocking ones.
    const flags = libc.fcntl(fd, F_GETFL, 0);
    if (flags >= 0) libc.fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    pool.push(describeSocket(libc, fd, names[index] ?? ""));
  }
  return count;
}

/** An inherited socket listening on `endpoint`'s address, taken out of the pool, or undefined. */
export function takeInherited(endpoint: Endpoint): InheritedSocket | undefined {
  if (pool.length === 0) return undefined;
  const address = bindAddress(endpoint);
  if (address === undefined) return undefined;
  const index = pool.findIndex((socket) => socket.address === address);
  if (index < 0) return undefined;
  const [socket] = pool.splice(index, 1);
  consola.debug(`listening on inherited ${socket!.label}`);
  return socket;
}

/** Inherited sockets no rule took (for the warning, and for an upgrade to hand on). */
export function unclaimedInherited(): readonly InheritedSocket[] {
  return pool;
}

/**
 * After the first config applied: name the inherited sockets no rule uses.
 * systemd's stay open for a later reload (systemd holds a copy anyway); those
 * an upgrade handed over for a rule the new config no longer has are closed,
 * as a reload would close them.
 */
export async function settleUnclaimed(): Promise<void> {
  if (pool.length === 0) return;
  const loaded = await loadLibc();
  for (const socket of [...pool]) {
    if (socket.fromOi && "libc" in loaded) {
      consola.info(`inherited socket ${socket.label}: no rule of this config listens there any more; closed`);
      loaded.libc.close(socket.fd);
      pool.splice(pool.indexOf(socket), 1);
    } else {
      consola.warn(`inherited socket ${socket.label} matches no rule's bind: kept open unused (a reload that adds a rule on it will use it)`);
    }
  }
}
