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

/**
 * Connect to `target` with TLS, the leg carrying `data` and served by
 * `handlers`: `open` after the handshake (and verification), `connectError`
 * when either fails. The leg is returned at once, so a caller can give it up
 * (`terminate`) while it connects or shakes hands; undefined when Bun
 * refuses the options outright (a malformed address).
 */
export function connectTls<Data>(target: TlsDialTarget, data: Data, handlers: StreamHandlers<Data>, allowHalfOpen: boolean): TlsLeg<Data> | undefined {
  const { serverName, ca, verify } = target.tls;
  const leg = new TlsLeg<Data>(data, handlers, "client", verify);
  const tls: Bun.TLSOptions = { rejectUnauthorized: verify };
  // Without a name no SNI is sent, and Bun checks the certificate against the address dialled.
  if (serverName !== undefined && serverName !== "") {
    tls.serverName = serverName;
    leg.servername = serverName;
  }
  if (ca !== undefined) tls.ca = ca;
  const socket = tlsLegSocketHandlers as unknown as Bun.SocketHandler<TlsLeg<Data>>;
  try {
    if (target.unix !== undefined) {
      Bun.connect<TlsLeg<Data>>({ unix: target.unix, allowHalfOpen, tls, data: leg, socket }).catch(ignoreRejection);
      return leg;
    }
    const options: Bun.TCPSocketConnectOptions<TlsLeg<Data>> & ConnectSourceOptions = {
      hostname: target.address ?? "",
      port: target.port,
      allowHalfOpen,
      tls,
      data: leg,
      socket,
    };
    if (target.localAddress !== undefined) options.localAddress = target.localAddress;
    // Failures arrive through the handlers; the promise's rejection carries nothing more.
    Bun.connect(options).catch(ignoreRejection);
    return leg;
  } catch {
    return undefined;
  }
}
