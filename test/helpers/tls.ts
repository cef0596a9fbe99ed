/**
 * TLS peers for end-to-end tests, on Bun's own TLS: a backend that greets
 * each client with its name over TLS, and a client that says which
 * certificate it was shown and what it was told.
 */
import { X509Certificate } from "node:crypto";
import type { IssuedCertificate } from "./certs.ts";
import { onCleanup } from "./harness.ts";
import { freePort, withTimeout } from "./peers.ts";

/** A TLS server on 127.0.0.1 that writes `greeting` to each client once the handshake is done, and half-closes. */
export function tlsGreeter(greeting: string, certificate: IssuedCertificate, options: { alpn?: string[] } = {}): { port: number } {
  const port = freePort();
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port,
    tls: {
      cert: certificate.certPem,
      key: certificate.keyPem,
      // Bun takes the ALPN list in its wire format: each name after its length.
      ...(options.alpn === undefined ? {} : { ALPNProtocols: Buffer.concat(options.alpn.map((name) => Buffer.concat([Buffer.from([name.length]), Buffer.from(name)]))) }),
    },
    socket: {
      handshake(socket) {
        socket.write(greeting);
        socket.shutdown();
      },
      data() {},
    },
  });
  onCleanup(() => listener.stop(true));
  return { port };
}

export interface TlsConversation {
  /** What the server said, until it closed. */
  text: string;
  /** The subject CN of the certificate the client was shown. */
  subject: string | undefined;
  /** The protocol agreed by ALPN, or false. */
  alpn: string | false;
}

/**
 * Connect with TLS to 127.0.0.1:`port`, sending `serverName` as SNI and
 * trusting `ca`; optionally `send` bytes once the handshake is done. What
 * the server said and showed, or a rejection when the handshake fails.
 * With `hangUp`, the client closes once the handshake is done.
 */
export function tlsTalk(port: number, serverName: string, ca: string, options: { send?: string; alpn?: string[]; hangUp?: boolean } = {}): Promise<TlsConversation> {
  let text = "";
  let subject: string | undefined;
  let alpn: string | false = false;
  const done = new Promise<TlsConversation>((resolve, reject) => {
    void Bun.connect({
      hostname: "127.0.0.1",
      port,
      tls: {
        serverName,
        ca,
        ...(options.alpn === undefined ? {} : { ALPNProtocols: Buffer.concat(options.alpn.map((name) => Buffer.concat([Buffer.from([name.length]), Buffer.from(name)]))) }),
      },
      socket: {
        handshake(socket, success, error) {
          if (!success) {
            reject(new Error(`handshake failed: ${error?.message ?? "unknown"}`));
            socket.end();
            return;
          }
          const peer = socket.getPeerX509Certificate() as X509Certificate | undefined;
          subject = peer?.subject.match(/CN=([^\n,]+)/)?.[1];
          alpn = (socket as unknown as { alpnProtocol: string | false }).alpnProtocol ?? false;
          if (options.send !== undefined) socket.write(options.send);
          // Only the handshake was wanted: close, and tell what it showed.
          if (options.hangUp === true) socket.end();
        },
        data(_socket, chunk) {
          text += Buffer.from(chunk).toString();
        },
        close(_socket, error) {
          if (subject === undefined && text === "") reject(error ?? new Error("closed before the handshake"));
          else resolve({ text, subject, alpn });
        },
        error(_socket, error) {
          reject(error);
        },
        connectError(_socket, error) {
          reject(error);
        },
      },
    }).catch(reject);
  });
  return withTimeout(done, 10000, `TLS conversation with ${serverName} on port ${port}`);
}
