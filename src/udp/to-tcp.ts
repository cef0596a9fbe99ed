/**
 * @module UDP to TCP: a client session's leg is one TCP (or unix socket)
 * connection to its backend. The connection is made as the TCP forwarder
 * makes one: the backend the balancer picks, each of its addresses in
 * order, then the next backend, with the rule's connect timeout per attempt
 * (none of oi's own at 0); a late answer to an attempt that was given up is
 * dropped. With `proxy=v1` or `v2` the connection starts with a PROXY header
 * naming the UDP client and the address it sent to (a v2 header says
 * STREAM, the kind of connection the backend reads it from: receivers such
 * as HAProxy take the addresses only from TCP-over-IP headers).
 *
 * Datagram payloads are written to the connection in arrival order (with
 * `len16` framing, each behind its length); while the connection is being
 * made, or while the backend does not drain, they wait in a bounded queue
 * and the ones past the bound are dropped, since the shared listening
 * socket cannot be paused for one client. Bytes coming back are sent to the
 * client as datagrams of at most `max_datagram` bytes, or frame by frame
 * when framed. The backend closing the connection, or the idle timeout,
 * ends the session.
 */
import type { Socket, SocketHandler } from "bun";
import type { DialPlan, DialTarget } from "../backends.ts";
import { encodeProxyV1, encodeProxyV2, type ProxyAddress } from "../proxy-protocol.ts";
import type { SessionResult } from "../session.ts";
import type { Backend, ForwardRule } from "../types.ts";
import { connectStream } from "../stream-connect.ts";
import { FrameReader, type FrameSink, StreamQueue } from "./framing.ts";
import { ListenSession, type UdpListener } from "./listener.ts";


/** One connect attempt of a session: a late answer to an attempt that was given up is dropped. */
class Attempt {
  timer: Timer | undefined = undefined;
  constructor(
    readonly session: UdpToTcpSession,
    readonly target: DialTarget,
  ) {}
}

export class UdpToTcpSession extends ListenSession implements FrameSink {
  private socket: Socket<UdpToTcpSession> | undefined = undefined;
  private readonly queue: StreamQueue;
  private readonly reader: FrameReader | undefined;
  /** The connect attempt in progress. */
  private attempt: Attempt | undefined = undefined;
  /** A `plan.next()` is in progress: its continuation releases the pick if the session ended meanwhile. */
  private dialing = false;
  /** How the last attempt failed: the result when no target is left. */
  private lastFailure: "refused" | "timeout" = "refused";
  /** Last error Bun reported on the connection, for the close that follows. */
  error: Error | undefined = undefined;

  constructor(
    owner: UdpListener,
    rule: ForwardRule,
    address: string,
    port: number,
    private readonly plan: DialPlan,
    /** Where the client sent to, for a PROXY header. */
    private readonly destination: ProxyAddress,
  ) {
    super(owner, rule, address, port);
    const framed = rule.framing === "len16";
    this.queue = new StreamQueue(framed);
    this.reader = framed ? new FrameReader() : undefined;
  }

  get backend(): Backend | undefined {
    return this.plan.connected;
  }

  open(): void {
    void this.connect();
  }

  fromClient(datagram: Uint8Array): void {
    const result = this.queue.send(this.socket, datagram);
    if (result === "dropped") this.owner.counters.droppedDatagrams++;
    else if (result === "closed") this.end("error: write failed");
  }

  /** The upstream answered: it is the session's connection, after a PROXY header when the rule sends one. */
  attemptOpened(attempt: Attempt, socket: Socket<Attempt>): void {
    if (this.attempt !== attempt || this.ended) {
      socket.terminate();
      return;
    }
    if (attempt.timer !== undefined) clearTimeout(attempt.timer);
    this.attempt = undefined;
    const upstream = socket as unknown as Socket<UdpToTcpSession>;
    upstream.reload({ socket: backendHandlers });
    upstream.data = this;
    this.plan.opened();
    const keepalive = this.rule.keepalive;
    if (keepalive !== undefined) upstream.setKeepAlive(true, keepalive * 1000);
    // To a TLS backend the PROXY header went in clear before the handshake (see connect).
    const header = attempt.target.tls === undefined ? this.proxyHeader() : undefined;
    if (header !== undefined) this.queue.preface(header);
    this.socket = upstream;
    this.drained();
  }

  /** This attempt failed (refused, unreachable, timed out): try the next target, or give up on the session. */
  attemptFailed(attempt: Attempt, why: "refused" | "timeout"): void {
    if (attempt.timer !== undefined) clearTimeout(attempt.timer);
    if (this.attempt !== attempt || this.ended) return;
    this.attempt = undefined;
    this.lastFailure = why;
    void this.connect();
  }

  drained(): void {
    const socket = this.socket;
    if (socket !== undefined && this.queue.flush(socket) === "closed") this.end("error: write failed");
  }

  fromBackend(chunk: Uint8Array): void {
    if (this.ended) return;
    this.bytesOut += chunk.length;
    const reader = this.reader;
    if (reader !== undefined) {
      if (!reader.feed(chunk, this.rule.maxDatagram, this)) this.end("error: malformed frame");
      return;
    }
    const max = this.rule.maxDatagram;
    if (chunk.length <= max) {
      this.toClient(chunk);
      return;
    }
    for (let at = 0; at < chunk.length; at += max) this.toClient(chunk.subarray(at, at + max));
  }

  /** A whole datagram read back from a framed stream. */
  frame(datagram: Uint8Array): void {
    this.toClient(datagram);
  }

  /** The connection closed by itself (the backend's FIN or reset). */
  closed(error: Error | undefined): void {
    if (this.ended) return;
    this.socket = undefined;
    if ((error ?? this.error) !== undefined) this.end("error: backend reset");
    else if (this.reader?.midFrame === true) this.end("error: truncated frame");
    else this.end("done");
  }

  close(result: SessionResult): void {
    const attempt = this.attempt;
    this.attempt = undefined;
    if (attempt?.timer !== undefined) clearTimeout(attempt.timer);
    if (this.plan.connected !== undefined) this.plan.closed(this.bytesIn, this.bytesOut);
    else if (!this.dialing) this.plan.abandon();
    const socket = this.socket;
    this.socket = undefined;
    if (socket === undefined) return;
    // An idle or evicted session says goodbye with a FIN; errors and shutdown reset.
    if (result === "timeout" || result === "error: evicted" || result === "done") socket.end();
    else socket.terminate();
  }

  /** Try the plan's next target; when there is none, the session ends. */
  private async connect(): Promise<void> {
    for (;;) {
      this.dialing = true;
      const target = await this.plan.next();
      this.dialing = false;
      if (this.ended) {
        this.plan.abandon();
        return;
      }
      if (target === undefined) {
        this.end(this.lastFailure);
        return;
      }
      const attempt = new Attempt(this, target);
      this.attempt = attempt;
      const timeout = this.rule.connectTimeout;
      if (timeout > 0) attempt.timer = setTimeout(attemptTimedOut, timeout * 1000, attempt);
      const cleartext = target.tls === undefined ? undefined : this.proxyHeader();
      if (connectStream(target, attempt, connectingHandlers, false, cleartext)) return;
      // Options Bun refuses outright (a malformed address): on to the next target.
      if (attempt.timer !== undefined) clearTimeout(attempt.timer);
      this.attempt = undefined;
    }
  }

  /** The PROXY header that starts the connection, when the rule sends one. */
  private proxyHeader(): Uint8Array | undefined {
    const version = this.rule.proxyProtocol;
    if (version === undefined) return undefined;
    const source = { address: this.address, port: this.port };
    return version === "v1" ? encodeProxyV1(source, this.destination) : encodeProxyV2(source, this.destination, "tcp");
  }
}

function attemptTimedOut(attempt: Attempt): void {
  attempt.timer = undefined;
  attempt.session.attemptFailed(attempt, "timeout");
}


/** Handlers of a connection while it connects; once open it moves to `backendHandlers`. */
const connectingHandlers = {
  binaryType: "uint8array" as const,
  open(socket: Socket<Attempt>): void {
    socket.data.session.attemptOpened(socket.data, socket);
  },
  connectError(socket: Socket<Attempt>): void {
    // Bun reports nearly every connect errno as ECONNREFUSED; "refused" is all it tells.
    socket.data.session.attemptFailed(socket.data, "refused");
  },
  data(): void {},
  drain(): void {},
  end(): void {},
  close(): void {},
  error(): void {},
};

const backendHandlers = {
  binaryType: "uint8array",
  data(socket: Socket<UdpToTcpSession>, chunk: Uint8Array): void {
    socket.data.fromBackend(chunk);
  },
  drain(socket: Socket<UdpToTcpSession>): void {
    // Bun also fires drain spuriously: the queue checks its own state.
    socket.data.drained();
  },
  error(socket: Socket<UdpToTcpSession>, error: Error): void {
    socket.data.error = error;
  },
  close(socket: Socket<UdpToTcpSession>, error?: Error): void {
    socket.data.closed(error);
  },
} satisfies SocketHandler<UdpToTcpSession, "uint8array">;

export function createUdpToTcpSession(
  owner: UdpListener,
  rule: ForwardRule,
  address: string,
  port: number,
  plan: DialPlan,
  destination: ProxyAddress,
): ListenSession {
  return new UdpToTcpSession(owner, rule, address, port, plan, destination);
}
