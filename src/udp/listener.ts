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
import type { udp } from "bun";
import { isAllowed, parseClientAddress } from "../access.ts";
import { DialPlan, type RuleBackends } from "../backends.ts";
import type { Forwarder, ForwarderContext } from "../forwarder.ts";
import type { Admission } from "../limits.ts";
import type { ProxyAddress } from "../proxy-protocol.ts";
import type { SessionEvents, SessionResult } from "../session.ts";
import type { AccessList, Backend, ForwardRule } from "../types.ts";
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

type ListenSocket = udp.Socket<"uint8array"> & { owner?: UdpListener };

const listenHandlers: udp.SocketHandler<"uint8array"> = {
  data(socket, datagram, port, address, flags) {
    const owner = (socket as ListenSocket).owner;
    if (owner === undefined) return;
    // buffersize (rinetd-uv's): a datagram longer than the buffer would not have been read whole.
    if (flags.truncated || datagram.length > owner.rule.bufferSize) {
      owner.counters.droppedDatagrams++;
      return;
    }
    owner.fromClient(datagram, port, address);
  },
  error() {
    // An unconnected socket gets no ICMP reports on Linux; a failed reply send is caught where it is made.
  },
};

function ignore(): void {}

export class UdpListener implements Forwarder {
  private socket: ListenSocket | undefined = undefined;
  /** Sessions by client address, then port: a lookup per datagram with no key string built. */
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
   * Where clients send to, for a PROXY header: the bound address and port.
   * On a wildcard bind that is the wildcard (0.0.0.0 or ::): Bun does not
   * tell which local address a datagram came in on (no IP_PKTINFO).
   */
  private destination: ProxyAddress = { address: "", port: 0 };
  private lastLimitReport = 0;
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

  /** The port actually bound. */
  get port(): number | undefined {
    return this.socket?.port;
  }

  async start(): Promise<void> {
    const socket: ListenSocket = await Bun.udpSocket({
      hostname: this.rule.bind.host,
      port: this.rule.bind.port,
      binaryType: "uint8array",
      socket: listenHandlers,
    });
    socket.owner = this;
    this.socket = socket;
    const bound = socket.address;
    this.destination = { address: bound.address, port: bound.port };
    this.backends = this.context.backends.acquire(this.rule);
  }

  update(rule: ForwardRule, globalAccess: AccessList): void {
    this.rule = rule;
    this.globalAccess = globalAccess;
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

  /** The hot path: one datagram from a client. */
  fromClient(datagram: Uint8Array, port: number, address: string): void {
    const session = this.byAddress.get(address)?.get(port) ?? this.newSession(address, port);
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
    const socket = this.socket;
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
      ports.delete(session.port);
      if (ports.size === 0) this.byAddress.delete(session.address);
    }
    session.close(result);
    session.budgets?.close();
    this.admission.release(DESCRIPTORS_PER_SESSION);
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
    });
    if (!this.accepting && this.sessions.size === 0) this.closeSocket();
  }

  private newSession(address: string, port: number): ListenSession | undefined {
    const rule = this.rule;
    const factory = this.factories[rule.mode];
    const backends = this.backends;
    if (!this.accepting || factory === undefined || backends === undefined) {
      this.counters.droppedDatagrams++;
      return undefined;
    }
    if (!this.admits(address, port, rule)) return undefined;
    // The rule's own bound: max_sessions, or maxconn when lower. Past it the least recently used session goes.
    const bound = Math.min(rule.maxSessions, rule.maxConnections ?? Number.POSITIVE_INFINITY);
    while (this.sessions.size >= bound && this.sessions.oldest !== undefined) this.evict(this.sessions.oldest);
    if (!this.admission.admit(DESCRIPTORS_PER_SESSION)) {
      // At a process-wide bound (global maxconn, descriptors) this rule's own oldest session makes room, if any.
      const oldest = this.sessions.oldest;
      if (oldest !== undefined) this.evict(oldest);
      if (oldest === undefined || !this.admission.admit(DESCRIPTORS_PER_SESSION)) {
        this.refuseForLimit(address, port, rule);
        return undefined;
      }
    }
    const session = factory(this, rule, address, port, new DialPlan(backends, address), this.destination);
    // Datagrams never wait for a budget: nothing to resume.
    session.budgets = this.bandwidth?.budgetsFor(rule, address, ignore, ignore);
    let ports = this.byAddress.get(address);
    if (ports === undefined) {
      ports = new Map();
      this.byAddress.set(address, ports);
    }
    ports.set(port, session);
    this.sessions.add(session, Date.now());
    this.events.started(rule);
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
    this.events.denied(rule, address, port, "limit");
  }

  private closeSocket(): void {
    this.socket?.close();
    this.socket = undefined;
  }
}
