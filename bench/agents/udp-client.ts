/**
 * @module Client of the UDP-session figure: opens N UDP sockets, one per
 * session, each connected to HOST:PORT, and sends one 32-byte datagram from
 * each, at most 100 unanswered at a time (a burst would overflow the
 * receive buffers on the way and measure loss instead of sessions); a
 * datagram not echoed within 500 ms is sent again, three times at most.
 * Prints `ready OPENED ANSWERED` once every socket has its answer or has given
 * up, then holds the sockets (so the sessions stay) until SIGTERM.
 * With LOCAL and FIRST, socket i binds LOCAL:FIRST+i (port 0 if that one is
 * taken): on loopback, oi's session sockets and these would otherwise share
 * one ephemeral port range (28,232 ports here), too few for 2 × 15,000.
 * Usage: bun udp-client.ts HOST PORT N [LOCAL FIRST]
 */
import type { udp } from "bun";

const [host = "127.0.0.1", portText = "0", countText = "0", local, firstText] = process.argv.slice(2);
const first = firstText === undefined ? undefined : Number(firstText);
const port = Number(portText);
const wanted = Number(countText);
const IN_FLIGHT = 100;
const TRIES = 3;
const WAIT_MS = 500;
const payload = new Uint8Array(32).fill(0x61);
const sockets: Array<udp.ConnectedSocket<"uint8array">> = [];
let opened = 0;
let answered = 0;

async function open(index: number, onData: () => void): Promise<udp.ConnectedSocket<"uint8array"> | undefined> {
  const handlers = { data: onData, error(): void {} };
  const ports = local !== undefined && first !== undefined ? [first + index, 0] : [undefined];
  for (const localPort of ports) {
    try {
      const bind = localPort === undefined ? {} : { hostname: local, port: localPort };
      return await Bun.udpSocket({ ...bind, binaryType: "uint8array", connect: { hostname: host, port }, socket: handlers });
    } catch {
      // Taken: the next choice.
    }
  }
  return undefined;
}

async function session(index: number): Promise<void> {
  let resolve: () => void = () => {};
  let echoed = false;
  const socket = await open(index, () => {
    echoed = true;
    resolve();
  });
  if (socket === undefined) return;
  opened++;
  sockets.push(socket);
  for (let attempt = 0; attempt < TRIES && !echoed; attempt++) {
    const wait = new Promise<void>((done) => {
      resolve = done;
      setTimeout(done, WAIT_MS);
    });
    try {
      socket.send(payload);
    } catch {
      // ICMP unreachable from an earlier try: try again.
    }
    await wait;
  }
  if (echoed) answered++;
}

let next = 0;
async function worker(): Promise<void> {
  while (next < wanted) {
    await session(next++);
  }
}

await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, wanted) }, worker));
process.stdout.write(`ready ${opened} ${answered}\n`);
process.on("SIGTERM", () => {
  for (const socket of sockets) socket.close();
  process.exit(0);
});
// Hold the sockets until told to stop (the parent bounds this).
setInterval(() => {}, 1 << 30);
