/**
 * @module Starting a stream connection to a backend target (TCP, or a unix
 * socket, with TLS when the target says so), shared by every forwarder that
 * has a stream leg towards its backends. Outcomes arrive through the
 * handlers (`open`, `connectError`); with TLS, `open` comes after the
 * handshake and verification (see tls/client-leg.ts).
 */
import type { SocketHandler } from "bun";
import type { DialTarget } from "./backends.ts";
import type { StreamHandlers } from "./tcp/stream-socket.ts";
import { connectTls } from "./tls/client-leg.ts";

/** Options Bun accepts for Bun.connect although its type definitions omit them. */
interface ConnectSourceOptions {
  localAddress?: string;
}

function ignoreRejection(): void {}

/**
 * Connect to `target`, the socket carrying `data` and served by `handlers`.
 * False when Bun refuses the options outright (a malformed address), so the
 * caller can move on to its next target. `tlsCleartext` goes to a TLS target
 * in clear before its handshake (a PROXY header).
 */
export function connectStream<Data>(target: DialTarget, data: Data, handlers: SocketHandler<Data>, allowHalfOpen: boolean, tlsCleartext?: Uint8Array): boolean {
  const tls = target.tls;
  if (tls !== undefined) return connectTls({ ...target, tls }, data, handlers as unknown as StreamHandlers<Data>, allowHalfOpen, tlsCleartext) !== undefined;
  try {
    if (target.unix !== undefined) {
      Bun.connect<Data>({ unix: target.unix, allowHalfOpen, data, socket: handlers }).catch(ignoreRejection);
      return true;
    }
    const options: Bun.TCPSocketConnectOptions<Data> & ConnectSourceOptions = {
      hostname: target.address ?? "",
      port: target.port,
      allowHalfOpen,
      data,
      socket: handlers,
    };
    if (target.localAddress !== undefined) options.localAddress = target.localAddress;
    // Failures arrive through connectError; the promise's rejection carries nothing more.
    Bun.connect(options).catch(ignoreRejection);
    return true;
  } catch {
    return false;
  }
}
