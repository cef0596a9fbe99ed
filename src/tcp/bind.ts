/**
 * @module One TCP (or unix socket) listening address and the stream rules
 * it serves: a listener per port, one or each port of a range
 * (port-listeners.ts), the port a client came to telling its offset in the
 * range, which picks the backend port of a backend range. Usually one rule,
 * and every client goes to it straight from the accept. When several rules
 * share the bind, each chosen by what the client sends first (sni=, host=,
 * protocol=), a client's first bytes are peeked at (peek.ts) and the route
 * table (match.ts) names its rule; a rule that terminates TLS gets the
 * client through a TLS leg (tls/). Before either, a PROXY header is read
 * when the bind's rules accept one. Each rule's own work (access, limits,
 * balancing, dialing, relaying) is its forwarder's.
 */
import { consola } from "consola";
import { FdSocket } from "../fd/socket.ts";
import { IPPROTO_TCP, type Libc, loadLibc, TCP_QUICKACK } from "../libc.ts";
import { listenerKey } from "../config/validate.ts";
import type { ForwarderContext } from "../forwarder.ts";
import { portCount } from "../endpoint.ts";
import { PortListeners } from "../port-listeners.ts";
import { describeMatch } from "../config/model.ts";
import { type FirstLook, RouteTable } from "../match.ts";
import { NO_MATCH } from "../status.ts";
import type { ProxyAddress } from "../proxy-protocol.ts";
import { type AccessList, DEFAULT_PEEK_TIMEOUT_SECONDS, type Endpoint, type ForwardRule, type TlsServerSettings } from "../types.ts";
import { type HeaderOwner, HeaderReader, type HeaderResult, localEnd, refuseHeader, refuseUntrusted, trustedProxy } from "./accept-proxy.ts";
import { TcpForwarder } from "./forwarder.ts";
import { type PeekOwner, Peeker } from "./peek.ts";
import { ListenerHandlers } from "./phases.ts";
import { abort, Leg, legHandlers } from "./relay.ts";
import type { StreamHandlers, StreamListener, StreamSocket } from "./stream-socket.ts";
import { serverTlsOf } from "../tls/certificates.ts";
import { terminateTls } from "../tls/server-leg.ts";
import type { TlsLeg } from "../tls/tls-leg.ts";

/** Where a client came from and connected to, as its PROXY header said (undefined: as the socket says). */
interface Origin {
  client: ProxyAddress | undefined;
  destination: ProxyAddress | undefined;
}

const UNPROXIED: Origin = { client: undefined, destination: undefined };

/** Identity of one rule among those of its bind: a reload keeps its forwarder (and its open connections' counts) when this stays. */
export function routeKey(rule: ForwardRule): string {
  return rule.match === undefined ? "default" : describeMatch(rule.match);
}

export class TcpBind implements HeaderOwner, PeekOwner<Origin> {
  /** A listener per port: one, or each port of a range (the rules of one bind share its ports exactly). */
  private readonly listeners = new PortListeners<StreamListener>(
    (endpoint) => this.listenOn(endpoint),
    (listener) => listener.stop(false),
  );
  private listening = false;
  private rules: ForwardRule[];
  private globalAccess: AccessList;
  private readonly forwarders = new Map<string, TcpForwarder>();
  /** Forwarders of rules a reload removed from this bind, kept while their connections finish. */
  private readonly retired = new Set<TcpForwarder>();
  private table: RouteTable<TcpForwarder> = new RouteTable([]);
  /** The one forwarder every client goes to straight from the accept, when nothing comes before (no header, no peek, no TLS). */
  private direct: TcpForwarder | undefined;
  private libc: Libc | undefined;
  private peekTimeoutMs = DEFAULT_PEEK_TIMEOUT_SECONDS * 1000;
  /** Each port's listener gets these with an `open` of its own (withOpen), which tells the port. */
  private readonly handlers = new ListenerHandlers<Leg>(
    legHandlers,
    (socket) => this.opened(socket, socket.localPort),
    () => this.direct === undefined,
  );

  constructor(
    rules: ForwardRule[],
    private readonly context: ForwarderContext,
  ) {
    this.rules = rules;
    this.globalAccess = context.globalAccess;
    this.route();
  }

  /** The first of the rules this bind serves (in config order): what refusals before a choice are logged under. */
  get rule(): ForwardRule {
    return this.rules[0]!;
  }

  get key(): string {
    return listenerKey(this.rule);
  }

  /** Connections open on every rule of the bind, including rules a reload removed. */
  get active(): number {
    let total = 0;
    for (const forwarder of this.forwarders.values()) total += forwarder.active;
    for (const forwarder of this.retired) total += forwarder.active;
    return total;
  }

  /** The forwarders of the bind's rules, and of removed rules whose connections are still open. */
  all(): TcpForwarder[] {
    for (const forwarder of this.retired) if (forwarder.active === 0) this.retired.delete(forwarder);
    return [...this.forwarders.values(), ...this.retired];
  }

  /** Sockets listening now: one per port. */
  get ports(): number {
    return this.listeners.size;
  }

  async start(): Promise<void> {
    if (this.rules.some((each) => each.tls !== undefined)) await this.loadLibc();
    this.handlers.forStart();
    await this.listeners.open(this.rule.bind);
    this.listeners.commit(this.rule.bind);
    this.listening = true;
    for (const forwarder of this.forwarders.values()) forwarder.start();
  }

  /** Listen on one port, its clients opened with that port (which picks a backend port of a range). */
  private listenOn(endpoint: Endpoint): Promise<StreamListener> {
    const rule = this.rule;
    const port = endpoint.port;
    const options = {
      ipv6Only: rule.bindIpv6Only === true,
      // Worker threads each listen on the port; the kernel spreads clients over them.
      reusePort: this.context.reusePort === true,
      socketMode: rule.socketMode,
    };
    return this.context.sockets.listen(endpoint, options, this.handlers.withOpen((socket) => this.opened(socket, port)));
  }

  /**
   * A reload will give this bind `rules`, whose port range differs (a range
   * widened, narrowed or moved): listen on the new ports now, all or
   * nothing; the ports that stay keep their sockets.
   */
  async prepare(rules: ForwardRule[]): Promise<void> {
    await this.listeners.open(rules[0]!.bind);
  }

  /** The reload failed: close the ports `prepare` opened. */
  abandon(): void {
    this.listeners.abandon();
  }

  /** A reload kept this bind: its rules are now `rules` (kept ones keep their forwarders and open connections). */
  update(rules: ForwardRule[], globalAccess: AccessList): void {
    if (rules.some((each) => each.tls !== undefined)) void this.loadLibc();
    this.rules = rules;
    this.globalAccess = globalAccess;
    this.route();
    // Ports the range no longer has stop listening; their open connections carry on.
    this.listeners.commit(this.rule.bind);
    if (this.handlers.forUpdate() !== undefined) {
      for (const [port, listener] of this.listeners.entries()) listener.reload({ socket: this.handlers.withOpen((socket) => this.opened(socket, port)) });
    }
  }

  /** libc, for the one socket option TLS termination sets (it is not needed otherwise; where it cannot load, termination does without). */
  private async loadLibc(): Promise<void> {
    if (this.libc !== undefined) return;
    const result = await loadLibc();
    if ("libc" in result) this.libc = result.libc;
  }

  /** Make a forwarder per rule (keeping those of rules that stay) and the table that chooses among them. */
  private route(): void {
    const wanted = new Map(this.rules.map((rule) => [routeKey(rule), rule]));
    for (const [key, forwarder] of this.forwarders) {
      const rule = wanted.get(key);
      if (rule !== undefined) {
        forwarder.update(rule, this.globalAccess);
        continue;
      }
      forwarder.stopAccepting();
      this.forwarders.delete(key);
      if (forwarder.active > 0) this.retired.add(forwarder);
    }
    const listening = this.listening;
    for (const [key, rule] of wanted) {
      if (this.forwarders.has(key)) continue;
      const forwarder = new TcpForwarder(rule, { ...this.context, globalAccess: this.globalAccess });
      this.forwarders.set(key, forwarder);
      if (listening) forwarder.start();
    }
    this.table = new RouteTable(this.rules.map((rule) => [rule, this.forwarders.get(routeKey(rule))!] as const));
    // Any rule of the bind may set it; the config check made sure they agree.
    this.peekTimeoutMs = (this.rules.find((rule) => rule.peekTimeout !== undefined)?.peekTimeout ?? DEFAULT_PEEK_TIMEOUT_SECONDS) * 1000;
    const only = this.table.default;
    const plain = !this.table.choosesByFirstBytes && only !== undefined && !only.rule.acceptProxy && only.rule.tls === undefined;
    this.direct = plain ? only : undefined;
  }

  stopAccepting(): void {
    this.listeners.closeAll();
    this.listening = false;
    for (const forwarder of this.forwarders.values()) forwarder.stopAccepting();
  }

  drain(): void {
    this.stopAccepting();
    for (const forwarder of this.all()) forwarder.drain();
  }

  closeAll(): void {
    for (const forwarder of this.all()) forwarder.closeAll();
  }

  /** A client connected to `port` (one of the bind's range). */
  private opened(socket: StreamSocket<unknown>, port: number): void {
    const offset = port - this.rule.bind.port;
    // A port a reload is still opening: its range (and so its backend port) is not the rules' yet.
    if (offset < 0 || offset >= portCount(this.rule.bind)) {
      socket.terminate();
      return;
    }
    const direct = this.direct;
    if (direct !== undefined) {
      direct.accept(socket as StreamSocket<Leg>, offset);
      return;
    }
    // The bind's choice now (the rules on one bind agree on it): a reload may have changed it.
    if (!this.rule.acceptProxy) this.choose(socket, UNPROXIED, undefined);
    else if (!trustedProxy(this.rule, socket)) refuseUntrusted(socket, this.rule, this.context.events);
    else socket.data = new HeaderReader(this, socket as StreamSocket<HeaderReader>);
  }

  headerRead(socket: StreamSocket<HeaderReader>, header: HeaderResult): void {
    const origin = { client: header.client ?? remoteEnd(socket), destination: header.destination ?? localEnd(socket) };
    this.choose(socket, origin, header.rest);
  }

  headerRefused(socket: StreamSocket<HeaderReader>, reason: string): void {
    refuseHeader(socket, this.rule, this.context.events, reason);
  }

  /** Peek at the client's first bytes when the rules are chosen by them; else the bind's one rule takes it. */
  private choose(socket: StreamSocket<unknown>, origin: Origin, early: Uint8Array | undefined): void {
    if (!this.table.choosesByFirstBytes) {
      this.hand(this.table.default, socket, origin, early, false);
      return;
    }
    // A peeking client holds a descriptor before any rule has counted it: it counts against the budget too.
    if (!this.context.admission.reserveDescriptors(1)) {
      socket.terminate();
      this.context.events.denied(this.rule, socket.remoteAddress ?? "", socket.remotePort ?? 0, "global");
      return;
    }
    const peeker = new Peeker<Origin>(this, socket, this.peekTimeoutMs, origin);
    socket.data = peeker;
    // Bytes that came with a PROXY header are the first to look at (the peeker may decide on them at once).
    if (early !== undefined && early.length > 0) peeker.data(socket, early);
    // A direct socket's first bytes are usually there already: read them in this turn of the loop, not the next.
    else if (socket instanceof FdSocket) socket.readPending();
  }

  peeked(socket: StreamSocket<unknown>, look: FirstLook, bytes: Uint8Array, ended: boolean, origin: Origin): void {
    this.context.admission.returnDescriptors(1);
    this.hand(this.table.choose(look), socket, origin, bytes, ended, look);
  }

  peekAbandoned(socket: StreamSocket<unknown>, _bytes: number, origin: Origin): void {
    this.context.admission.returnDescriptors(1);
    this.refuse(socket, origin, "client reset");
  }

  /** Give the client to `route` (or refuse it when no rule matched); `early` bytes go first, `ended`: its FIN came already. */
  private hand(
    route: TcpForwarder | undefined,
    socket: StreamSocket<unknown>,
    origin: Origin,
    early: Uint8Array | undefined,
    ended: boolean,
    look?: FirstLook,
  ): void {
    if (route === undefined) {
      this.refuse(socket, origin, NO_MATCH, look);
      return;
    }
    const client = origin.client ?? remoteEnd(socket);
    // The local end (two getsockname calls) is only needed for a PROXY header.
    const destination = origin.destination ?? (route.rule.proxyProtocol === undefined ? undefined : localEnd(socket));
    // Which port of a range the client came to (a getsockname; a bind of one port needs none).
    const bind = route.rule.bind;
    const offset = bind.portEnd === undefined ? 0 : socket.localPort - bind.port;
    const tls = route.rule.tls;
    if (tls !== undefined) {
      // The ClientHello (and anything after it) is the TLS leg's to read, not the backend's.
      route.begin(socket, client, destination, undefined, offset, (raw) => this.terminate(raw, early ?? NO_BYTES, tls));
      return;
    }
    if (!route.begin(socket, client, destination, early, offset)) return;
    // The FIN came while peeking: the relay passes it on once the early bytes are written.
    if (ended && socket.data instanceof Leg) legHandlers.end(socket as StreamSocket<Leg>);
  }

  /** The client's TLS, ended here: the relay gets the plaintext leg (or a reason when TLS cannot start). */
  private terminate(raw: StreamSocket<unknown>, hello: Uint8Array, settings: TlsServerSettings): StreamSocket<unknown> | string {
    const server = serverTlsOf(settings);
    if (!server.ok) return server.reason;
    // Taken before the hand-over to Bun's TLS: the descriptor stays the same, its owner changes.
    const fd = descriptorOf(raw);
    const leg = terminateTls<Leg>(raw, hello, server.value, tlsClientHandlers, undefined as unknown as Leg);
    if (typeof leg === "string") return leg;
    // A client that never finishes its handshake must not hold its socket (and its backend's) for good.
    const timer = setTimeout(handshakeTimedOut, TLS_HANDSHAKE_TIMEOUT_MS, leg);
    const libc = this.libc;
    leg.onSecure = () => {
      clearTimeout(timer);
      // Bun's TLS server keeps its TLS 1.3 session tickets until its next write, so nothing carries the ACK
      // of the client's Finished: a client that sends its request as a second small write (Nagle on, as
      // ab's OpenSSL does) then waits for the delayed ACK, 40 ms. An immediate ACK here releases it.
      if (libc !== undefined && fd >= 0) libc.setIntOption(fd, IPPROTO_TCP, TCP_QUICKACK, 1);
    };
    return leg;
  }

  /** Close a client no rule takes, and log it (under the bind's first rule) as a connection that ended at once. */
  private refuse(socket: StreamSocket<unknown>, origin: Origin, reason: string, look?: FirstLook): void {
    const client = origin.client ?? remoteEnd(socket);
    socket.terminate();
    if (look !== undefined && reason === NO_MATCH) consola.debug(`${this.key}: ${client.address}: no rule for ${describeLook(look)}`);
    const now = Date.now();
    this.context.events.ended({
      rule: this.rule,
      backend: undefined,
      clientAddress: client.address,
      clientPort: client.port,
      bytesIn: 0,
      bytesOut: 0,
      startedAt: now,
      endedAt: now,
      result: `error: ${reason}`,
    });
  }
}

/** A TLS client has this long from being handed to its rule to finish its handshake. */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
const NO_BYTES = new Uint8Array(0);

/**
 * The relay's handlers for a client whose TLS oi ends, but for one thing: a
 * handshake that fails ends the relay with its reason (`error: TLS
 * handshake failed: WRONG_VERSION_NUMBER`) rather than as a reset.
 */
const tlsClientHandlers: StreamHandlers<Leg> = {
  ...legHandlers,
  close(socket: StreamSocket<Leg>, error?: Error): void {
    const relay = (socket.data as Leg | undefined)?.relay;
    if (error !== undefined && relay !== undefined && !(socket as TlsLeg<Leg>).secure) abort(relay, `error: TLS handshake failed: ${tlsReason(error)}`);
    legHandlers.close(socket, error);
  },
};

/** The reason of an OpenSSL error (`error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER`): its last part, a fixed word. */
function tlsReason(error: Error): string {
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && code !== "") return code;
  return error.message.split(":").at(-1)?.trim() || "unknown";
}

function handshakeTimedOut(leg: TlsLeg<Leg>): void {
  if (leg.secure) return;
  const relay = leg.data?.relay;
  if (relay !== undefined) abort(relay, "error: TLS handshake timed out");
  else leg.terminate();
}

/** The descriptor of a socket of either layer (Bun's undocumented getter, or a direct socket's); -1 when there is none. */
function descriptorOf(socket: StreamSocket<unknown>): number {
  const fd = (socket as unknown as { fd?: unknown }).fd;
  return typeof fd === "number" ? fd : -1;
}

function remoteEnd(socket: StreamSocket<unknown>): ProxyAddress {
  return { address: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 };
}

/** `tls sni=a.example.com`, `http host=www.example.com`, `ssh`, `silent`, `other`. */
function describeLook(look: FirstLook): string {
  if (look.name === undefined) return look.kind;
  return `${look.kind} ${look.kind === "tls" ? "sni" : "host"}=${look.name}`;
}
