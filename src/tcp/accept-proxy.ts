/**
 * @module `[accept_proxy]`: before a client's connection is forwarded, the
 * PROXY protocol header another proxy put in front of it is read and
 * stripped, and the client's address is taken from it (for access control,
 * logs and a PROXY header of our own). A connection whose first bytes are
 * not a valid header, or that sends none within the wait, is closed.
 *
 * Such a listener's sockets start with a HeaderReader as their data (a
 * socket phase, see phases.ts); once the header is in, the owner gives the
 * socket its connection, so the relay itself never looks for a header.
 */
import { parseClientAddress } from "../access.ts";
import { SocketPhase } from "./phases.ts";
import type { StreamSocket } from "./stream-socket.ts";
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
  headerRead(socket: StreamSocket<HeaderReader>, result: HeaderResult): void;
  headerRefused(socket: StreamSocket<HeaderReader>, reason: string): void;
}

/** The bytes of one connection until its header is complete. */
export class HeaderReader extends SocketPhase {
  private buffer = new Uint8Array(0);
  private readonly timer: Timer;
  done = false;

  constructor(
    readonly owner: HeaderOwner,
    socket: StreamSocket<HeaderReader>,
  ) {
    super();
    this.timer = setTimeout(() => this.refuse(socket, "no PROXY header within 5 s"), HEADER_WAIT_MS);
  }

  override data(socket: StreamSocket<HeaderReader>, chunk: Uint8Array): void {
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
  override end(socket: StreamSocket<HeaderReader>): void {
    this.refuse(socket, "closed before a complete PROXY header");
  }

  /** Refused or forwarded, the reader is finished either way; a socket closed while waiting only ends its timer. */
  override close(): void {
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

/**
 * Whether the peer of `socket` may send `rule` a PROXY header: any peer
 * without `proxy-from`, else one whose address (IPv4-mapped IPv6 taken as
 * IPv4) lies in one of its networks. Asked at accept, before a byte is read.
 */
export function trustedProxy(rule: ForwardRule, socket: StreamSocket<unknown>): boolean {
  const networks = rule.proxyFrom;
  if (networks === undefined) return true;
  const peer = parseClientAddress(socket.remoteAddress ?? "");
  if (peer === undefined) return false;
  for (const network of networks) if (network.matches(peer)) return true;
  return false;
}

/** Reset a peer outside the rule's proxy-from at once: counted and logged as a refusal, its header never read. */
export function refuseUntrusted(socket: StreamSocket<unknown>, rule: ForwardRule, events: SessionEvents): void {
  const address = socket.remoteAddress ?? "";
  const port = socket.remotePort ?? 0;
  socket.terminate();
  events.denied(rule, address, port, "untrusted-proxy");
}

/** Where the client connected to, as a PROXY header names it (a unix listener has no address). */
export function localEnd(socket: StreamSocket<unknown>): ProxyAddress {
  return { address: socket.localAddress ?? "", port: socket.localPort ?? 0 };
}
