/**
 * @module Client for the idle-memory figure: opens N connections (at most
 * 200 handshakes in flight), sends one byte on each, then holds them all
 * without traffic until SIGTERM. Prints `ready OPEN FAILED` once every
 * attempt has finished. Usage: bun idle-client.ts HOST PORT N
 */
import type { Socket } from "bun";

const [host = "127.0.0.1", portText = "0", countText = "0"] = process.argv.slice(2);
const port = Number(portText);
const wanted = Number(countText);
const sockets: Array<Socket<undefined>> = [];
let failed = 0;

async function openOne(): Promise<void> {
  try {
    const socket = await Bun.connect({
      hostname: host,
      port,
      socket: {
        data(): void {},
        error(): void {},
      },
    });
    socket.write("x");
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
process.on("SIGTERM", () => {
  for (const socket of sockets) socket.end();
  process.exit(0);
});
// Hold the connections until told to stop (the parent bounds this).
setInterval(() => {}, 1 << 30);
