/**
 * @module One bounded iperf3 client run through a system: bytes the server
 * received and the rate, from iperf3's JSON output.
 */
import { runBounded } from "../procs.ts";
import type { RunningSystem } from "../systems.ts";
import type { MeasureContext } from "./context.ts";

export interface IperfRun {
  gbps: number;
  bytes: number;
}

interface IperfJson {
  error?: string;
  end?: { sum_received?: { bytes?: number; bits_per_second?: number } };
}

export async function runIperf(ctx: MeasureContext, system: RunningSystem, parallel: number, seconds: number): Promise<IperfRun | null> {
  const cmd = [
    ...ctx.topology.clientPrefix,
    "iperf3", "-c", system.host, "-p", String(system.port("iperf")),
    "-t", String(seconds), "-P", String(parallel), "-J", "--connect-timeout", "5000",
  ];
  const result = await runBounded(cmd, (seconds + 20) * 1000);
  let parsed: IperfJson;
  try {
    parsed = JSON.parse(result.stdout) as IperfJson;
  } catch {
    ctx.log(`  ${system.name}: iperf3 -P ${parallel} gave no JSON (exit ${result.code}): ${result.stderr.trim().slice(0, 200)}`);
    return null;
  }
  const sum = parsed.end?.sum_received;
  if (parsed.error !== undefined || sum?.bytes === undefined || sum.bits_per_second === undefined || sum.bytes === 0) {
    ctx.log(`  ${system.name}: iperf3 -P ${parallel} failed: ${parsed.error ?? "no bytes received"}`);
    return null;
  }
  return { gbps: sum.bits_per_second / 1e9, bytes: sum.bytes };
}
