/**
 * @module The figures of the report: how to read each from a system's result,
 * its column title and unit, and which direction is better.
 */
import type { SystemResult } from "./types.ts";

export interface Figure {
  key: string;
  title: string;
  unit: string;
  higherIsBetter: boolean;
  get(result: SystemResult): number | null;
}

export const FIGURES: readonly Figure[] = [
  { key: "P1", title: "iperf3 -P 1", unit: "Gbit/s", higherIsBetter: true, get: (r) => r.throughput_gbps.P1 },
  { key: "P8", title: "iperf3 -P 8", unit: "Gbit/s", higherIsBetter: true, get: (r) => r.throughput_gbps.P8 },
  { key: "p50", title: "RTT p50", unit: "µs", higherIsBetter: false, get: (r) => r.latency_us.p50 },
  { key: "p99", title: "RTT p99", unit: "µs", higherIsBetter: false, get: (r) => r.latency_us.p99 },
  { key: "conn", title: "new conn/s", unit: "/s", higherIsBetter: true, get: (r) => r.conn_per_s },
  { key: "start", title: "start to first connection", unit: "ms", higherIsBetter: false, get: (r) => r.startup_ms },
  { key: "idle", title: "idle memory", unit: "KiB/conn", higherIsBetter: false, get: (r) => r.idle_kib_per_conn },
  { key: "sys", title: "syscalls", unit: "/GiB", higherIsBetter: false, get: (r) => r.syscalls_per_gib },
  { key: "cs", title: "context switches", unit: "/GiB", higherIsBetter: false, get: (r) => r.context_switches_per_gib },
  { key: "cpu", title: "CPU time", unit: "s/GiB", higherIsBetter: false, get: (r) => r.cpu_s_per_gib },
];

/** Three significant digits, with thousands grouped; "—" for a missing value. */
export function formatNumber(value: number | null): string {
  if (value === null || !Number.isFinite(value)) return "—";
  const magnitude = Math.abs(value);
  if (magnitude >= 1000) return Math.round(value).toLocaleString("en-US");
  if (magnitude >= 100) return value.toFixed(0);
  if (magnitude >= 10) return value.toFixed(1);
  if (magnitude >= 1) return value.toFixed(2);
  return value.toPrecision(2);
}

/** value / reference, or null when either is missing or the reference is zero. */
export function ratio(value: number | null, reference: number | null): number | null {
  if (value === null || reference === null || reference === 0) return null;
  return value / reference;
}

export function formatRatio(value: number | null): string {
  if (value === null) return "—";
  return `×${value >= 10 ? value.toFixed(0) : value.toFixed(2)}`;
}
