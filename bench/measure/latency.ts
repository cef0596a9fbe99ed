/**
 * @module Request/response latency: sockperf ping-pong over TCP with 32-byte
 * messages, one message in flight, full round-trip times (`--full-rtt`;
 * sockperf otherwise halves them), p50 and p99 in microseconds.
 */
import { runBounded } from "../procs.ts";
import type { RunningSystem } from "../systems.ts";
import type { Sample } from "../types.ts";
import type { MeasureContext } from "./context.ts";

function percentile(text: string, which: string): number | null {
  const match = new RegExp(`percentile ${which} =\\s*([\\d.]+)`).exec(text);
  return match === null ? null : Number(match[1]);
}

export async function measureLatency(ctx: MeasureContext, system: RunningSystem): Promise<Partial<Sample>> {
  if (ctx.missing.has("sockperf") || ctx.backends.procs.sockperf === undefined) return {};
  const seconds = ctx.options.latencySeconds;
  const cmd = [
    ...ctx.topology.clientPrefix,
    "sockperf", "ping-pong", "--tcp", "-i", system.host, "-p", String(system.port("sockperf")),
    "-t", String(seconds), "-m", "32", "--mps=max", "--full-rtt",
  ];
  const result = await runBounded(cmd, (seconds + 20) * 1000);
  const text = `${result.stdout}\n${result.stderr}`;
  const p50 = percentile(text, "50\\.000");
  const p99 = percentile(text, "99\\.000");
  if (p50 === null || p99 === null) {
    ctx.log(`  ${system.name}: sockperf gave no percentiles (exit ${result.code}): ${text.trim().split("\n").slice(-3).join(" | ")}`);
    return {};
  }
  return { latencyP50: p50, latencyP99: p99 };
}
