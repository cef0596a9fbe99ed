/**
 * @module TCP to UDP: each accepted TCP connection gets its own UDP socket
 * connected to the backend the rule's balancer picks for it, kept for the
 * connection's life (upstream.ts: the trial, failover on refusal, the PROXY
 * v2 header at the start of the first datagram). Bytes from the client
 * leave as datagrams: each read chunk cut into pieces of at most
 * `max_datagram` bytes, or, with `len16` framing, one datagram per frame.
 * Datagrams from the backend are written to the client's stream (framed or
 * raw) through a bounded queue: Bun's UDP sockets cannot be paused, so past
 * the bound, while the client is not reading, datagrams are dropped and
 * counted. The client's FIN or close, or the idle timeout, ends the session.
 *
 * With `accept_proxy` the client's PROXY header is read and stripped first
 * (as the TCP forwarder does): the address in it is the client's for the
 * access rules, the log, the balancer and the PROXY header sent on.
 */
import { takeInherited } from "../systemd/inherited.ts";
import type { TCPSocketListener } from "bun";
import type { StreamHandlers, StreamSocket } from "../tcp/stream-socket.ts";
import { DialPlan, type RuleBackends } from "../backends.ts";
import type { Forwarder, ForwarderContext } from "../forwarder.ts";
import { type ClientHold, ClientLimiter } from "../client-limits.ts";
import { type Admission, admitClient } from "../limits.ts";
import type { ProxyAddress } from "../proxy-protocol.ts";
import type { SessionEvents, SessionResult } from "../session.ts";
import { type HeaderOwner, HeaderReader, type HeaderResult, localEnd, refuseHeader, refuseUntrusted, trustedProxy } from "../tcp/accept-proxy.ts";
import { ListenerHandlers } from "../tcp/phases.ts";
import { portCount } from "../endpoint.ts";
import { PortListeners } from "../port-listeners.ts";
import type { AccessList, Backend, Endpoint, ForwardRule } from "../types.ts";
import { FrameReader, type FrameSink, StreamQueue } from "./framing.ts";
import { DRAIN_IDLE_MS, type UdpCounters } from "./listener.ts";
import { SessionList, type Tracked } from "./sessions.ts";
import { UdpLeg, type UdpLegOwner, udpProxyHeader } from "./upstream.ts";
import { type ConnectionBudgets, limitsBandwidth, RuleBandwidth } from "../rate/rule-bandwidth.ts";

export class TcpToUdpSession implements Tracked<TcpToUdpSession>, UdpLegOwner, FrameSink {
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
  /** The port of the rule's bind range the client connected to, as an offset from its first (0 on a bind of one port). */
  offset = 0;
  private readonly leg: UdpLeg;
  private readonly queue: StreamQueue;
  private readonly reader: FrameReader | undefined;
  /** The client sent its FIN: end once what is queued for it is written. */
  private closing = false;
  /** The session's bandwidth budgets: a datagram over budget, either way, is dropped; undefined: unlimited. */
  budgets: ConnectionBudgets | undefined = undefined;

  constructor(
    readonly owner: TcpToUdpForwarder,
    /** The rule as it was at accept: a reload does not change an open connection. */
    readonly rule: ForwardRule,
    readonly client: StreamSocket<TcpToUdpSession>,
    readonly clientAddress: string,
    readonly clientPort: number,
    plan: DialPlan,
    /** Where the client connected to, for a PROXY header. */
    destination: ProxyAddress,
    /** Its client's hold on the rule's per-client limits, released by the owner when the session ends. */
    readonly clientHold: ClientHold,
  ) {
    this.idleMs = rule.timeout * 1000;
    const framed = rule.framing === "len16";
    this.queue = new StreamQueue(framed);
    this.reader = framed ? new FrameReader() : undefined;
    this.leg = new UdpLeg(this, plan, udpProxyHeader(rule, { address: clientAddress, port: clientPort }, destination));
  }

  get ended(): boolean {
    return this.result !== undefined;
  }

  get counters(): UdpCounters {
    return this.owner.counters;
  }

  /** The backend the session reached; undefined when none was. */
  get backend(): Backend | undefined {
    return this.leg.backend;
  }

  open(): void {
    // Hold the client's bytes in its kernel buffer until the UDP socket exists.
    this.client.pause();
    this.leg.open();
  }

  fromClient(chunk: Uint8Array): void {
    if (this.ended) return;
    this.bytesIn += chunk.length;
    this.owner.touch(this);
    this.forward(chunk);
  }

  /** A whole datagram read from a framed stream. */
  frame(datagram: Uint8Array): void {
    this.toBackend(datagram);
  }

  /** One datagram up to the backend, unless a bandwidth limit has no room for it. */
  private toBackend(datagram: Uint8Array): void {
    const budgets = this.budgets;
    if (budgets !== undefined && !budgets.fromClient.admitDatagram(datagram.length)) {
      this.owner.counters.rateDroppedDatagrams++;
      return;
    }
    this.leg.send(datagram);
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
    const budgets = this.budgets;
    if (budgets !== undefined && !budgets.toClient.admitDatagram(datagram.length)) {
      this.owner.counters.rateDroppedDatagrams++;
      return;
    }
    const result = this.queue.send(this.client, datagram);
    if (result === "dropped") this.owner.counters.droppedDatagrams++;
    else if (result === "closed") this.end("error: write failed");
  }

  legReady(): void {
    if (!this.ended) this.client.resume();
  }

  /** A refused target is being replaced: the client waits in its kernel buffer meanwhile. */
  legSwitching(): void {
    if (!this.ended) this.client.pause();
  }

  legFailed(result: SessionResult): void {
    this.end(result);
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
    return this.leg.refused && !this.leg.answered ? "refused" : "timeout";
  }

  end(result: SessionResult): void {
    this.owner.end(this, result);
  }

  /** Release both legs and the balancer's pick; called once, by the owner. */
  close(result: SessionResult): void {
    this.leg.close(this.bytesIn, this.bytesOut);
    if (result === "done" || result === "timeout") this.client.end();
    else this.client.terminate();
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
      this.toBackend(chunk);
      return;
    }
    for (let at = 0; at < chunk.length; at += max) this.toBackend(chunk.subarray(at, at + max));
  }
}

/** A session holds two descriptors: the client's TCP connection and its UDP socket. */
const DESCRIPTORS_PER_SESSION = 2;

/**
 * The session of a client socket. A client refused at accept never got one
 * (and is already closed), and one refused after its PROXY header still
 * carries its header reader: hence a check, not a cast.
 */
function sessionOf(socket: StreamSocket<TcpToUdpSession>): TcpToUdpSession | undefined {
  const data: unknown = socket.data;
  return data instanceof TcpToUdpSession ? data : undefined;
}

const clientHandlers = {
  binaryType: "uint8array",
  data(socket: StreamSocket<TcpToUdpSession>, chunk: Uint8Array): void {
    sessionOf(socket)?.fromClient(chunk);
  },
  drain(socket: StreamSocket<TcpToUdpSession>): void {
    sessionOf(socket)?.drained();
  },
  end(socket: StreamSocket<TcpToUdpSession>): void {
    sessionOf(socket)?.clientEnded();
  },
  error(socket: StreamSocket<TcpToUdpSession>, error: Error): void {
    const session = sessionOf(socket);
    if (session !== undefined) session.error = error;
  },
  close(socket: StreamSocket<TcpToUdpSession>, error?: Error): void {
    sessionOf(socket)?.clientClosed(error);
  },
} satisfies StreamHandlers<TcpToUdpSession>;


export class TcpToUdpForwarder implements Forwarder, HeaderOwner {
  /** A listener per port: one, or each port of a range. */
  private readonly listeners = new PortListeners<TCPSocketListener<unknown>>(
    (endpoint) => this.listenOn(endpoint),
    (listener) => listener.stop(false),
  );
  private readonly sessions = new SessionList<TcpToUdpSession>((session) => this.end(session, session.idleResult()));
  private globalAccess: AccessList;
  private readonly events: SessionEvents;
  private readonly admission: Admission;
  private readonly context: ForwarderContext;
  /** The rule's backends for new connections (undefined while not accepting). */
  private backends: RuleBackends | undefined = undefined;
  /** The rule's per-client limits; kept across reloads, so clients' open sessions still count. */
  private clients: ClientLimiter | undefined;
  readonly counters: UdpCounters = { evicted: 0, deniedDatagrams: 0, droppedDatagrams: 0, rateDroppedDatagrams: 0, backendErrors: 0 };
  /** The rule's bandwidth limits (shared buckets), made once the rule has any. */
  private bandwidth: RuleBandwidth | undefined;
  private readonly handlers = new ListenerHandlers<TcpToUdpSession>(
    clientHandlers,
    (socket) => this.opened(socket),
    () => this.rule.acceptProxy,
  );

  constructor(
    public rule: ForwardRule,
    context: ForwarderContext,
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
    return this.listeners.get(this.rule.bind.port)?.port ?? this.listeners.entries().next().value?.[1].port;
  }

  /** Sockets listening now: one per port. */
  get ports(): number {
    return this.listeners.size;
  }

  async start(): Promise<void> {
    this.handlers.forStart();
    await this.listeners.open(this.rule.bind);
    this.listeners.commit(this.rule.bind);
    this.backends = this.context.backends.acquire(this.rule);
  }

  private listenOn(endpoint: Endpoint): TCPSocketListener<unknown> {
    // ipv6Only and fd are honoured by Bun's listen though its types leave them out (hence the typed variable).
    const inherited = takeInherited(endpoint)?.fd;
    // With a descriptor, no address: Bun would bind one instead.
    const where = inherited === undefined ? { hostname: endpoint.host, port: endpoint.port } : ({ fd: inherited } as unknown as { hostname: string; port: number });
    const options: Bun.TCPSocketListenOptions<unknown> & { ipv6Only: boolean } = {
      ...where,
      // The client's FIN must arrive as `end`, so what is queued for it can still be written.
      allowHalfOpen: true,
      ipv6Only: this.rule.bindIpv6Only === true,
      socket: this.handlers.forStart(),
    };
    return Bun.listen<unknown>(options);
  }

  /** A reload will change the rule's port range: listen on its new ports now (all or nothing); the others stay. */
  async prepare(rule: ForwardRule): Promise<void> {
    await this.listeners.open(rule.bind);
  }

  /** The reload failed: close the ports `prepare` opened. */
  abandon(): void {
    this.listeners.abandon();
  }

  /** A client connected: its PROXY header first when the rule reads one (the rule's choice now: a reload may have changed it). */
  private opened(socket: StreamSocket<unknown>): void {
    if (this.rule.acceptProxy && !trustedProxy(this.rule, socket)) refuseUntrusted(socket, this.rule, this.events);
    else if (this.rule.acceptProxy) socket.data = new HeaderReader(this, socket as StreamSocket<HeaderReader>);
    else this.begin(socket as StreamSocket<TcpToUdpSession>, { address: socket.remoteAddress, port: socket.remotePort }, localEnd(socket), undefined);
  }

  update(rule: ForwardRule, globalAccess: AccessList): void {
    this.rule = rule;
    this.globalAccess = globalAccess;
    this.clients = ClientLimiter.follow(this.clients, rule);
    // Ports the range no longer has stop listening; their open connections carry on.
    this.listeners.commit(rule.bind);
    if (this.bandwidth !== undefined) this.bandwidth.update(rule);
    else if (limitsBandwidth(rule)) this.bandwidth = new RuleBandwidth(rule);
    const handlers = this.handlers.forUpdate();
    if (handlers !== undefined) for (const [, listener] of this.listeners.entries()) listener.reload({ socket: handlers });
    if (this.backends !== undefined) {
      const next = this.context.backends.acquire(rule);
      this.context.backends.release(this.backends);
      this.backends = next;
    }
  }

  stopAccepting(): void {
    this.listeners.closeAll();
    if (this.backends !== undefined) this.context.backends.release(this.backends);
    this.backends = undefined;
    this.sessions.capIdle(DRAIN_IDLE_MS);
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
  }

  touch(session: TcpToUdpSession): void {
    this.sessions.touch(session, Date.now());
  }

  end(session: TcpToUdpSession, result: SessionResult): void {
    if (session.ended) return;
    session.result = result;
    this.sessions.remove(session);
    session.close(result);
    session.budgets?.close();
    this.admission.release(DESCRIPTORS_PER_SESSION);
    session.clientHold.release();
    this.events.ended({
      rule: session.rule,
      backend: session.backend,
      clientAddress: session.clientAddress,
      clientPort: session.clientPort,
      bytesIn: session.bytesIn,
      bytesOut: session.bytesOut,
      startedAt: session.startedAt,
      endedAt: Date.now(),
      result,
      offset: session.offset,
    });
  }

  headerRead(socket: StreamSocket<HeaderReader>, header: HeaderResult): void {
    const client = header.client ?? { address: socket.remoteAddress, port: socket.remotePort };
    // From here on the socket is a client like any other: its session becomes the socket's data.
    this.begin(socket as unknown as StreamSocket<TcpToUdpSession>, client, header.destination ?? localEnd(socket), header.rest);
  }

  headerRefused(socket: StreamSocket<HeaderReader>, reason: string): void {
    refuseHeader(socket, this.rule, this.events, reason);
  }


  /**
   * A client is here (its PROXY header read, when the rule wants one): check
   * it, count it, and open its session. `early` holds bytes it sent after its header.
   */
  private begin(socket: StreamSocket<TcpToUdpSession>, client: ProxyAddress, destination: ProxyAddress, early: Uint8Array | undefined): void {
    const rule = this.rule;
    // Which port of a range the client came to (a getsockname; a bind of one port needs none).
    const offset = rule.bind.portEnd === undefined ? 0 : socket.localPort - rule.bind.port;
    if (offset < 0 || offset >= portCount(rule.bind)) {
      // A port a reload is still opening: not the rule's yet.
      socket.terminate();
      return;
    }
    const backends = this.backends;
    const verdict =
      backends === undefined
        ? "rule"
        : admitClient(client.address, rule, this.globalAccess, this.sessions.size, this.admission, DESCRIPTORS_PER_SESSION, this.clients);
    if (typeof verdict === "string" || backends === undefined) {
      socket.terminate();
      this.events.denied(rule, client.address, client.port, typeof verdict === "string" ? verdict : "rule");
      return;
    }
    const plan = new DialPlan(backends, client.address, offset);
    const session = new TcpToUdpSession(this, rule, socket, client.address, client.port, plan, destination, verdict);
    session.offset = offset;
    socket.data = session;
    // Datagrams never wait for a budget: nothing to resume.
    session.budgets = this.bandwidth?.budgetsFor(rule, client.address, ignore, ignore);
    this.sessions.add(session, Date.now());
    this.events.started(rule, offset);
    if (rule.keepalive !== undefined) socket.setKeepAlive(true, rule.keepalive * 1000);
    session.open();
    if (early !== undefined && early.length > 0) session.fromClient(early);
  }
}

function ignore(): void {}

export function createTcpToUdpForwarder(rule: ForwardRule, context: ForwarderContext): Forwarder {
  return new TcpToUdpForwarder(rule, context);
}
