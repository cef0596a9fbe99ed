/**
 * @module New connections per second: ApacheBench without keep-alive (each
 * request opens and closes its own TCP connection), 50 at once, against nginx
 * behind the system, bounded in requests and in time.
 */
import { runBounded } from "../procs.ts";
import type { RunningSystem } from "../systems.ts";
import type { Sample } from "../types.ts";
import type { MeasureContext } from "./context.ts";

export async function measureConnections(ctx: MeasureContext, system: RunningSystem, notes: string[]): Promise<Partial<Sample>> {
  if (ctx.missing.has("ab") || ctx.backends.procs.http === undefined) return {};
  const { abRequests, abSeconds } = ctx.options;
  // -t first: it implies -n 50000, which the -n after it overrides, so both bounds hold.
  const cmd = [
    ...ctx.topology.clientPrefix,
    "ab", "-q", "-r", "-s", "10", "-c", "50", "-t", String(abSeconds), "-n", String(abRequests),
    `http://${system.host}:${system.port("http")}/`,
  ];
  const result = await runBounded([...ctx.limitPrefix, ...cmd], (abSeconds + 30) * 1000);
  const rate = /Requests per second:\s+([\d.]+)/.exec(result.stdout);
  const complete = Number(/Complete requests:\s+(\d+)/.exec(result.stdout)?.[1] ?? 0);
  const failed = Number(/Failed requests:\s+(\d+)/.exec(result.stdout)?.[1] ?? 0);
  if (rate === null || complete === 0) {
    ctx.log(`  ${system.name}: ab failed (exit ${result.code}): ${result.stderr.trim().slice(0, 200)}`);
    notes.push(`ab failed: ${result.stderr.trim().slice(0, 120)}`);
    return {};
  }
  if (failed > 0) {
    ctx.log(`  ${system.name}: ab: ${failed} of ${complete} requests failed`);
    notes.push(`ab: ${failed} of ${complete} requests failed`);
  }
  return { connPerS: Number(rate[1]) };
}
