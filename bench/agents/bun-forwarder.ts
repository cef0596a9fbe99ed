/**
 * @module A minimal TCP forwarder on Bun's own sockets (Bun.listen and
 * Bun.connect, half-close passed on): no limits, no logs, no options, and no
 * backpressure (small request/response traffic only). It measures what a
 * connection costs on Bun's socket layer before any of oi's own work
 * (bench/conn-floor.ts).
 *
 *   bun bench/agents/bun-forwarder.ts LISTEN_PORT BACKEND_PORT   (127.0.0.1 both)
 */
import type { Socket } from "bun";

const [listenPort, backendPort] = process.argv.slice(2).map(Number) as [number, number];

interface End {
  peer: Socket<End> | undefined;
  /** What the client sent before its upstream connected. */
  held: Uint8Array[];
  eof: boolean;
}

/** This end read its FIN: pass it on, or close both when the other end had sent its own. */
function ended(socket: Socket<End>): void {
  socket.data.eof = true;
  const other = socket.data.peer;
  if (other === undefined) return;
  if (other.data.eof) {
    other.end();
    socket.end();
  } else {
    other.shutdown();
  }
}

const shared = {
  binaryType: "uint8array" as const,
  data(socket: Socket<End>, chunk: Uint8Array): void {
    const other = socket.data.peer;
    if (other === undefined) socket.data.held.push(chunk);
    else other.write(chunk);
  },
  end: ended,
  close(socket: Socket<End>): void {
    socket.data.peer?.end();
  },
  drain(): void {},
  error(): void {},
};

const upstream = {
  ...shared,
  open(socket: Socket<End>): void {
    const client = socket.data.peer!;
    client.data.peer = socket;
    for (const chunk of client.data.held) socket.write(chunk);
    client.data.held = [];
    if (client.data.eof) socket.shutdown();
  },
  connectError(socket: Socket<End>): void {
    socket.data.peer?.terminate();
  },
};

Bun.listen<End>({
  hostname: "127.0.0.1",
  port: listenPort,
  allowHalfOpen: true,
  socket: {
    ...shared,
    open(socket: Socket<End>): void {
      socket.data = { peer: undefined, held: [], eof: false };
      void Bun.connect<End>({ hostname: "127.0.0.1", port: backendPort, allowHalfOpen: true, data: { peer: socket, held: [], eof: false }, socket: upstream });
    },
  },
});
