/**
 * @module UDP to UDP: a client session's leg is one UDP socket connected to
 * the backend. Datagrams pass one for one, boundaries and sizes (0 to 65507
 * bytes) exactly as they came; nothing is ever added. An ICMP error from the
 * backend (port unreachable shows as ECONNREFUSED) drops that datagram and
 * nothing else: the session carries on, and ends as `refused` when the
 * backend never answered it.
 */
import type { SessionResult } from "../session.ts";
import type { ForwardRule } from "../types.ts";
import { QUEUE_LIMIT_BYTES, QUEUE_LIMIT_DATAGRAMS } from "./framing.ts";
import { ListenSession, type UdpListener } from "./listener.ts";
import { isRefusal, openUdpUpstream, sendToBackend, type UdpLink, type UpstreamSocket } from "./upstream.ts";

export class UdpToUdpSession extends ListenSession implements UdpLink {
  private upstream: UpstreamSocket | undefined = undefined;
  /** Datagrams that arrived while the upstream socket was being opened (a host name to resolve). */
  private waiting: Uint8Array[] | undefined = [];
  private waitingBytes = 0;
  /** The backend reported an ICMP error at least once. */
  private refused = false;

  open(): void {
    openUdpUpstream(this.rule, this).then(
      (socket) => this.opened(socket),
      (error: unknown) => this.end(`error: ${error instanceof Error ? error.message : String(error)}`),
    );
  }

  fromClient(datagram: Uint8Array): void {
    const upstream = this.upstream;
    if (upstream !== undefined) {
      this.send(upstream, datagram);
      return;
    }
    const waiting = this.waiting;
    if (
      waiting === undefined ||
      this.waitingBytes + datagram.length > QUEUE_LIMIT_BYTES ||
      waiting.length >= QUEUE_LIMIT_DATAGRAMS
    ) {
      this.owner.counters.droppedDatagrams++;
      return;
    }
    waiting.push(datagram);
    this.waitingBytes += datagram.length;
  }

  fromBackend(datagram: Uint8Array): void {
    if (this.ended) return;
    this.bytesOut += datagram.length;
    this.toClient(datagram);
  }

  backendError(error: Error): void {
    this.owner.counters.backendErrors++;
    if (isRefusal(error)) this.refused = true;
  }

  close(_result: SessionResult): void {
    this.waiting = undefined;
    this.upstream?.close();
    this.upstream = undefined;
  }

  /** `refused` rather than `timeout` when the backend only ever refused. */
  override idleResult(): SessionResult {
    return this.refused && this.bytesOut === 0 ? "refused" : "timeout";
  }

  private opened(socket: UpstreamSocket): void {
    if (this.ended) {
      socket.close();
      return;
    }
    this.upstream = socket;
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting !== undefined) for (const datagram of waiting) this.send(socket, datagram);
  }

  private send(upstream: UpstreamSocket, datagram: Uint8Array): void {
    if (!sendToBackend(upstream, datagram)) this.owner.counters.droppedDatagrams++;
  }
}

export function createUdpToUdpSession(
  owner: UdpListener,
  rule: ForwardRule,
  address: string,
  port: number,
): ListenSession {
  return new UdpToUdpSession(owner, rule, address, port);
}
