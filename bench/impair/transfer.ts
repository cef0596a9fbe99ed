/**
 * @module A transfer whose every byte is checked: the client sends `bytes`
 * of seeded pseudo-random data and half-closes; the sink hashes what it
 * received and answers with the SHA-256 in hex, then closes. The client
 * compares with the hash of what it sent. Run as a program inside the
 * impaired namespace (`bun bench/impair/transfer.ts HOST PORT BYTES SEED`,
 * prints JSON), the sink runs in the bench's process on the host.
 */
import type { Socket, TCPSocketListener } from "bun";
import { seededRandom } from "./impairment.ts";

export interface TransferResult {
  intact: boolean;
  bytes: number;
  ms: number;
  error?: string;
}

/** `length` bytes from `seed`: the same on both ends of a run without sending the seed's output around. */
export function seededBytes(length: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  const out = new Uint8Array(length);
  const words = new Uint32Array(out.buffer, 0, Math.floor(length / 4));
  for (let i = 0; i < words.length; i++) words[i] = Math.floor(random() * 4294967296);
  for (let i = words.length * 4; i < length; i++) out[i] = Math.floor(random() * 256);
  return out;
}

/** A sink on `hostname`:0 that answers each connection's half-close with the hash of what it read. */
export function startHashSink(hostname: string): TCPSocketListener<Bun.CryptoHasher> {
  return Bun.listen<Bun.CryptoHasher>({
    hostname,
    port: 0,
    allowHalfOpen: true,
    socket: {
      open(socket) {
        socket.data = new Bun.CryptoHasher("sha256");
      },
      data(socket, chunk) {
        socket.data.update(chunk);
      },
      end(socket) {
        socket.write(socket.data.digest("hex"));
        socket.end();
      },
    },
  });
}

/** Send `bytes` seeded bytes to host:port and check the hash that comes back. */
export async function transfer(host: string, port: number, bytes: number, seed: number, timeoutMs: number): Promise<TransferResult> {
  const payload = seededBytes(bytes, seed);
  const expected = new Bun.CryptoHasher("sha256").update(payload).digest("hex");
  const started = performance.now();
  return new Promise<TransferResult>((resolve) => {
    let offset = 0;
    let answer = "";
    let settled = false;
    const settle = (error: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ intact: error === undefined && answer === expected, bytes, ms: performance.now() - started, ...(error === undefined ? {} : { error }) });
    };
    const timer = setTimeout(() => settle(`timed out after ${timeoutMs} ms with ${offset} bytes sent`), timeoutMs);
    const pump = (socket: Socket<undefined>) => {
      while (offset < payload.length) {
        const taken = socket.write(payload.subarray(offset, offset + 256 * 1024));
        if (taken <= 0) return;
        offset += taken;
      }
      socket.shutdown();
    };
    Bun.connect({
      hostname: host,
      port,
      allowHalfOpen: true,
      socket: {
        open: pump,
        drain: pump,
        data(_socket, chunk) {
          answer += new TextDecoder().decode(chunk);
        },
        close() {
          settle(answer === expected ? undefined : `hash mismatch or short answer (${answer.length} characters)`);
        },
        error(_socket, error) {
          settle(error.message);
        },
        connectError(_socket, error) {
          settle(error.message);
        },
      },
    }).catch((error: Error) => settle(error.message));
  });
}

if (import.meta.main) {
  const [host, port, bytes, seed, timeout] = process.argv.slice(2);
  const result = await transfer(host!, Number(port), Number(bytes), Number(seed), Number(timeout ?? 60_000));
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}
