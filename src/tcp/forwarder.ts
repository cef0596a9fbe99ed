/**
 * @module One stream forwarding rule at run time (TCP or unix socket on
 * either side): the access and limit checks of a client its bind hands it
 * (bind.ts listens, reads PROXY headers and chooses among the rules sharing
 * it), and the upstream connect: the backend the balancer picks, each of its
 * addresses in order, then the next backend, with oi's own connect timeout
 * (Bun has none). Moving bytes is the relay's job (relay.ts).
 */
import { consola } from "consola";
import type { StreamSocket } from "./stream-socket.ts";
import { DialPlan, type DialTarget, type RuleBackends } from "../backends.ts";
import type { Forwarder, ForwarderContext } from "../forwarder.ts";
import { ClientLimiter } from "../client-limits.ts";
import { type Admission, admitClient } from "../limits.ts";
import { encodeProxyV1, encodeProxyV2, type ProxyAddress } from "../proxy-protocol.ts";
import type { SessionEvents, SessionResult } from "../session.ts";
import type { AccessList, ForwardRule } from "../types.ts";
import { localEnd } from "./accept-proxy.ts";
import { abort, closeIfQuiet, flush, holdUntilConnected, type Leg, legHandlers, Relay, type RelayOwner, upstreamOpened } from "./relay.ts";
import { limitsBandwidth, RuleBandwidth } from "../rate/rule-bandwidth.ts";
import { type Libc, loadLibc } from "../libc.ts";

/** A relayed connection holds two descriptors: the client's and the backend's (a spliced one more, counted at its handoff). */
const DESCRIPTORS_PER_RELAY = 2;
/** Idle connections are looked for this often at most (and at a quarter of the idle timeout). */
const IDLE_SWEEP_MAX_MS = 1000;
const IDLE_SWEEP_MIN_MS = 50;
/** While shutting down: a connection that moved no byte for this long, and holds none, is closed at once. */
const QUIET_MS = 1000;
/** ...looked for this often, so it goes within a tenth of a second of being quiet that long. */
const QUIET_SWEEP_MS = 100;

/** One connect attempt of a relay: a late answer to an attempt that was given up is dropped. */
class Attempt {
  timer: Timer | undefined = undefined;
  /** The connecting socket, when its layer can abandon a connect in flight (direct sockets; Bun's cannot). */
  socket: StreamSocket<Attempt> | undefined = undefined;
  constructor(
    readonly forwarder: TcpForwarder,
    readonly relay: Relay,
    readonly target: DialTarget,
  ) {}

  /** Given up (timed out, or its client gone): stop the timer, and the connect itself where it can be stopped. */
  abandon(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const socket = this.socket;
    this.socket = undefined;
    // A reset, so the kernel stops retrying the handshake and the descriptor is free at once.
    socket?.terminate();
  }
}

/** Handlers of an upstream socket while it connects; once open it moves to the relay's handlers. */
const connectingHandlers = {
  binaryType: "uint8array" as const,
  open(socket: StreamSocket<Attempt>): void {
    socket.data.forwarder.attemptOpened(socket.data, socket);
  },
  connectError(socket: StreamSocket<Attempt>, error: Error): void {
    // Bun reports nearly every connect errno as ECONNREFUSED; "refused" is all it tells. A TLS backend may also fail its handshake.
    const attempt = socket.data;
    const local = localDialFailure(error);
    if (local !== undefined) attempt.forwarder.attemptFailedHere(attempt, local);
    else attempt.forwarder.attemptFailed(attempt, attempt.target.tls === undefined ? "refused" : tlsDialFailure(error));
  },
  data(): void {},
  drain(): void {},
  end(): void {},
  close(): void {},
  error(): void {},
};

/** Codes of a connect that failed before TLS began: the backend is not there, as for a plain connect. */
const UNREACHED = /^(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EADDRNOTAVAIL|ENOENT)$/;

/** How a dial to a TLS backend failed: "refused" when it never answered, else the TLS reason (a certificate that did not verify, a server that speaks no TLS). */
function tlsDialFailure(error: Error): SessionResult {
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && UNREACHED.test(code)) return "refused";
  return `error: backend TLS ${typeof code === "string" ? code : error.message}`;
}

/**
 * A connect that failed on this machine, not at the backend: the kernel had
 * no local port left for that destination (EADDRNOTAVAIL; the direct socket
 * layer tells it, Bun's says ECONNREFUSED). The backend is not to blame.
 */
function localDialFailure(error: Error): SessionResult | undefined {
  return (error as { code?: unknown }).code === "EADDRNOTAVAIL" ? "error: no free local port (EADDRNOTAVAIL)" : undefined;
}

/** Local dial failures are logged at most this often per rule (a client per failure would flood the log). */
const LOCAL_FAILURE_LOG_MS = 10_000;

function attemptTimedOut(attempt: Attempt): void {
  attempt.timer = undefined;
  attempt.abandon();
  attempt.forwarder.attemptFailed(attempt, "timeout");
}


export class TcpForwarder implements Forwarder, RelayOwner {
  private readonly relays = new Set<Relay>();
  private globalAccess: AccessList;
  private readonly events: SessionEvents;
  private readonly admission: Admission;
  private readonly context: ForwarderContext;
  private backends: RuleBackends | undefined;
  /** The rule's per-client limits; kept across reloads, so clients' open connections still count. */
  private clients: ClientLimiter | undefined;
  private idleSweep: Timer | undefined;
  /** Set by a shutdown's drain: quiet connections are closed. */
  private draining = false;
  /** libc, once loaded by the drain, to see what the kernel still holds for a connection. */
  private libc: Libc | undefined;
  /** When a local dial failure was last logged (performance.now), so a burst of them makes one line. */
  private localFailureLoggedAt = -Infinity;
  /** The rule's bandwidth limits (shared buckets), made once the rule has any. */
  private bandwidth: RuleBandwidth | undefined;

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
    return this.relays.size;
  }

  /** Ready to take clients from its bind (which listens). */
  start(): void {
    this.backends = this.context.backends.acquire(this.rule);
    this.armIdleSweep();
  }

  update(rule: ForwardRule, globalAccess: AccessList): void {
    this.rule = rule;
    this.globalAccess = globalAccess;
    this.clients = ClientLimiter.follow(this.clients, rule);
    if (this.bandwidth !== undefined) this.bandwidth.update(rule);
    else if (limitsBandwidth(rule)) this.bandwidth = new RuleBandwidth(rule);
    if (this.backends !== undefined) {
      const next = this.context.backends.acquire(rule);
      this.context.backends.release(this.backends);
      this.backends = next;
    }
    this.armIdleSweep();
  }

  /** No more clients (its bind stopped listening, or a reload removed the rule); open connections carry on. */
  stopAccepting(): void {
    if (this.backends !== undefined) this.context.backends.release(this.backends);
    this.backends = undefined;
  }

  /**
   * The process is stopping: stop accepting, and from now on close each
   * connection once it has moved no byte for QUIET_MS and holds none (see
   * closeIfQuiet), as nginx closes idle connections on a graceful stop; the
   * others get the rest of the grace period.
   */
  drain(): void {
    this.stopAccepting();
    this.draining = true;
    // Already loaded when splicing runs; a failure only means the kernel's queues are not looked at.
    void loadLibc().then((result) => {
      if ("libc" in result) this.libc = result.libc;
    });
    this.armIdleSweep();
  }

  closeAll(): void {
    for (const relay of [...this.relays]) abort(relay, "error: shutting down");
    if (this.idleSweep !== undefined) clearInterval(this.idleSweep);
    this.idleSweep = undefined;
  }

  bytesInFlight(): [number, number] {
    let bytesIn = 0;
    let bytesOut = 0;
    for (const relay of this.relays) {
      bytesIn += relay.bytesIn;
      bytesOut += relay.bytesOut;
    }
    return [bytesIn, bytesOut];
  }

  reserveDescriptors(relay: Relay, descriptors: number): boolean {
    if (!this.admission.reserveDescriptors(descriptors)) return false;
    relay.descriptors += descriptors;
    return true;
  }

  returnDescriptors(relay: Relay, descriptors: number): void {
    this.admission.returnDescriptors(descriptors);
    relay.descriptors -= descriptors;
  }

  relayEnded(relay: Relay): void {
    this.relays.delete(relay);
    relay.budgets?.close();
    // A connect still in flight: nobody is waiting for it any more.
    const attempt = relay.attempt;
    if (attempt instanceof Attempt) attempt.abandon();
    this.admission.release(relay.descriptors, relay.rule);
    relay.clientHold.release();
    const backend = relay.dial.connected;
    if (backend !== undefined) relay.dial.closed(relay.bytesIn, relay.bytesOut);
    else relay.dial.abandon();
    this.events.ended({
      rule: relay.rule,
      backend,
      clientAddress: relay.clientAddress,
      clientPort: relay.clientPort,
      bytesIn: relay.bytesIn,
      bytesOut: relay.bytesOut,
      startedAt: relay.startedAt,
      endedAt: Date.now(),
      result: relay.result ?? "done",
      offset: relay.dial.offset,
    });
  }

  /** The upstream answered: hand it to the relay, after a PROXY header when the rule sends one. */
  attemptOpened(attempt: Attempt, socket: StreamSocket<Attempt>): void {
    const relay = attempt.relay;
    if (relay.attempt !== attempt || relay.ended) {
      socket.terminate();
      return;
    }
    if (attempt.timer !== undefined) clearTimeout(attempt.timer);
    relay.attempt = undefined;
    const upstream = socket as unknown as StreamSocket<Leg>;
    upstream.reload({ socket: legHandlers });
    upstream.data = relay.upstream;
    relay.dial.opened();
    const tls = attempt.target.tls !== undefined;
    // splice(2) is wired for TCP on both legs only, and moves bytes as they are: not through TLS.
    if (tls || relay.dial.connected?.endpoint.transport !== "tcp") relay.splice = undefined;
    const keepalive = relay.rule.keepalive;
    if (keepalive !== undefined) upstream.setKeepAlive(true, keepalive * 1000);
    // To a TLS backend the PROXY header went in clear before the handshake (see dial).
    upstreamOpened(relay.upstream, upstream, tls ? undefined : this.proxyHeader(relay));
  }

  /** This attempt failed (refused, unreachable, timed out): try the next target, or give up on the client. */
  /**
   * A connect failed on this machine (no local port for the destination):
   * the client gets the next target as after any failure, but the backend's
   * health does not suffer for it, and the log says why, every ten seconds
   * at most.
   */
  attemptFailedHere(attempt: Attempt, why: SessionResult): void {
    const now = performance.now();
    if (now - this.localFailureLoggedAt >= LOCAL_FAILURE_LOG_MS) {
      this.localFailureLoggedAt = now;
      consola.warn(
        `rule ${this.rule.name}: cannot connect to ${attempt.target.backend.name}: ${why.replace(/^error: /, "")}; too many connections to one backend address for the local port range (net.ipv4.ip_local_port_range), or use several source addresses`,
      );
    }
    attempt.relay.dial.spareCurrent();
    this.attemptFailed(attempt, why);
  }

  attemptFailed(attempt: Attempt, why: SessionResult): void {
    const relay = attempt.relay;
    if (attempt.timer !== undefined) clearTimeout(attempt.timer);
    if (relay.attempt !== attempt || relay.ended) return;
    relay.attempt = undefined;
    relay.lastFailure = why;
    this.connect(relay);
  }

  /** A client straight from the listener (no PROXY header, no peek): the common, fastest way in. `offset`: its port's in the bind's range. */
  accept(socket: StreamSocket<Leg>, offset = 0): void {
    // The local end (two getsockname calls) is only needed for a PROXY header.
    const destination = this.rule.proxyProtocol === undefined ? undefined : localEnd(socket);
    this.begin(socket, { address: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 }, destination, undefined, offset);
  }

  /**
   * A client is here (its PROXY header read, its first bytes peeked, when
   * its bind does either): check it, count it, and connect it. `early` holds
   * bytes it sent already, to go first. `wrap`, when given, turns the
   * admitted socket into the one the relay uses (TLS termination), so a
   * refused client costs no handshake; it gives a reason when it cannot.
   * `offset` is the client's port's place in the bind's port range (0 on a
   * bind of one port): it picks the port of a backend range. False when the
   * client was refused.
   */
  begin(
    socket: StreamSocket<unknown>,
    client: ProxyAddress,
    destination: ProxyAddress | undefined,
    early: Uint8Array | undefined,
    offset: number,
    wrap?: (socket: StreamSocket<unknown>) => StreamSocket<unknown> | string,
  ): boolean {
    const rule = this.rule;
    const backends = this.backends;
    const verdict =
      backends === undefined
        ? "rule"
        : admitClient(client.address, rule, this.globalAccess, this.relays.size, this.admission, DESCRIPTORS_PER_RELAY, this.clients);
    if (typeof verdict === "string" || backends === undefined) {
      // Closed before any upstream exists: a refused client never reaches the backend.
      socket.terminate();
      this.events.denied(rule, client.address, client.port, typeof verdict === "string" ? verdict : "rule");
      return false;
    }
    const wrapped = wrap === undefined ? socket : wrap(socket);
    if (typeof wrapped === "string") {
      // The client's TLS could not even start: it is ended as a connection that failed at once.
      socket.terminate();
      this.admission.release(DESCRIPTORS_PER_RELAY, rule);
      verdict.release();
      const now = Date.now();
      this.events.started(rule, offset);
      this.events.ended({ rule, backend: undefined, clientAddress: client.address, clientPort: client.port, bytesIn: 0, bytesOut: 0, startedAt: now, endedAt: now, result: `error: ${wrapped}`, offset });
      return false;
    }
    const clientSocket = wrapped as StreamSocket<Leg>;
    // splice(2) moves bytes between two TCP sockets as they are: not through TLS.
    const splice = rule.bind.transport === "tcp" && wrap === undefined ? this.context.splice : undefined;
    const relay = new Relay(this, rule, clientSocket, client.address || "unix", client.port, new DialPlan(backends, client.address, offset));
    relay.destination = destination;
    relay.descriptors = DESCRIPTORS_PER_RELAY;
    relay.clientHold = verdict;
    relay.splice = splice?.mode === "off" ? undefined : splice;
    if (this.bandwidth !== undefined) this.limit(relay, this.bandwidth);
    this.relays.add(relay);
    this.events.started(rule, offset);
    if (rule.keepalive !== undefined) socket.setKeepAlive(true, rule.keepalive * 1000);
    // The client is not paused while its backend connects (see holdUntilConnected in relay.ts).
    if (early !== undefined && early.length > 0) {
      // Bytes that came with the PROXY header, or were peeked at, are the client's like any others: counted in, then held.
      relay.client.bytesRead += early.length;
      holdUntilConnected(relay.client, early);
    }
    this.connect(relay);
    return true;
  }

  /**
   * Give the relay's legs their bandwidth budgets, when the rule limits it;
   * on the plain path each write is cut to what its budget allows. A relay
   * with only its own `rate` may still move to the splice worker, which
   * holds it to that rate itself; one under a shared limit (`rate-rule`,
   * `rate-client`) stays plain, since those buckets live in this thread.
   */
  private limit(relay: Relay, bandwidth: RuleBandwidth): void {
    const budgets = bandwidth.budgetsFor(relay.rule, relay.clientAddress, () => flush(relay.client), () => flush(relay.upstream));
    if (budgets === undefined) return;
    relay.budgets = budgets;
    relay.client.budget = budgets.fromClient;
    relay.upstream.budget = budgets.toClient;
    if (budgets.spliceRate === undefined) relay.splice = undefined;
    else relay.spliceRate = budgets.spliceRate;
  }

  /** Try the relay's next target; when there is none, the client is given up on. */
  private connect(relay: Relay): void {
    for (;;) {
      const target = relay.dial.next();
      if (target instanceof Promise) {
        // A name being looked up: carry on when it is known.
        target.then(
          (known) => {
            if (!this.dial(relay, known)) this.connect(relay);
          },
          () => abort(relay, "error: backend lookup failed"),
        );
        return;
      }
      if (this.dial(relay, target)) return;
    }
  }

  /**
   * Start connecting to `target` (or give the client up when there is none).
   * False when Bun refused the target outright (a malformed address), so the
   * caller moves on to the next one.
   */
  private dial(relay: Relay, target: DialTarget | undefined): boolean {
    if (relay.ended) return true;
    if (target === undefined) {
      abort(relay, relay.lastFailure satisfies SessionResult);
      return true;
    }
    const attempt = new Attempt(this, relay, target);
    relay.attempt = attempt;
    const timeout = relay.rule.connectTimeout;
    if (timeout > 0) attempt.timer = setTimeout(attemptTimedOut, timeout * 1000, attempt);
    // A backend that reads a PROXY header and speaks TLS reads the header first, in clear (as haproxy's `send-proxy` with `ssl`).
    const cleartext = target.tls === undefined ? undefined : this.proxyHeader(relay);
    const connecting = this.context.sockets.connect(target, attempt, connectingHandlers, cleartext);
    if (connecting !== undefined) {
      if (connecting !== true) attempt.socket = connecting;
      return true;
    }
    attempt.abandon();
    relay.attempt = undefined;
    return false;
  }

  /** The PROXY header for this relay's backend, when the rule sends one. */
  private proxyHeader(relay: Relay): Uint8Array | undefined {
    const version = relay.rule.proxyProtocol;
    if (version === undefined) return undefined;
    const source = { address: relay.clientAddress === "unix" ? "" : relay.clientAddress, port: relay.clientPort };
    const destination = relay.destination ?? { address: "", port: 0 };
    return version === "v1" ? encodeProxyV1(source, destination) : encodeProxyV2(source, destination, "tcp");
  }

  /**
   * Idle connections are found by a sweep comparing byte counts, not by a
   * timer reset on every chunk: the data path stays free of timer work.
   */
  private armIdleSweep(): void {
    if (this.idleSweep !== undefined) clearInterval(this.idleSweep);
    this.idleSweep = undefined;
    const idle = this.rule.idleTimeout;
    if (idle === undefined && !this.draining) return;
    const idleEvery = idle === undefined ? IDLE_SWEEP_MAX_MS : Math.max(IDLE_SWEEP_MIN_MS, Math.min(IDLE_SWEEP_MAX_MS, (idle * 1000) / 4));
    const every = this.draining ? Math.min(idleEvery, QUIET_SWEEP_MS) : idleEvery;
    this.idleSweep = setInterval(() => this.closeIdle(), every);
    this.idleSweep.unref();
  }

  private closeIdle(): void {
    const now = Date.now();
    const draining = this.draining;
    for (const relay of this.relays) {
      const idle = relay.rule.idleTimeout;
      // Before a shutdown only relays with an idle timeout are watched; while draining, every one.
      if (idle === undefined && !draining) continue;
      const moved = relay.bytesIn + relay.bytesOut;
      if (moved !== relay.bytesAtLastSweep) {
        relay.bytesAtLastSweep = moved;
        relay.lastActivity = now;
        continue;
      }
      const quietFor = now - relay.lastActivity;
      if (idle !== undefined && quietFor >= idle * 1000) abort(relay, "timeout");
      else if (draining && quietFor >= QUIET_MS) closeIfQuiet(relay, this.libc);
    }
  }
}
