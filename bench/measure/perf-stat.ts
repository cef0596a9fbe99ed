/**
 * @module `perf stat` attached to a running process (and, through inherit,
 * the children it forks) for the length of a load: software events always,
 * hardware counters where the machine has them, and the syscall tracepoint
 * where perf can read it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { spawnLogged } from "../procs.ts";
import type { PerfCounts } from "../types.ts";
import type { MeasureContext } from "./context.ts";

export interface PerfSession {
  /** Stop counting and read the counters (null for events perf could not count). */
  finish(): Promise<PerfCounts>;
}

const EVENT_KEYS: Record<string, keyof PerfCounts> = {
  "context-switches": "contextSwitches",
  "cpu-migrations": "cpuMigrations",
  "task-clock": "taskClockMs",
  instructions: "instructions",
  cycles: "cycles",
  "raw_syscalls:sys_enter": "syscalls",
};

export function emptyCounts(): PerfCounts {
  return { contextSwitches: null, cpuMigrations: null, taskClockMs: null, instructions: null, cycles: null, syscalls: null };
}

/** Parse `perf stat -x ,` output: value,unit,event,... per line. */
export function parsePerfStat(text: string): PerfCounts {
  const counts = emptyCounts();
  for (const line of text.split("\n")) {
    const [value, , event] = line.split(",");
    if (event === undefined) continue;
    const key = EVENT_KEYS[event.replace(/:u$/, "")];
    if (key === undefined) continue;
    const number = Number(value);
    // Without privileges perf counts user space only (`:u`): events that happen in the kernel read 0 there.
    const userOnly = event.endsWith(":u") && key !== "instructions" && key !== "cycles" && key !== "taskClockMs";
    counts[key] = value === undefined || Number.isNaN(number) || userOnly ? null : number;
  }
  return counts;
}

export async function startPerfStat(ctx: MeasureContext, pid: number, tag: string): Promise<PerfSession | null> {
  if (ctx.missing.has("perf")) return null;
  const events = ["context-switches", "cpu-migrations", "task-clock"];
  if (ctx.hardwareCounters) events.push("instructions", "cycles");
  if (ctx.syscallTracepoint) events.push("raw_syscalls:sys_enter");
  const out = join(ctx.tmpDir, `perf-stat-${tag}.csv`);
  const log = join(ctx.tmpDir, `perf-stat-${tag}.log`);
  const proc = spawnLogged("perf stat", ["perf", "stat", "-x", ",", "-o", out, "-e", events.join(","), "-p", String(pid)], { log });
  // perf opens its counters right away; a short pause makes sure they are live before the load starts.
  await Bun.sleep(300);
  if (proc.proc.exitCode !== null) return null;
  return {
    async finish(): Promise<PerfCounts> {
      await proc.stop("SIGINT", 5000);
      try {
        return parsePerfStat(readFileSync(out, "utf8"));
      } catch {
        return emptyCounts();
      }
    },
  };
}
