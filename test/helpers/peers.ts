/**
 * Real TCP peers for end-to-end tests: clients and backends built on
 * Bun.listen/Bun.connect that hash what they receive and send with proper
 * drain handling (Bun's write() drops what the kernel did not take).
 */
import type { Socket } from "bun";

export function sha256(data: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

export function randomBytes(length: number): Uint8Array {
  const data = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += 65536) {
    crypto.getRandomValues(data.subarray(offset, Math.min(length, offset + 65536)));
  }
  return data;
}

/** A port free on `host` right now (bind to 0, read the port, release it). */
export function freePort(host = "127.0.0.1"): number {
  const probe = Bun.listen({ hostname: host, port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** One end of a TCP connection, as a test sees it. */
export class Peer {
  socket: Socket<Peer> | undefined;
  received = 0;
  private hasher = new Bun.CryptoHasher("sha256");
  /** Set to keep every received chunk (for small payloads whose content matters). */
  keep: Uint8Array[] | undefined;
  sawEnd = false;
  closeError: Error | undefined;
  closed = false;
  private outgoing: Uint8Array | undefined;
  private outgoingOffset = 0;
  private shutdownAfter = false;
  private sendDone: (() => void) | undefined;
  private closeWaiters: Array<() => void> = [];
  private endWaiters: Array<() => void> = [];
  /** Called for every chunk received, after it is counted. */
  onData: ((peer: Peer, chunk: Uint8Array) => void) | undefined;
  onEnd: ((peer: Peer) => void) | undefined;

  attach(socket: Socket<Peer>): void {
    this.socket = socket;
    socket.data = this;
  }

  digest(): string {
    return this.hasher.digest("hex");
  }

  text(): string {
    return Buffer.concat(this.keep ?? []).toString();
  }

  /** Write all of `data` (waiting for drain as needed); optionally half-close after. Resolves early when the connection closes first (see `sent`). */
  send(data: Uint8Array | string, shutdownAfter = false): Promise<void> {
    this.outgoing = typeof data === "string" ? new TextEncoder().encode(data) : data;
    this.outgoingOffset = 0;
    this.shutdownAfter = shutdownAfter;
    const done = new Promise<void>((resolve) => {
      this.sendDone = resolve;
    });
    this.pump();
    return done;
  }

  get sent(): number {
    return this.outgoingOffset;
  }

  pump(): void {
    const data = this.outgoing;
    const socket = this.socket;
    if (data === undefined || socket === undefined) return;
    while (this.outgoingOffset < data.length) {
      const length = Math.min(data.length - this.outgoingOffset, 1 << 20);
      const written = socket.write(data, this.outgoingOffset, length);
      if (written <= 0) return;
      this.outgoingOffset += written;
    }
    this.outgoing = undefined;
    if (this.shutdownAfter) socket.shutdown();
    this.sendDone?.();
    this.sendDone = undefined;
  }

  gotData(chunk: Uint8Array): void {
    this.received += chunk.length;
    this.hasher.update(chunk);
    this.keep?.push(chunk);
    this.onData?.(this, chunk);
  }

  gotEnd(): void {
    this.sawEnd = true;
    for (const wake of this.endWaiters.splice(0)) wake();
    this.onEnd?.(this);
  }

  gotClose(error: Error | undefined): void {
    this.closed = true;
    this.closeError = error;
    // No drain will come: a send still under way is over, with `sent` saying how far it got.
    this.outgoing = undefined;
    this.sendDone?.();
    for (const wake of this.closeWaiters.splice(0)) wake();
    // A close also ends whatever wait for the end was in progress.
    for (const wake of this.endWaiters.splice(0)) wake();
  }

  /** Resolves when the connection is closed (by either side), or rejects after `timeoutMs`. */
  waitClosed(timeoutMs = 20000): Promise<void> {
    if (this.closed) return Promise.resolve();
    return withTimeout(new Promise<void>((wake) => this.closeWaiters.push(wake)), timeoutMs, "close");
  }

  /** Resolves on the remote's FIN (or on close). */
  waitEnd(timeoutMs = 20000): Promise<void> {
    if (this.sawEnd || this.closed) return Promise.resolve();
    return withTimeout(new Promise<void>((wake) => this.endWaiters.push(wake)), timeoutMs, "end");
  }
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Bun socket handlers that feed a Peer (the socket's data). */
export const peerHandlers = {
  binaryType: "uint8array" as const,
  data(socket: Socket<Peer>, chunk: Uint8Array) {
    socket.data.gotData(chunk);
  },
  drain(socket: Socket<Peer>) {
    socket.data.pump();
  },
  end(socket: Socket<Peer>) {
    socket.data.gotEnd();
  },
  close(socket: Socket<Peer>, error?: Error) {
    socket.data.gotClose(error);
  },
  error(socket: Socket<Peer>, error: Error) {
    socket.data.closeError = error;
  },
};

export interface Backend {
  port: number;
  connections: Peer[];
  /** Resolves with the next connection (or the n-th, counting from 1). */
  nextConnection(timeoutMs?: number): Promise<Peer>;
  stop(): void;
}

/** A listening backend; `onConnection` decides what each connection does. */
export function startBackend(
  onConnection: (peer: Peer) => void = () => {},
  host = "127.0.0.1",
  port = 0,
): Backend {
  return listenBackend({ hostname: host, port }, onConnection);
}

/** A backend listening on a unix socket at `path`, serving each connection as `startBackend` does (its `port` is 0). */
export function startUnixBackend(path: string, onConnection: (peer: Peer) => void = () => {}): Backend {
  return listenBackend({ unix: path }, onConnection);
}

/** A backend's connections in order of arrival, and the waits for the next one. */
export class Arrivals {
  readonly connections: Peer[] = [];
  private readonly waiters: Array<(peer: Peer) => void> = [];
  private handedOut = 0;

  constructor(private readonly onConnection: (peer: Peer) => void) {}

  /** A connection is here (served by `onConnection`, then handed to a waiting `next`). */
  arrived(peer: Peer): void {
    this.connections.push(peer);
    this.onConnection(peer);
    const waiter = this.waiters.shift();
    if (waiter) {
      this.handedOut++;
      waiter(peer);
    }
  }

  /** Resolves with the next connection not handed out yet. */
  next(timeoutMs: number): Promise<Peer> {
    if (this.handedOut < this.connections.length) return Promise.resolve(this.connections[this.handedOut++]!);
    return withTimeout(new Promise<Peer>((wake) => this.waiters.push(wake)), timeoutMs, "a backend connection");
  }
}

function listenBackend(where: { hostname: string; port: number } | { unix: string }, onConnection: (peer: Peer) => void): Backend {
  const arrivals = new Arrivals(onConnection);
  const socket = {
    ...peerHandlers,
    open(socket: Socket<Peer>) {
      const peer = new Peer();
      peer.attach(socket);
      arrivals.arrived(peer);
    },
  };
  // Half-open allowed on both kinds, so a backend can answer after the client's FIN.
  const listener =
    "unix" in where
      ? Bun.listen<Peer>({ unix: where.unix, allowHalfOpen: true, socket })
      : Bun.listen<Peer>({ hostname: where.hostname, port: where.port, allowHalfOpen: true, socket });
  return {
    port: "port" in listener ? listener.port : 0,
    connections: arrivals.connections,
    nextConnection: (timeoutMs = 10000) => arrivals.next(timeoutMs),
    stop() {
      listener.stop(true);
    },
  };
}

/** Connect a client peer; rejects if the connection is refused. */
export async function connectPeer(host: string, port: number, localAddress?: string): Promise<Peer> {
  const peer = new Peer();
  const options = {
    hostname: host,
    port,
    allowHalfOpen: true,
    data: peer,
    socket: {
      ...peerHandlers,
      open(socket: Socket<Peer>) {
        peer.attach(socket);
      },
    },
    ...(localAddress === undefined ? {} : { localAddress }),
  };
  await Bun.connect<Peer>(options);
  return peer;
}

/** Connect to a unix socket as a client peer (half-open allowed, as for TCP). */
export async function connectUnix(path: string): Promise<Peer> {
  const peer = new Peer();
  await Bun.connect<Peer>({
    unix: path,
    allowHalfOpen: true,
    data: peer,
    socket: {
      ...peerHandlers,
      open(socket: Socket<Peer>) {
        peer.attach(socket);
      },
    },
  });
  return peer;
}

/**
 * Keep connecting to 127.0.0.1:`port` (every 2 ms) until `stop`, which
 * resolves with how many of those connections were refused: a port that must
 * stay open through a reload.
 */
export function watchRefusals(port: number): { stop(): Promise<number> } {
  let refused = 0;
  let watching = true;
  const loop = (async () => {
    while (watching) {
      if (await connectionRefused(port)) refused++;
      await Bun.sleep(2);
    }
  })();
  return {
    async stop() {
      watching = false;
      await loop;
      return refused;
    },
  };
}

/**
 * Connect to a port where oi is expected to close the connection at once
 * (denied client, limit, refused backend). oi resets such a connection, and
 * the reset can arrive before Bun reports the handshake done, in which case
 * the connect itself fails: both count as "closed". Resolves once it is over,
 * with the bytes received (always expected to be 0).
 */
export async function connectExpectingClose(host: string, port: number, localAddress?: string, timeoutMs = 5000): Promise<number> {
  let peer: Peer;
  try {
    peer = await connectPeer(host, port, localAddress);
  } catch {
    return 0;
  }
  await peer.waitClosed(timeoutMs);
  return peer.received;
}

/** Whether nothing listens on a loopback port now (a connect is refused). */
export async function connectionRefused(port: number): Promise<boolean> {
  try {
    const peer = await connectPeer("127.0.0.1", port);
    peer.socket?.terminate();
    return false;
  } catch {
    return true;
  }
}
