/**
 * @module `[accept_proxy]`: before a client's connection is forwarded, the
 * PROXY protocol header another proxy put in front of it is read and
 * stripped, and the client's address is taken from it (for access control,
 * logs and a PROXY header of our own). A connection whose first bytes are
 * not a valid header, or that sends none within the wait, is closed.
 *
 * Such a listener's sockets start with a HeaderReader as their data; once
 * the header is in, the forwarder gives the socket its relay leg, and the
 * listener's handlers (see ListenerHandlers) pass its events to the relay's,
 * so the relay itself never looks for a header.
 */
import type { StreamHandlers, StreamSocket } from "./stream-socket.ts";
import type { SessionEvents } from "../session.ts";
import type { ForwardRule } from "../types.ts";
import { PROXY_V1_MAX_LENGTH, PROXY_V2_MAX_LENGTH, parseProxyHeader, proxiedClient, type ProxyAddress } from "../proxy-protocol.ts";

/** How long a client may take to send its PROXY header. */
export const HEADER_WAIT_MS = 5000;

export interface HeaderResult {
  /** The client the header speaks for; undefined for a v2 LOCAL header (the peer speaks for itself). */
  client: ProxyAddress | undefined;
  /** Where the client connected to, per the header. */
  destination: ProxyAddress | undefined;
  /** Bytes after the header: the start of the client's own data. */
  rest: Uint8Array;
}

export interface HeaderOwner {
  /** The rule new connections follow (it says whether they start with a PROXY header). */
  readonly rule: ForwardRule;
  headerRead(socket: StreamSocket<HeaderReader>, result: HeaderResult): void;
  headerRefused(socket: StreamSocket<HeaderReader>, reason: string): void;
}

/** The bytes of one connection until its header is complete. */
export class HeaderReader {
  private buffer = new Uint8Array(0);
  private readonly timer: Timer;
  done = false;

  constructor(
    readonly owner: HeaderOwner,
    socket: StreamSocket<HeaderReader>,
  ) {
    this.timer = setTimeout(() => this.refuse(socket, "no PROXY header within 5 s"), HEADER_WAIT_MS);
  }

  feed(socket: StreamSocket<HeaderReader>, chunk: Uint8Array): void {
    if (this.done) return;
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer, 0);
    joined.set(chunk, this.buffer.length);
    this.buffer = joined;
    const header = parseProxyHeader(joined);
    if (header.status === "incomplete") {
      if (joined.length > Math.max(PROXY_V1_MAX_LENGTH, PROXY_V2_MAX_LENGTH)) this.refuse(socket, "PROXY header too long");
      return;
    }
    if (header.status === "invalid") {
      this.refuse(socket, `bad PROXY header: ${header.reason}`);
      return;
    }
    this.finish();
    this.owner.headerRead(socket, {
      client: header.local ? undefined : proxiedClient(header),
      destination: header.local ? undefined : header.destination,
      rest: joined.subarray(header.headerLength),
    });
  }

  /** The connection ended before its header did. */
  ended(socket: StreamSocket<HeaderReader>): void {
    this.refuse(socket, "closed before a complete PROXY header");
  }

  cancel(): void {
    this.finish();
  }

  private refuse(socket: StreamSocket<HeaderReader>, reason: string): void {
    if (this.done) return;
    this.finish();
    this.owner.headerRefused(socket, reason);
  }

  private finish(): void {
    this.done = true;
    clearTimeout(this.timer);
  }
}

/** Handlers of a connection once it is past its header (the relay's, or a cross-protocol session's). */
type ConnectedHandlers<Data> = Omit<StreamHandlers<Data>, "open" | "connectError">;

/**
 * Handlers for both phases of a connection on a listener that reads PROXY
 * headers, choosing by what `socket.data` holds: a HeaderReader while the
 * header is awaited, the connection's own data after it.
 *
 * One set must serve both phases because Bun gives every socket a listener
 * accepted that listener's handler set, and `reload` on such a socket
 * replaces the set of the listener and of all its sockets (Bun's socket.zig:
 * a server socket's handlers are its listener's). Switching the first client
 * to the relay's handlers that way left every later client with no `open`
 * and no header reader: it was never forwarded.
 */
function twoPhaseHandlers<Data>(owner: HeaderOwner, connected: ConnectedHandlers<Data>, accept: (socket: StreamSocket<Data>) => void) {
  return {
    binaryType: "uint8array" as const,
    open(socket: StreamSocket<unknown>): void {
      // The rule's choice now: a reload may have turned accept_proxy off on this listener.
      if (owner.rule.acceptProxy) socket.data = new HeaderReader(owner, socket as StreamSocket<HeaderReader>);
      else accept(socket as StreamSocket<Data>);
    },
    data(socket: StreamSocket<unknown>, chunk: Uint8Array): void {
      const state = socket.data;
      if (state instanceof HeaderReader) state.feed(socket as StreamSocket<HeaderReader>, chunk);
      else connected.data(socket as StreamSocket<Data>, chunk);
    },
    drain(socket: StreamSocket<unknown>): void {
      if (!(socket.data instanceof HeaderReader)) connected.drain(socket as StreamSocket<Data>);
    },
    end(socket: StreamSocket<unknown>): void {
      const state = socket.data;
      if (state instanceof HeaderReader) state.ended(socket as StreamSocket<HeaderReader>);
      else connected.end(socket as StreamSocket<Data>);
    },
    error(socket: StreamSocket<unknown>, error: Error): void {
      if (!(socket.data instanceof HeaderReader)) connected.error(socket as StreamSocket<Data>, error);
    },
    close(socket: StreamSocket<unknown>, error?: Error): void {
      const state = socket.data;
      // Refused or forwarded, the reader is finished either way; a socket closed while waiting only ends its timer.
      if (state instanceof HeaderReader) state.cancel();
      else connected.close(socket as StreamSocket<Data>, error);
    },
  };
}

/**
 * The handler set of one rule's listener, and when a reload must change it.
 * Without accept_proxy the listener gets `connected` with `accept` as `open`:
 * nothing on the data path asks about headers. With accept_proxy it gets the
 * two-phase set above, and keeps it even if a reload turns accept_proxy off,
 * since sockets still waiting for their header may be open on it then.
 */
export class ListenerHandlers<Data> {
  private twoPhase = false;

  constructor(
    private readonly owner: HeaderOwner,
    private readonly connected: ConnectedHandlers<Data>,
    private readonly accept: (socket: StreamSocket<Data>) => void,
  ) {}

  /** The set to listen with. */
  forStart() {
    this.twoPhase = this.owner.rule.acceptProxy;
    return this.current();
  }

  /** After a reload changed the owner's rule: the set to reload the listener with, or undefined when it stays. */
  forUpdate() {
    if (this.twoPhase || !this.owner.rule.acceptProxy) return undefined;
    this.twoPhase = true;
    return this.current();
  }

  private current() {
    const { owner, connected, accept } = this;
    return this.twoPhase ? twoPhaseHandlers(owner, connected, accept) : { ...connected, binaryType: "uint8array" as const, open: accept };
  }
}

/** Close a connection whose PROXY header was refused, and log it as a session that ended at once. */
export function refuseHeader(socket: StreamSocket<HeaderReader>, rule: ForwardRule, events: SessionEvents, reason: string): void {
  // Read before the reset: a closed socket has no remote address any more.
  const clientAddress = socket.remoteAddress ?? "";
  const clientPort = socket.remotePort ?? 0;
  socket.terminate();
  const now = Date.now();
  events.ended({
    rule,
    backend: undefined,
    clientAddress,
    clientPort,
    bytesIn: 0,
    bytesOut: 0,
    startedAt: now,
    endedAt: now,
    result: `error: ${reason}`,
  });
}

/** Where the client connected to, as a PROXY header names it (a unix listener has no address). */
export function localEnd(socket: StreamSocket<unknown>): ProxyAddress {
  return { address: socket.localAddress ?? "", port: socket.localPort ?? 0 };
}
