/**
 * @module A TLS connection as a relay leg: a thin wrapper around one of
 * Bun's own TLS sockets (a client from Bun.connect, or a server made by
 * upgradeTLS), presenting the `StreamSocket` contract of stream-socket.ts so
 * the relay moves plaintext and learns nothing about TLS. Termination
 * (server-leg.ts) and origination (client-leg.ts) make these.
 *
 * Bun's TLS socket keeps most of the contract already (Bun 1.4.5, by
 * experiment): `write` returns what it took and sends nothing more, a short
 * write is followed by `drain`, `shutdown()` sends close_notify and a FIN and
 * keeps reading, `terminate()` resets with the close handler inside,
 * `pause()`/`resume()` stop and start reading, each chunk is a fresh copy.
 * What the wrapper changes:
 * - the handshake is the wrapper's business: the handlers hear `open` (a
 *   client) only once it succeeded, and a failed one as `connectError` (a
 *   client) or `error` then `close` with the error (a server);
 * - `end()` closes at once (close handler inside it) only when the peer has
 *   ended its side already; otherwise Bun sends close_notify and waits for
 *   the peer. The wrapper runs the close handler at once in every case and
 *   lets the socket finish by itself, resetting it after TLS_END_LINGER_MS;
 * - no `fd`: the relay never hands a TLS leg to the splice worker, which
 *   would move ciphertext as if it were plaintext.
 */
import type { StreamHandlers, StreamSocket } from "../tcp/stream-socket.ts";

/** After `end()`, how long a TLS leg may wait for its peer to close before it is reset. */
export const TLS_END_LINGER_MS = 10_000;

export type BunTlsSocket = Bun.Socket<TlsLeg<unknown>>;

// Leg states, as bits.
/** The handshake is over, one way or the other. */
const SETTLED = 1;
/** The handlers heard `close` (or `connectError`): they hear nothing more. */
const CLOSED = 2;
/** Given up before the handshake ended: the socket is reset when it turns up, nothing is reported. */
const ABANDONED = 4;
/** Bun closed the socket (its close handler ran). */
const SOCKET_CLOSED = 8;
/** The handshake succeeded. */
const SECURE = 16;

export class TlsLeg<Data> implements StreamSocket<Data> {
  /** The name the client asked for (SNI) on a server leg; the name sent on a client leg. */
  servername: string | undefined = undefined;
  /** The protocol agreed by ALPN; undefined when none was. */
  alpnProtocol: string | undefined = undefined;
  /** The TLS version agreed, as "TLSv1.3". */
  protocol: string | undefined = undefined;
  /** A client leg without verification: why the backend's certificate would have failed it (for logs). */
  authorizationError: Error | undefined = undefined;
  /** Called once the handshake succeeded (a server leg; a client leg has `open`). */
  onSecure: ((leg: TlsLeg<Data>) => void) | undefined = undefined;
  socket: BunTlsSocket | undefined = undefined;
  /**
   * Set while the leg is being made: Bun can fail a handshake inside
   * upgradeTLS (a ClientHello that is not one), and the owner must have the
   * leg in hand before it hears of it, so reports wait for a microtask.
   */
  starting = false;
  private state = 0;
  private lingerTimer: Timer | undefined = undefined;

  constructor(
    public data: Data,
    private handlers: StreamHandlers<Data>,
    /** Server legs terminate TLS from a client; client legs originate it to a backend. */
    readonly role: "server" | "client",
    /** A client leg refuses a backend whose certificate does not verify. */
    private readonly verify: boolean,
  ) {}

  /** Given up on before its handshake ended (see terminate). */
  get abandoned(): boolean {
    return (this.state & ABANDONED) !== 0;
  }

  /** The handshake succeeded: plaintext flows both ways. */
  get secure(): boolean {
    return (this.state & SECURE) !== 0;
  }

  get remoteAddress(): string {
    return this.socket?.remoteAddress ?? "";
  }

  get remotePort(): number {
    return this.socket?.remotePort ?? 0;
  }

  get localAddress(): string {
    return (this.socket as { localAddress?: string } | undefined)?.localAddress ?? "";
  }

  get localPort(): number {
    return this.socket?.localPort ?? 0;
  }

  write(bytes: Uint8Array, offset?: number, length?: number): number {
    if ((this.state & CLOSED) !== 0) return -1;
    // Before a server's handshake ends nothing is taken (0); drain follows the handshake.
    return this.socket === undefined ? 0 : this.socket.write(bytes, offset, length);
  }

  pause(): void {
    this.socket?.pause();
  }

  resume(): void {
    this.socket?.resume();
  }

  shutdown(): void {
    if ((this.state & CLOSED) === 0) this.socket?.shutdown();
  }

  /** A full close: the close handler runs before it returns; the socket finishes its close_notify by itself. */
  end(): void {
    if ((this.state & CLOSED) !== 0) return;
    this.state |= CLOSED;
    const socket = this.socket;
    if (socket !== undefined && (this.state & SOCKET_CLOSED) === 0) {
      socket.end();
      // Still open: the peer has not ended its side; it gets a while to, then a reset.
      if ((this.state & SOCKET_CLOSED) === 0) {
        this.lingerTimer = setTimeout(() => socket.terminate(), TLS_END_LINGER_MS);
        this.lingerTimer.unref();
      }
    }
    this.handlers.close(this, undefined);
  }

  /** A reset; the close handler runs before it returns. */
  terminate(): void {
    const socket = this.socket;
    if ((this.state & SETTLED) === 0) {
      // Still connecting or shaking hands: given up on. A socket that turns up later is reset, its events unheard.
      this.state |= ABANDONED | SETTLED;
      socket?.terminate();
      this.reportClose(undefined);
      return;
    }
    if ((this.state & CLOSED) !== 0) {
      // Ended already: only the socket's own close is left to cut short.
      if ((this.state & SOCKET_CLOSED) === 0) socket?.terminate();
      return;
    }
    // Bun's terminate() runs the close handler inside it, which reports the close.
    if (socket !== undefined && (this.state & SOCKET_CLOSED) === 0) socket.terminate();
    else this.reportClose(undefined);
  }

  setKeepAlive(enable: boolean, initialDelayMs: number): boolean {
    return this.socket?.setKeepAlive(enable, initialDelayMs) ?? false;
  }

  reload(options: { socket: StreamHandlers<Data> }): void {
    this.handlers = options.socket;
  }

  /** Never started (TLS could not begin): the leg is closed without a report. */
  discard(): void {
    this.state |= ABANDONED | SETTLED | CLOSED;
  }

  /** The Bun socket behind the leg is here (TCP connected, or upgraded). */
  attach(socket: BunTlsSocket): void {
    this.socket = socket;
    if ((this.state & ABANDONED) !== 0) socket.terminate();
  }

  /** The handshake ended, as Bun reports it. */
  handshake(socket: BunTlsSocket, success: boolean, error: Error | null): void {
    if ((this.state & SETTLED) !== 0) return;
    this.socket = socket;
    // Without verification, a handshake that reached the backend's certificate is a success, whatever Bun says
    // (with rejectUnauthorized off, a name mismatch still reports false but leaves the connection open).
    const usable = success || (this.role === "client" && !this.verify && hasSubject(socket.getPeerCertificate()));
    if (!usable) {
      this.handshakeFailed(error ?? new Error("TLS handshake failed"));
      return;
    }
    this.state |= SETTLED | SECURE;
    if (this.role === "client") {
      if (error !== null) this.authorizationError = error;
    } else {
      const name = socket.getServername();
      this.servername = typeof name === "string" && name !== "" ? name : undefined;
    }
    const alpn = socket.alpnProtocol;
    this.alpnProtocol = typeof alpn === "string" && alpn !== "" ? alpn : undefined;
    this.protocol = socket.getTLSVersion() ?? undefined;
    // Closed by its owner while it shook hands (end()): the socket finishes by itself; nothing to tell.
    if ((this.state & CLOSED) !== 0) return;
    if (this.role === "client") {
      this.handlers.open?.(this);
      return;
    }
    this.onSecure?.(this);
    // Writes that found no room during the handshake can go now (Bun says so too; a spare drain is harmless).
    this.drained();
  }

  /** TCP could not connect (a client leg). */
  connectFailed(error: Error): void {
    if ((this.state & SETTLED) !== 0) return;
    this.state |= SETTLED | CLOSED | SOCKET_CLOSED;
    this.handlers.connectError?.(this, error);
  }

  dataIn(chunk: Uint8Array): void {
    if ((this.state & CLOSED) === 0) this.handlers.data(this, chunk);
  }

  drained(): void {
    if ((this.state & CLOSED) === 0) this.handlers.drain(this);
  }

  ended(): void {
    if ((this.state & CLOSED) === 0) this.handlers.end(this);
  }

  errored(error: Error): void {
    if ((this.state & (SETTLED | CLOSED)) === SETTLED) this.handlers.error(this, error);
  }

  /** Bun closed the socket. */
  closed(error: Error | undefined): void {
    this.state |= SOCKET_CLOSED;
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if ((this.state & SETTLED) === 0) {
      // Closed during the handshake: a reset, or the peer hung up.
      this.handshakeFailed(error ?? new Error("connection closed during the TLS handshake"));
      return;
    }
    this.reportClose(error);
  }

  private reportClose(error: Error | undefined): void {
    if (this.starting) {
      queueMicrotask(() => this.reportClose(error));
      return;
    }
    if ((this.state & CLOSED) !== 0) return;
    this.state |= CLOSED;
    this.handlers.close(this, error);
  }

  /** A client leg: connectError (the forwarder tries its next backend). A server leg: error, then close with it. */
  private handshakeFailed(error: Error): void {
    // Given up on, or closed by its owner (end()) while shaking hands: nobody is listening.
    const unheard = (this.state & (ABANDONED | CLOSED)) !== 0;
    this.state |= SETTLED | CLOSED;
    // A reset: the close that follows (inside terminate) finds the leg settled and closed, and says nothing.
    if ((this.state & SOCKET_CLOSED) === 0) this.socket?.terminate();
    if (unheard) return;
    if (this.starting) queueMicrotask(() => this.reportFailure(error));
    else this.reportFailure(error);
  }

  private reportFailure(error: Error): void {
    if (this.role === "client") {
      this.handlers.connectError?.(this, error);
    } else {
      this.handlers.error(this, error);
      this.handlers.close(this, error);
    }
  }
}

/** A certificate as getPeerCertificate() gives it: without a subject (an empty object, or nothing) when none came. */
function hasSubject(certificate: unknown): boolean {
  return (certificate as { subject?: unknown } | null | undefined)?.subject !== undefined;
}

/** Bun's handlers for every TLS leg's socket: each passes the event to the leg. */
export const tlsLegSocketHandlers: Bun.SocketHandler<TlsLeg<unknown>> = {
  binaryType: "uint8array",
  open(socket) {
    socket.data.attach(socket);
  },
  handshake(socket, success, error) {
    socket.data.handshake(socket, success, error);
  },
  connectError(socket, error) {
    socket.data.connectFailed(error);
  },
  data(socket, chunk) {
    socket.data.dataIn(chunk);
  },
  drain(socket) {
    socket.data.drained();
  },
  end(socket) {
    socket.data.ended();
  },
  error(socket, error) {
    socket.data.errored(error);
  },
  close(socket, error) {
    socket.data.closed(error);
  },
};
