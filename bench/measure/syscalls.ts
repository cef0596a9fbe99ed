/**
 * @module Syscalls per GiB forwarded: `strace -c -f` attached to the system's
 * process for one bounded iperf3 -P 1 run. strace slows the traced process a
 * great deal, so this run is separate from the throughput runs; its table is
 * kept beside the raw files.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitForText } from "../net.ts";
import { spawnLogged } from "../procs.ts";
import type { RunningSystem } from "../systems.ts";
import type { Sample } from "../types.ts";
import { gib, type MeasureContext } from "./context.ts";
import { runIperf } from "./iperf.ts";

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/** Total calls from the `total` row of an `strace -c` table. */
export function straceTotalCalls(table: string): number | null {
  const row = table.split("\n").find((line) => /\stotal\s*$/.test(line));
  const fields = row?.trim().split(/\s+/);
  if (fields === undefined || fields.length < 5) return null;
  const calls = Number(fields[3]);
  return Number.isNaN(calls) ? null : calls;
}

export interface StraceRun {
  sample: Partial<Sample>;
  table: string;
}

export async function measureSyscalls(ctx: MeasureContext, system: RunningSystem, round: number): Promise<StraceRun> {
  const pid = system.pid("iperf");
  if (pid === undefined || ctx.missing.has("strace") || ctx.missing.has("iperf3")) return { sample: {}, table: "" };
  const out = join(ctx.tmpDir, `strace-${system.name}-${round}.txt`);
  const log = join(ctx.tmpDir, `strace-${system.name}-${round}.log`);
  writeFileSync(log, "");
  const strace = spawnLogged("strace", ["strace", "-c", "-f", "-o", out, "-p", String(pid)], { log });
  try {
    if (!(await waitForText(() => readText(log), /attached/, 10_000))) {
      ctx.log(`  ${system.name}: strace did not attach: ${readText(log).trim().slice(0, 200)}`);
      return { sample: {}, table: "" };
    }
    await Bun.sleep(200);
    const run = await runIperf(ctx, system, 1, ctx.options.straceSeconds);
    await strace.stop("SIGINT", 10_000);
    const table = readText(out);
    const calls = straceTotalCalls(table);
    if (run === null || calls === null) return { sample: {}, table };
    return { sample: { syscallsPerGiB: calls / gib(run.bytes) }, table };
  } finally {
    await strace.stop("SIGINT", 10_000);
  }
}
