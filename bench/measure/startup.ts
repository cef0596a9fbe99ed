/**
 * @module Start-up: from launching a forwarder with a one-rule config to the
 * first request answered through it (an HTTP GET to nginx behind it), so the
 * figure covers process start, config load, listen and the first accept,
 * connect and relay. oi runs as the compiled binary users ship
 * (`bun build --compile`, built from the bench's snapshot of src/ when the
 * bench starts). Several starts per round; the median counts.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { BACKEND_PORTS, frontPort } from "../net.ts";
import { runBounded, spawnLogged } from "../procs.ts";
import type { RunningSystem } from "../systems.ts";
import type { Sample, SystemName } from "../types.ts";
import type { MeasureContext } from "./context.ts";
import { median } from "../stats.ts";

/** Starts per round (each one a fresh process). */
const STARTS_PER_ROUND = 5;
/** A forwarder that has not answered by then counts as failed. */
const GIVE_UP_MS = 5000;
/** Port offset of the start-up instances (the usual port + 200). */
const STARTUP_PORT_OFFSET = 200;
const REQUEST = new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n");

/**
 * Compile `cli` (the snapshot's entry point) into a standalone binary in
 * `dir`, as `npm run build` does; undefined (with the reason logged) when the
 * build fails.
 */
export async function buildOiBinary(cli: string, dir: string, log: (line: string) => void): Promise<string | undefined> {
  const outfile = join(dir, "oi-compiled");
  const build = await runBounded(
    [process.execPath, "build", "--compile", "--minify", "--bytecode", "--format=esm", ...entryPoints(cli), "--outfile", outfile],
    120_000,
  );
  if (build.code !== 0) {
    log(`start-up figure skipped: bun build --compile failed: ${build.stderr.trim().slice(0, 200)}`);
    return undefined;
  }
  return outfile;
}

/**
 * The entry points `npm run build` compiles (cli.ts and the worker files),
 * as the snapshot's package.json lists them, inside the snapshot.
 */
function entryPoints(cli: string): string[] {
  const root = dirname(dirname(cli));
  try {
    const script: unknown = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts?.build;
    const entries = typeof script === "string" ? script.split(/\s+/).filter((word) => word.endsWith(".ts")) : [];
    if (entries.length > 0) return entries.map((entry) => join(root, entry));
  } catch {
    // No readable package.json: the cli alone.
  }
  return [cli];
}

/** The command starting `name` on `config` (written here), or undefined when the figure does not apply. */
function startCommand(name: SystemName, ctx: MeasureContext, listen: number): string[] | undefined {
  const { forwardHost, backendHost } = ctx.topology;
  const backend = BACKEND_PORTS.http;
  const config = join(ctx.tmpDir, `startup-${name}.conf`);
  switch (name) {
    case "oi":
    case "oi-plain":
    case "oi-w2":
      if (ctx.oiBinary === undefined) return undefined;
      writeFileSync(config, `${name === "oi-plain" ? "splice off\n" : ""}${forwardHost} ${listen} ${backendHost} ${backend}\n`);
      return [ctx.oiBinary, "-c", config, ...(name === "oi-w2" ? ["--workers", "2"] : [])];
    case "rinetd":
      writeFileSync(config, `${forwardHost} ${listen} ${backendHost} ${backend}\n`);
      return ["rinetd", "-f", "-c", config];
    case "haproxy":
      writeFileSync(
        config,
        `defaults\n  mode tcp\n  timeout connect 10s\n  timeout client 1m\n  timeout server 1m\nlisten http\n  bind ${forwardHost}:${listen}\n  server backend ${backendHost}:${backend}\n`,
      );
      return ["haproxy", "-db", "-f", config];
    case "socat":
      return ["socat", `TCP-LISTEN:${listen},fork,reuseaddr,bind=${forwardHost}`, `TCP:${backendHost}:${backend}`];
    default:
      return undefined;
  }
}

/** One GET through host:port: true when an HTTP 200 came back, false when the connect or the answer failed. */
async function answered(host: string, port: number): Promise<boolean> {
  const { promise, resolve } = Promise.withResolvers<boolean>();
  let text = "";
  const timer = setTimeout(() => resolve(false), 1000);
  try {
    await Bun.connect({
      hostname: host,
      port,
      socket: {
        open(socket): void {
          socket.write(REQUEST);
        },
        data(_socket, chunk): void {
          text += chunk.toString();
          if (text.includes(" 200 ")) resolve(true);
        },
        close(): void {
          resolve(text.includes(" 200 "));
        },
        error(): void {
          resolve(false);
        },
        connectError(): void {
          resolve(false);
        },
      },
    });
  } catch {
    resolve(false);
  }
  const ok = await promise;
  clearTimeout(timer);
  return ok;
}

/** Milliseconds from launching `cmd` to the first request answered through host:port, or null. */
async function timeOneStart(name: string, cmd: string[], host: string, port: number, log: string): Promise<number | null> {
  const started = performance.now();
  const proc = spawnLogged(`${name} start-up`, cmd, { log });
  try {
    while (performance.now() - started < GIVE_UP_MS) {
      if (proc.proc.exitCode !== null) return null;
      if (await answered(host, port)) return performance.now() - started;
      await Bun.sleep(1);
    }
    return null;
  } finally {
    await proc.stop();
  }
}

export async function measureStartup(ctx: MeasureContext, system: RunningSystem, notes: string[]): Promise<Partial<Sample>> {
  if (ctx.backends.procs.http === undefined) return {};
  const listen = frontPort(system.name, "http") + STARTUP_PORT_OFFSET;
  const cmd = startCommand(system.name, ctx, listen);
  if (cmd === undefined) return {};
  const log = join(ctx.tmpDir, `startup-${system.name}.log`);
  const times: Array<number | null> = [];
  for (let i = 0; i < STARTS_PER_ROUND; i++) times.push(await timeOneStart(system.name, cmd, ctx.topology.forwardHost, listen, log));
  const failed = times.filter((time) => time === null).length;
  if (failed > 0) notes.push(`start-up: ${failed} of ${times.length} starts never answered within ${GIVE_UP_MS} ms`);
  return { startupMs: median(times) };
}
