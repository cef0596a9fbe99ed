/**
 * @module One TCP forwarding rule at run time: its listener, the access check
 * at accept, and the upstream connect (with its own timeout, since Bun has
 * none). Moving bytes is the relay's job (relay.ts).
 */
import type { Socket, TCPSocketListener } from "bun";
import { isAllowed, parseClientAddress } from "../access.ts";
import type { Forwarder, ForwarderContext } from "../forwarder.ts";
import type { Admission } from "../limits.ts";
import type { SessionEvents } from "../session.ts";
import type { AccessList, ForwardRule } from "../types.ts";
import { abort, type Leg, legHandlers, Relay, type RelayOwner, upstreamOpened } from "./relay.ts";

/** Options Bun accepts for Bun.connect although its type definitions omit them. */
interface ConnectSourceOptions {
  localAddress?: string;
}

const upstreamHandlers = {
  ...legHandlers,
  open(socket: Socket<Leg>): void {
    upstreamOpened(socket.data, socket);
  },
  connectError(socket: Socket<Leg>, _error: Error): void {
    // Bun reports nearly every connect errno as ECONNREFUSED; "refused" is all it tells.
    abort(socket.data.relay, "refused");
  },
};

function connectTimedOut(relay: Relay): void {
  relay.connectTimer = undefined;
  abort(relay, "timeout");
}

/** A relayed connection holds two descriptors: the client's and the backend's. */
const DESCRIPTORS_PER_RELAY = 2;
/** Idle connections are looked for this often at most (and at a quarter of the idle timeout). */
const IDLE_SWEEP_MAX_MS = 1000;
const IDLE_SWEEP_MIN_MS = 50;

export class TcpForwarder implements Forwarder, RelayOwner {
  private listener: TCPSocketListener<Leg> | undefined;
  private readonly relays = new Set<Relay>();
  private globalAccess: AccessList;
  private readonly events: SessionEvents;
  private readonly admission: Admission;
  private idleSweep: Timer | undefined;

  constructor(
    public rule: ForwardRule,
    context: ForwarderContext,
  ) {
    this.globalAccess = context.globalAccess;
    this.events = context.events;
    this.admission = context.admission;
  }

  get active(): number {
    return this.relays.size;
  }

  start(): void {
    const forwarder = this;
    this.listener = Bun.listen<Leg>({
      hostname: this.rule.bind.host,
      port: this.rule.bind.port,
      // Without allowHalfOpen (and an `end` handler) a client's FIN would close both directions.
      allowHalfOpen: true,
      socket: {
        ...legHandlers,
        open(socket: Socket<Leg>): void {
          forwarder.accept(socket);
        },
      },
    });
    this.armIdleSweep();
  }

  update(rule: ForwardRule, globalAccess: AccessList): void {
    this.rule = rule;
    this.globalAccess = globalAccess;
    this.armIdleSweep();
  }

  stopAccepting(): void {
    this.listener?.stop(false);
    this.listener = undefined;
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

  /**
   * Idle connections are found by a sweep comparing byte counts, not by a
   * timer reset on every chunk: the data path stays free of timer work.
   */
  private armIdleSweep(): void {
    if (this.idleSweep !== undefined) clearInterval(this.idleSweep);
    this.idleSweep = undefined;
    const idle = this.rule.idleTimeout;
    if (idle === undefined) return;
    const every = Math.max(IDLE_SWEEP_MIN_MS, Math.min(IDLE_SWEEP_MAX_MS, (idle * 1000) / 4));
    this.idleSweep = setInterval(() => this.closeIdle(), every);
    this.idleSweep.unref();
  }

  private closeIdle(): void {
    const now = Date.now();
    for (const relay of this.relays) {
      const idle = relay.rule.idleTimeout;
      if (idle === undefined) continue;
      const moved = relay.bytesIn + relay.bytesOut;
      if (moved !== relay.bytesAtLastSweep) {
        relay.bytesAtLastSweep = moved;
        relay.lastActivity = now;
      } else if (now - relay.lastActivity >= idle * 1000) {
        abort(relay, "timeout");
      }
    }
  }

  /** The port actually bound (useful when the rule asked for an ephemeral one). */
  get port(): number | undefined {
    return this.listener?.port;
  }

  relayEnded(relay: Relay): void {
    this.relays.delete(relay);
    this.admission.release(DESCRIPTORS_PER_RELAY);
    this.events.ended({
      rule: relay.rule,
      clientAddress: relay.clientAddress,
      clientPort: relay.clientPort,
      bytesIn: relay.bytesIn,
      bytesOut: relay.bytesOut,
      startedAt: relay.startedAt,
      endedAt: Date.now(),
      result: relay.result ?? "done",
    });
  }

  private accept(socket: Socket<Leg>): void {
    const rule = this.rule;
    const remote = socket.remoteAddress;
    const client = parseClientAddress(remote);
    if (client === undefined || !isAllowed(client, this.globalAccess, rule.access)) {
      // Closed before any upstream exists: a denied client never reaches the backend.
      socket.terminate();
      this.events.denied(rule, remote, socket.remotePort, "denied");
      return;
    }
    const ruleFull = rule.maxConnections !== undefined && this.relays.size >= rule.maxConnections;
    if (ruleFull || !this.admission.admit(DESCRIPTORS_PER_RELAY)) {
      socket.terminate();
      this.events.denied(rule, remote, socket.remotePort, "limit");
      return;
    }
    const relay = new Relay(this, rule, socket, remote, socket.remotePort);
    this.relays.add(relay);
    this.events.started(rule);
    // Hold the client's bytes in its kernel buffer until the backend answers.
    socket.pause();
    this.connect(relay);
  }

  private connect(relay: Relay): void {
    const { connect, sourceAddress, connectTimeout } = relay.rule;
    const options: Bun.TCPSocketConnectOptions<Leg> & ConnectSourceOptions = {
      hostname: connect.host,
      port: connect.port,
      allowHalfOpen: true,
      data: relay.upstream,
      socket: upstreamHandlers,
    };
    if (sourceAddress !== undefined) options.localAddress = sourceAddress;
    relay.connectTimer = setTimeout(connectTimedOut, connectTimeout * 1000, relay);
    // Failures arrive through connectError; the promise's rejection carries nothing more.
    Bun.connect(options).catch(ignoreRejection);
  }
}

function ignoreRejection(): void {}

export function createTcpForwarder(rule: ForwardRule, context: ForwarderContext): Forwarder {
  return new TcpForwarder(rule, context);
}
