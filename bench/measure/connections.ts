/**
 * @module New connections per second: ApacheBench without keep-alive (each
 * request opens and closes its own TCP connection) against nginx behind the
 * system, bounded in requests and in time: 50 clients at once (conn_per_s),
 * and 1,000 at once (conn_per_s_1000, its failed requests counted). The
 * scaling section runs the same at other counts (runAb).
 */
import { runBounded } from "../procs.ts";
import type { RunningSystem } from "../systems.ts";
import type { Sample } from "../types.ts";
import type { MeasureContext } from "./context.ts";

export interface AbRun {
  /** Requests per second; null when ab completed nothing or gave no summary. */
  rate: number | null;
  complete: number;
  /** Failed requests (connect, receive, length, exceptions) plus non-2xx answers. */
  failed: number;
  /** 99th percentile of the request times, ms (ab's percentile table). */
  p99Ms: number | null;
  /** What went wrong, for the notes (ab's own words), when it did. */
  error?: string;
}

function count(text: string, pattern: RegExp): number {
  return Number(pattern.exec(text)?.[1] ?? 0);
}

/** How an ab run asks: https (a full TLS handshake per request: ab never resumes a session), and the Host header (ab sends it as the SNI name too). */
export interface AbRequest {
  https?: boolean;
  hostName?: string;
}

/** One bounded ab run: `clients` at once, at most `requests` requests and `seconds` seconds. */
export async function runAb(
  ctx: Pick<MeasureContext, "limitPrefix" | "topology">, host: string, port: number, clients: number, requests: number, seconds: number, request: AbRequest = {},
): Promise<AbRun> {
  // -t first: it implies -n 50000, which the -n after it overrides, so both bounds hold.
  // ab refuses a concurrency above the request count.
  const n = Math.max(requests, clients);
  const cmd = [
    ...ctx.limitPrefix, ...ctx.topology.clientPrefix,
    "ab", "-q", "-r", "-s", "10", "-c", String(clients), "-t", String(seconds), "-n", String(n),
    ...(request.hostName === undefined ? [] : ["-H", `Host: ${request.hostName}`]),
    `${request.https === true ? "https" : "http"}://${host}:${port}/`,
  ];
  const result = await runBounded(cmd, (seconds + 30) * 1000);
  const out = result.stdout;
  const rate = /Requests per second:\s+([\d.]+)/.exec(out);
  const complete = count(out, /Complete requests:\s+(\d+)/);
  const failed = count(out, /Failed requests:\s+(\d+)/) + count(out, /Non-2xx responses:\s+(\d+)/);
  const p99 = /^\s*99%\s+(\d+)/m.exec(out);
  const run: AbRun = { rate: rate === null || complete === 0 ? null : Number(rate[1]), complete, failed, p99Ms: p99 === null ? null : Number(p99[1]) };
  if (run.rate === null) {
    const why = (result.stderr.trim() || out.trim()).split("\n").slice(-2).join(" ").slice(0, 160);
    run.error = `ab -c ${clients} failed (exit ${result.code}${result.timedOut ? ", timed out" : ""}): ${why}`;
  } else if (result.timedOut) {
    run.error = `ab -c ${clients} was stopped at its time limit`;
  }
  return run;
}

export async function measureConnections(ctx: MeasureContext, system: RunningSystem, notes: string[]): Promise<Partial<Sample>> {
  if (ctx.missing.has("ab") || ctx.backends.procs.http === undefined) return {};
  const { abRequests, abSeconds } = ctx.options;
  const run = await runAb(ctx, system.host, system.port("http"), 50, abRequests, abSeconds);
  if (run.rate === null) {
    ctx.log(`  ${system.name}: ${run.error}`);
    notes.push(run.error ?? "ab failed");
    return {};
  }
  if (run.failed > 0) {
    ctx.log(`  ${system.name}: ab: ${run.failed} of ${run.complete} requests failed`);
    notes.push(`ab: ${run.failed} of ${run.complete} requests failed`);
  }
  return { connPerS: run.rate };
}

/**
 * The same at `abHighConcurrency` (1,000) clients at once. Every process has
 * the raised descriptor limit (limitPrefix), so 1,000 clients fit everywhere
 * (two descriptors per forwarded connection); the listen backlogs differ
 * (Bun's is 512, nginx's here 4096), and a SYN the kernel drops is retried
 * after a second, which shows in the rate and the p99, not as a failure.
 */
export async function measureConnectionsHigh(ctx: MeasureContext, system: RunningSystem, notes: string[]): Promise<Partial<Sample>> {
  if (ctx.missing.has("ab") || ctx.backends.procs.http === undefined) return {};
  const clients = ctx.options.abHighConcurrency;
  const { abRequests, abSeconds } = ctx.options;
  const run = await runAb(ctx, system.host, system.port("http"), clients, abRequests, abSeconds);
  if (run.rate === null) {
    ctx.log(`  ${system.name}: ${run.error}`);
    notes.push(run.error ?? `ab -c ${clients} failed`);
    return {};
  }
  if (run.failed > 0) {
    ctx.log(`  ${system.name}: ab -c ${clients}: ${run.failed} of ${run.complete} requests failed`);
    notes.push(`ab -c ${clients}: ${run.failed} of ${run.complete} requests failed`);
  }
  if (run.error !== undefined) notes.push(run.error);
  return { connPerS1000: run.rate, connFailed1000: run.failed };
}
