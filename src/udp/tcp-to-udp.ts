/**
 * @module TCP to UDP: each accepted TCP connection gets its own UDP socket
 * connected to the backend. Bytes from the client leave as datagrams: each
 * read chunk cut into pieces of at most `max_datagram` bytes, or, with
 * `len16` framing, one datagram per frame. Datagrams from the backend are
 * written to the client's stream (framed or raw) through a bounded queue:
 * Bun's UDP sockets cannot be paused, so past the bound, while the client is
 * not reading, datagrams are dropped and counted. The client's FIN or close,
 * or the idle timeout, ends the session.
 */
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import { isAllowed, parseClientAddress } from "../access.ts";
import type { Forwarder, ForwarderContext } from "../forwarder.ts";
import type { Admission } from "../limits.ts";
import type { SessionEvents, SessionResult } from "../session.ts";
import type { AccessList, ForwardRule } from "../types.ts";
import { FrameReader, type FrameSink, StreamQueue } from "./framing.ts";
import { DRAIN_IDLE_MS, type UdpCounters } from "./listener.ts";
import { SessionList, type Tracked } from "./sessions.ts";
import { isRefusal, openUdpUpstream, sendToBackend, type UdpLink, type UpstreamSocket } from "./upstream.ts";

export class TcpToUdpSession implements Tracked<TcpToUdpSession>, UdpLink, FrameSink {
  newer: TcpToUdpSession | undefined = undefined;
  older: TcpToUdpSession | undefined = undefined;
  lastSeen = 0;
  readonly idleMs: number;
  readonly startedAt = Date.now();
  bytesIn = 0;
  bytesOut = 0;
  result: SessionResult | undefined = undefined;
  /** Last error Bun reported on the client connection, for the close that follows. */
  error: Error | undefined = undefined;
  private upstream: UpstreamSocket | undefined = undefined;
  /** Client bytes read before the UDP socket was ready (the client is paused meanwhile: a chunk or so). */
  private waiting: Uint8Array[] | undefined = [];
  private readonly queue: StreamQueue;
  private readonly reader: FrameReader | undefined;
  /** The client sent its FIN: end once what is queued for it is written. */
  private closing = false;
  private refused = false;

  constructor(
    readonly owner: TcpToUdpForwarder,
    /** The rule as it was at accept: a reload does not change an open connection. */
    readonly rule: ForwardRule,
    readonly client: Socket<TcpToUdpSession>,
    readonly clientAddress: string,
    readonly clientPort: number,
  ) {
    this.idleMs = rule.timeout * 1000;
    const framed = rule.framing === "len16";
    this.queue = new StreamQueue(framed);
    this.reader = framed ? new FrameReader() : undefined;
  }

  get ended(): boolean {
    return this.result !== undefined;
  }

  open(): void {
    // Hold the client's bytes in its kernel buffer until the UDP socket exists.
    this.client.pause();
    openUdpUpstream(this.rule, this).then(
      (socket) => this.opened(socket),
      (error: unknown) => this.end(`error: ${error instanceof Error ? error.message : String(error)}`),
    );
  }

  fromClient(chunk: Uint8Array): void {
    if (this.ended) return;
    this.bytesIn += chunk.length;
    this.owner.touch(this);
    if (this.upstream === undefined) this.waiting?.push(chunk);
    else this.forward(chunk);
  }

  /** A whole datagram read from a framed stream. */
  frame(datagram: Uint8Array): void {
    this.sendUp(datagram);
  }

  fromBackend(datagram: Uint8Array): void {
    if (this.ended) return;
    this.bytesOut += datagram.length;
    if (this.closing) {
      // The client has said goodbye: only what was already queued for it is still written.
      this.owner.counters.droppedDatagrams++;
      return;
    }
    this.owner.touch(this);
    const result = this.queue.send(this.client, datagram);
    if (result === "dropped") this.owner.counters.droppedDatagrams++;
    else if (result === "closed") this.end("error: write failed");
  }

  backendError(error: Error): void {
    this.owner.counters.backendErrors++;
    if (isRefusal(error)) this.refused = true;
  }

  drained(): void {
    if (this.ended) return;
    if (this.queue.flush(this.client) === "closed") this.end("error: write failed");
    else if (this.closing && this.queue.empty) this.end("done");
  }

  /** The client's FIN: nothing more to send up; finish writing what is queued for it, then close. */
  clientEnded(): void {
    if (this.ended) return;
    if (this.reader?.midFrame === true) this.end("error: truncated frame");
    else if (this.queue.empty) this.end("done");
    else this.closing = true;
  }

  clientClosed(error: Error | undefined): void {
    if (this.ended) return;
    if ((error ?? this.error) !== undefined) this.end("error: client reset");
    else if (this.reader?.midFrame === true) this.end("error: truncated frame");
    else this.end("done");
  }

  idleResult(): SessionResult {
    return this.refused && this.bytesOut === 0 ? "refused" : "timeout";
  }

  end(result: SessionResult): void {
    this.owner.end(this, result);
  }

  /** Release both legs; called once, by the owner. */
  close(result: SessionResult): void {
    this.waiting = undefined;
    this.upstream?.close();
    this.upstream = undefined;
    if (result === "done" || result === "timeout") this.client.end();
    else this.client.terminate();
  }

  private opened(socket: UpstreamSocket): void {
    if (this.ended) {
      socket.close();
      return;
    }
    this.upstream = socket;
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting !== undefined) for (const chunk of waiting) if (!this.ended) this.forward(chunk);
    if (!this.ended) this.client.resume();
  }

  /** Client bytes up to the backend: frame by frame, or in pieces of at most max_datagram. */
  private forward(chunk: Uint8Array): void {
    const reader = this.reader;
    if (reader !== undefined) {
      if (!reader.feed(chunk, this.rule.maxDatagram, this)) this.end("error: malformed frame");
      return;
    }
    const max = this.rule.maxDatagram;
    if (chunk.length <= max) {
      this.sendUp(chunk);
      return;
    }
    for (let at = 0; at < chunk.length; at += max) this.sendUp(chunk.subarray(at, at + max));
  }

  private sendUp(datagram: Uint8Array): void {
    const upstream = this.upstream;
    if (upstream === undefined || !sendToBackend(upstream, datagram)) this.owner.counters.droppedDatagrams++;
  }
}

/** A session holds two descriptors: the client's TCP connection and its UDP socket. */
const DESCRIPTORS_PER_SESSION = 2;

const clientHandlers = {
  binaryType: "uint8array",
  // A client refused at accept never got a session (and is already closed): hence the guards.
  data(socket: Socket<TcpToUdpSession>, chunk: Uint8Array): void {
    (socket.data as TcpToUdpSession | undefined)?.fromClient(chunk);
  },
  drain(socket: Socket<TcpToUdpSession>): void {
    (socket.data as TcpToUdpSession | undefined)?.drained();
  },
  end(socket: Socket<TcpToUdpSession>): void {
    (socket.data as TcpToUdpSession | undefined)?.clientEnded();
  },
  error(socket: Socket<TcpToUdpSession>, error: Error): void {
    const session = socket.data as TcpToUdpSession | undefined;
    if (session !== undefined) session.error = error;
  },
  close(socket: Socket<TcpToUdpSession>, error?: Error): void {
    (socket.data as TcpToUdpSession | undefined)?.clientClosed(error);
  },
} satisfies SocketHandler<TcpToUdpSession, "uint8array">;

export class TcpToUdpForwarder implements Forwarder {
  private listener: TCPSocketListener<TcpToUdpSession> | undefined = undefined;
  private readonly sessions = new SessionList<TcpToUdpSession>((session) => this.end(session, session.idleResult()));
  private globalAccess: AccessList;
  private readonly events: SessionEvents;
  private readonly admission: Admission;
  readonly counters: UdpCounters = { evicted: 0, deniedDatagrams: 0, droppedDatagrams: 0, backendErrors: 0 };

  constructor(
    public rule: ForwardRule,
    context: ForwarderContext,
  ) {
    this.globalAccess = context.globalAccess;
    this.events = context.events;
    this.admission = context.admission;
  }

  get active(): number {
    return this.sessions.size;
  }

  bytesInFlight(): [number, number] {
    let bytesIn = 0;
    let bytesOut = 0;
    for (let session = this.sessions.newest; session !== undefined; session = session.older) {
      bytesIn += session.bytesIn;
      bytesOut += session.bytesOut;
    }
    return [bytesIn, bytesOut];
  }

  /** The port actually bound. */
  get port(): number | undefined {
    return this.listener?.port;
  }

  start(): void {
    const forwarder = this;
    this.listener = Bun.listen<TcpToUdpSession>({
      hostname: this.rule.bind.host,
      port: this.rule.bind.port,
      // The client's FIN must arrive as `end`, so what is queued for it can still be written.
      allowHalfOpen: true,
      socket: {
        ...clientHandlers,
        open(socket: Socket<TcpToUdpSession>): void {
          forwarder.accept(socket);
        },
      },
    });
  }

  update(rule: ForwardRule, globalAccess: AccessList): void {
    this.rule = rule;
    this.globalAccess = globalAccess;
  }

  stopAccepting(): void {
    this.listener?.stop(false);
    this.listener = undefined;
    this.sessions.capIdle(DRAIN_IDLE_MS);
  }

  closeAll(): void {
    let session = this.sessions.oldest;
    while (session !== undefined) {
      const next = session.newer;
      this.end(session, "error: shutting down");
      session = next;
    }
  }

  touch(session: TcpToUdpSession): void {
    this.sessions.touch(session, Date.now());
  }

  end(session: TcpToUdpSession, result: SessionResult): void {
    if (session.ended) return;
    session.result = result;
    this.sessions.remove(session);
    session.close(result);
    this.admission.release(DESCRIPTORS_PER_SESSION);
    this.events.ended({
      rule: session.rule,
      // Until UDP rules balance over several backends, a session goes to the first.
      backend: session.rule.backends[0],
      clientAddress: session.clientAddress,
      clientPort: session.clientPort,
      bytesIn: session.bytesIn,
      bytesOut: session.bytesOut,
      startedAt: session.startedAt,
      endedAt: Date.now(),
      result,
    });
  }

  private accept(socket: Socket<TcpToUdpSession>): void {
    const rule = this.rule;
    const remote = socket.remoteAddress;
    const client = parseClientAddress(remote);
    if (client === undefined || !isAllowed(client, this.globalAccess, rule.access)) {
      socket.terminate();
      this.events.denied(rule, remote, socket.remotePort, "denied");
      return;
    }
    const ruleFull = rule.maxConnections !== undefined && this.sessions.size >= rule.maxConnections;
    if (ruleFull || !this.admission.admit(DESCRIPTORS_PER_SESSION)) {
      socket.terminate();
      this.events.denied(rule, remote, socket.remotePort, "limit");
      return;
    }
    const session = new TcpToUdpSession(this, rule, socket, remote, socket.remotePort);
    socket.data = session;
    this.sessions.add(session, Date.now());
    this.events.started(rule);
    session.open();
  }
}

export function createTcpToUdpForwarder(rule: ForwardRule, context: ForwarderContext): Forwarder {
  return new TcpToUdpForwarder(rule, context);
}
