/**
 * @module A minimal TCP forwarder in Bun that bypasses Bun's socket layer:
 * accept4, connect, read and write through bun:ffi on an edge-triggered epoll
 * set of its own, on the main thread. Bun's own epoll descriptor is nested in
 * that set, and the loop yields to Bun after every wake, so Bun's timers,
 * signals and sockets still run. No limits, no logs, no options: it measures
 * how cheap a connection can be for a Bun process at all (bench/conn-floor.ts),
 * not a design for oi.
 *
 *   bun bench/agents/ffi-forwarder.ts LISTEN_PORT BACKEND_PORT   (127.0.0.1 both)
 */
import { dlopen, FFIType as T, read as readPointer } from "bun:ffi";
import { readdirSync, readlinkSync } from "node:fs";

const [listenPort, backendPort] = process.argv.slice(2).map(Number) as [number, number];
const { symbols: c } = dlopen("libc.so.6", {
  socket: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
  bind: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
  listen: { args: [T.i32, T.i32], returns: T.i32 },
  accept4: { args: [T.i32, T.ptr, T.ptr, T.i32], returns: T.i32 },
  connect: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
  setsockopt: { args: [T.i32, T.i32, T.i32, T.ptr, T.u32], returns: T.i32 },
  epoll_create1: { args: [T.i32], returns: T.i32 },
  epoll_ctl: { args: [T.i32, T.i32, T.i32, T.ptr], returns: T.i32 },
  epoll_wait: { args: [T.i32, T.ptr, T.i32, T.i32], returns: T.i32 },
  read: { args: [T.i32, T.ptr, T.u64], returns: T.i32 },
  write: { args: [T.i32, T.ptr, T.u64], returns: T.i32 },
  shutdown: { args: [T.i32, T.i32], returns: T.i32 },
  close: { args: [T.i32], returns: T.i32 },
  __errno_location: { args: [], returns: T.ptr },
});
const errnoAt = c.__errno_location()!;
const errno = (): number => readPointer.i32(errnoAt, 0);

const AF_INET = 2;
const SOCK_STREAM = 1;
const NONBLOCK_CLOEXEC = 0o4000 | 0o2000000;
const EPOLLIN = 0x1;
const EPOLLOUT = 0x4;
const EPOLLERR = 0x8;
const EPOLLHUP = 0x10;
const EPOLLRDHUP = 0x2000;
const EPOLLET = 0x80000000;
const EAGAIN = 11;
const EINPROGRESS = 115;
/** Per descriptor: connecting, read its FIN, we shut its write side, its reads wait for the peer to drain. */
const CONNECTING = 1;
const EOF = 2;
const SHUT = 4;
const WAITING = 8;
const BUN_LOOP = 0xfffffff0;
const MAX_FDS = 1 << 16;

function loopback(port: number): Uint8Array {
  const address = new Uint8Array(16);
  const view = new DataView(address.buffer);
  view.setUint16(0, AF_INET, true);
  view.setUint16(2, port, false);
  address.set([127, 0, 0, 1], 4);
  return address;
}

const one = new Int32Array([1]);
const listener = c.socket(AF_INET, SOCK_STREAM | NONBLOCK_CLOEXEC, 0);
c.setsockopt(listener, 1, 2, one, 4); // SO_REUSEADDR
if (c.bind(listener, loopback(listenPort), 16) !== 0) throw new Error(`bind: errno ${errno()}`);
c.listen(listener, 4096);
const backend = loopback(backendPort);

const epoll = c.epoll_create1(0o2000000);
const registration = new Uint8Array(12);
const registrationView = new DataView(registration.buffer);
function watch(fd: number, events: number, data = fd): void {
  registrationView.setUint32(0, events >>> 0, true);
  registrationView.setUint32(4, data, true);
  registrationView.setUint32(8, 0, true);
  c.epoll_ctl(epoll, 1, fd, registration);
}
watch(listener, EPOLLIN);
// Bun's loop: the one eventpoll descriptor open before ours.
const bunLoop = readdirSync("/proc/self/fd").map(Number).find((fd) => fd !== epoll && readlinkSync(`/proc/self/fd/${fd}`) === "anon_inode:[eventpoll]");
if (bunLoop !== undefined) watch(bunLoop, EPOLLIN, BUN_LOOP);

const peer = new Int32Array(MAX_FDS).fill(-1);
const state = new Uint8Array(MAX_FDS);
const pending: Array<Uint8Array | undefined> = new Array(MAX_FDS);
const buffer = new Uint8Array(64 * 1024);
const events = new Uint8Array(256 * 12);
const eventView = new DataView(events.buffer);

function forget(fd: number): void {
  c.close(fd);
  peer[fd] = -1;
  state[fd] = 0;
  pending[fd] = undefined;
}

function closePair(fd: number): void {
  const other = peer[fd]!;
  forget(fd);
  if (other >= 0) forget(other);
}

/** `src` sent its FIN: pass it on, or close both when `dst` had sent its own already. */
function passEof(src: number, dst: number): void {
  if (state[dst]! & EOF) {
    closePair(src);
    return;
  }
  state[dst]! |= SHUT;
  c.shutdown(dst, 1);
}

/** Move what `src` has to its peer; `hup`: its FIN may be waiting behind the data. */
function pump(src: number, hup: boolean): void {
  const dst = peer[src]!;
  if (state[dst]! & CONNECTING || pending[src] !== undefined) {
    state[src]! |= WAITING;
    return;
  }
  for (;;) {
    const n = c.read(src, buffer, buffer.length);
    if (n > 0) {
      const written = c.write(dst, buffer, n);
      if (written < n) {
        pending[src] = buffer.slice(Math.max(written, 0), n);
        state[src]! |= WAITING;
        return;
      }
      // A short read drained the socket: with edge triggering, new data brings a new event.
      if (n < buffer.length && !hup) return;
    } else if (n === 0) {
      state[src]! |= EOF;
      passEof(src, dst);
      return;
    } else {
      if (errno() !== EAGAIN) closePair(src);
      return;
    }
  }
}

/** `dst` can take bytes: write what its peer holds, then let the peer read again. */
function drain(dst: number): void {
  const src = peer[dst]!;
  const held = pending[src];
  if (held !== undefined) {
    const written = c.write(dst, held, held.length);
    if (written < held.length) {
      pending[src] = held.slice(Math.max(written, 0));
      return;
    }
    pending[src] = undefined;
  }
  if (!(state[src]! & WAITING)) return;
  state[src]! &= ~WAITING;
  if (state[src]! & EOF) passEof(src, dst);
  else pump(src, true);
}

function acceptAll(): void {
  for (;;) {
    const client = c.accept4(listener, null, null, NONBLOCK_CLOEXEC);
    if (client < 0) return;
    const upstream = c.socket(AF_INET, SOCK_STREAM | NONBLOCK_CLOEXEC, 0);
    if (c.connect(upstream, backend, 16) !== 0 && errno() !== EINPROGRESS) {
      c.close(upstream);
      c.close(client);
      continue;
    }
    peer[client] = upstream;
    peer[upstream] = client;
    state[upstream] = CONNECTING;
    watch(client, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    watch(upstream, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
  }
}

const yieldToBun = (): Promise<void> => new Promise((resume) => setImmediate(resume));

for (;;) {
  // At most 20 ms: Bun's timers are not in the nested set.
  const n = c.epoll_wait(epoll, events, 256, 20);
  for (let i = 0; i < n; i++) {
    const flags = eventView.getUint32(i * 12, true);
    const fd = eventView.getUint32(i * 12 + 4, true);
    if (fd === BUN_LOOP) continue;
    if (fd === listener) {
      acceptAll();
      continue;
    }
    if (peer[fd] === -1) continue;
    if (flags & EPOLLERR) {
      closePair(fd);
      continue;
    }
    if (flags & EPOLLOUT) {
      state[fd]! &= ~CONNECTING;
      drain(fd);
      if (peer[fd] === -1) continue;
    }
    if (flags & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) pump(fd, (flags & (EPOLLRDHUP | EPOLLHUP)) !== 0);
  }
  await yieldToBun();
}
