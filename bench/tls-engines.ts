/**
 * @module Which TLS server engine termination should run on, when the first
 * bytes (the ClientHello) are already read: the evidence behind
 * src/tls/server-leg.ts. Three servers, each in a child process, receive
 * --mib MiB from a Bun TLS client and answer a half-closed request:
 *
 * - `listener`: Bun.listen with `tls` (Bun's own TLS server, nothing read
 *   before it: the reference);
 * - `upgrade`: a plain Bun listener that reads the first chunk, then
 *   oi's terminateTls (Bun's upgradeTLS with `initialData`);
 * - `duplex`: the same, then node:tls's TLSSocket over a Duplex fed by hand
 *   (the ClientHello pushed first).
 *
 * Per server: the received rate, its CPU seconds per GiB, and whether a
 * reply sent after the client's shutdown (close_notify and FIN) reaches the
 * client.
 *
 *   bun bench/tls-engines.ts [--rounds 3] [--mib 1024]
 */
import { Duplex } from "node:stream";
import { TLSSocket } from "node:tls";
import { parseArgs } from "node:util";
import { makeTestCa } from "../test/helpers/certs.ts";
import { loadServerTls } from "../src/tls/certificates.ts";
import { terminateTls } from "../src/tls/server-leg.ts";
import type { StreamSocket } from "../src/tcp/stream-socket.ts";
import { cpuTimes } from "./proc-stats.ts";
import { spread } from "./stats.ts";

const ENGINES = ["listener", "upgrade", "duplex"] as const;
type Engine = (typeof ENGINES)[number];

/** The child: serve one engine on a port it prints; each connection is a sink, or (text "request") answered after the client's FIN. */
async function serve(engine: Engine, certFile: string, keyFile: string): Promise<void> {
  const loaded = loadServerTls(certFile, keyFile);
  if (!loaded.ok) throw new Error(loaded.reason);
  const server = loaded.value;
  type Session = { got: string };
  const answer = (session: Session, write: (text: string) => void, close: () => void) => {
    if (session.got.startsWith("request")) write("reply after your FIN");
    close();
  };
  const received = (session: Session, bytes: Uint8Array) => {
    if (session.got.length < 16) session.got += new TextDecoder().decode(bytes.subarray(0, 16));
  };
  if (engine === "listener") {
    const listener = Bun.listen<Session>({
      hostname: "127.0.0.1",
      port: 0,
      allowHalfOpen: true,
      tls: { key: await Bun.file(keyFile).text(), cert: await Bun.file(certFile).text() },
      socket: {
        open: (socket) => void (socket.data = { got: "" }),
        data: (socket, bytes) => received(socket.data, bytes),
        end: (socket) => answer(socket.data, (text) => void socket.write(text), () => socket.shutdown()),
        close() {},
        error() {},
      },
    });
    console.log(listener.port);
    return;
  }
  const listener = Bun.listen<unknown>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      binaryType: "uint8array",
      open(socket) {
        socket.data = undefined;
      },
      data(socket, bytes) {
        if (socket.data instanceof Duplex) {
          socket.data.push(bytes);
          return;
        }
        if (socket.data !== undefined) return;
        const session: Session = { got: "" };
        if (engine === "upgrade") {
          const handlers = {
            data: (_leg: StreamSocket<Session>, plain: Uint8Array) => received(session, plain),
            drain() {},
            end: (leg: StreamSocket<Session>) => answer(session, (text) => void leg.write(Buffer.from(text)), () => leg.shutdown()),
            error() {},
            close() {},
          };
          const leg = terminateTls<Session>(socket as unknown as StreamSocket<unknown>, bytes, server, handlers, session);
          if (typeof leg === "string") throw new Error(leg);
          return;
        }
        // node:tls over a Duplex: ciphertext in by push, out through the raw socket (a sink test never fills it).
        const transport = new Duplex({
          allowHalfOpen: true,
          read() {},
          write(out: Uint8Array, _encoding, done) {
            socket.write(out);
            done();
          },
          final(done) {
            socket.shutdown();
            done();
          },
        });
        socket.data = transport;
        const tls = new TLSSocket(transport, { isServer: true, secureContext: server.context });
        tls.on("data", (plain: Uint8Array) => received(session, plain));
        tls.on("end", () => answer(session, (text) => void tls.write(text), () => tls.end()));
        tls.on("error", () => {});
        transport.push(bytes);
      },
      end(socket) {
        if (socket.data instanceof Duplex) socket.data.push(null);
      },
      drain() {},
      close() {},
      error() {},
    },
  });
  console.log(listener.port);
}

const GiB = 1024 ** 3;

/** Send `total` bytes, then a separate connection: "request", shutdown, and see whether the reply comes. */
async function drive(port: number, pid: number, total: number, caPem: string): Promise<{ gbit: number; cpuPerGiB: number; halfClose: boolean }> {
  const chunk = new Uint8Array(256 * 1024).fill(0x5a);
  const cpuBefore = cpuTimes(pid);
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    let sent = 0;
    const pump = (socket: Bun.Socket<undefined>) => {
      while (sent < total) {
        const written = socket.write(chunk, sent % chunk.length, Math.min(chunk.length - (sent % chunk.length), total - sent));
        if (written <= 0) return;
        sent += written;
      }
      socket.shutdown();
    };
    void Bun.connect({
      hostname: "127.0.0.1",
      port,
      allowHalfOpen: true,
      tls: { serverName: "example.test", ca: caPem },
      socket: { handshake: (socket, ok) => (ok ? pump(socket) : reject(new Error("handshake"))), data() {}, drain: (socket) => pump(socket), end: (socket) => void socket.end(), close: () => resolve() },
    });
  });
  const seconds = (performance.now() - started) / 1000;
  const cpuAfter = cpuTimes(pid);
  const cpu = cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system;
  const reply = await new Promise<string>((resolve) => {
    let got = "";
    void Bun.connect({
      hostname: "127.0.0.1",
      port,
      allowHalfOpen: true,
      tls: { serverName: "example.test", ca: caPem },
      socket: {
        handshake(socket) {
          socket.write("request");
          socket.shutdown();
        },
        data: (_socket, bytes) => void (got += new TextDecoder().decode(bytes)),
        end: (socket) => void socket.end(),
        close: () => resolve(got),
      },
    });
    setTimeout(() => resolve(got), 2000);
  });
  return { gbit: (total * 8) / seconds / 1e9, cpuPerGiB: cpu / (total / GiB), halfClose: reply === "reply after your FIN" };
}

if (process.argv[2] === "--serve") {
  await serve(process.argv[3] as Engine, process.argv[4]!, process.argv[5]!);
} else {
  const { values } = parseArgs({ options: { rounds: { type: "string", default: "3" }, mib: { type: "string", default: "1024" } } });
  const total = Number(values.mib) * 1024 * 1024;
  const ca = makeTestCa("oi bench CA");
  const leaf = ca.issue(["example.test"]);
  const servers = new Map<Engine, { child: Bun.Subprocess<"ignore", "pipe", "inherit">; port: number }>();
  for (const engine of ENGINES) {
    const child = Bun.spawn([process.execPath, import.meta.path, "--serve", engine, leaf.certFile, leaf.keyFile], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
    const port = Number(new TextDecoder().decode((await child.stdout.getReader().read()).value).trim());
    servers.set(engine, { child, port });
  }
  const results = new Map<Engine, { gbit: number[]; cpu: number[]; halfClose: boolean[] }>();
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const [engine, { child, port }] of servers) {
      const run = await drive(port, child.pid, total, ca.certPem);
      const entry = results.get(engine) ?? { gbit: [], cpu: [], halfClose: [] };
      entry.gbit.push(run.gbit);
      entry.cpu.push(run.cpuPerGiB);
      entry.halfClose.push(run.halfClose);
      results.set(engine, entry);
    }
  }
  console.log(`${values.mib} MiB per run, ${values.rounds} rounds; median (min..max)`);
  console.log("engine     Gbit/s                server CPU s/GiB      reply after client's shutdown");
  for (const [engine, entry] of results) {
    console.log(`${engine.padEnd(10)} ${spread(entry.gbit, 2).padEnd(21)} ${spread(entry.cpu, 3).padEnd(21)} ${entry.halfClose.every(Boolean) ? "arrives" : "lost"}`);
  }
  for (const { child } of servers.values()) child.kill();
}
