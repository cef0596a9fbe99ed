/**
 * @module One rule that listens on UDP (`udp` and `udptotcp` modes). Each
 * client address:port is a session; the first datagram of an unknown source
 * passes the access check, takes a slot in the rule's bounded session table
 * (evicting the least recently used session when it is full) and opens the
 * session's leg to the backend. Replies go back to the client from the
 * listening socket. Each new session gets a DialPlan: the backend the
 * rule's balancer picks for it (by the client's IP for iphash and affinity),
 * which it keeps for its life; a reload changes the backends of new sessions
 * only. How a session reaches its backend (a connected UDP socket, or a TCP
 * connection) is the session class's business.
 */
import { takeInherited } from "../systemd/inherited.ts";
import type { udp } from "bun";
import { isAllowed, parseClientAddress } from "../access.ts";
import { DialPlan, type RuleBackends } from "../backends.ts";
import type { Forwarder, ForwarderContext } from "../forwarder.ts";
import { type ClientHold, ClientLimiter, NO_CLIENT_HOLD } from "../client-limits.ts";
import type { Admission } from "../limits.ts";
import type { ProxyAddress } from "../proxy-protocol.ts";
import type { SessionEvents, SessionResult } from "../session.ts";
import { portCount } from "../endpoint.ts";
import { PortListeners } from "../port-listeners.ts";
import type { AccessList, Backend, Endpoint, ForwardRule } from "../types.ts";
import { SessionList, type Tracked } from "./sessions.ts";
import { type ConnectionBudgets, limitsBandwidth, RuleBandwidth } from "../rate/rule-bandwidth.ts";

/** Counters a rule keeps beyond its sessions' own records (for metrics). */
export interface UdpCounters {
  /** Sessions ended to make room for a new one (the table was full). */
  evicted: number;
  /** Datagrams from sources the access rules refuse. */
  deniedDatagrams: number;
  /** Datagrams dropped: queue full, send failed, truncated, or arriving after the rule stopped accepting. */
  droppedDatagrams: number;
  /** Datagrams dropped because a bandwidth limit (rate, rate-rule, rate-client) had no room for them. */
  rateDroppedDatagrams: number;
  /** ICMP errors (port unreachable and the like) reported by backends. */
  backendErrors: number;
}

/** Denied sources remembered at most, so a denied flood costs a map lookup per datagram and one log line. */
const DENIED_MEMORY = 1024;
/** A session holds one descriptor: its socket to the backend (UDP socket or TCP connection). */
const DESCRIPTORS_PER_SESSION = 1;
/** Once a rule stops accepting, its sessions end after this much silence (or their own timeout if shorter). */
export const DRAIN_IDLE_MS = 1000;
/** "limit" refusals are reported at most this often per rule (each one is a datagram, not a connection). */
const LIMIT_REPORT_MS = 1000;

/** A client session of a UDP-listening rule: the list links, the counts, and the leg to the backend. */
export abstract class ListenSession implements Tracked<ListenSession> {
  newer: ListenSession | undefined = undefined;
  older: ListenSession | undefined = undefined;
  lastSeen = 0;
  readonly idleMs: number;
  readonly startedAt = Date.now();
  bytesIn = 0;
  bytesOut = 0;
  result: SessionResult | undefined = undefined;
  /** Its client's hold on the rule's per-client limits, released by the owner when the session ends. */
  clientHold: ClientHold = NO_CLIENT_HOLD;
  /** The port of the rule's bind range the client sent to, as an offset from its first (0 on a bind of one port). */
  offset = 0;
  /** The session's bandwidth budgets (a datagram over budget is dropped); undefined: unlimited. */
  budgets: ConnectionBudgets | undefined = undefined;

  constructor(
    readonly owner: UdpListener,
    /** The rule as it was at the session's first datagram: a reload does not change it. */
    readonly rule: ForwardRule,
    readonly address: string,
    readonly port: number,
  ) {
    this.idleMs = rule.timeout * 1000;
  }

  get ended(): boolean {
    return this.result !== undefined;
  }

  /** The backend the session reached; undefined when none was. */
  abstract readonly backend: Backend | undefined;
  /** Start the leg to the backend (called once, right after the session joined the table). */
  abstract open(): void;
  /** A datagram from the client (already counted in bytesIn). */
  abstract fromClient(datagram: Uint8Array): void;
  /**
   * Release the leg to the backend, and tell the balancer how the session's
   * pick ended; `result` says why (graceful or not). Called once, by the owner.
   */
  abstract close(result: SessionResult): void;

  /** The result of an idle expiry. */
  idleResult(): SessionResult {
    return "timeout";
  }

  /** Send `datagram` to the client, from the listening socket. */
  toClient(datagram: Uint8Array): void {
    this.owner.toClient(this, datagram);
  }

  /** End this session (idempotent). */
  end(result: SessionResult): void {
    this.owner.end(this, result);
  }
}

/** `destination`: where the client sent to (the listening address), for a PROXY header. */
export type SessionFactory = (
  owner: UdpListener,
  rule: ForwardRule,
  address: string,
  port: number,
  plan: DialPlan,
  destination: ProxyAddress,
) => ListenSession;

/** A listening socket knows its rule's forwarder and the one port it is bound to (of a range, maybe). */
type ListenSocket = udp.Socket<"uint8array"> & { owner?: UdpListener; boundPort?: number };

/** Sessions are found by client port and the offset of the port it sent to: one number, `port + offset * PORTS`. */
const PORTS = 65536;

const listenHandlers: udp.SocketHandler<"uint8array"> = {
  data(socket, datagram, port, address, flags) {
    const { owner, boundPort } = socket as ListenSocket;
    if (owner === undefined || boundPort === undefined) return;
    // buffersize (rinetd-uv's): a datagram longer than the buffer would not have been read whole.
    if (flags.truncated || datagram.length > owner.rule.bufferSize) {
      owner.counters.droppedDatagrams++;
      return;
    }
    owner.fromClient(datagram, port, address, boundPort);
  },
  error() {
    // An unconnected socket gets no ICMP reports on Linux; a failed reply send is caught where it is made.
  },
};

function ignore(): void {}

export class UdpListener implements Forwarder {
  /** A socket per port: one, or each port of a range. */
  private readonly sockets = new PortListeners<ListenSocket>(
    (endpoint) => this.listenOn(endpoint),
    (socket) => socket.close(),
  );
  /** Sessions by client address, then port (with the offset of the port it sent to): a lookup per datagram with no key string built. */
  private readonly byAddress = new Map<string, Map<number, ListenSession>>();
  private readonly sessions = new SessionList<ListenSession>((session) => this.end(session, session.idleResult()));
  private readonly denied = new Map<string, number>();
  private accepting = true;
  private globalAccess: AccessList;
  private readonly events: SessionEvents;
  private readonly admission: Admission;
  private readonly context: ForwarderContext;
  /** The rule's backends for new sessions (undefined while not accepting). */
  private backends: RuleBackends | undefined = undefined;
  /**
   * Where clients send to, for a PROXY header: the bound address (and the
   * port the client sent to). On a wildcard bind that is the wildcard
   * (0.0.0.0 or ::): Bun does not tell which local address a datagram came
   * in on (no IP_PKTINFO).
   */
  private destinationAddress = "";
  private lastLimitReport = 0;
  /** The rule's per-client limits; kept across reloads, so clients' open sessions still count. */
  private clients: ClientLimiter | undefined;
  readonly counters: UdpCounters = { evicted: 0, deniedDatagrams: 0, droppedDatagrams: 0, rateDroppedDatagrams: 0, backendErrors: 0 };
  /** The rule's bandwidth limits (shared buckets), made once the rule has any. */
  private bandwidth: RuleBandwidth | undefined;

  constructor(
    public rule: ForwardRule,
    context: ForwarderContext,
    /** Which kind of session each mode opens (`udp`, `udptotcp`): a reload may switch between them. */
    private readonly factories: Partial<Record<ForwardRule["mode"], SessionFactory>>,
  ) {
    this.context = context;
    this.globalAccess = context.globalAccess;
    this.events = context.events;
    this.admission = context.admission;
    this.clients = ClientLimiter.follow(undefined, rule);
    if (limitsBandwidth(rule)) this.bandwidth = new RuleBandwidth(rule);
  }

  get active(): number {
    return this.sessions.size;
  }

  bytesInFlight(): [number, number] {
    return this.sessions.byteTotals();
  }

  datagramsDropped(): [number, number] {
    return [this.counters.rateDroppedDatagrams, this.counters.droppedDatagrams];
  }

  /** The port actually bound (the first of a range). */
  get port(): number | undefined {
    return this.sockets.get(this.rule.bind.port)?.port ?? this.sockets.entries().next().value?.[1].port;
  }

  /** Sockets listening now: one per port. */
  get ports(): number {
    return this.sockets.size;
  }

  async start(): Promise<void> {
    await this.sockets.open(this.rule.bind);
    this.sockets.commit(this.rule.bind);
    this.backends = this.context.backends.acquire(this.rule);
  }

  private async listenOn(endpoint: Endpoint): Promise<ListenSocket> {
    const inherited = takeInherited(endpoint)?.fd;
    // Bun's udpSocket takes a descriptor (systemd's, or the oi's before an upgrade) though its types leave `fd` out.
    const where = inherited === undefined ? { hostname: endpoint.host, port: endpoint.port } : ({ fd: inherited } as unknown as { hostname: string });
    const socket: ListenSocket = await Bun.udpSocket({
      ...where,
      binaryType: "uint8array",
      socket: listenHandlers,
    });
    socket.owner = this;
    const bound = socket.address;
    socket.boundPort = endpoint.port === 0 ? bound.port : endpoint.port;
    this.destinationAddress = bound.address;
    return socket;
  }

  /** A reload will change the rule's port range: listen on its new ports now (all or nothing); the others stay. */
  async prepare(rule: ForwardRule): Promise<void> {
    await this.sockets.open(rule.bind);
  }

  /** The reload failed: close the ports `prepare` opened. */
  abandon(): void {
    this.sockets.abandon();
  }

  update(rule: ForwardRule, globalAccess: AccessList): void {
    this.rule = rule;
    this.globalAccess = globalAccess;
    this.clients = ClientLimiter.follow(this.clients, rule);
    // Ports the range no longer has close: their sessions get no more replies and end when idle.
    this.sockets.commit(rule.bind);
    this.denied.clear();
    if (this.bandwidth !== undefined) this.bandwidth.update(rule);
    else if (limitsBandwidth(rule)) this.bandwidth = new RuleBandwidth(rule);
    if (this.backends !== undefined) {
      const next = this.context.backends.acquire(rule);
      this.context.backends.release(this.backends);
      this.backends = next;
    }
  }

  /**
   * No new sessions from now on. Replies of open sessions still leave from
   * the listening socket, so it stays open until the last session ends; a
   * session now ends after a short silence (an exchange in progress is let
   * finish) rather than its full idle timeout.
   */
  stopAccepting(): void {
    this.accepting = false;
    if (this.backends !== undefined) this.context.backends.release(this.backends);
    this.backends = undefined;
    this.sessions.capIdle(DRAIN_IDLE_MS);
    if (this.sessions.size === 0) this.closeSocket();
  }

  /** Stopping accepting already ends each session after a second of silence. */
  drain(): void {
    this.stopAccepting();
  }

  closeAll(): void {
    let session = this.sessions.oldest;
    while (session !== undefined) {
      const next = session.newer;
      this.end(session, "error: shutting down");
      session = next;
    }
    this.closeSocket();
  }

  /** The hot path: one datagram from a client, sent to `boundPort`. */
  fromClient(datagram: Uint8Array, port: number, address: string, boundPort: number): void {
    const offset = boundPort - this.rule.bind.port;
    const session = this.byAddress.get(address)?.get(port + offset * PORTS) ?? this.newSession(address, port, offset);
    if (session === undefined) return;
    this.sessions.touch(session, Date.now());
    // Over a bandwidth limit a datagram is dropped: UDP may lose it, and a queue would only delay the loss.
    const budgets = session.budgets;
    if (budgets !== undefined && !budgets.fromClient.admitDatagram(datagram.length)) {
      this.counters.rateDroppedDatagrams++;
      return;
    }
    session.bytesIn += datagram.length;
    session.fromClient(datagram);
  }

  toClient(session: ListenSession, datagram: Uint8Array): void {
    // From the port the client sent to (the session's rule is the one it started under).
    const socket = this.sockets.get(session.rule.bind.port + session.offset);
    if (socket === undefined || session.ended) return;
    this.sessions.touch(session, Date.now());
    const budgets = session.budgets;
    if (budgets !== undefined && !budgets.toClient.admitDatagram(datagram.length)) {
      this.counters.rateDroppedDatagrams++;
      return;
    }
    try {
      if (!socket.send(datagram, session.port, session.address)) this.counters.droppedDatagrams++;
    } catch {
      this.counters.droppedDatagrams++;
    }
  }

  /** Remove `session` from the table, close its leg and report it; later calls do nothing. */
  end(session: ListenSession, result: SessionResult): void {
    if (session.ended) return;
    session.result = result;
    this.sessions.remove(session);
    const ports = this.byAddress.get(session.address);
    if (ports !== undefined) {
      ports.delete(session.port + session.offset * PORTS);
      if (ports.size === 0) this.byAddress.delete(session.address);
    }
    session.close(result);
    session.budgets?.close();
    this.admission.release(DESCRIPTORS_PER_SESSION);
    session.clientHold.release();
    this.events.ended({
      rule: session.rule,
      backend: session.backend,
      clientAddress: session.address,
      clientPort: session.port,
      bytesIn: session.bytesIn,
      bytesOut: session.bytesOut,
      startedAt: session.startedAt,
      endedAt: Date.now(),
      result,
      offset: session.offset,
    });
    if (!this.accepting && this.sessions.size === 0) this.closeSocket();
  }

  private newSession(address: string, port: number, offset: number): ListenSession | undefined {
    const rule = this.rule;
    const factory = this.factories[rule.mode];
    const backends = this.backends;
    // A port a reload is still opening is not the rule's yet.
    if (!this.accepting || factory === undefined || backends === undefined || offset < 0 || offset >= portCount(rule.bind)) {
      this.counters.droppedDatagrams++;
      return undefined;
    }
    if (!this.admits(address, port, rule)) return undefined;
    const hold = this.clients === undefined ? NO_CLIENT_HOLD : this.clients.admit(address);
    if (typeof hold === "string") {
      // Over its own limit: this datagram is dropped; the client's open sessions carry on.
      this.counters.droppedDatagrams++;
      if (this.clients?.shouldReport(address) !== false) this.events.denied(rule, address, port, hold);
      return undefined;
    }
    // The rule's own bound: max_sessions, or maxconn when lower. Past it the least recently used session goes.
    const bound = Math.min(rule.maxSessions, rule.maxConnections ?? Number.POSITIVE_INFINITY);
    while (this.sessions.size >= bound && this.sessions.oldest !== undefined) this.evict(this.sessions.oldest);
    if (!this.admission.admit(DESCRIPTORS_PER_SESSION)) {
      // At a process-wide bound (global maxconn, descriptors) this rule's own oldest session makes room, if any.
      const oldest = this.sessions.oldest;
      if (oldest !== undefined) this.evict(oldest);
      if (oldest === undefined || !this.admission.admit(DESCRIPTORS_PER_SESSION)) {
        hold.cancel();
        this.refuseForLimit(address, port, rule);
        return undefined;
      }
    }
    const destination = { address: this.destinationAddress, port: rule.bind.port + offset };
    const session = factory(this, rule, address, port, new DialPlan(backends, address, offset), destination);
    session.clientHold = hold;
    session.offset = offset;
    // Datagrams never wait for a budget: nothing to resume.
    session.budgets = this.bandwidth?.budgetsFor(rule, address, ignore, ignore);
    let ports = this.byAddress.get(address);
    if (ports === undefined) {
      ports = new Map();
      this.byAddress.set(address, ports);
    }
    ports.set(port + offset * PORTS, session);
    this.sessions.add(session, Date.now());
    this.events.started(rule, offset);
    session.open();
    // open() may have failed at once and ended the session.
    return session.ended ? undefined : session;
  }

  /**
   * The access decision for a new source. A refused address is remembered
   * (for the rule's idle timeout, in a small map) so that its further
   * datagrams are dropped without a new check or a new log line.
   */
  private admits(address: string, port: number, rule: ForwardRule): boolean {
    const deniedAt = this.denied.get(address);
    if (deniedAt !== undefined) {
      if (Date.now() - deniedAt < rule.timeout * 1000) {
        this.counters.deniedDatagrams++;
        return false;
      }
      this.denied.delete(address);
    }
    const client = parseClientAddress(address);
    if (client !== undefined && isAllowed(client, this.globalAccess, rule.access)) return true;
    this.counters.deniedDatagrams++;
    if (this.denied.size >= DENIED_MEMORY) this.denied.clear();
    this.denied.set(address, Date.now());
    this.events.denied(rule, address, port, "denied");
    return false;
  }

  private evict(session: ListenSession): void {
    this.counters.evicted++;
    this.end(session, "error: evicted");
  }

  private refuseForLimit(address: string, port: number, rule: ForwardRule): void {
    this.counters.droppedDatagrams++;
    const now = Date.now();
    if (now - this.lastLimitReport < LIMIT_REPORT_MS) return;
    this.lastLimitReport = now;
    this.events.denied(rule, address, port, "global");
  }

  private closeSocket(): void {
    this.sockets.closeAll();
  }
}
