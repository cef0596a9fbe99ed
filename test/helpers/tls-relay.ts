/**
 * A minimal TLS-terminating forwarder for tests and benchmarks, built from
 * oi's real pieces: a listener of either socket layer (SocketLayer, "bun" or
 * "direct") that reads a client's first bytes up to the end of its first TLS
 * record (the ClientHello, as the router will), hands the socket to a
 * TlsServerLeg, and relays it with the real Relay to a plain backend; or, for
 * origination, a plain listener relayed to a TLS backend.
 */
import type { Socket } from "bun";
import type { DialPlan, DialTarget } from "../../src/backends.ts";
import type { SessionResult } from "../../src/session.ts";
import { SocketLayer } from "../../src/tcp/socket-layer.ts";
import { abort, type Leg, legHandlers, Relay, type RelayOwner, upstreamOpened } from "../../src/tcp/relay.ts";
import type { StreamListener, StreamSocket } from "../../src/tcp/stream-socket.ts";
import type { ServerTls } from "../../src/tls/certificates.ts";
import { isTlsRaw, terminateTls } from "../../src/tls/server-leg.ts";
import type { TlsLeg } from "../../src/tls/tls-leg.ts";
import type { TlsClientOptions, ForwardRule } from "../../src/types.ts";
import type { IssuedCertificate } from "./certs.ts";
import { Arrivals, type Backend, Peer, peerHandlers, withTimeout } from "./peers.ts";

export type Layer = "bun" | "direct";

export interface RelayRecord {
  result: SessionResult;
  /** The client as the client leg saw it (its remote address and port). */
  clientAddress: string;
  clientPort: number;
  bytesIn: number;
  bytesOut: number;
  servername: string | undefined;
  alpnProtocol: string | undefined;
}

export interface TlsRelayOptions {
  layer: Layer;
  /** Terminate TLS from clients with this; undefined: clients speak plaintext. */
  server: ServerTls | undefined;
  backendPort: number;
  /** Speak TLS to the backend with these. */
  backendTls?: TlsClientOptions;
}

export interface TlsRelay {
  port: number;
  /** Relays not ended yet. */
  active: Set<Relay>;
  /** The layer really in use (direct sockets may be unavailable). */
  layer: Layer;
  /** Resolves with the next relay that ended (in order; one already ended and not handed out yet at once). */
  nextEnded(timeoutMs?: number): Promise<RelayRecord>;
  stop(): void;
}

/** The bytes of a connection before its first TLS record is complete. */
class Hello {
  chunks: Uint8Array[] = [];
  length = 0;
}

/** Bytes of a TLS record header: type, version, length. */
const RECORD_HEADER_BYTES = 5;

function recordComplete(hello: Hello): boolean {
  if (hello.length < RECORD_HEADER_BYTES) return false;
  const joined = hello.chunks.length === 1 ? hello.chunks[0]! : Buffer.concat(hello.chunks);
  const recordLength = (joined[3]! << 8) | joined[4]!;
  return hello.length >= RECORD_HEADER_BYTES + recordLength;
}

const RULE = { name: "tls-test" } as unknown as ForwardRule;

export async function startTlsRelay(options: TlsRelayOptions): Promise<TlsRelay> {
  const layer = new SocketLayer();
  await layer.configure(options.layer, undefined);
  /** Ended relays not handed out by nextEnded yet (handed-out ones are dropped: a long run keeps no history). */
  const ended: RelayRecord[] = [];
  const waiters: Array<(record: RelayRecord) => void> = [];
  const legs = new Map<Relay, TlsLeg<Leg> | undefined>();
  const active = new Set<Relay>();
  const owner: RelayOwner = {
    relayEnded(relay) {
      const leg = legs.get(relay);
      legs.delete(relay);
      active.delete(relay);
      const record = {
        result: relay.result ?? "done",
        clientAddress: relay.clientAddress,
        clientPort: relay.clientPort,
        bytesIn: relay.bytesIn,
        bytesOut: relay.bytesOut,
        servername: leg?.servername,
        alpnProtocol: leg?.alpnProtocol,
      };
      const waiter = waiters.shift();
      if (waiter !== undefined) waiter(record);
      else ended.push(record);
    },
    reserveDescriptors: () => false,
    returnDescriptors() {},
  };
  const target: DialTarget = { backend: { name: "backend" } as DialTarget["backend"], address: "127.0.0.1", port: options.backendPort, unix: undefined, localAddress: undefined };
  if (options.backendTls !== undefined) target.tls = options.backendTls;

  const upstreamHandlers = {
    ...legHandlers,
    open(socket: StreamSocket<Leg>): void {
      socket.reload({ socket: legHandlers });
      upstreamOpened(socket.data, socket);
    },
    connectError(socket: StreamSocket<Leg>): void {
      abort(socket.data.relay, "refused");
    },
  };

  function begin(client: StreamSocket<Leg>, leg: TlsLeg<Leg> | undefined): void {
    const relay = new Relay(owner, RULE, client, client.remoteAddress, client.remotePort, {} as DialPlan);
    legs.set(relay, leg);
    active.add(relay);
    const connecting = layer.connect(target, relay.upstream, upstreamHandlers);
    if (connecting === undefined) abort(relay, "refused");
  }

  // One handler set for every phase of an accepted socket, as Bun's listeners share theirs: reading the
  // hello, then (TLS) nothing more, the leg having its own socket, or (plaintext clients) a relay leg.
  const handlers = {
    binaryType: "uint8array" as const,
    open(socket: StreamSocket<unknown>): void {
      if (options.server === undefined) begin(socket as StreamSocket<Leg>, undefined);
      else socket.data = new Hello();
    },
    data(socket: StreamSocket<unknown>, chunk: Uint8Array): void {
      const state = socket.data;
      if (!(state instanceof Hello)) {
        if (!isTlsRaw(socket)) legHandlers.data(socket as StreamSocket<Leg>, chunk);
        return;
      }
      state.chunks.push(socket.lendsChunks === true ? chunk.slice() : chunk);
      state.length += chunk.length;
      if (!recordComplete(state) && state.length < 16 * 1024) return;
      // The relay makes the leg its client and sets its data.
      const leg = terminateTls<Leg>(socket, state.chunks, options.server!, legHandlers, undefined as unknown as Leg);
      if (typeof leg === "string") throw new Error(leg);
      begin(leg, leg);
    },
    drain(socket: StreamSocket<unknown>): void {
      if (!(socket.data instanceof Hello) && !isTlsRaw(socket)) legHandlers.drain(socket as StreamSocket<Leg>);
    },
    end(socket: StreamSocket<unknown>): void {
      if (socket.data instanceof Hello) socket.end();
      else if (!isTlsRaw(socket)) legHandlers.end(socket as StreamSocket<Leg>);
    },
    error(socket: StreamSocket<unknown>, error: Error): void {
      if (!(socket.data instanceof Hello) && !isTlsRaw(socket)) legHandlers.error(socket as StreamSocket<Leg>, error);
    },
    close(socket: StreamSocket<unknown>, error?: Error): void {
      if (!(socket.data instanceof Hello) && !isTlsRaw(socket)) legHandlers.close(socket as StreamSocket<Leg>, error);
    },
  };

  const listener: StreamListener = await layer.listen({ host: "127.0.0.1", port: 0, transport: "tcp" }, { ipv6Only: false, reusePort: false, socketMode: undefined }, handlers);
  const port = (listener as unknown as { port: number }).port;
  const direct = listener.constructor.name === "FdListener";
  return {
    port,
    active,
    layer: direct ? "direct" : "bun",
    nextEnded(timeoutMs = 20_000) {
      const first = ended.shift();
      if (first !== undefined) return Promise.resolve(first);
      return new Promise<RelayRecord>((resolve, reject) => {
        const waiter = (record: RelayRecord) => {
          clearTimeout(timer);
          resolve(record);
        };
        const timer = setTimeout(() => {
          // Gone from the queue: a relay that ends later waits for the next caller.
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error("timed out waiting for a relay to end"));
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
    stop() {
      listener.stop(true);
    },
  };
}

/** A TLS client peer (Bun's TLS client), resolved once its handshake succeeded; rejected when it failed. */
export function connectTlsPeer(port: number, tls: Bun.TLSOptions, timeoutMs = 10_000): Promise<Peer> {
  const peer = new Peer();
  const handshake = new Promise<Peer>((resolve, reject) => {
    const socket = {
      ...peerHandlers,
      open(socket: Socket<Peer>) {
        peer.attach(socket);
      },
      handshake(socket: Socket<Peer>, success: boolean, error: Error | null) {
        if (success) resolve(peer);
        else reject(error ?? new Error("handshake failed"));
      },
      close(socket: Socket<Peer>, error?: Error) {
        peer.gotClose(error);
        reject(error ?? new Error("closed before the handshake ended"));
      },
      connectError(_socket: Socket<Peer>, error: Error) {
        reject(error);
      },
    };
    Bun.connect<Peer>({ hostname: "127.0.0.1", port, allowHalfOpen: true, tls, data: peer, socket }).catch(reject);
  });
  return withTimeout(handshake, timeoutMs, "a TLS handshake");
}

/** A TLS backend (Bun.listen with `tls`) serving `certificate`; `onConnection` decides what each connection does. */
export function startTlsBackend(certificate: IssuedCertificate, onConnection: (peer: Peer) => void = () => {}): Backend & { handshakes: number } {
  const arrivals = new Arrivals(onConnection);
  const state = { handshakes: 0 };
  const listener = Bun.listen<Peer>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    tls: { key: certificate.keyPem, cert: certificate.certPem },
    socket: {
      ...peerHandlers,
      open(socket: Socket<Peer>) {
        new Peer().attach(socket);
      },
      handshake(socket: Socket<Peer>, success: boolean) {
        if (!success) return;
        state.handshakes++;
        arrivals.arrived(socket.data);
      },
    },
  });
  return {
    port: listener.port,
    connections: arrivals.connections,
    get handshakes() {
      return state.handshakes;
    },
    nextConnection: (timeoutMs = 10_000) => arrivals.next(timeoutMs),
    stop() {
      listener.stop(true);
    },
  };
}
