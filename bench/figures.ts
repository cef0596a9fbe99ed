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
  /** A percentage of loss or failure: no ratio to another system (0 against 0 means nothing). */
  noRatio?: boolean;
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

/**
 * The second round's figures: private memory, 1,000 clients, UDP. Read with
 * `?.` and `??` because reports in history/ from before them lack the fields.
 */
export const SECOND_FIGURES: readonly Figure[] = [
  { key: "private", title: "private memory at start", unit: "KiB", higherIsBetter: false, get: (r) => r.private_kib?.idle ?? null },
  { key: "conn1000", title: "new conn/s, 1,000 clients", unit: "/s", higherIsBetter: true, get: (r) => r.conn_per_s_1000 ?? null },
  { key: "fail1000", title: "failed requests, 1,000 clients", unit: "count", higherIsBetter: false, get: (r) => r.conn_1000_failed ?? null, noRatio: true },
  { key: "udp", title: "UDP received", unit: "Gbit/s", higherIsBetter: true, get: (r) => r.udp?.gbps ?? null },
  { key: "udploss", title: "UDP loss", unit: "%", higherIsBetter: false, get: (r) => r.udp?.loss_percent ?? null, noRatio: true },
  { key: "dns", title: "DNS", unit: "queries/s", higherIsBetter: true, get: (r) => r.dns?.qps ?? null },
  { key: "dnslost", title: "DNS lost", unit: "%", higherIsBetter: false, get: (r) => r.dns?.lost_percent ?? null, noRatio: true },
];

/** Every figure of the report, in table order. */
export const ALL_FIGURES: readonly Figure[] = [...FIGURES, ...SECOND_FIGURES];

/** The figure's cell: its number, or `n/a` where it does not apply to the system (see SystemResult.not_applicable). */
export function figureCell(figure: Figure, result: SystemResult): string {
  const value = figure.get(result);
  if (value === null && result.not_applicable?.[figure.key] !== undefined) return "n/a";
  return formatFigure(figure, value);
}

/** A figure's value as the tables show it: counts whole, the rest with three significant digits. */
export function formatFigure(figure: Figure, value: number | null): string {
  if (figure.unit === "count" && value !== null && Number.isFinite(value)) return Math.round(value).toLocaleString("en-US");
  return formatNumber(value);
}

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
  if (value === null || reference === null || reference === 0 || !Number.isFinite(value) || !Number.isFinite(reference)) return null;
  return value / reference;
}

export function formatRatio(value: number | null): string {
  if (value === null) return "—";
  return `×${value >= 10 ? value.toFixed(0) : value.toFixed(2)}`;
}
