/**
 * @module Direct stream sockets: TCP listeners, accepted and connected
 * sockets driven by system calls through bun:ffi on the loop of loop.ts,
 * behind the same contract as Bun's sockets (see tcp/stream-socket.ts), so
 * the relay runs on either unchanged. What it saves per connection, against
 * Bun's socket layer: the two getpeername calls (accept4 gives the peer's
 * address), TCP_NODELAY set twice on each connect and once on each accept
 * (set once on the listener, which accepted sockets inherit), a TCP_CORK
 * setsockopt on writable events, and the epoll_ctl calls that switch
 * interest at connect, pause and half-close (one edge-triggered registration
 * covers a socket's whole life).
 *
 * Reads land in the loop's one buffer and are handed on as views of it (see
 * `lendsChunks`): a relay that writes them on at once copies nothing.
 *
 * Edge-triggered reading: after an edge, a socket is read until the kernel
 * has nothing more (EAGAIN), or until a read comes back shorter than the
 * buffer without the peer's FIN in sight (it had nothing more then; later
 * bytes bring a new edge). A paused socket is not read; resuming it reads at
 * the next turn of the loop if an edge came meanwhile. A socket that read
 * READ_BUDGET_BYTES in one turn yields to the others and goes on at the next.
 */
import {
  EAGAIN,
  EINPROGRESS,
  EMFILE,
  ENFILE,
  EPOLLERR,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
  IPPROTO_IPV6,
  IPPROTO_TCP,
  IPV6_V6ONLY,
  O_CLOEXEC,
  O_NONBLOCK,
  SHUT_WR,
  SO_ERROR,
  SO_KEEPALIVE,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SOCK_STREAM,
  SOL_SOCKET,
  TCP_KEEPCNT,
  TCP_KEEPIDLE,
  TCP_KEEPINTVL,
  TCP_NODELAY,
  AF_INET6,
  type Libc,
} from "../libc.ts";
import type { StreamHandlers, StreamListener, StreamSocket } from "../tcp/stream-socket.ts";
import { encodeAddress, encodeAddressCached, hostOf, portOf, SOCKADDR_BYTES } from "./address.ts";
import { type FdLoop, type FdOwner, type FdRetry, LISTEN_EVENTS, STREAM_EVENTS } from "./loop.ts";

const SOCKET_FLAGS = SOCK_STREAM | O_NONBLOCK | O_CLOEXEC;
/** Bytes one socket may read in one turn of the loop before the others get theirs. */
const READ_BUDGET_BYTES = 1024 * 1024;
/** Pending connections the kernel queues per listener unless `listen-backlog` says otherwise (Bun's is fixed at 512; the kernel caps it at net.core.somaxconn). */
export const LISTEN_BACKLOG = 4096;
/** After EMFILE/ENFILE a listener rests this long before accepting again (Bun's spins instead). */
const ACCEPT_REST_MS = 100;
/** Keepalive probes as Bun sends them: one a second, ten before giving up. */
const KEEPALIVE_INTERVAL_S = 1;
const KEEPALIVE_COUNT = 10;

/** errno values worth naming in a socket's error; others are given as numbers. */
const ERRNO_NAMES: Record<number, string> = {
  32: "EPIPE",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  101: "ENETUNREACH",
  104: "ECONNRESET",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  113: "EHOSTUNREACH",
  13: "EACCES",
  24: "EMFILE",
  23: "ENFILE",
};

/** The local address of `fd` (getsockname), or undefined when the call failed. */
function socketName(libc: Libc, fd: number): Uint8Array | undefined {
  const bytes = new Uint8Array(SOCKADDR_BYTES);
  return libc.getsockname(fd, bytes, new Uint32Array([SOCKADDR_BYTES])) === 0 ? bytes : undefined;
}

function errnoError(errno: number): Error {
  const name = ERRNO_NAMES[errno] ?? `errno ${errno}`;
  return Object.assign(new Error(name), { code: name, errno });
}

/** Socket states, as bits. */
const CONNECTING = 1;
const PAUSED = 2;
/** An edge came that was not read to its end (paused, or cut short by the budget). */
const READABLE = 4;
/** The peer's FIN was read. */
const EOF = 8;
/** Our write side is shut (a FIN sent). */
const SHUT = 16;
const CLOSED = 32;
/** The descriptor number was handed out (to be duplicated): closing must take it out of the epoll set. */
const EXPOSED = 64;
/** A read is queued for the next turn of the loop. */
const QUEUED = 128;

export class FdSocket<Data> implements StreamSocket<Data>, FdOwner, FdRetry {
  data!: Data;
  /** Each chunk is a view of the loop's read buffer: no copy, no allocation per read for bytes written on at once. */
  readonly lendsChunks = true;
  private state = 0;
  private remote: Uint8Array | undefined;
  private remoteText: string | undefined;
  private local: Uint8Array | undefined;

  constructor(
    private readonly loop: FdLoop,
    private readonly descriptor: number,
    private handlers: StreamHandlers<Data>,
    remote: Uint8Array | undefined,
    connecting: boolean,
  ) {
    this.remote = remote;
    if (connecting) this.state = CONNECTING;
  }

  /** The descriptor, for a hand-off to the splice worker (which duplicates it). */
  get fd(): number {
    this.state |= EXPOSED;
    return this.descriptor;
  }

  get remoteAddress(): string {
    if (this.remoteText === undefined) this.remoteText = this.remote === undefined ? "" : hostOf(this.remote);
    return this.remoteText;
  }

  get remotePort(): number {
    return this.remote === undefined ? 0 : portOf(this.remote);
  }

  get localAddress(): string {
    return hostOf(this.localName());
  }

  get localPort(): number {
    return portOf(this.localName());
  }

  reload(options: { socket: StreamHandlers<Data> }): void {
    this.handlers = options.socket;
  }

  write(bytes: Uint8Array, offset = 0, length = bytes.length - offset): number {
    if ((this.state & (CLOSED | SHUT)) !== 0) return -1;
    if (length <= 0) return 0;
    const libc = this.loop.libc;
    const written = libc.write(this.descriptor, offset === 0 ? bytes : bytes.subarray(offset, offset + length), length);
    if (written >= 0) return written;
    const errno = libc.errno();
    if (errno !== EAGAIN) this.failLater(errno);
    return 0;
  }

  pause(): void {
    this.state |= PAUSED;
  }

  resume(): void {
    if ((this.state & PAUSED) === 0) return;
    this.state &= ~PAUSED;
    if ((this.state & READABLE) !== 0) this.queueRead();
  }

  shutdown(): void {
    if ((this.state & (CLOSED | SHUT)) !== 0) return;
    this.state |= SHUT;
    this.loop.libc.shutdown(this.descriptor, SHUT_WR);
  }

  /** A full close (FIN), as Bun's end(): the close handler runs before it returns. */
  end(): void {
    this.close(undefined);
  }

  /**
   * Give the descriptor to another owner (Bun's sockets, which have TLS):
   * it leaves this loop's set, open, and this socket is closed without a
   * handler running; what the kernel holds unread stays for the new owner.
   * When `adopt` does not take it (returns false), or the socket is closed
   * already, it is closed here: false.
   */
  handOver(adopt: (fd: number) => boolean): boolean {
    if ((this.state & CLOSED) !== 0) return false;
    this.state |= CLOSED;
    this.loop.remove(this.descriptor, true);
    if (adopt(this.descriptor)) return true;
    this.loop.libc.close(this.descriptor);
    return false;
  }

  /** A reset (SO_LINGER 0, then close). */
  terminate(): void {
    if ((this.state & CLOSED) !== 0) return;
    this.loop.libc.lingerZero(this.descriptor);
    this.close(undefined);
  }

  setKeepAlive(enable: boolean, initialDelayMs: number): boolean {
    const libc = this.loop.libc;
    if (libc.setIntOption(this.descriptor, SOL_SOCKET, SO_KEEPALIVE, enable ? 1 : 0) !== 0) return false;
    if (!enable) return true;
    libc.setIntOption(this.descriptor, IPPROTO_TCP, TCP_KEEPIDLE, Math.max(1, Math.round(initialDelayMs / 1000)));
    libc.setIntOption(this.descriptor, IPPROTO_TCP, TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S);
    libc.setIntOption(this.descriptor, IPPROTO_TCP, TCP_KEEPCNT, KEEPALIVE_COUNT);
    return true;
  }

  ready(events: number): void {
    if ((this.state & CONNECTING) !== 0) {
      if ((events & (EPOLLERR | EPOLLHUP)) !== 0) {
        this.connectFailed();
        return;
      }
      if ((events & EPOLLOUT) === 0) return;
      this.state &= ~CONNECTING;
      this.handlers.open?.(this);
      if ((this.state & CLOSED) !== 0) return;
    } else if ((events & EPOLLERR) !== 0) {
      this.fail(this.loop.libc.getIntOption(this.descriptor, SOL_SOCKET, SO_ERROR));
      return;
    } else if ((events & EPOLLOUT) !== 0) {
      this.handlers.drain(this);
      if ((this.state & CLOSED) !== 0) return;
    }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) !== 0) {
      this.state |= READABLE;
      this.read((events & (EPOLLRDHUP | EPOLLHUP)) !== 0);
    }
  }

  /**
   * Read now what may have come already, without waiting for the loop to
   * report it: for a socket just accepted whose client speaks first (its
   * first bytes are often there by the time it is accepted), this saves a
   * turn of the loop. Nothing there costs one read that finds nothing.
   */
  readPending(): void {
    if ((this.state & (CONNECTING | CLOSED | EOF | PAUSED)) !== 0) return;
    this.state |= READABLE;
    this.read(false);
  }

  /** Connecting failed before the socket was watched: it is closed already, its descriptor gone. */
  closedBeforeOpen(): void {
    this.state |= CLOSED;
  }

  /** A queued read (see queueRead), or a read the budget cut short. */
  again(): void {
    this.state &= ~QUEUED;
    if ((this.state & READABLE) !== 0) this.read(true);
  }

  private read(finInSight: boolean): void {
    const libc = this.loop.libc;
    const buffer = this.loop.readBuffer;
    let budget = READ_BUDGET_BYTES;
    while ((this.state & (PAUSED | CLOSED | EOF)) === 0) {
      const n = libc.read(this.descriptor, buffer, buffer.length);
      if (n > 0) {
        this.handlers.data(this, buffer.subarray(0, n));
        if (n < buffer.length && !finInSight) {
          this.state &= ~READABLE;
          return;
        }
        budget -= n;
        if (budget <= 0) {
          this.queueRead();
          return;
        }
      } else if (n === 0) {
        this.state &= ~READABLE;
        this.state |= EOF;
        // After our own FIN, the peer's ends the connection: Bun reports it as a close, not an end.
        if ((this.state & SHUT) !== 0) this.close(undefined);
        else this.handlers.end(this);
        return;
      } else {
        const errno = libc.errno();
        if (errno === EAGAIN) this.state &= ~READABLE;
        else this.fail(errno);
        return;
      }
    }
  }

  private queueRead(): void {
    if ((this.state & (QUEUED | CLOSED)) !== 0) return;
    this.state |= QUEUED;
    this.loop.later(this);
  }

  /** A write failed with a reset or the like: end the socket at the next turn, not inside the writer's call. */
  private failLater(errno: number): void {
    this.loop.later({ again: () => this.fail(errno) });
  }

  private fail(errno: number): void {
    if ((this.state & CLOSED) !== 0) return;
    const error = errnoError(errno);
    this.handlers.error(this, error);
    this.close(error);
  }

  private connectFailed(): void {
    const error = errnoError(this.loop.libc.getIntOption(this.descriptor, SOL_SOCKET, SO_ERROR));
    this.release();
    this.handlers.connectError?.(this, error);
  }

  private close(error: Error | undefined): void {
    if ((this.state & CLOSED) !== 0) return;
    this.release();
    this.handlers.close(this, error);
  }

  /** Close the descriptor (a FIN, or a reset after terminate) and forget it. */
  private release(): void {
    this.state |= CLOSED;
    this.loop.remove(this.descriptor, (this.state & EXPOSED) !== 0);
    this.loop.libc.close(this.descriptor);
  }

  private localName(): Uint8Array {
    if (this.local !== undefined) return this.local;
    const name = socketName(this.loop.libc, this.descriptor);
    if (name === undefined) return new Uint8Array(SOCKADDR_BYTES);
    this.local = name;
    return name;
  }
}

export interface FdListenOptions {
  host: string;
  port: number;
  ipv6Only: boolean;
  reusePort: boolean;
  backlog: number;
}

export class FdListener implements StreamListener, FdOwner {
  private stopped = false;
  private resting: Timer | undefined;
  private readonly peer = new Uint8Array(SOCKADDR_BYTES);
  private readonly peerLength = new Uint32Array(1);

  private constructor(
    private readonly loop: FdLoop,
    private readonly descriptor: number,
    private handlers: StreamHandlers<unknown>,
  ) {}

  /** Listen on `options` (an IP literal host); throws an Error saying why it cannot, as Bun.listen does. */
  static open(loop: FdLoop, options: FdListenOptions, handlers: StreamHandlers<unknown>): FdListener {
    const { libc } = loop;
    const address = encodeAddress(options.host, options.port);
    if (address === undefined) throw new Error(`not an IP address: ${options.host}`);
    const fd = libc.socket(address.family, SOCKET_FLAGS, 0);
    if (fd < 0) throw errnoError(libc.errno());
    const fail = (): never => {
      const error = errnoError(libc.errno());
      libc.close(fd);
      throw error;
    };
    libc.setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (options.reusePort) libc.setIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (address.family === AF_INET6) libc.setIntOption(fd, IPPROTO_IPV6, IPV6_V6ONLY, options.ipv6Only ? 1 : 0);
    // Accepted sockets inherit it: one call here instead of one per connection.
    libc.setIntOption(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (libc.bind(fd, address.bytes, address.bytes.length) !== 0) fail();
    if (libc.listen(fd, options.backlog) !== 0) fail();
    const listener = new FdListener(loop, fd, handlers);
    if (!loop.add(fd, listener, LISTEN_EVENTS)) fail();
    return listener;
  }

  /** Serve on `fd`, a listening socket made elsewhere (inherited: see systemd/inherited.ts); throws when the loop cannot watch it. */
  static adopt(loop: FdLoop, fd: number, handlers: StreamHandlers<unknown>): FdListener {
    // As open() does: accepted sockets inherit it (systemd's sockets, and Bun's, do not have it on the listener).
    loop.libc.setIntOption(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    const listener = new FdListener(loop, fd, handlers);
    if (!loop.add(fd, listener, LISTEN_EVENTS)) throw errnoError(loop.libc.errno());
    return listener;
  }

  get fd(): number {
    return this.descriptor;
  }

  /** The port bound (useful after listening on port 0). */
  get port(): number {
    return portOf(socketName(this.loop.libc, this.descriptor) ?? new Uint8Array(SOCKADDR_BYTES));
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.resting !== undefined) clearTimeout(this.resting);
    else this.loop.remove(this.descriptor, false);
    this.loop.libc.close(this.descriptor);
  }

  reload(options: { socket: object }): void {
    this.handlers = options.socket as StreamHandlers<unknown>;
  }

  ready(): void {
    const { libc } = this.loop;
    while (!this.stopped) {
      this.peerLength[0] = SOCKADDR_BYTES;
      const fd = libc.accept4(this.descriptor, this.peer, this.peerLength, O_NONBLOCK | O_CLOEXEC);
      if (fd < 0) {
        const errno = libc.errno();
        if (errno === EMFILE || errno === ENFILE) this.rest();
        return;
      }
      const socket = new FdSocket<unknown>(this.loop, fd, this.handlers, this.peer.slice(0, this.peerLength[0]), false);
      if (!this.loop.add(fd, socket, STREAM_EVENTS)) {
        libc.close(fd);
        continue;
      }
      this.handlers.open?.(socket);
    }
  }

  /** Out of descriptors: stop watching the listener for a while (it would be ready again at once). */
  private rest(): void {
    this.loop.remove(this.descriptor, true);
    this.resting = setTimeout(() => {
      this.resting = undefined;
      if (!this.stopped && !this.loop.add(this.descriptor, this, LISTEN_EVENTS)) this.stop();
    }, ACCEPT_REST_MS);
  }
}

/**
 * Connect to `host` (an IP literal) and `port`, from `localAddress` when
 * given; the socket carries `data`, and `handlers.open` or
 * `handlers.connectError` tells how it went. Undefined when `host` is no IP
 * literal (the caller uses Bun's sockets then).
 */
export function fdConnect<Data>(
  loop: FdLoop,
  host: string,
  port: number,
  localAddress: string | undefined,
  data: Data,
  handlers: StreamHandlers<Data>,
): FdSocket<Data> | undefined {
  const address = encodeAddressCached(host, port);
  if (address === undefined) return undefined;
  const source = localAddress === undefined ? undefined : encodeAddressCached(localAddress, 0);
  if (localAddress !== undefined && (source === undefined || source.family !== address.family)) return undefined;
  const { libc } = loop;
  const fd = libc.socket(address.family, SOCKET_FLAGS, 0);
  if (fd < 0) return undefined;
  libc.setIntOption(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  const socket = new FdSocket<Data>(loop, fd, handlers, address.bytes, true);
  socket.data = data;
  let failure = 0;
  if (source !== undefined && libc.bind(fd, source.bytes, source.bytes.length) !== 0) failure = libc.errno();
  else if (libc.connect(fd, address.bytes, address.bytes.length) !== 0 && libc.errno() !== EINPROGRESS) failure = libc.errno();
  if (failure === 0 && loop.add(fd, socket, STREAM_EVENTS)) return socket;
  // Refused at once (or not watchable): told through connectError at the next turn, as Bun does.
  libc.close(fd);
  socket.closedBeforeOpen();
  const error = errnoError(failure);
  loop.later({ again: () => handlers.connectError?.(socket, error) });
  return socket;
}

