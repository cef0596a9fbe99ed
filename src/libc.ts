/**
 * @module The few Linux system calls `oi` makes itself, bound through
 * `bun:ffi` (libc's wrappers): sockets, accept, connect, read and write for
 * the direct socket layer (src/fd/), splice, pipes and epoll for the splice
 * relay, the kernel's queue sizes for a shutdown's look at what a connection
 * still holds, and the user and group ids of a privilege drop (privilege.ts). Loaded lazily and only on Linux x64/arm64, where the constants
 * below hold; anywhere else, or when `bun:ffi` or libc cannot be loaded,
 * `loadLibc` says why and each user does without (Bun's own sockets; the
 * plain relay; no look at the kernel's queues).
 */
import type { Pointer } from "bun:ffi";

export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const F_DUPFD_CLOEXEC = 1030;
export const F_SETPIPE_SZ = 1031;
export const F_GETPIPE_SZ = 1032;
export const SPLICE_F_MOVE = 1;
export const SPLICE_F_NONBLOCK = 2;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_ERROR = 4;
export const SO_KEEPALIVE = 9;
export const SO_LINGER = 13;
export const SO_REUSEPORT = 15;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const TCP_QUICKACK = 12;
export const TCP_KEEPIDLE = 4;
export const TCP_KEEPINTVL = 5;
export const TCP_KEEPCNT = 6;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const AF_UNIX = 1;
export const SO_TYPE = 3;
export const SO_ACCEPTCONN = 30;
export const MSG_NOSIGNAL = 0x4000;
export const CLOCK_MONOTONIC = 1;
export const SHUT_WR = 1;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLL_CTL_MOD = 3;
export const EPOLLIN = 0x1;
export const EPOLLOUT = 0x4;
export const EPOLLERR = 0x8;
export const EPOLLHUP = 0x10;
export const EPOLLRDHUP = 0x2000;
export const EPOLLET = 0x80000000;
/** ioctl requests (asm-generic values: x86-64 and arm64): bytes a socket has sent but not had acknowledged; bytes a pipe holds. */
export const SIOCOUTQ = 0x5411;
export const FIONREAD = 0x541b;
export const EAGAIN = 11;
export const EINTR = 4;
export const EINPROGRESS = 115;
export const EMFILE = 24;
export const ENFILE = 23;
/** struct epoll_event is packed on x86-64 (4 + 8 bytes), naturally aligned elsewhere. */
export const EPOLL_EVENT_SIZE = process.arch === "x64" ? 12 : 16;
export const EPOLL_DATA_OFFSET = process.arch === "x64" ? 4 : 8;

type Fd = number;
type Buffer = Pointer | NodeJS.TypedArray | null;

export interface Libc {
  socket(domain: number, type: number, protocol: number): Fd;
  bind(fd: Fd, address: Uint8Array, length: number): number;
  listen(fd: Fd, backlog: number): number;
  /** accept4: the peer's address lands in `address`, its length in `length[0]` (set it to the buffer's size first). */
  accept4(fd: Fd, address: Uint8Array | null, length: Uint32Array | null, flags: number): Fd;
  connect(fd: Fd, address: Uint8Array, length: number): number;
  getsockname(fd: Fd, address: Uint8Array, length: Uint32Array): number;
  /** getpeername: 0 when the socket is connected to a peer. */
  getpeername(fd: Fd, address: Uint8Array, length: Uint32Array): number;
  /** sendto a socket address (a unix datagram socket's, for sd_notify). */
  sendto(fd: Fd, bytes: Uint8Array, length: number, flags: number, address: Uint8Array, addressLength: number): number;
  /** clock_gettime(CLOCK_MONOTONIC) in microseconds, the clock systemd's MONOTONIC_USEC means. */
  monotonicMicros(): bigint;
  /** setsockopt with an int value. */
  setIntOption(fd: Fd, level: number, name: number, value: number): number;
  /** getsockopt of an int value: the value, or -1 when it failed. */
  getIntOption(fd: Fd, level: number, name: number): number;
  dupCloexec(fd: Fd): Fd;
  close(fd: Fd): number;
  pipe2(fds: Int32Array, flags: number): number;
  fcntl(fd: Fd, command: number, argument: number): number;
  splice(from: Fd, fromOffset: Buffer, to: Fd, toOffset: Buffer, length: number, flags: number): number;
  shutdown(fd: Fd, how: number): number;
  /** SO_LINGER {on, 0}: the next close sends a reset. */
  lingerZero(fd: Fd): number;
  /** An ioctl that reports a count (SIOCOUTQ, FIONREAD): the count, or -1 when it failed. */
  ioctlCount(fd: Fd, request: number): number;
  epollCreate(): Fd;
  /** epoll_ctl with an epoll_event of `events` and 64 bits of data given as two 32-bit halves (`data`, then `tag`). */
  epollCtl(epoll: Fd, op: number, fd: Fd, events: number, data: number, tag: number): number;
  epollWait(epoll: Fd, events: Uint8Array, max: number, timeoutMs: number): number;
  eventfd(flags: number): Fd;
  write(fd: Fd, bytes: Uint8Array, length: number): number;
  read(fd: Fd, bytes: Uint8Array, length: number): number;
  /** errno of the calling thread, read right after a call that failed. */
  errno(): number;
  /** setgroups(2) to exactly these group ids. glibc applies it, setgid and setuid to every thread of the process. */
  setgroups(gids: number[]): number;
  setgid(gid: number): number;
  setuid(uid: number): number;
  /** [real, effective, saved] user ids (getresuid). */
  userIds(): [number, number, number];
  /** [real, effective, saved] group ids (getresgid). */
  groupIds(): [number, number, number];
  /** The supplementary group ids (getgroups). */
  groups(): number[];
}

export type LibcResult = { libc: Libc } | { unavailable: string };

let loaded: LibcResult | undefined;

/** libc's bindings for this thread (each Worker loads its own), or why there are none. */
export async function loadLibc(): Promise<LibcResult> {
  loaded ??= await bind();
  return loaded;
}

async function bind(): Promise<LibcResult> {
  if (process.platform !== "linux") return { unavailable: `oi's own system calls are Linux only (this is ${process.platform})` };
  if (process.arch !== "x64" && process.arch !== "arm64") return { unavailable: `oi's own system calls are not set up for ${process.arch}` };
  try {
    const { dlopen, FFIType: T, read } = await import("bun:ffi");
    const { symbols: c } = dlopen("libc.so.6", {
      fcntl: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
      socket: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
      bind: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
      listen: { args: [T.i32, T.i32], returns: T.i32 },
      accept4: { args: [T.i32, T.ptr, T.ptr, T.i32], returns: T.i32 },
      connect: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
      getsockname: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
      getpeername: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
      sendto: { args: [T.i32, T.ptr, T.u64, T.i32, T.ptr, T.u32], returns: T.i64 },
      clock_gettime: { args: [T.i32, T.ptr], returns: T.i32 },
      getsockopt: { args: [T.i32, T.i32, T.i32, T.ptr, T.ptr], returns: T.i32 },
      close: { args: [T.i32], returns: T.i32 },
      pipe2: { args: [T.ptr, T.i32], returns: T.i32 },
      splice: { args: [T.i32, T.ptr, T.i32, T.ptr, T.u64, T.u32], returns: T.i32 },
      shutdown: { args: [T.i32, T.i32], returns: T.i32 },
      setsockopt: { args: [T.i32, T.i32, T.i32, T.ptr, T.u32], returns: T.i32 },
      ioctl: { args: [T.i32, T.u64, T.ptr], returns: T.i32 },
      epoll_create1: { args: [T.i32], returns: T.i32 },
      epoll_ctl: { args: [T.i32, T.i32, T.i32, T.ptr], returns: T.i32 },
      epoll_wait: { args: [T.i32, T.ptr, T.i32, T.i32], returns: T.i32 },
      eventfd: { args: [T.u32, T.i32], returns: T.i32 },
      write: { args: [T.i32, T.ptr, T.u64], returns: T.i32 },
      read: { args: [T.i32, T.ptr, T.u64], returns: T.i32 },
      __errno_location: { args: [], returns: T.ptr },
      setgroups: { args: [T.u64, T.ptr], returns: T.i32 },
      setgid: { args: [T.u32], returns: T.i32 },
      setuid: { args: [T.u32], returns: T.i32 },
      getresuid: { args: [T.ptr, T.ptr, T.ptr], returns: T.i32 },
      getresgid: { args: [T.ptr, T.ptr, T.ptr], returns: T.i32 },
      getgroups: { args: [T.i32, T.ptr], returns: T.i32 },
    });
    // errno lives at a fixed address per thread: look it up once.
    const errnoAt = c.__errno_location();
    if (errnoAt === null) return { unavailable: "libc gave no errno location" };
    const linger = new Int32Array([1, 0]);
    const count = new Int32Array(1);
    const option = new Int32Array(1);
    const epollEvent = new DataView(new ArrayBuffer(EPOLL_EVENT_SIZE));
    const epollEventBytes = new Uint8Array(epollEvent.buffer);
    const optionLength = new Uint32Array(1);
    const timespec = new BigInt64Array(2);
    return {
      libc: {
        socket: (domain, type, protocol) => c.socket(domain, type, protocol),
        bind: (fd, address, length) => c.bind(fd, address, length),
        listen: (fd, backlog) => c.listen(fd, backlog),
        accept4: (fd, address, length, flags) => c.accept4(fd, address, length, flags),
        connect: (fd, address, length) => c.connect(fd, address, length),
        getsockname: (fd, address, length) => c.getsockname(fd, address, length),
        getpeername: (fd, address, length) => c.getpeername(fd, address, length),
        sendto: (fd, bytes, length, flags, address, addressLength) => Number(c.sendto(fd, bytes, length, flags, address, addressLength)),
        monotonicMicros: () => {
          c.clock_gettime(CLOCK_MONOTONIC, timespec);
          return timespec[0]! * 1_000_000n + timespec[1]! / 1000n;
        },
        setIntOption: (fd, level, name, value) => {
          option[0] = value;
          return c.setsockopt(fd, level, name, option, 4);
        },
        getIntOption: (fd, level, name) => {
          optionLength[0] = 4;
          return c.getsockopt(fd, level, name, option, optionLength) === 0 ? option[0]! : -1;
        },
        dupCloexec: (fd) => c.fcntl(fd, F_DUPFD_CLOEXEC, 0),
        close: (fd) => c.close(fd),
        pipe2: (fds, flags) => c.pipe2(fds, flags),
        fcntl: (fd, command, argument) => c.fcntl(fd, command, argument),
        splice: (from, fromOffset, to, toOffset, length, flags) => c.splice(from, fromOffset, to, toOffset, length, flags),
        shutdown: (fd, how) => c.shutdown(fd, how),
        lingerZero: (fd) => c.setsockopt(fd, SOL_SOCKET, SO_LINGER, linger, linger.byteLength),
        ioctlCount: (fd, request) => (c.ioctl(fd, request, count) === 0 ? count[0]! : -1),
        epollCreate: () => c.epoll_create1(O_CLOEXEC),
        epollCtl: (epoll, op, fd, events, data, tag) => {
          epollEvent.setUint32(0, events >>> 0, true);
          epollEvent.setUint32(EPOLL_DATA_OFFSET, data >>> 0, true);
          epollEvent.setUint32(EPOLL_DATA_OFFSET + 4, tag >>> 0, true);
          return c.epoll_ctl(epoll, op, fd, epollEventBytes);
        },
        epollWait: (epoll, events, max, timeoutMs) => c.epoll_wait(epoll, events, max, timeoutMs),
        eventfd: (flags) => c.eventfd(0, flags),
        write: (fd, bytes, length) => c.write(fd, bytes, length),
        read: (fd, bytes, length) => c.read(fd, bytes, length),
        errno: () => read.i32(errnoAt, 0),
        setgroups: (gids) => c.setgroups(gids.length, Uint32Array.from(gids.length === 0 ? [0] : gids)),
        setgid: (gid) => c.setgid(gid),
        setuid: (uid) => c.setuid(uid),
        userIds: () => {
          const ids = [new Uint32Array(1), new Uint32Array(1), new Uint32Array(1)] as const;
          c.getresuid(ids[0], ids[1], ids[2]);
          return [ids[0][0]!, ids[1][0]!, ids[2][0]!];
        },
        groupIds: () => {
          const ids = [new Uint32Array(1), new Uint32Array(1), new Uint32Array(1)] as const;
          c.getresgid(ids[0], ids[1], ids[2]);
          return [ids[0][0]!, ids[1][0]!, ids[2][0]!];
        },
        groups: () => {
          const count = c.getgroups(0, null);
          if (count <= 0) return [];
          const gids = new Uint32Array(count);
          const got = c.getgroups(count, gids);
          return [...gids.subarray(0, Math.max(got, 0))];
        },
      },
    };
  } catch (error) {
    return { unavailable: `bun:ffi cannot bind libc: ${error instanceof Error ? error.message : String(error)}` };
  }
}
