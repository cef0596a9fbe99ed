/**
 * Abusive clients, shared by test/e2e-abuse.test.ts (a minute's worth) and
 * bench/abuse.ts (the full-size figures): slow clients that trickle one byte
 * at a time, a latency probe that stands for everyone else, and a process's
 * private memory.
 */
import type { Socket, udp } from "bun";

export interface SlowClientsOptions {
  host: string;
  port: number;
  count: number;
  /** The bytes each client trickles, one per `intervalMs` (the first at once). */
  bytes: Uint8Array;
  intervalMs: number;
  /** Clients still open this long after the last one connected are closed by us and counted as `outlived`. */
  giveUpMs: number;
  /** Connections opened at a time (the rest wait for the batch to connect). */
  batch?: number;
}

export interface SlowClientsResult {
  /** Connections that were established. */
  opened: number;
  /** Connections that failed to connect. */
  failed: number;
  /** Milliseconds from each connect to the server's close, for the connections the server closed. */
  closedAfterMs: number[];
  /** Connections the server had not closed after `giveUpMs`. */
  outlived: number;
  /** Bytes the server sent to the slow clients (a forwarder that peeks or waits for a header sends none). */
  bytesReceived: number;
}

interface SlowState {
  openedAt: number;
  sent: number;
  closedAt: number | undefined;
  timer: Timer | undefined;
}

/**
 * Open `count` connections that each send one byte of `bytes` every
 * `intervalMs` and read whatever comes back; resolves once every one has
 * been closed by the server, or `giveUpMs` after the last connected.
 */
export async function slowClients(options: SlowClientsOptions): Promise<SlowClientsResult> {
  const states: Array<{ socket: Socket<SlowState> | undefined; state: SlowState }> = [];
  let failed = 0;
  let bytesReceived = 0;
  let open = 0;
  let wakeWhenAllClosed: (() => void) | undefined;
  const finish = (state: SlowState) => {
    if (state.closedAt !== undefined) return;
    state.closedAt = performance.now();
    clearInterval(state.timer);
    open--;
    if (open === 0) wakeWhenAllClosed?.();
  };
  const trickle = (socket: Socket<SlowState>) => {
    const state = socket.data;
    if (state.sent >= options.bytes.length || state.closedAt !== undefined) return;
    socket.write(options.bytes.subarray(state.sent, state.sent + 1));
    state.sent++;
  };
  const batch = options.batch ?? 500;
  for (let first = 0; first < options.count; first += batch) {
    const size = Math.min(batch, options.count - first);
    await Promise.all(
      Array.from({ length: size }, async () => {
        const state: SlowState = { openedAt: performance.now(), sent: 0, closedAt: undefined, timer: undefined };
        try {
          const socket = await Bun.connect<SlowState>({
            hostname: options.host,
            port: options.port,
            data: state,
            socket: {
              data(_socket, chunk) {
                bytesReceived += chunk.length;
              },
              close(socket) {
                finish(socket.data);
              },
              error(socket) {
                finish(socket.data);
              },
              connectError() {},
            },
          });
          open++;
          state.openedAt = performance.now();
          states.push({ socket, state });
          trickle(socket);
          state.timer = setInterval(() => trickle(socket), options.intervalMs);
        } catch {
          failed++;
        }
      }),
    );
  }
  const allClosed = new Promise<void>((wake) => {
    wakeWhenAllClosed = wake;
    if (open === 0) wake();
  });
  await Promise.race([allClosed, Bun.sleep(options.giveUpMs)]);
  // Before the stragglers are closed by us: only the server's closes count.
  const closedAfterMs = states.flatMap(({ state }) => (state.closedAt === undefined ? [] : [state.closedAt - state.openedAt]));
  let outlived = 0;
  for (const { socket, state } of states) {
    if (state.closedAt !== undefined) continue;
    outlived++;
    clearInterval(state.timer);
    state.closedAt = performance.now();
    socket?.terminate();
  }
  return { opened: states.length, failed, closedAfterMs: closedAfterMs.sort((a, b) => a - b), outlived, bytesReceived };
}

/**
 * One request as a well-behaved client makes it: connect, send `request`,
 * read until as many bytes came back (the backends here echo), close.
 * Resolves to the milliseconds it took; rejects after `timeoutMs`.
 */
export function echoRoundTrip(host: string, port: number, request: Uint8Array, timeoutMs: number, expect = request.length): Promise<number> {
  const started = performance.now();
  return new Promise<number>((resolve, reject) => {
    let received = 0;
    let settled = false;
    const settle = (error: Error | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error === undefined) resolve(performance.now() - started);
      else reject(error);
    };
    const timer = setTimeout(() => settle(new Error(`no echo within ${timeoutMs} ms`)), timeoutMs);
    Bun.connect({
      hostname: host,
      port,
      socket: {
        open(socket) {
          socket.write(request);
        },
        data(socket, chunk) {
          received += chunk.length;
          if (received >= expect) {
            // Settled first: end() closes at once and close() would count a failure.
            settle(undefined);
            socket.end();
          }
        },
        close() {
          settle(new Error(`closed after ${received} of ${expect} bytes`));
        },
        connectError(_socket, error) {
          settle(error);
        },
      },
    }).catch((error: Error) => settle(error));
  });
}

/** Round trips every `everyMs` until `stop` resolves; their times in milliseconds, and the failures. */
export async function probeLatency(
  host: string,
  port: number,
  request: Uint8Array,
  everyMs: number,
  stop: Promise<unknown>,
  /** Bytes the backend sends back for one request (default: the request's length). */
  expect = request.length,
): Promise<{ times: number[]; failures: string[] }> {
  const times: number[] = [];
  const failures: string[] = [];
  let stopped = false;
  void stop.finally(() => (stopped = true));
  while (!stopped) {
    try {
      times.push(await echoRoundTrip(host, port, request, 5000, expect));
    } catch (error) {
      failures.push(error instanceof Error ? error.message : String(error));
    }
    await Bun.sleep(everyMs);
  }
  return { times: times.sort((a, b) => a - b), failures };
}

/** The value below which `fraction` of the sorted `values` lie. */
export function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

/** Open descriptors of a process. */
export function openDescriptors(pid: number): number {
  return Array.from(new Bun.Glob("*").scanSync({ cwd: `/proc/${pid}/fd`, onlyFiles: false })).length;
}

/** A backend that writes to each connection as fast as the connection takes it, without end, counting what it wrote. */
export function startEndlessSource(): { port: number; written(): number; stop(): void } {
  const block = new Uint8Array(256 * 1024).fill(0x61);
  let written = 0;
  const pump = (socket: Socket<undefined>) => {
    // write() takes what the kernel accepts now; drain calls again when there is room.
    for (;;) {
      const taken = socket.write(block);
      written += Math.max(0, taken);
      if (taken < block.length) return;
    }
  };
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: { open: pump, drain: pump, data() {} },
  });
  return { port: listener.port, written: () => written, stop: () => listener.stop(true) };
}

export interface ZeroWindowResult {
  connected: number;
  /** Bytes the endless backend wrote in all (it serves only these clients). */
  backendBytes: number;
  /** Of those, in the last second of the hold: 0 once every leg is full. */
  backendBytesLastSecond: number;
}

/** `count` clients connect through a forwarder to an endless source and never read, for `holdMs`. */
export async function zeroWindowClients(
  host: string,
  port: number,
  count: number,
  holdMs: number,
  source: { written(): number },
  /** End the hold early once the source has not moved for this long (for tests); by default hold `holdMs`. */
  options: { untilStillMs?: number } = {},
): Promise<ZeroWindowResult> {
  const sockets: Array<Socket<undefined>> = [];
  for (let i = 0; i < count; i++) {
    const socket = await Bun.connect({ hostname: host, port, socket: { data() {} } });
    // pause() stops reading at the kernel: the receive window closes, as with a client that never calls read().
    socket.pause();
    sockets.push(socket);
  }
  const deadline = performance.now() + holdMs;
  let lastSecondStart = source.written();
  if (options.untilStillMs === undefined) {
    await Bun.sleep(Math.max(0, holdMs - 1000));
    lastSecondStart = source.written();
    await Bun.sleep(1000);
  } else {
    // Until a whole `untilStillMs` passes without a byte written, or the hold is over.
    do {
      lastSecondStart = source.written();
      await Bun.sleep(options.untilStillMs);
    } while (source.written() !== lastSecondStart && performance.now() < deadline);
  }
  const end = source.written();
  for (const socket of sockets) socket.terminate();
  return { connected: sockets.length, backendBytes: end, backendBytesLastSecond: end - lastSecondStart };
}

/** A UDP backend that answers each datagram `replies` times (0: never), counting the bytes it sent. */
export interface RepeatingUdpEcho {
  port: number;
  replies: number;
  sentBytes: number;
  close(): void;
}

export async function startRepeatingUdpEcho(): Promise<RepeatingUdpEcho> {
  const state = { replies: 1, sentBytes: 0 };
  const socket: udp.Socket<"uint8array"> = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket, data, port, address) {
        for (let i = 0; i < state.replies; i++) {
          if (socket.send(data, port, address)) state.sentBytes += data.length;
        }
      },
    },
  });
  return {
    port: socket.port,
    get replies() {
      return state.replies;
    },
    set replies(value: number) {
      state.replies = value;
    },
    get sentBytes() {
      return state.sentBytes;
    },
    set sentBytes(value: number) {
      state.sentBytes = value;
    },
    close: () => socket.close(),
  };
}

export interface AmplificationResult {
  replies: number;
  sent: number;
  backendBytes: number;
  clientBytes: number;
}

/** `count` datagrams of 100 bytes from one client through a UDP rule to `backend`, answering `replies` times each. */
export async function udpAmplification(host: string, port: number, backend: RepeatingUdpEcho, replies: number, count: number): Promise<AmplificationResult> {
  backend.replies = replies;
  backend.sentBytes = 0;
  let clientBytes = 0;
  const client = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(_socket, data) {
        clientBytes += data.length;
      },
    },
  });
  const datagram = new Uint8Array(100).fill(0x62);
  for (let i = 0; i < count; i++) {
    client.send(datagram, port, host);
    // A few at a time: no datagram is lost to a full receive buffer, so the two counts can be compared exactly.
    if (i % 20 === 19) await Bun.sleep(1);
  }
  // Until the counts stop moving (half a second without change), at most 5 s.
  let last = -1;
  for (let i = 0; i < 50 && clientBytes !== last; i++) {
    last = clientBytes;
    await Bun.sleep(500);
  }
  client.close();
  return { replies, sent: count, backendBytes: backend.sentBytes, clientBytes };
}

/** `slowClients` run by a child process (see slow-clients-main.ts). */
export async function slowClientsElsewhere(options: SlowClientsOptions): Promise<SlowClientsResult> {
  const child = Bun.spawn(
    [process.execPath, `${import.meta.dir}/slow-clients-main.ts`, JSON.stringify({ ...options, bytes: Array.from(options.bytes) })],
    { stdout: "pipe", stderr: "pipe", stdin: "ignore" },
  );
  const [text, errors, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (code !== 0) throw new Error(`slow clients exited with ${code}: ${errors}`);
  return JSON.parse(text) as SlowClientsResult;
}
