/**
 * @module What TLS termination costs the relay, on loopback: the test
 * forwarder (test/helpers/tls-relay-main.ts: a listener that reads the
 * ClientHello, then terminateTls and the real Relay) in a process of its
 * own, against the same forwarder relaying plaintext, on each socket layer.
 *
 * Bulk: one connection moves --mib MiB up (client to backend) and then down
 * (backend to client); the client and the backend live in this process, so
 * on a small machine they compete with the forwarder for CPU. Per run: the
 * rate seen by the receiving end and the forwarder's CPU seconds (user +
 * system, all threads, /proc/PID/stat) per GiB. Rounds alternate the
 * variants, so a shared machine's drift falls on all alike.
 *
 * Handshakes: `openssl s_time -new` (one full handshake per connection, one
 * connection at a time) against the TLS forwarder: connections per second
 * and the forwarder's CPU milliseconds per connection (handshake, backend
 * dial and close).
 *
 *   bun bench/tls-legs.ts [--rounds 3] [--mib 1024] [--layers bun,direct] [--handshake-seconds 5]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { makeTestCa } from "../test/helpers/certs.ts";
import { cpuTimes } from "./proc-stats.ts";
import { spread } from "./stats.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    mib: { type: "string", default: "1024" },
    layers: { type: "string", default: "bun,direct" },
    "handshake-seconds": { type: "string", default: "5" },
  },
});
const rounds = Number(values.rounds);
const total = Number(values.mib) * 1024 * 1024;
const layers = values.layers.split(",");
const handshakeSeconds = Number(values["handshake-seconds"]);
const GiB = 1024 ** 3;
const MAIN = join(import.meta.dir, "..", "test", "helpers", "tls-relay-main.ts");

const ca = makeTestCa("oi bench CA");
const leaf = ca.issue(["example.test"]);
const chunk = new Uint8Array(256 * 1024).fill(0x5a);

/** The backend: the client's first byte says what it wants, `U` (take everything until my FIN) or `D` (send `total` bytes). */
interface BackendState {
  mode: "?" | "U" | "D";
  received: number;
  sent: number;
}

function pumpOut(socket: Bun.Socket<{ sent: number }>, limit: number): void {
  const state = socket.data;
  while (state.sent < limit) {
    const offset = state.sent % chunk.length;
    const written = socket.write(chunk, offset, Math.min(chunk.length - offset, limit - state.sent));
    if (written <= 0) return;
    state.sent += written;
  }
  socket.shutdown();
}

const backend = Bun.listen<BackendState>({
  hostname: "127.0.0.1",
  port: 0,
  allowHalfOpen: true,
  socket: {
    binaryType: "uint8array",
    open(socket) {
      socket.data = { mode: "?", received: 0, sent: 0 };
    },
    data(socket, bytes) {
      const state = socket.data;
      if (state.mode === "?") {
        state.mode = bytes[0] === 0x44 ? "D" : "U";
        state.received += bytes.length - 1;
        if (state.mode === "D") pumpOut(socket as Bun.Socket<{ sent: number }>, total);
        return;
      }
      state.received += bytes.length;
    },
    drain(socket) {
      if (socket.data.mode === "D") pumpOut(socket as Bun.Socket<{ sent: number }>, total);
    },
    end(socket) {
      socket.end();
    },
    close() {},
    error() {},
  },
});

interface Forwarder {
  name: string;
  tls: boolean;
  child: Bun.Subprocess<"ignore", "pipe", "inherit">;
  port: number;
}

async function startForwarder(layer: string, tls: boolean): Promise<Forwarder> {
  const args = [process.execPath, MAIN, layer, String(backend.port), ...(tls ? [leaf.certFile, leaf.keyFile] : [])];
  const child = Bun.spawn(args, { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  const reader = child.stdout.getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  const started = JSON.parse(first.split("\n")[0]!) as { port: number; layer: string };
  // Keep reading (one line per ended relay), so the child never blocks on a full pipe.
  void (async () => {
    while (!(await reader.read()).done);
  })();
  return { name: `${tls ? "tls" : "plain"}/${started.layer}`, tls, child, port: started.port };
}

/** One transfer through `forwarder`: seconds (first byte sent to last byte received) and the forwarder's CPU seconds. */
function transfer(forwarder: Forwarder, direction: "U" | "D"): Promise<{ seconds: number; cpu: number }> {
  const cpuBefore = cpuTimes(forwarder.child.pid);
  const startedAt = performance.now();
  return new Promise((resolve, reject) => {
    const state = { sent: 0, received: 0 };
    const finish = () => {
      const cpuAfter = cpuTimes(forwarder.child.pid);
      const seconds = (performance.now() - startedAt) / 1000;
      resolve({ seconds, cpu: cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system });
    };
    const start = (socket: Bun.Socket<typeof state>) => {
      socket.write(direction === "D" ? "D" : "U");
      if (direction === "U") pumpOut(socket, total);
    };
    const handlers = {
      binaryType: "uint8array" as const,
      open(socket: Bun.Socket<typeof state>) {
        if (!forwarder.tls) start(socket);
      },
      handshake(socket: Bun.Socket<typeof state>, success: boolean, error: Error | null) {
        if (success) start(socket);
        else reject(error ?? new Error("handshake failed"));
      },
      data(socket: Bun.Socket<typeof state>, bytes: Uint8Array) {
        socket.data.received += bytes.length;
      },
      drain(socket: Bun.Socket<typeof state>) {
        if (direction === "U" && socket.data.sent < total) pumpOut(socket, total);
      },
      end(socket: Bun.Socket<typeof state>) {
        socket.end();
      },
      close() {
        finish();
      },
      error() {},
    };
    const tls = forwarder.tls ? { tls: { serverName: "example.test", ca: ca.certPem } } : {};
    Bun.connect<typeof state>({ hostname: "127.0.0.1", port: forwarder.port, allowHalfOpen: true, data: state, socket: handlers, ...tls }).catch(reject);
  });
}

/** Full handshakes per second through `forwarder` with openssl s_time, and the forwarder's CPU ms per connection. */
async function handshakes(forwarder: Forwarder): Promise<{ perSecond: number; cpuMs: number }> {
  const cpuBefore = cpuTimes(forwarder.child.pid);
  const run = Bun.spawn(["openssl", "s_time", "-connect", `127.0.0.1:${forwarder.port}`, "-new", "-time", String(handshakeSeconds), "-CAfile", ca.certFile], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const output = await new Response(run.stdout).text();
  await run.exited;
  const cpuAfter = cpuTimes(forwarder.child.pid);
  const match = /(\d+) connections in (\d+) real seconds/.exec(output);
  if (match === null) throw new Error(`s_time said: ${output}`);
  const connections = Number(match[1]);
  const cpu = cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system;
  return { perSecond: connections / Number(match[2]), cpuMs: (cpu * 1000) / connections };
}

const forwarders: Forwarder[] = [];
for (const layer of layers) for (const tls of [false, true]) forwarders.push(await startForwarder(layer, tls));

const results = new Map<string, { gbit: number[]; cpuPerGiB: number[] }>();
for (let round = 0; round < rounds; round++) {
  for (const forwarder of forwarders) {
    for (const direction of ["U", "D"] as const) {
      const { seconds, cpu } = await transfer(forwarder, direction);
      const key = `${forwarder.name} ${direction === "U" ? "up" : "down"}`;
      const entry = results.get(key) ?? { gbit: [], cpuPerGiB: [] };
      entry.gbit.push((total * 8) / seconds / 1e9);
      entry.cpuPerGiB.push(cpu / (total / GiB));
      results.set(key, entry);
    }
  }
}

console.log(`bulk: ${values.mib} MiB per run, ${rounds} rounds; median (min..max)`);
console.log("variant              Gbit/s                forwarder CPU s/GiB");
for (const [key, entry] of results) console.log(`${key.padEnd(20)} ${spread(entry.gbit, 2).padEnd(21)} ${spread(entry.cpuPerGiB, 3)}`);

console.log(`\nhandshakes: openssl s_time -new, ${handshakeSeconds} s, one connection at a time`);
for (const forwarder of forwarders.filter((each) => each.tls)) {
  const { perSecond, cpuMs } = await handshakes(forwarder);
  console.log(`${forwarder.name.padEnd(20)} ${perSecond.toFixed(0)} connections/s, forwarder ${cpuMs.toFixed(2)} ms CPU each`);
}

for (const forwarder of forwarders) forwarder.child.kill();
backend.stop(true);
