/**
 * @module The forwarders of rules with a UDP side, as the server's factory
 * table wants them: `udp` and `udptotcp` rules listen on UDP (one listener
 * class, the session kind chosen per session by the rule's mode, so a reload
 * may switch a bind between them), `tcptoudp` rules listen on TCP.
 */
import type { Forwarder, ForwarderContext } from "../forwarder.ts";
import type { ForwardRule } from "../types.ts";
import { type SessionFactory, UdpListener } from "./listener.ts";
import { createUdpToTcpSession } from "./to-tcp.ts";
import { createUdpToUdpSession } from "./to-udp.ts";

export { createTcpToUdpForwarder } from "./tcp-to-udp.ts";

const SESSIONS: Partial<Record<ForwardRule["mode"], SessionFactory>> = {
  udp: createUdpToUdpSession,
  udptotcp: createUdpToTcpSession,
};

export function createUdpForwarder(rule: ForwardRule, context: ForwarderContext): Forwarder {
  return new UdpListener(rule, context, SESSIONS);
}
