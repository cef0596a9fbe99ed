/**
 * @module Client for the idle-memory figures: opens N connections (at most
 * 200 handshakes in flight), sends one byte on each (or the bytes given in
 * hex: the --tls section sends half a ClientHello), then holds them all
 * without traffic until SIGTERM. Prints `ready OPEN FAILED` once every
 * attempt has finished, then `closed N` whenever the far end has closed more
 * of them (a forwarder that stopped waiting). Usage: bun idle-client.ts HOST
 * PORT N [PAYLOAD_HEX]
 */
import type { Socket } from "bun";

const [host = "127.0.0.1", portText = "0", countText = "0", payloadHex] = process.argv.slice(2);
const port = Number(portText);
const wanted = Number(countText);
const payload = payloadHex === undefined ? "x" : Buffer.from(payloadHex, "hex");
const sockets: Array<Socket<undefined>> = [];
let failed = 0;
let closed = 0;
let stopping = false;

async function openOne(): Promise<void> {
  try {
    const socket = await Bun.connect({
      hostname: host,
      port,
      socket: {
        data(): void {},
        error(): void {},
        close(): void {
          if (!stopping) closed++;
        },
      },
    });
    socket.write(payload);
    sockets.push(socket);
  } catch {
    failed++;
  }
}

let next = 0;
async function worker(): Promise<void> {
  while (next < wanted) {
    next++;
    await openOne();
  }
}

await Promise.all(Array.from({ length: Math.min(200, wanted) }, worker));
process.stdout.write(`ready ${sockets.length} ${failed}\n`);
let reported = 0;
setInterval(() => {
  if (closed === reported) return;
  reported = closed;
  process.stdout.write(`closed ${closed}\n`);
}, 100);
process.on("SIGTERM", () => {
  stopping = true;
  for (const socket of sockets) socket.end();
  process.exit(0);
});
// Hold the connections until told to stop (the parent bounds this).
setInterval(() => {}, 1 << 30);
