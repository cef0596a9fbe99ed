/**
 * @module One TCP forwarding rule at run time: its listener, the access check
 * at accept, and the upstream connect (with its own timeout, since Bun has
 * none). Moving bytes is the relay's job (relay.ts).
 */
import type { Socket, TCPSocketListener } from "bun";
import { isAllowed, parseClientAddress } from "../access.ts";
import type { AccessList, ForwardRule } from "../types.ts";
import { abort, type Leg, legHandlers, Relay, type RelayOwner, upstreamOpened } from "./relay.ts";

/** What a forwarder tells the rest of `oi` about its connections. */
export interface ConnectionEvents {
  denied(rule: ForwardRule, clientAddress: string): void;
  ended(rule: ForwardRule, relay: Relay): void;
}

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

export class TcpForwarder implements RelayOwner {
  private listener: TCPSocketListener<Leg> | undefined;
  /** Connections currently open through this rule. */
  active = 0;

  constructor(
    readonly rule: ForwardRule,
    private globalAccess: AccessList,
    private readonly events: ConnectionEvents,
  ) {}

  /** Bind the listening socket; throws (with Bun's reason) if the address is unusable. */
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
  }

  /** Stop accepting; connections already open carry on. */
  stop(): void {
    this.listener?.stop(false);
    this.listener = undefined;
  }

  get port(): number | undefined {
    return this.listener?.port;
  }

  relayEnded(relay: Relay): void {
    this.active--;
    this.events.ended(this.rule, relay);
  }

  private accept(socket: Socket<Leg>): void {
    const remote = socket.remoteAddress;
    const client = parseClientAddress(remote);
    if (client === undefined || !isAllowed(client, this.globalAccess, this.rule.access)) {
      // Closed before any upstream exists: a denied client never reaches the backend.
      socket.terminate();
      this.events.denied(this.rule, remote);
      return;
    }
    this.active++;
    const relay = new Relay(this, socket, remote);
    // Hold the client's bytes in its kernel buffer until the backend answers.
    socket.pause();
    this.connect(relay);
  }

  private connect(relay: Relay): void {
    const { connect, sourceAddress, connectTimeout } = this.rule;
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
