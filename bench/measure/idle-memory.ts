/**
 * @module Idle memory: how much anonymous resident memory (heap and buffers,
 * see proc-stats.ts) a system's process tree gains per connection while N idle
 * connections are open through it to the holder backend. Each run starts a
 * fresh instance of the forwarder (a warmed-up process reuses memory that
 * earlier loads left resident, which would hide the cost), warms it with a
 * few connections, then opens N, each carrying one byte so both legs exist.
 * For `direct` a fresh holder's own growth is reported (one socket per
 * connection, no forwarder).
 */
import { join } from "node:path";
import { type Holder, startHolder } from "../backends.ts";
import { BACKEND_PORTS, waitForText } from "../net.ts";
import { treeAnonKiB } from "../proc-stats.ts";
import { spawnLogged } from "../procs.ts";
import { FRESH_PORT_OFFSET, type RunningSystem, startFresh } from "../systems.ts";
import type { Sample, SystemName } from "../types.ts";
import type { MeasureContext } from "./context.ts";

const CLIENT = join(import.meta.dir, "..", "agents", "idle-client.ts");
const WARM_UP_CONNECTIONS = 20;

async function waitFor(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await Bun.sleep(50);
  }
  return check();
}

/** Open `n` connections to host:port and hold them; returns how many opened, and a stop function. */
async function openIdle(ctx: MeasureContext, host: string, port: number, n: number, tag: string): Promise<{ opened: number; stop(): Promise<void> }> {
  const cmd = [...ctx.limitPrefix, ...ctx.topology.clientPrefix, process.execPath, CLIENT, host, String(port), String(n)];
  const client = spawnLogged("idle client", cmd, { log: join(ctx.tmpDir, `idle-client-${tag}.log`), collect: true });
  await waitForText(client.output, /ready \d+ \d+/, 60_000 + n * 5);
  const opened = Number(/ready (\d+) (\d+)/.exec(client.output())?.[1] ?? 0);
  return { opened, stop: () => client.stop("SIGTERM", 5000) };
}

export async function measureIdleMemory(ctx: MeasureContext, system: RunningSystem, round: number, notes: string[]): Promise<Partial<Sample>> {
  const perConn = await idleKiBPerConn(ctx, system.name, ctx.options.idleConnections, `${system.name}-idle-${round}`, notes);
  return perConn === null ? {} : { idleKiBPerConn: perConn };
}

/**
 * KiB of private memory a fresh instance of `name` gains per idle connection
 * with `n` of them open (the scaling section asks at several counts); null
 * when the figure could not be taken (the reason is in `notes`).
 */
export async function idleKiBPerConn(ctx: MeasureContext, name: SystemName, n: number, tag: string, notes: string[]): Promise<number | null> {
  if (ctx.backends.procs.hold === undefined || name === "dnat") return null;
  // What is measured: a fresh forwarder in front of the shared holder, or (direct) a fresh holder.
  let pid: number | undefined;
  let host: string;
  let port: number;
  let count: () => number;
  let stopTarget: () => Promise<void>;
  if (name === "direct") {
    const holder: Holder | undefined = await startHolder(ctx.topology, ctx.tmpDir, ctx.limitPrefix, BACKEND_PORTS.hold + FRESH_PORT_OFFSET, tag);
    if (holder === undefined) return null;
    pid = holder.proc.pid;
    host = ctx.topology.backendHost;
    port = BACKEND_PORTS.hold + FRESH_PORT_OFFSET;
    count = holder.count;
    stopTarget = () => holder.proc.stop();
  } else {
    if (!(await waitFor(() => ctx.backends.holdCount() === 0, 10_000))) {
      ctx.log(`  ${name}: holder still has ${ctx.backends.holdCount()} connections from the last run`);
    }
    const fresh = await startFresh(name, "hold", { topology: ctx.topology, dir: ctx.tmpDir, limitPrefix: ctx.limitPrefix, fdLimit: ctx.fdLimit, oiCli: ctx.oiCli, tag });
    pid = fresh.pid("hold");
    host = fresh.host;
    port = fresh.port("hold");
    count = ctx.backends.holdCount;
    stopTarget = () => fresh.stop();
  }
  try {
    if (pid === undefined) return null;
    const base = count();
    const warm = await openIdle(ctx, host, port, WARM_UP_CONNECTIONS, `${tag}-warm`);
    await waitFor(() => count() >= base + WARM_UP_CONNECTIONS, 10_000);
    await warm.stop();
    await waitFor(() => count() <= base, 10_000);
    await Bun.sleep(600);
    const before = treeAnonKiB(pid);
    const openedFrom = Date.now();
    const idle = await openIdle(ctx, host, port, n, tag);
    try {
      const arrived = await waitFor(() => count() >= base + n, 30_000 + n * 5);
      if (idle.opened < n || !arrived) {
        const message = `idle: ${idle.opened} of ${n} connections opened, ${count() - base} reached the backend`;
        ctx.log(`  ${name}: ${message}`);
        notes.push(message);
        return null;
      }
      const openSeconds = (Date.now() - openedFrom) / 1000;
      if (openSeconds > 10) notes.push(`idle: opening ${n} connections took ${openSeconds.toFixed(1)} s`);
      // Let the process settle (lazy allocations, a collector cycle) before reading.
      await Bun.sleep(1000);
      const after = treeAnonKiB(pid);
      return (after - before) / n;
    } finally {
      await idle.stop();
      // Stop the instance only once every connection is torn down end to end (a
      // forwarder with connections open may wait for them before exiting).
      const closedBy = Date.now();
      const closeWait = 15_000 + n * 2;
      if (!(await waitFor(() => count() <= base, closeWait))) {
        const message = `idle: ${count() - base} connections still open at the backend ${(closeWait / 1000).toFixed(0)} s after the clients closed`;
        ctx.log(`  ${name}: ${message}`);
        notes.push(message);
      } else if (Date.now() - closedBy > 3000) {
        notes.push(`idle: closing ${n} connections took ${((Date.now() - closedBy) / 1000).toFixed(1)} s to reach the backend`);
      }
    }
  } finally {
    await stopTarget();
  }
}
