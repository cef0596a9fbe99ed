/**
 * @module How a forwarder's start, reload and memory grow with its config:
 * generated configs of N TCP rules listening on 127.0.0.3, ports 40000 up
 * (40000-49999 is the bench's own range for this; every rule forwards to the
 * holder). Not 127.0.0.1: those ports lie in the kernel's ephemeral range,
 * and the bench's own loopback clients leave thousands of sockets in
 * TIME_WAIT on 127.0.0.1 (the idle-memory figures close 2 × N connections),
 * which a bind to the same address and port conflicts with; a socket on
 * 127.0.0.1 never conflicts with a bind to 127.0.0.3. Start: from launch until the last rule's port accepts and every
 * port of the range is listening (/proc/net/tcp). Private memory: Pss_Anon of
 * the process tree half a second later. Reload: the config is rewritten with
 * its first rule moved to port 23200 (the bench's own), then oi and rinetd
 * get SIGHUP and haproxy (run as master-worker, -W) SIGUSR2; done when oi logs
 * its "reloaded" line, and for the others when port 23200 accepts. A port
 * already taken by another socket skips that point, saying which.
 */
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BACKEND_PORTS, canConnect } from "../net.ts";
import { alive, treeMemoryKiB } from "../proc-stats.ts";
import { descendantsOf, runBounded, spawnLogged, type Started, stopListed } from "../procs.ts";
import type { ConfigPoint, SystemName } from "../types.ts";
import type { MeasureContext } from "./context.ts";

export const CONFIG_HOST = "127.0.0.3";
export const CONFIG_FIRST_PORT = 40000;
export const CONFIG_LAST_PORT = 49999;
export const RELOAD_PORT = 23200;
export const CONFIG_SYSTEMS: readonly SystemName[] = ["oi", "rinetd", "haproxy"];
/** Longest wait for a start or a reload. */
const GIVE_UP_MS = 60_000;

function read(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

interface SocketEntry {
  port: number;
  /** Local address in /proc's hex form. */
  address: string;
  state: string;
}

function tcpSockets(): SocketEntry[] {
  const entries: SocketEntry[] = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of read(file).split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      const state = fields[3];
      if (local === undefined || state === undefined) continue;
      const [address = "", port = "0"] = local.split(":");
      entries.push({ port: Number.parseInt(port, 16), address, state });
    }
  }
  return entries;
}

/** 127.0.0.3, 0.0.0.0, :: and ::ffff:127.0.0.3 in /proc/net/tcp{,6}'s byte order: the addresses a bind to 127.0.0.3 conflicts with. */
const HOST_HEX = "0300007F";
const CONFLICTING = new Set([HOST_HEX, "00000000", "00000000000000000000000000000000", `0000000000000000FFFF0000${HOST_HEX}`]);

const TIME_WAIT = "06";

/**
 * Ports of `wanted` some TCP socket already holds on a conflicting address.
 * TIME_WAIT is left out: on 127.0.0.3 only connections the earlier points'
 * listeners accepted leave it (the readiness probes), and those inherit the
 * listener's SO_REUSEADDR, which every forwarder here sets, so they do not
 * stop the next bind.
 */
export function takenPorts(wanted: ReadonlySet<number>): number[] {
  const taken = new Set<number>();
  for (const entry of tcpSockets()) {
    if (wanted.has(entry.port) && entry.state !== TIME_WAIT && CONFLICTING.has(entry.address)) taken.add(entry.port);
  }
  return [...taken].sort((a, b) => a - b);
}

/**
 * Listening sockets on 127.0.0.3 in [first, first + n), from `ss -ltn`: the
 * kernel dumps listeners only, where /proc/net/tcp lists every socket (tens of
 * thousands in TIME_WAIT after the other parts) and takes long enough to read
 * to distort a start time.
 */
async function listeningIn(first: number, n: number): Promise<number> {
  const result = await runBounded(["ss", "-Hltn", "src", CONFIG_HOST], 10_000);
  let count = 0;
  for (const line of result.stdout.split("\n")) {
    const port = Number(/:(\d+)\s/.exec(line)?.[1] ?? Number.NaN);
    if (port >= first && port < first + n) count++;
  }
  return count;
}

interface Listen {
  port: number;
}

function ruleLines(name: SystemName, listens: Listen[], backendHost: string): string {
  const backend = BACKEND_PORTS.hold;
  if (name === "haproxy") {
    // maxconn small: haproxy sizes its descriptor needs from maxconn plus every listener.
    const sections = listens.map((rule, i) => `listen r${i}\n  bind ${CONFIG_HOST}:${rule.port}\n  server s ${backendHost}:${backend}\n`);
    return `global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 10s\n  timeout client 1m\n  timeout server 1m\n${sections.join("")}`;
  }
  return listens.map((rule) => `${CONFIG_HOST} ${rule.port} ${backendHost} ${backend}\n`).join("");
}

function command(name: SystemName, ctx: MeasureContext, config: string): string[] | undefined {
  switch (name) {
    case "oi":
      return [...(ctx.oiBinary === undefined ? [process.execPath, ctx.oiCli] : [ctx.oiBinary]), "-c", config];
    case "rinetd":
      return ["rinetd", "-f", "-c", config];
    case "haproxy":
      return ["haproxy", "-W", "-db", "-f", config];
    default:
      return undefined;
  }
}

async function until(check: () => Promise<boolean> | boolean, proc: Started): Promise<boolean> {
  const deadline = performance.now() + GIVE_UP_MS;
  while (performance.now() < deadline) {
    if (proc.proc.exitCode !== null) return false;
    if (await check()) return true;
    await Bun.sleep(2);
  }
  return false;
}

/** The first error-looking line of a log (from byte `offset`), shortened, for a note. */
function firstLine(path: string, offset = 0): string {
  const lines = read(path).slice(offset).split("\n").filter((line) => line.trim() !== "");
  const line = lines.find((each) => /error|alert|cannot|couldn't|fail/i.test(each)) ?? lines[0] ?? "no output";
  return line.trim().slice(0, 200);
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** One point: start `name` on `n` generated rules, read its memory, reload it once, stop it. */
export async function measureConfigPoint(ctx: MeasureContext, name: SystemName, n: number): Promise<ConfigPoint> {
  const point: ConfigPoint = { rules: n, start_ms: null, reload_ms: null, private_kib: null, file_kib: null };
  const listens = Array.from({ length: n }, (_, i) => ({ port: CONFIG_FIRST_PORT + i }));
  const taken = takenPorts(new Set([...listens.map((rule) => rule.port), RELOAD_PORT]));
  if (taken.length > 0) {
    point.note = `skipped: port${taken.length > 1 ? "s" : ""} ${taken.slice(0, 5).join(", ")}${taken.length > 5 ? ", ..." : ""} already taken on ${CONFIG_HOST}`;
    return point;
  }
  const tag = `config-${name}-${n}`;
  const config = join(ctx.tmpDir, `${tag}.${name === "haproxy" ? "cfg" : "conf"}`);
  const log = join(ctx.tmpDir, `${tag}.log`);
  writeFileSync(config, ruleLines(name, listens, ctx.topology.backendHost));
  const cmd = command(name, ctx, config);
  if (cmd === undefined) return point;
  const last = listens.at(-1)!.port;
  const started = performance.now();
  const proc = spawnLogged(tag, [...ctx.limitPrefix, ...cmd], { log });
  try {
    let upAt = 0;
    const lastAccepts = await until(async () => {
      const ok = await canConnect(CONFIG_HOST, last);
      upAt = performance.now();
      return ok;
    }, proc);
    const up =
      lastAccepts &&
      (await until(async () => {
        const checked = performance.now();
        if ((await listeningIn(CONFIG_FIRST_PORT, n)) < n) return false;
        upAt = Math.max(upAt, checked);
        return true;
      }, proc));
    if (!up) {
      point.note =
        proc.proc.exitCode !== null
          ? `exited ${proc.proc.exitCode} before listening on all ${n} ports: ${firstLine(log)}`
          : `did not listen on all ${n} ports within ${GIVE_UP_MS / 1000} s`;
      return point;
    }
    point.start_ms = upAt - started;
    await Bun.sleep(500);
    const memory = treeMemoryKiB([proc.pid]);
    point.private_kib = memory?.pssAnon ?? null;
    point.file_kib = memory?.rssFile ?? null;

    const moved = [...listens.slice(1), { port: RELOAD_PORT }];
    writeFileSync(config, ruleLines(name, moved, ctx.topology.backendHost));
    const logOffset = fileSize(log);
    const signal = name === "haproxy" ? "SIGUSR2" : "SIGHUP";
    const reloadStart = performance.now();
    process.kill(proc.pid, signal);
    const done =
      name === "oi"
        ? await until(() => /reloaded:/.test(read(log).slice(logOffset)), proc)
        : await until(() => canConnect(CONFIG_HOST, RELOAD_PORT), proc);
    if (!done) {
      point.note =
        proc.proc.exitCode !== null
          ? `exited ${proc.proc.exitCode} during the reload: ${firstLine(log, logOffset)}`
          : `reload not done within ${GIVE_UP_MS / 1000} s`;
      return point;
    }
    point.reload_ms = performance.now() - reloadStart;
    if (name === "oi" && !(await until(() => canConnect(CONFIG_HOST, RELOAD_PORT), proc))) point.note = `oi logged its reload but port ${RELOAD_PORT} does not accept`;
    return point;
  } finally {
    await stopTree(proc, n);
  }
}

/**
 * Stop the forwarder by its PID; haproxy's master stops its worker itself,
 * and the bench waits for that worker too (killing it by its PID if it
 * lingers), then for the range to be free, so the next point starts clean.
 */
async function stopTree(proc: Started, n: number): Promise<void> {
  const members = descendantsOf(proc.pid);
  await proc.stop("SIGTERM", 10_000);
  // The master stops its worker itself: give it the time, then stop what lingers by its PID.
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && members.some((each) => alive(each.pid))) await Bun.sleep(20);
  await stopListed(members);
  const free = Date.now() + 5000;
  while (Date.now() < free && (await listeningIn(CONFIG_FIRST_PORT, n)) > 0) await Bun.sleep(20);
}
