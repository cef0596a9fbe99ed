/**
 * Blocks of consecutive free ports for the port range tests, and backends
 * that listen on every port of a block and say which port a client reached.
 * Blocks are taken below the kernel's ephemeral range (32768..), where
 * `freePort()` and outgoing connections never land, and checked by binding
 * each port (TCP and UDP) before use.
 */
import type { Socket, TCPSocketListener, udp } from "bun";
import { onCleanup } from "./harness.ts";

const LOWEST = 10_000;
const HIGHEST = 32_000;

function tcpFree(port: number): boolean {
  try {
    Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }).stop(true);
    return true;
  } catch {
    return false;
  }
}

async function udpFree(port: number): Promise<boolean> {
  try {
    (await Bun.udpSocket({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

/** The first port of `count` consecutive ports free on 127.0.0.1 (TCP and UDP), avoiding `avoid` blocks. */
export async function freeBlock(count: number, avoid: Array<[first: number, count: number]> = []): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = LOWEST + Math.floor(Math.random() * (HIGHEST - LOWEST - count));
    if (avoid.some(([start, length]) => first < start + length && start < first + count)) continue;
    let free = true;
    for (let port = first; port < first + count && free; port++) free = tcpFree(port) && (await udpFree(port));
    if (free) return first;
  }
  throw new Error(`no block of ${count} free ports found`);
}

/** TCP backends on ports first..first+count-1: each greets a client with `PORT\n`, then echoes. Stopped after the test. */
export function portEchoBackends(first: number, count: number): TCPSocketListener<undefined>[] {
  const listeners: TCPSocketListener<undefined>[] = [];
  const handlers = {
    binaryType: "uint8array" as const,
    open(socket: Socket<undefined>) {
      socket.write(`${socket.localPort}\n`);
    },
    data(socket: Socket<undefined>, chunk: Uint8Array) {
      socket.write(chunk);
    },
    close() {},
  };
  for (let port = first; port < first + count; port++) listeners.push(Bun.listen({ hostname: "127.0.0.1", port, socket: handlers }));
  onCleanup(() => {
    for (const listener of listeners) listener.stop(true);
  });
  return listeners;
}

/** UDP backends on ports first..first+count-1: each answers a datagram with `PORT:` and the datagram. Closed after the test. */
export async function portEchoUdpBackends(first: number, count: number): Promise<udp.Socket<"uint8array">[]> {
  const sockets: udp.Socket<"uint8array">[] = [];
  for (let port = first; port < first + count; port++) {
    const prefix = new TextEncoder().encode(`${port}:`);
    sockets.push(
      await Bun.udpSocket({
        hostname: "127.0.0.1",
        port,
        binaryType: "uint8array",
        socket: {
          data(socket, data, fromPort, fromAddress) {
            const reply = new Uint8Array(prefix.length + data.length);
            reply.set(prefix);
            reply.set(data, prefix.length);
            socket.send(reply, fromPort, fromAddress);
          },
        },
      }),
    );
  }
  onCleanup(() => {
    for (const socket of sockets) socket.close();
  });
  return sockets;
}

/** What a client connecting to 127.0.0.1:`port` is greeted with, after which it sends `payload` and reads it back; closed after. */
export async function greetAndEcho(port: number, payload: Uint8Array): Promise<{ greeting: string; echoed: Uint8Array }> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`port ${port}: no greeting and echo within 5 s`)), 5000);
    void Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        binaryType: "uint8array",
        open(socket) {
          socket.write(payload);
        },
        data(socket, chunk) {
          chunks.push(chunk);
          total += chunk.length;
          const all = Buffer.concat(chunks);
          const newline = all.indexOf(10);
          if (newline !== -1 && total - newline - 1 >= payload.length) {
            clearTimeout(timer);
            socket.end();
            resolve({ greeting: all.subarray(0, newline).toString(), echoed: new Uint8Array(all.subarray(newline + 1)) });
          }
        },
        close() {},
        connectError(_socket, error) {
          clearTimeout(timer);
          reject(error);
        },
      },
    }).catch(reject);
  });
}
