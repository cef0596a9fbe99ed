/**
 * @module What a listener's sockets go through before they carry a
 * connection: reading a PROXY header (accept-proxy.ts), peeking at the first
 * bytes to choose a rule (peek.ts), a TLS handshake (tls/). While in such a
 * phase, a socket's `data` is a `SocketPhase`, which gets the socket's events;
 * once the phase is over, the socket's data becomes the connection's own (a
 * relay leg, a cross-protocol session), and the connection's handlers get
 * them, so the relay itself never asks about phases.
 */
import type { StreamHandlers, StreamSocket } from "./stream-socket.ts";

/** A socket's state while something happens before its connection starts; it receives the socket's events. */
export abstract class SocketPhase {
  abstract data(socket: StreamSocket<unknown>, chunk: Uint8Array): void;
  /** The socket may take writes again (only a phase that writes cares). */
  drain(_socket: StreamSocket<unknown>): void {}
  /** The client sent its FIN. */
  abstract end(socket: StreamSocket<unknown>): void;
  error(_socket: StreamSocket<unknown>, _error: Error): void {}
  /** The socket closed (refused, reset, or gone): stop timers. */
  abstract close(socket: StreamSocket<unknown>, error?: Error): void;
}

/** Handlers of a connection once it is past its phases (the relay's, or a cross-protocol session's). */
export type ConnectedHandlers<Data> = Omit<StreamHandlers<Data>, "open" | "connectError">;

/**
 * Handlers for every phase of a listener's sockets, choosing by what
 * `socket.data` holds: a SocketPhase while one runs, the connection's own
 * data after.
 *
 * One set must serve all phases because Bun gives every socket a listener
 * accepted that listener's handler set, and `reload` on such a socket
 * replaces the set of the listener and of all its sockets (Bun's socket.zig:
 * a server socket's handlers are its listener's). Switching the first client
 * to the relay's handlers that way left every later client with no `open`
 * and no phase: it was never forwarded.
 */
function phasedHandlers<Data>(connected: ConnectedHandlers<Data>, open: (socket: StreamSocket<unknown>) => void) {
  return {
    binaryType: "uint8array" as const,
    open,
    data(socket: StreamSocket<unknown>, chunk: Uint8Array): void {
      const state = socket.data;
      if (state instanceof SocketPhase) state.data(socket, chunk);
      else connected.data(socket as StreamSocket<Data>, chunk);
    },
    drain(socket: StreamSocket<unknown>): void {
      const state = socket.data;
      if (state instanceof SocketPhase) state.drain(socket);
      else connected.drain(socket as StreamSocket<Data>);
    },
    end(socket: StreamSocket<unknown>): void {
      const state = socket.data;
      if (state instanceof SocketPhase) state.end(socket);
      else connected.end(socket as StreamSocket<Data>);
    },
    error(socket: StreamSocket<unknown>, error: Error): void {
      const state = socket.data;
      if (state instanceof SocketPhase) state.error(socket, error);
      else connected.error(socket as StreamSocket<Data>, error);
    },
    close(socket: StreamSocket<unknown>, error?: Error): void {
      const state = socket.data;
      if (state instanceof SocketPhase) state.close(socket, error);
      else connected.close(socket as StreamSocket<Data>, error);
    },
  };
}

/**
 * The handler set of one listener, and when a reload must change it. While
 * its sockets need no phase, the listener gets `connected` with `open` as
 * is: nothing on the data path asks about phases. Once they may need one,
 * it gets the phased set above, and keeps it even if a reload makes phases
 * unneeded again, since sockets in a phase may still be open on it then.
 * `open` itself decides, per socket, whether a phase starts.
 */
export class ListenerHandlers<Data> {
  private phased = false;
  /** The phased set, made once and shared by every listener of the owner (each with its own `open`). */
  private phasedSet: ReturnType<typeof phasedHandlers<Data>> | undefined;

  constructor(
    private readonly connected: ConnectedHandlers<Data>,
    private readonly open: (socket: StreamSocket<unknown>) => void,
    /** Whether new sockets may need a phase, under the owner's current settings. */
    private readonly needsPhases: () => boolean,
  ) {}

  /** The set to listen with. */
  forStart() {
    this.phased = this.needsPhases();
    return this.current();
  }

  /** After a reload changed the owner's settings: the set to reload the listener with, or undefined when it stays. */
  forUpdate() {
    if (this.phased || !this.needsPhases()) return undefined;
    this.phased = true;
    return this.current();
  }

  /**
   * The current set with another `open`: for an owner with several
   * listeners (the ports of a range), each telling its own port.
   */
  withOpen(open: (socket: StreamSocket<unknown>) => void) {
    return { ...this.current(), open };
  }

  private current() {
    const { connected, open } = this;
    if (this.phased) return (this.phasedSet ??= phasedHandlers(connected, open));
    return { ...connected, binaryType: "uint8array" as const, open };
  }
}
