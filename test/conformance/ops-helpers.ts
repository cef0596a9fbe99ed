/**
 * Shared pieces of the operations conformance suites (command line, status
 * reporting, logging): echo peers, one-shot round trips over TCP or a unix
 * socket, and reading the Prometheus text.
 */
import type { Socket } from "bun";
import { onCleanup } from "../helpers/harness.ts";
import { type Backend, startBackend } from "../helpers/peers.ts";

/** A TCP backend that sends back what it receives and half-closes when the client does. */
export function echoBackend(): Backend {
  const started = startBackend((peer) => {
    peer.onData = (self, chunk) => void self.socket?.write(chunk);
    peer.onEnd = (self) => void self.socket?.shutdown();
  });
  onCleanup(() => started.stop());
  return started;
}

export type Target = { port: number } | { unix: string };

/**
 * Connect, send `payload`, read its echo, close; resolves with the bytes
 * received (-1 if the connect failed). Small payloads only: one write must
 * take all of it. With `halfClose`, the client half-closes after sending and
 * reads until the other side closes.
 */
export function roundTrip(target: Target, payload: Uint8Array | string, timeoutMs = 5000, halfClose = true): Promise<number> {
  return new Promise((resolve) => {
    let received = 0;
    const timer = setTimeout(() => resolve(received), timeoutMs);
    const done = (value: number) => {
      clearTimeout(timer);
      resolve(value);
    };
    const socket = {
      open(socket: Socket) {
        socket.write(payload);
        if (halfClose) socket.shutdown();
      },
      data(socket: Socket, chunk: Uint8Array) {
        received += chunk.length;
        if (!halfClose && received >= payload.length) socket.end();
      },
      end(socket: Socket) {
        socket.end();
      },
      close() {
        done(received);
      },
      connectError() {
        done(-1);
      },
    };
    const connecting =
      "unix" in target
        ? Bun.connect({ unix: target.unix, allowHalfOpen: true, socket })
        : Bun.connect({ hostname: "127.0.0.1", port: target.port, allowHalfOpen: true, socket });
    connecting.catch(() => done(-1));
  });
}

/** Hold a TCP connection open after one echoed exchange; returns a function that closes it. */
export async function heldConnection(port: number, payload: string): Promise<() => void> {
  let answered: () => void = () => {};
  const echoed = new Promise<void>((wake) => (answered = wake));
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data() {
        answered();
      },
    },
  });
  socket.write(payload);
  await echoed;
  return () => socket.end();
}

/** Sum of the samples of metric `name` whose labels include all of `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

export async function fetchMetrics(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}
