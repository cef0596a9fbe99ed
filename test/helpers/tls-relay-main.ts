/**
 * The TLS test forwarder (tls-relay.ts) as a process of its own, so a test
 * or benchmark can watch its memory and CPU apart from the clients':
 * `bun tls-relay-main.ts LAYER BACKEND_PORT [CERT KEY [ALPN,...]]` prints
 * `{"port":N,"layer":"bun"|"direct"}` once it listens, then a JSON line per
 * relay that ends. Without CERT and KEY clients speak plaintext (a plain
 * relay, for comparison).
 */
import { loadServerTls, type ServerTls } from "../../src/tls/certificates.ts";
import { type Layer, startTlsRelay } from "./tls-relay.ts";

const [layer = "bun", backendPort = "0", certFile, keyFile, alpn] = process.argv.slice(2);
let server: ServerTls | undefined;
if (certFile !== undefined && keyFile !== undefined) {
  const loaded = loadServerTls(certFile, keyFile, alpn === undefined || alpn === "" ? [] : alpn.split(","));
  if (!loaded.ok) {
    console.error(loaded.reason);
    process.exit(2);
  }
  server = loaded.value;
}
const relay = await startTlsRelay({ layer: layer as Layer, server, backendPort: Number(backendPort) });
console.log(JSON.stringify({ port: relay.port, layer: relay.layer }));
for (;;) console.log(JSON.stringify(await relay.nextEnded(2 ** 31 - 1)));
