/**
 * @module The run-time face of one forwarding rule, whatever its protocol,
 * as the server and the metrics see it; each protocol's module (tcp/, udp/)
 * implements it. A UDP or cross-protocol forwarder listens itself; TCP
 * forwarders take their clients from the bind they share (tcp/bind.ts),
 * which the server starts, updates and stops in their place.
 */
import type { BackendRegistry } from "./backends.ts";
import type { SocketLayer } from "./tcp/socket-layer.ts";
import type { SpliceChoice } from "./tcp/splice/choice.ts";
import type { Admission } from "./limits.ts";
import type { SessionEvents } from "./session.ts";
import type { AccessList, ForwardRule } from "./types.ts";

export interface Forwarder {
  /** The rule new connections and sessions follow (replaced by `update`). */
  readonly rule: ForwardRule;
  /** Connections or sessions open now. */
  readonly active: number;
  /** Bind the listening socket. Throws an Error whose message says why it could not. */
  start(): Promise<void> | void;
  /**
   * A reload kept this rule's bind address: new connections follow `rule` and
   * `globalAccess` from now on; open ones carry on as they were.
   */
  update(rule: ForwardRule, globalAccess: AccessList): void;
  /** Stop accepting; open connections and sessions carry on. */
  stopAccepting(): void;
  /**
   * The process is stopping: stop accepting, and end each open connection or
   * session as soon as it has been quiet for about a second and holds no
   * byte on its way; busy ones carry on (for the rest of the grace period).
   */
  drain(): void;
  /** Close everything still open (the end of a shutdown's grace period). */
  closeAll(): void;
  /** Bytes [from clients, to clients] carried by connections still open (metrics add them to the finished ones). */
  bytesInFlight(): [bytesIn: number, bytesOut: number];
  /** Sockets it listens on (one per port of its bind's range); absent: it listens itself on none (TCP rules: their bind does). */
  readonly ports?: number;
  /**
   * A reload will give it `rule`, whose bind has other ports (a range
   * widened, narrowed or moved): listen on the new ones now, all or nothing
   * (throws as `start` does). `update` then closes the ports left out,
   * `abandon` instead closes the ones opened here.
   */
  prepare?(rule: ForwardRule): Promise<void>;
  abandon?(): void;
  /** Datagram rules: datagrams dropped so far by this forwarder, [over a bandwidth limit, for any other reason]. */
  datagramsDropped?(): [rate: number, other: number];
}

export interface ForwarderContext {
  globalAccess: AccessList;
  events: SessionEvents;
  /**
   * Process-wide bounds: call `admit(descriptors)` before opening a session
   * (2 descriptors for a TCP relay, 1 per UDP session socket...) and refuse the
   * client when it says no; `release` the same number when the session ends.
   */
  admission: Admission;
  /** Backend state (balancer, DNS cache, probes) by rule name: `acquire` when starting, `release` when stopping. */
  backends: BackendRegistry;
  /** The splice worker new TCP relays move to (`splice on`), when running; shared and updated by reloads. */
  splice?: SpliceChoice;
  /** The sockets TCP forwarders listen and connect with (Bun's, or direct ones); shared and updated by reloads. */
  sockets: SocketLayer;
  /** Listen on TCP with SO_REUSEPORT, beside the other worker threads (src/workers/) serving the same rule. */
  reusePort?: boolean;
}

export type ForwarderFactory = (rule: ForwardRule, context: ForwarderContext) => Forwarder;
