/**
 * @module UDP to TCP: a client session's leg is one TCP connection to the
 * backend. Datagram payloads are written to it in arrival order (with `len16`
 * framing, each behind its length); while the connection is being made, or
 * while the backend does not drain, they wait in a bounded queue and the
 * ones past the bound are dropped, since the shared listening socket cannot
 * be paused for one client. Bytes coming back are sent to the client as
 * datagrams of at most `max_datagram` bytes, or frame by frame when framed.
 * The backend closing the connection, or the idle timeout, ends the session.
 */
import type { Socket, SocketHandler } from "bun";
import type { SessionResult } from "../session.ts";
import type { ForwardRule } from "../types.ts";
import { FrameReader, type FrameSink, StreamQueue } from "./framing.ts";
import { ListenSession, type UdpListener } from "./listener.ts";

/** Options Bun accepts for Bun.connect although its type definitions omit them. */
interface ConnectSourceOptions {
  localAddress?: string;
}

export class UdpToTcpSession extends ListenSession implements FrameSink {
  private socket: Socket<UdpToTcpSession> | undefined = undefined;
  private readonly queue: StreamQueue;
  private readonly reader: FrameReader | undefined;
  private connectTimer: Timer | undefined = undefined;
  /** Last error Bun reported on the connection, for the close that follows. */
  error: Error | undefined = undefined;

  constructor(owner: UdpListener, rule: ForwardRule, address: string, port: number) {
    super(owner, rule, address, port);
    const framed = rule.framing === "len16";
    this.queue = new StreamQueue(framed);
    this.reader = framed ? new FrameReader() : undefined;
  }

  open(): void {
    const { sourceAddress, connectTimeout } = this.rule;
    const connect = this.rule.backends[0]!.endpoint;
    const options: Bun.TCPSocketConnectOptions<UdpToTcpSession> & ConnectSourceOptions = {
      hostname: connect.host,
      port: connect.port,
      data: this,
      socket: backendHandlers,
    };
    if (sourceAddress !== undefined) options.localAddress = sourceAddress;
    if (connectTimeout > 0) this.connectTimer = setTimeout(connectTimedOut, connectTimeout * 1000, this);
    // Failures arrive through connectError; the promise's rejection carries nothing more.
    Bun.connect(options).catch(ignoreRejection);
  }

  fromClient(datagram: Uint8Array): void {
    const result = this.queue.send(this.socket, datagram);
    if (result === "dropped") this.owner.counters.droppedDatagrams++;
    else if (result === "closed") this.end("error: write failed");
  }

  /** The connection is up: write what waited. */
  opened(socket: Socket<UdpToTcpSession>): void {
    if (this.ended) {
      socket.terminate();
      return;
    }
    this.clearConnectTimer();
    this.socket = socket;
    this.drained();
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
    this.clearConnectTimer();
    const socket = this.socket;
    this.socket = undefined;
    if (socket === undefined) return;
    // An idle or evicted session says goodbye with a FIN; errors and shutdown reset.
    if (result === "timeout" || result === "error: evicted" || result === "done") socket.end();
    else socket.terminate();
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
  }
}

function connectTimedOut(session: UdpToTcpSession): void {
  session.end("timeout");
}

function ignoreRejection(): void {}

const backendHandlers = {
  binaryType: "uint8array",
  open(socket: Socket<UdpToTcpSession>): void {
    socket.data.opened(socket);
  },
  connectError(socket: Socket<UdpToTcpSession>, _error: Error): void {
    // Bun reports nearly every connect errno as ECONNREFUSED; "refused" is all it tells.
    socket.data.end("refused");
  },
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
): ListenSession {
  return new UdpToTcpSession(owner, rule, address, port);
}
