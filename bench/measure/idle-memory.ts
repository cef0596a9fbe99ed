/**
 * @module Idle memory: proportional resident memory (PSS, see proc-stats.ts)
 * the system's process tree gains per connection while a few thousand idle
 * connections are open through it to the holder backend. Each connection
 * carries one byte first, so both legs exist end to end. For `direct` the
 * holder's own growth is reported (one socket per connection, no forwarder).
 */
import { join } from "node:path";
import { waitForText } from "../net.ts";
import { treePssKiB } from "../proc-stats.ts";
import { spawnLogged } from "../procs.ts";
import type { RunningSystem } from "../systems.ts";
import type { Sample } from "../types.ts";
import type { MeasureContext } from "./context.ts";

const CLIENT = join(import.meta.dir, "..", "agents", "idle-client.ts");

async function waitFor(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await Bun.sleep(50);
  }
  return check();
}

export async function measureIdleMemory(ctx: MeasureContext, system: RunningSystem, round: number, notes: string[]): Promise<Partial<Sample>> {
  const pid = system.pid("hold");
  if (pid === undefined || ctx.backends.procs.hold === undefined) return {};
  const n = ctx.options.idleConnections;
  const holder = ctx.backends;
  if (!(await waitFor(() => holder.holdCount() === 0, 10_000))) {
    ctx.log(`  ${system.name}: holder still has ${holder.holdCount()} connections from the last run`);
  }
  await Bun.sleep(200);
  const before = treePssKiB(pid);
  const cmd = [...ctx.limitPrefix, ...ctx.topology.clientPrefix, process.execPath, CLIENT, system.host, String(system.port("hold")), String(n)];
  const client = spawnLogged("idle client", cmd, { log: join(ctx.tmpDir, `idle-client-${system.name}-${round}.log`), collect: true });
  try {
    const ready = await waitForText(client.output, /ready \d+ \d+/, 60_000);
    const arrived = await waitFor(() => holder.holdCount() >= n, 30_000);
    const match = /ready (\d+) (\d+)/.exec(client.output());
    const opened = Number(match?.[1] ?? 0);
    if (!ready || !arrived || opened < n) {
      const message = `idle: ${opened} of ${n} connections opened, ${holder.holdCount()} reached the backend`;
      ctx.log(`  ${system.name}: ${message}`);
      notes.push(message);
      return {};
    }
    // Let the forwarder settle (lazy allocations, a collector cycle) before reading.
    await Bun.sleep(1000);
    const after = treePssKiB(pid);
    return { idleKiBPerConn: (after - before) / n };
  } finally {
    await client.stop("SIGTERM", 5000);
  }
}
