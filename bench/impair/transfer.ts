/**
 * @module A transfer whose every byte is checked: the client sends `bytes`
 * of seeded pseudo-random data (after a header that announces them) and
 * half-closes; the sink checks what it received against the announcement,
 * and answers with the SHA-256 in hex, then closes. The client compares
 * with the hash of what it sent: both directions of the connection and its
 * half-close are checked. Run as a program inside the
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

/** What the sink found on one connection: did the bytes the header announced arrive, all of them, unchanged? */
export interface SinkVerdict {
  intact: boolean;
  received: number;
  expected: number;
}

interface SinkState {
  hasher: Bun.CryptoHasher;
  header: Uint8Array;
  headerLength: number;
  received: number;
  announced: { bytes: number; seed: number } | undefined;
  judged: boolean;
}

const HEADER_BYTES = 8;

/**
 * A sink on `hostname`:0. Each connection starts with an 8-byte header (the
 * payload's length and seed, 32 bits each, big-endian), so the sink knows
 * what it should receive and judges it itself (`verdicts`), even through a
 * forwarder that closes the whole connection at the client's half-close (as
 * rinetd does); then it answers the half-close with the SHA-256 of what it
 * read, for the client to compare.
 */
export function startHashSink(hostname: string): TCPSocketListener<SinkState> & { verdicts: SinkVerdict[] } {
  const verdicts: SinkVerdict[] = [];
  const judge = (state: SinkState) => {
    if (state.judged) return;
    state.judged = true;
    const announced = state.announced;
    if (announced === undefined) {
      verdicts.push({ intact: false, received: state.received, expected: -1 });
      return;
    }
    const expected = new Bun.CryptoHasher("sha256").update(seededBytes(announced.bytes, announced.seed)).digest("hex");
    const got = state.hasher.copy().digest("hex");
    verdicts.push({ intact: state.received === announced.bytes && got === expected, received: state.received, expected: announced.bytes });
  };
  const listener = Bun.listen<SinkState>({
    hostname,
    port: 0,
    allowHalfOpen: true,
    socket: {
      open(socket) {
        socket.data = { hasher: new Bun.CryptoHasher("sha256"), header: new Uint8Array(HEADER_BYTES), headerLength: 0, received: 0, announced: undefined, judged: false };
      },
      data(socket, chunk) {
        const state = socket.data;
        let rest = chunk;
        if (state.headerLength < HEADER_BYTES) {
          const take = Math.min(HEADER_BYTES - state.headerLength, rest.length);
          state.header.set(rest.subarray(0, take), state.headerLength);
          state.headerLength += take;
          rest = rest.subarray(take);
          if (state.headerLength === HEADER_BYTES) {
            const view = new DataView(state.header.buffer);
            state.announced = { bytes: view.getUint32(0), seed: view.getUint32(4) };
          }
        }
        state.received += rest.length;
        state.hasher.update(rest);
      },
      end(socket) {
        judge(socket.data);
        socket.write(socket.data.hasher.digest("hex"));
        socket.end();
      },
      close(socket) {
        judge(socket.data);
      },
    },
  });
  return Object.assign(listener, { verdicts });
}

/** Send `bytes` seeded bytes to host:port and check the hash that comes back. */
export async function transfer(host: string, port: number, bytes: number, seed: number, timeoutMs: number): Promise<TransferResult> {
  const body = seededBytes(bytes, seed);
  const expected = new Bun.CryptoHasher("sha256").update(body).digest("hex");
  const payload = new Uint8Array(HEADER_BYTES + bytes);
  new DataView(payload.buffer).setUint32(0, bytes);
  new DataView(payload.buffer).setUint32(4, seed);
  payload.set(body, HEADER_BYTES);
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
          settle(
            answer === expected
              ? undefined
              : answer.length === 0
                ? "closed with no answer: the half-closed connection was not kept open"
                : `the answer does not match (${answer.length} characters)`,
          );
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
