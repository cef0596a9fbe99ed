/**
 * @module TLS origination: the upstream leg speaks TLS to its backend, over
 * Bun's TLS client (Bun.connect with `tls`; oi's direct sockets have no
 * TLS), wrapped as a TlsLeg.
 *
 * How Bun 1.4.5 reports the outcome, by experiment, and what the caller
 * hears instead:
 * - `open` fires when TCP connects, before the handshake: the caller's
 *   `open` comes only after the handshake, the certificate verified.
 * - A failed verification (untrusted chain, wrong name) or handshake (not a
 *   TLS server, the server hung up) is `handshake(socket, false, error)`
 *   followed at once by `close` without an error, never `connectError`; a
 *   reset during the handshake is a `close` with an error and no
 *   `handshake`. Each is the caller's `connectError`, so the forwarder tries
 *   its next backend and counts a failure.
 * - With `rejectUnauthorized: false`, a name that does not match still
 *   reports `handshake(false)` (with the chain's error when the chain fails
 *   too) and leaves the connection open; so without verification the leg
 *   opens once the backend's certificate came, whatever `success` says.
 * - `checkServerIdentity` is ignored by Bun.connect: the name check is Bun's.
 */
import type { StreamHandlers } from "../tcp/stream-socket.ts";
import type { TlsClientOptions } from "../types.ts";
import { TlsLeg, tlsLegSocketHandlers } from "./tls-leg.ts";

/** Options Bun accepts for Bun.connect although its type definitions omit them. */
interface ConnectSourceOptions {
  localAddress?: string;
}

/** Where to connect: a TCP address (an IP literal or a name Bun resolves), or a unix socket path. */
export interface TlsDialTarget {
  address: string | undefined;
  port: number;
  unix: string | undefined;
  localAddress: string | undefined;
  tls: TlsClientOptions;
}

function ignoreRejection(): void {}

/** A connection that sends bytes in clear (a PROXY header) before its TLS handshake. */
class Cleartext {
  upgraded = false;
  constructor(
    readonly leg: TlsLeg<unknown>,
    public rest: Uint8Array,
    readonly tls: Bun.TLSOptions,
  ) {}
}

/** Write what is left of the cleartext; once it is all out, start TLS on the same connection. */
function sendCleartext(raw: Bun.Socket<Cleartext>): void {
  const state = raw.data;
  if (state.upgraded) return;
  if (state.leg.abandoned) {
    raw.terminate();
    return;
  }
  const written = raw.write(state.rest);
  // Shut or closed already: the close that follows says so.
  if (written < 0) return;
  if (written < state.rest.length) {
    state.rest = state.rest.subarray(written);
    return;
  }
  state.upgraded = true;
  const [, socket] = raw.upgradeTLS({ data: state.leg, tls: state.tls, socket: tlsLegSocketHandlers });
  state.leg.attach(socket);
}

/** Handlers of the connection while it sends its cleartext; no `data` handler (nothing is read before TLS). */
const cleartextHandlers = {
  open: sendCleartext,
  drain: sendCleartext,
  connectError(raw: Bun.Socket<Cleartext>, error: Error): void {
    raw.data.leg.connectFailed(error);
  },
  close(raw: Bun.Socket<Cleartext>, error?: Error): void {
    // After the upgrade the TLS socket reports its own close.
    if (!raw.data.upgraded) raw.data.leg.closed(error);
  },
  end(): void {},
  error(): void {},
};

/**
 * Connect to `target` with TLS, the leg carrying `data` and served by
 * `handlers`: `open` after the handshake (and verification), `connectError`
 * when either fails. `cleartext` (a PROXY header, for a backend that reads
 * it before its TLS) is sent in clear first, then TLS starts on the same
 * connection. The leg is returned at once, so a caller can give it up
 * (`terminate`) while it connects or shakes hands; undefined when Bun
 * refuses the options outright (a malformed address).
 */
export function connectTls<Data>(
  target: TlsDialTarget,
  data: Data,
  handlers: StreamHandlers<Data>,
  allowHalfOpen: boolean,
  cleartext?: Uint8Array,
): TlsLeg<Data> | undefined {
  const { serverName, ca, verify } = target.tls;
  const leg = new TlsLeg<Data>(data, handlers, "client", verify);
  const tls: Bun.TLSOptions = { rejectUnauthorized: verify };
  // Without a name no SNI is sent, and Bun checks the certificate against the address dialled.
  if (serverName !== undefined && serverName !== "") {
    tls.serverName = serverName;
    leg.servername = serverName;
  }
  if (ca !== undefined) tls.ca = ca;
  const where: ({ hostname: string; port: number } | { unix: string }) & ConnectSourceOptions =
    target.unix !== undefined ? { unix: target.unix } : { hostname: target.address ?? "", port: target.port };
  if (target.unix === undefined && target.localAddress !== undefined) where.localAddress = target.localAddress;
  try {
    // Failures arrive through the handlers; the promise's rejection carries nothing more.
    if (cleartext === undefined || cleartext.length === 0) {
      const socket = tlsLegSocketHandlers as unknown as Bun.SocketHandler<TlsLeg<Data>>;
      Bun.connect<TlsLeg<Data>>({ ...where, allowHalfOpen, tls, data: leg, socket } as Bun.TCPSocketConnectOptions<TlsLeg<Data>>).catch(ignoreRejection);
    } else {
      const state = new Cleartext(leg as TlsLeg<unknown>, cleartext, tls);
      Bun.connect<Cleartext>({ ...where, allowHalfOpen, data: state, socket: cleartextHandlers } as unknown as Bun.TCPSocketConnectOptions<Cleartext>).catch(ignoreRejection);
    }
    return leg;
  } catch {
    return undefined;
  }
}
