/**
 * @module UDP through the system: (a) `iperf3 -u -l 1400 -b 2G` to the iperf3
 * server (its control connection is TCP on the same port, forwarded by the
 * system's TCP rule there): the rate the server received and the share of the
 * sent bytes that never arrived; (b) `dnsperf` against dnsmasq answering
 * host records itself: answered queries per second and the share lost.
 * haproxy has no UDP forwarding (n/a); oi-plain's UDP path is oi's (`splice`
 * concerns TCP relays only), so it is not measured twice.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { DNS_NAMES } from "../backends.ts";
import { runBounded } from "../procs.ts";
import type { RunningSystem } from "../systems.ts";
import { type Sample, UDP_SYSTEMS } from "../types.ts";
import type { MeasureContext } from "./context.ts";

/** Datagram size and offered rate of the iperf3 UDP run. */
export const UDP_DATAGRAM = 1400;
export const UDP_OFFERED = "2G";
/** dnsperf's simulated clients (one socket each) and queries in flight. */
const DNS_CLIENTS = 4;
const DNS_OUTSTANDING = 100;

interface IperfUdpJson {
  error?: string;
  end?: {
    sum?: { bytes?: number; sender?: boolean };
    sum_received?: { bytes?: number; bits_per_second?: number };
  };
}

async function iperfUdp(ctx: MeasureContext, system: RunningSystem, notes: string[]): Promise<Partial<Sample>> {
  if (ctx.missing.has("iperf3") || ctx.backends.procs.udp === undefined) return {};
  const seconds = ctx.options.iperfSeconds;
  const cmd = [
    ...ctx.topology.clientPrefix,
    "iperf3", "-c", system.host, "-p", String(system.port("udp")), "-u", "-l", String(UDP_DATAGRAM), "-b", UDP_OFFERED,
    "-t", String(seconds), "-J", "--connect-timeout", "5000",
  ];
  const result = await runBounded(cmd, (seconds + 20) * 1000);
  let parsed: IperfUdpJson;
  try {
    parsed = JSON.parse(result.stdout) as IperfUdpJson;
  } catch {
    const message = `iperf3 -u gave no JSON (exit ${result.code}): ${result.stderr.trim().slice(0, 160)}`;
    ctx.log(`  ${system.name}: ${message}`);
    notes.push(message);
    return {};
  }
  const sent = parsed.end?.sum?.bytes;
  const received = parsed.end?.sum_received;
  if (parsed.error !== undefined || sent === undefined || sent === 0 || received?.bytes === undefined || received.bits_per_second === undefined) {
    const message = `iperf3 -u failed: ${parsed.error ?? "no summary"}`;
    ctx.log(`  ${system.name}: ${message}`);
    notes.push(message);
    return {};
  }
  // Loss from bytes, not from iperf3's packet counters: those come from sequence
  // numbers, which an extra datagram (rinetd sends an empty one when a session
  // starts) throws off.
  return { udpGbps: received.bits_per_second / 1e9, udpLossPercent: Math.max(0, 100 * (1 - received.bytes / sent)) };
}

let queryFile: string | undefined;

function queries(dir: string): string {
  if (queryFile === undefined) {
    queryFile = join(dir, "dnsperf-queries.txt");
    writeFileSync(queryFile, DNS_NAMES.map((name) => `${name} A\n`).join(""));
  }
  return queryFile;
}

async function dnsperf(ctx: MeasureContext, system: RunningSystem, notes: string[]): Promise<Partial<Sample>> {
  if (ctx.missing.has("dnsperf") || ctx.backends.procs.dns === undefined) return {};
  const seconds = ctx.options.dnsSeconds;
  const cmd = [
    ...ctx.topology.clientPrefix,
    "dnsperf", "-s", system.host, "-p", String(system.port("dns")), "-d", queries(ctx.tmpDir),
    "-l", String(seconds), "-c", String(DNS_CLIENTS), "-q", String(DNS_OUTSTANDING), "-t", "2",
  ];
  const result = await runBounded(cmd, (seconds + 20) * 1000);
  const text = `${result.stdout}\n${result.stderr}`;
  const sent = Number(/Queries sent:\s+(\d+)/.exec(text)?.[1] ?? Number.NaN);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(text)?.[1] ?? Number.NaN);
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(text)?.[1] ?? Number.NaN);
  if (!Number.isFinite(sent) || !Number.isFinite(qps) || sent === 0) {
    const message = `dnsperf gave no statistics (exit ${result.code}): ${text.trim().split("\n").slice(-2).join(" | ").slice(0, 160)}`;
    ctx.log(`  ${system.name}: ${message}`);
    notes.push(message);
    return {};
  }
  return { dnsQps: qps, dnsLostPercent: Number.isFinite(lost) ? (100 * lost) / sent : null };
}

export async function measureUdp(ctx: MeasureContext, system: RunningSystem, notes: string[]): Promise<Partial<Sample>> {
  if (!UDP_SYSTEMS.includes(system.name)) return {};
  return { ...(await iperfUdp(ctx, system, notes)), ...(await dnsperf(ctx, system, notes)) };
}
