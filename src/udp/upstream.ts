/**
 * @module The UDP leg towards a backend: one socket per session, connected
 * to the backend, so the backend sees one stable source per client and the
 * kernel delivers each session only its own backend's datagrams. Sockets
 * share one handler object; the session a socket serves is attached to it.
 */
import type { udp } from "bun";
import { isIpLiteral } from "../ip.ts";
import type { ForwardRule } from "../types.ts";

/** A session as its upstream UDP socket sees it. */
export interface UdpLink {
  fromBackend(datagram: Uint8Array): void;
  /** Bun reports ICMP errors (ECONNREFUSED for port unreachable) here, after the send that caused them. */
  backendError(error: Error): void;
}

/** Bun's UDP sockets have no `data` slot like TCP sockets: the session rides on the socket object. */
export type UpstreamSocket = udp.ConnectedSocket<"uint8array"> & { link?: UdpLink };

const upstreamHandlers: udp.ConnectedSocketHandler<"uint8array"> = {
  data(socket, datagram, _port, _address, flags) {
    // A truncated datagram (larger than Bun's receive buffer) is not the datagram that was sent.
    if (flags.truncated) return;
    (socket as UpstreamSocket).link?.fromBackend(datagram);
  },
  // Bun calls this as error.call(socket, err), one argument, whatever the types say: take the last.
  error(this: UpstreamSocket, ...args: unknown[]) {
    const error = args[args.length - 1];
    this.link?.backendError(error instanceof Error ? error : new Error(String(error)));
  },
};

/**
 * Send one datagram to the backend; false when it was not sent. A send can
 * throw the ICMP error an earlier datagram caused (ECONNREFUSED for port
 * unreachable), taken off the socket instead of sending: the error goes to
 * the link and this datagram, which was not refused, gets one more try.
 */
export function sendToBackend(socket: UpstreamSocket, datagram: Uint8Array): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      return socket.send(datagram);
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      socket.link?.backendError(failure);
      if (!isRefusal(failure)) return false;
    }
  }
  return false;
}

export function isRefusal(error: Error): boolean {
  return (error as Error & { code?: unknown }).code === "ECONNREFUSED" || error.message.includes("ECONNREFUSED");
}

/**
 * Resolve the backend (when it is a host name: per session, like a TCP
 * connect) and open a socket connected to it, bound to the rule's source
 * address or to the wildcard of the backend's family.
 */
export async function openUdpUpstream(rule: ForwardRule, link: UdpLink): Promise<UpstreamSocket> {
  const { host, port } = rule.backends[0]!.endpoint;
  const source = rule.sourceAddress;
  const address = isIpLiteral(host) ? host : await resolve(host, source);
  const socket: UpstreamSocket = await Bun.udpSocket({
    hostname: source ?? (address.includes(":") ? "::" : "0.0.0.0"),
    port: 0,
    binaryType: "uint8array",
    connect: { hostname: address, port },
    socket: upstreamHandlers,
  });
  socket.link = link;
  return socket;
}

/** Bun.udpSocket would resolve a name itself, but synchronously, stalling every other session. */
async function resolve(host: string, source: string | undefined): Promise<string> {
  const family = source === undefined ? 0 : source.includes(":") ? 6 : 4;
  const [first] = await Bun.dns.lookup(host, { family, socketType: "udp" });
  if (first === undefined) throw new Error(`cannot resolve ${host}`);
  return first.address;
}
