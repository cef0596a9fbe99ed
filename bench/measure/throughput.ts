/**
 * @module Throughput (iperf3 -P 1 and -P 8, Gbit/s) and the CPU cost of
 * forwarding, measured during the -P 1 run: CPU seconds from /proc
 * (utime + stime of the process tree), context switches and migrations
 * (and hardware counters, syscalls where perf has them) from `perf stat`,
 * each divided by the GiB the backend received.
 */
import { treeCpuSeconds } from "../proc-stats.ts";
import type { RunningSystem } from "../systems.ts";
import type { Sample } from "../types.ts";
import { gib, type MeasureContext } from "./context.ts";
import { runIperf } from "./iperf.ts";
import { startPerfStat } from "./perf-stat.ts";

function perGiB(value: number | null, bytes: number): number | null {
  return value === null ? null : value / gib(bytes);
}

export async function measureThroughputAndCost(ctx: MeasureContext, system: RunningSystem, round: number): Promise<Partial<Sample>> {
  if (ctx.missing.has("iperf3") || ctx.backends.procs.iperf === undefined) return {};
  const sample: Partial<Sample> = {};
  const pid = system.pid("iperf");
  const perf = pid === undefined ? null : await startPerfStat(ctx, pid, `${system.name}-${round}`);
  const cpuBefore = pid === undefined ? 0 : treeCpuSeconds(pid);
  const single = await runIperf(ctx, system, 1, ctx.options.iperfSeconds);
  // Let socat reap its children so their time shows in the parent's counters.
  await Bun.sleep(200);
  const cpuAfter = pid === undefined ? 0 : treeCpuSeconds(pid);
  const counts = perf === null ? null : await perf.finish();
  if (single !== null) {
    sample.throughputP1 = single.gbps;
    if (pid !== undefined) sample.cpuSecondsPerGiB = (cpuAfter - cpuBefore) / gib(single.bytes);
    if (counts !== null) {
      sample.contextSwitchesPerGiB = perGiB(counts.contextSwitches, single.bytes);
      sample.cpuMigrationsPerGiB = perGiB(counts.cpuMigrations, single.bytes);
      sample.instructionsPerGiB = perGiB(counts.instructions, single.bytes);
      sample.cyclesPerGiB = perGiB(counts.cycles, single.bytes);
      sample.syscallsPerGiBPerf = perGiB(counts.syscalls, single.bytes);
    }
  }
  const eight = await runIperf(ctx, system, 8, ctx.options.iperfSeconds);
  if (eight !== null) sample.throughputP8 = eight.gbps;
  return sample;
}
