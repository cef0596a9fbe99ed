/**
 * @module TLS termination: a client's raw connection, whose first bytes (the
 * ClientHello) the router has read already, becomes a TlsLeg of plaintext
 * for the relay. Bun's own TLS server runs it: `upgradeTLS` on a Bun socket
 * takes the bytes already read as `initialData` (undocumented in the type
 * definitions; Bun's node:net uses it for the same purpose), and a direct
 * socket is first handed over to Bun (`Bun.connect({ fd })`, then
 * `upgradeTLS` with `isServer: true`), since oi's direct sockets have no TLS.
 *
 * Why not node:tls over a Duplex (which also takes bytes already read): in
 * Bun 1.4.5 its engine answers a client's close_notify by closing its own
 * side, so a client that half-closes (shutdown after its request) never got
 * the backend's reply; and it spent about 1.5 times the CPU per GiB.
 *
 * After the upgrade a Bun socket's raw side still reports its events to the
 * listener's handlers (ciphertext `data`, `close`): its data is then an
 * `UpgradedRaw`, a socket phase that ignores them (see tcp/phases.ts); the
 * leg has its own. A direct socket handed over reports nothing more.
 */
import { FdSocket } from "../fd/socket.ts";
import { SocketPhase } from "../tcp/phases.ts";
import type { StreamHandlers, StreamSocket } from "../tcp/stream-socket.ts";
import type { ServerTls } from "./certificates.ts";
import { type BunTlsSocket, TlsLeg, tlsLegSocketHandlers } from "./tls-leg.ts";

/** The part of Bun's socket API termination uses (its type definitions lack `initialData` and `isServer`). */
interface Upgradable {
  upgradeTLS(options: {
    isServer: boolean;
    data: unknown;
    tls: object;
    initialData: Uint8Array;
    socket: Bun.SocketHandler<TlsLeg<unknown>>;
  }): [unknown, BunTlsSocket];
}

function upgradable(socket: unknown): socket is Upgradable {
  return typeof (socket as { upgradeTLS?: unknown }).upgradeTLS === "function";
}

/** The raw side of a Bun socket upgraded to TLS, as its data: its events (ciphertext, its close) are the TLS socket's business. */
class UpgradedRaw extends SocketPhase {
  constructor(readonly leg: TlsLeg<unknown>) {
    super();
  }
  override data(): void {}
  override end(): void {}
  override close(): void {}
}

/** Whether a socket's events belong to a TLS leg now (a raw socket upgraded): a listener's handlers leave them alone. */
export function isTlsRaw(socket: StreamSocket<unknown>): boolean {
  return socket.data instanceof UpgradedRaw;
}

function joined(chunks: Uint8Array | readonly Uint8Array[]): Uint8Array {
  if (chunks instanceof Uint8Array) return chunks;
  if (chunks.length === 1) return chunks[0]!;
  return Buffer.concat(chunks as Uint8Array[]);
}

/** What a direct socket handed over to Bun carries until Bun gives it back as a socket. */
class Handover {
  constructor(
    readonly leg: TlsLeg<unknown>,
    readonly hello: Uint8Array,
    readonly server: ServerTls,
  ) {}
}

/** A handed-over descriptor as Bun's socket: upgraded at once; its raw events are not wanted (no `data` handler). */
const handoverHandlers = {
  open(socket: Bun.Socket<Handover>): void {
    const { leg, hello, server } = socket.data;
    const problem = upgrade(socket as unknown as Upgradable, leg, hello, server);
    if (problem === undefined) return;
    socket.terminate();
    leg.closed(new Error(problem));
  },
  connectError(socket: Bun.Socket<Handover>, error: Error): void {
    socket.data.leg.closed(error);
  },
  drain(): void {},
  end(): void {},
  error(): void {},
  close(): void {},
};

/** Start Bun's TLS server on `raw` with the bytes read so far; a reason when Bun refused. */
function upgrade(raw: Upgradable, leg: TlsLeg<unknown>, hello: Uint8Array, server: ServerTls): string | undefined {
  try {
    const [, socket] = raw.upgradeTLS({ isServer: true, data: leg, tls: server.upgradeOptions, initialData: hello, socket: tlsLegSocketHandlers });
    leg.attach(socket);
    return undefined;
  } catch (error) {
    return `TLS upgrade failed: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/**
 * Terminate TLS on `raw`: `hello` is what was read from it already (one or
 * more chunks; views of a direct socket's read buffer are copied), `server`
 * the certificate to serve. The leg carries `data` and is served by
 * `handlers` (the relay's `legHandlers`, typically; it reports nothing
 * before this returns). A failed handshake comes as `error`, then `close`
 * with the error; `onSecure` is called once the handshake succeeded.
 *
 * A string says why TLS could not start; the leg is then dropped unheard,
 * and `raw` is the caller's to reset (a direct socket is closed already).
 */
export function terminateTls<Data>(
  raw: StreamSocket<unknown>,
  hello: Uint8Array | readonly Uint8Array[],
  server: ServerTls,
  handlers: StreamHandlers<Data>,
  data: Data,
  onSecure?: (leg: TlsLeg<Data>) => void,
): TlsLeg<Data> | string {
  const leg = new TlsLeg<Data>(data, handlers, "server", false);
  if (onSecure !== undefined) leg.onSecure = onSecure;
  leg.starting = true;
  try {
    const problem = start(leg as TlsLeg<unknown>, raw, joined(hello), server);
    if (problem === undefined) return leg;
    leg.discard();
    return problem;
  } finally {
    leg.starting = false;
  }
}

function start(leg: TlsLeg<unknown>, raw: StreamSocket<unknown>, first: Uint8Array, server: ServerTls): string | undefined {
  if (raw instanceof FdSocket) {
    // Copied: the hello may hold views of the direct loop's read buffer.
    const handover = new Handover(leg, first.slice(), server);
    let failure = "the client's connection is closed";
    const adopted = raw.handOver((fd) => {
      try {
        // Bun calls `open` (which upgrades) before this returns.
        Bun.connect<Handover>({ fd, allowHalfOpen: true, data: handover, socket: handoverHandlers } as unknown as Bun.TCPSocketConnectOptions<Handover>).catch(() => {});
        return true;
      } catch (error) {
        failure = `TLS handover failed: ${error instanceof Error ? error.message : String(error)}`;
        return false;
      }
    });
    return adopted ? undefined : failure;
  }
  if (!upgradable(raw)) return "TLS termination needs a Bun socket or a direct socket";
  // Set first: Bun may report the raw side's close inside upgradeTLS (a ClientHello that is not one).
  raw.data = new UpgradedRaw(leg);
  return upgrade(raw, leg, first, server);
}
