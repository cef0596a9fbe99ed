/**
 * @module The --tls section's figures, per system (see tls-systems.ts for
 * what runs where):
 * (a) new TLS connections per second through an SNI-routed bind and through a
 *     plain rule to the same nginx site: ab -c 50 over https (a full handshake
 *     per request, with nginx at the far end; ab sends its Host header as the
 *     SNI name), and the forwarder's CPU time per connection;
 * (b) TLS termination: handshakes per second (ab over https to the
 *     terminating rule, plain HTTP to nginx behind it) and bulk throughput
 *     (curl downloading a file of random bytes through it), with the CPU time
 *     per handshake and per GiB;
 * (c) private memory per connection waiting in the peek: a fresh instance,
 *     N clients that each send the first half of a real ClientHello (openssl's,
 *     captured once) and hold; Pss_Anon before and with them, per connection.
 * `direct` is the client talking to nginx over TLS itself (nginx terminating):
 * the ceiling of (a) and (b); (c) does not apply to it.
 */
import { join } from "node:path";
import { treeAnonKiB, treeCpuSeconds } from "../proc-stats.ts";
import { runBounded, spawnLogged } from "../procs.ts";
import { NotStarted, ROUTED_NAME, startTlsSystem, type TlsFiles, type TlsLaunch, type TlsRoute, type TlsSystem } from "../tls-systems.ts";
import type { TlsFigureKey, TlsSample, TlsSystemName, Topology } from "../types.ts";
import { type AbRun, runAb } from "./connections.ts";
import { gib } from "./context.ts";

/** What the figures need from the section. */
export interface TlsContext {
  topology: Topology;
  limitPrefix: string[];
  fdLimit: number;
  oiCli: string;
  tmpDir: string;
  files: TlsFiles;
  /** ab: requests per run and its time limit; clients at once. */
  abRequests: number;
  abSeconds: number;
  abClients: number;
  /** curl downloads of the bulk file per run. */
  bulkDownloads: number;
  /** Connections of the waiting-memory figure. */
  waitingConnections: number;
  /** The first half of a real ClientHello (hex), what every waiting client sends. */
  halfHelloHex: string;
  log(line: string): void;
}

export const TLS_FIGURE_KEYS: readonly TlsFigureKey[] = [
  "sniConnPerS", "plainConnPerS", "sniCpuUsPerConn", "plainCpuUsPerConn", "handshakesPerS", "handshakeCpuUsPerConn",
  "bulkGbps", "bulkCpuSPerGiB", "waitingKiBPerConn",
];

function cpuOf(system: TlsSystem): number | undefined {
  return system.proc === undefined ? undefined : treeCpuSeconds(system.proc.pid);
}

/** ab over https through `system`'s `route`, asking for `name`; the rate and the forwarder's CPU µs per completed request. */
async function abHttps(ctx: TlsContext, system: TlsSystem, route: TlsRoute, notes: string[]): Promise<{ rate: number | null; cpuUs: number | null }> {
  const before = cpuOf(system);
  const run: AbRun = await runAb(ctx, "127.0.0.1", system.port(route), ctx.abClients, ctx.abRequests, ctx.abSeconds, { https: true, hostName: ROUTED_NAME });
  const after = cpuOf(system);
  if (run.rate === null) {
    notes.push(`${route}: ${run.error ?? "ab failed"}`);
    return { rate: null, cpuUs: null };
  }
  if (run.failed > 0) notes.push(`${route}: ab: ${run.failed} of ${run.complete} requests failed`);
  const cpuUs = before === undefined || after === undefined || run.complete === 0 ? null : ((after - before) / run.complete) * 1e6;
  return { rate: run.rate, cpuUs };
}

/** (a) SNI-routed and plain, through their instances (the same process for haproxy; for direct, one run stands for both). */
export async function measureRouting(ctx: TlsContext, sni: TlsSystem | undefined, plain: TlsSystem | undefined, notes: string[]): Promise<Partial<TlsSample>> {
  const sample: Partial<TlsSample> = {};
  if (sni !== undefined) {
    const run = await abHttps(ctx, sni, "sni", notes);
    sample.sniConnPerS = run.rate;
    sample.sniCpuUsPerConn = run.cpuUs;
  }
  if (plain !== undefined && plain.name === "direct") {
    sample.plainConnPerS = sample.sniConnPerS ?? null;
  } else if (plain !== undefined) {
    const run = await abHttps(ctx, plain, "plain", notes);
    sample.plainConnPerS = run.rate;
    sample.plainCpuUsPerConn = run.cpuUs;
  }
  return sample;
}

/** curl the bulk file through `port` as a.test, `downloads` times: Gbit/s over all of them, and the forwarder's CPU s per GiB. */
async function bulk(ctx: TlsContext, system: TlsSystem, notes: string[]): Promise<{ gbps: number | null; cpuPerGiB: number | null }> {
  const port = system.port("terminate");
  let bytes = 0;
  let seconds = 0;
  const before = cpuOf(system);
  for (let i = 0; i < ctx.bulkDownloads; i++) {
    const cmd = [
      ...ctx.topology.clientPrefix, "curl", "-sS", "-o", "/dev/null", "--max-time", "60",
      "--resolve", `${ROUTED_NAME}:${port}:127.0.0.1`, "--cacert", ctx.files.caFile,
      "-w", "%{size_download} %{time_total}", `https://${ROUTED_NAME}:${port}/big.bin`,
    ];
    const run = await runBounded(cmd, 70_000);
    const [size, time] = run.stdout.trim().split(" ").map(Number);
    if (run.code !== 0 || size !== ctx.files.bigBytes || time === undefined || !(time > 0)) {
      notes.push(`bulk: curl exit ${run.code}, ${size ?? 0} of ${ctx.files.bigBytes} bytes: ${run.stderr.trim().slice(0, 160)}`);
      return { gbps: null, cpuPerGiB: null };
    }
    bytes += size;
    seconds += time;
  }
  const after = cpuOf(system);
  return {
    gbps: (bytes * 8) / seconds / 1e9,
    cpuPerGiB: before === undefined || after === undefined ? null : (after - before) / gib(bytes),
  };
}

/** One untimed download through the terminating rule: the first transfer of a process runs slower (buffers, the cipher's first use). */
export async function warmUpBulk(ctx: TlsContext, system: TlsSystem): Promise<void> {
  await bulk({ ...ctx, bulkDownloads: 1 }, system, []);
}

/** (b) Handshakes per second and bulk throughput through the terminating rule (direct: nginx terminating itself). */
export async function measureTermination(ctx: TlsContext, system: TlsSystem, notes: string[]): Promise<Partial<TlsSample>> {
  const handshakes = await abHttps(ctx, system, "terminate", notes);
  const moved = await bulk(ctx, system, notes);
  return { handshakesPerS: handshakes.rate, handshakeCpuUsPerConn: handshakes.cpuUs, bulkGbps: moved.gbps, bulkCpuSPerGiB: moved.cpuPerGiB };
}

const CLIENT = join(import.meta.dir, "..", "agents", "idle-client.ts");

async function waitForLine(output: () => string, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray | null> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const match = pattern.exec(output());
    if (match !== null) return match;
    await Bun.sleep(50);
  }
  return null;
}

/** `n` clients that send half a ClientHello to `port` and hold; `closed()` is how many the far end closed since. */
async function openWaiting(ctx: TlsContext, port: number, n: number, tag: string): Promise<{ opened: number; closed(): number; stop(): Promise<void> }> {
  const cmd = [...ctx.limitPrefix, process.execPath, CLIENT, "127.0.0.1", String(port), String(n), ctx.halfHelloHex];
  const client = spawnLogged("waiting clients", cmd, { log: join(ctx.tmpDir, `waiting-client-${tag}.log`), collect: true });
  const ready = await waitForLine(client.output, /ready (\d+) (\d+)/, 30_000 + n * 5);
  return {
    opened: Number(ready?.[1] ?? 0),
    closed: () => {
      const all = [...client.output().matchAll(/closed (\d+)/g)];
      return Number(all.at(-1)?.[1] ?? 0);
    },
    stop: () => client.stop("SIGTERM", 5000),
  };
}

/**
 * (c) KiB of private memory a fresh instance of `name` gains per connection
 * waiting in the peek (half a ClientHello sent, the rest never comes).
 */
export async function measureWaiting(ctx: TlsContext, name: TlsSystemName, launch: TlsLaunch, notes: string[]): Promise<Partial<TlsSample>> {
  if (name === "direct") return {};
  let system: TlsSystem;
  try {
    system = await startTlsSystem(name, ["waiting"], launch);
  } catch (error) {
    notes.push(`waiting: ${error instanceof NotStarted ? error.reason : String(error)}`);
    return { waitingKiBPerConn: null };
  }
  const n = ctx.waitingConnections;
  try {
    const pid = system.proc!.pid;
    const port = system.port("waiting");
    // Warm up: the first connections allocate what every later one reuses.
    const warm = await openWaiting(ctx, port, 20, `${launch.tag}-warm`);
    await Bun.sleep(300);
    await warm.stop();
    await Bun.sleep(600);
    const before = treeAnonKiB(pid);
    const startedAt = Date.now();
    const clients = await openWaiting(ctx, port, n, launch.tag);
    try {
      // Let the process settle (lazy allocations, a collector cycle) before reading.
      await Bun.sleep(1000);
      const after = treeAnonKiB(pid);
      const closed = clients.closed();
      const heldSeconds = (Date.now() - startedAt) / 1000;
      if (clients.opened < n || closed > 0) {
        notes.push(`waiting: ${clients.opened} of ${n} connections opened, ${closed} closed by ${name} within ${heldSeconds.toFixed(1)} s`);
        return { waitingKiBPerConn: null };
      }
      return { waitingKiBPerConn: (after - before) / n };
    } finally {
      await clients.stop();
    }
  } finally {
    await system.stop();
  }
}

/**
 * A real ClientHello for `name`: openssl s_client's first TLS record,
 * captured by a listener on a free loopback port that closes once the record
 * is complete.
 */
export async function captureClientHello(name: string): Promise<Uint8Array> {
  let received = new Uint8Array(0);
  let done: (hello: Uint8Array) => void = () => {};
  const hello = new Promise<Uint8Array>((resolve) => {
    done = resolve;
  });
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket, chunk) {
        const joined = new Uint8Array(received.length + chunk.length);
        joined.set(received);
        joined.set(chunk, received.length);
        received = joined;
        if (received.length < 5) return;
        const length = 5 + ((received[3]! << 8) | received[4]!);
        if (received.length >= length) {
          done(received.slice(0, length));
          socket.end();
        }
      },
      error() {},
    },
  });
  try {
    const client = runBounded(["openssl", "s_client", "-connect", `127.0.0.1:${listener.port}`, "-servername", name], 10_000);
    const captured = await Promise.race([hello, client.then(() => Bun.sleep(100)).then(() => undefined)]);
    await client;
    if (captured === undefined) throw new Error(`no ClientHello captured from openssl s_client (${received.length} bytes)`);
    if (captured[0] !== 0x16 || captured[5] !== 0x01) throw new Error("the first record is not a ClientHello");
    return captured;
  } finally {
    listener.stop(true);
  }
}
