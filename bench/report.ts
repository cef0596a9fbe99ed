/**
 * @module Turning the runs into the report: medians per system, then
 * bench/results/latest.json, latest.md (the table and the ratios), the chart,
 * and a dated copy in history/ so a regression shows against earlier runs.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderChart } from "./chart.ts";
import { ALL_FIGURES, type Figure, FIGURES, figureCell, formatFigure, formatNumber, formatRatio, ratio, SECOND_FIGURES } from "./figures.ts";
import type { MemoryKiB } from "./proc-stats.ts";
import { renderScalingChart } from "./scaling-chart.ts";
import { scalingMarkdown } from "./scaling-report.ts";
import { median } from "./stats.ts";
import type { BenchReport, FigureKey, Sample, SystemName, SystemResult } from "./types.ts";

export const RESULTS_DIR = join(import.meta.dir, "results");

const SAMPLE_KEYS: readonly FigureKey[] = [
  "throughputP1", "throughputP8", "latencyP50", "latencyP99", "connPerS", "startupMs", "idleKiBPerConn",
  "syscallsPerGiB", "contextSwitchesPerGiB", "cpuMigrationsPerGiB", "cpuSecondsPerGiB",
  "instructionsPerGiB", "cyclesPerGiB", "syscallsPerGiBPerf",
  "connPerS1000", "connFailed1000", "udpGbps", "udpLossPercent", "dnsQps", "dnsLostPercent",
];

export interface SystemRuns {
  system: SystemName;
  version: string;
  samples: Array<Partial<Sample>>;
  notes: string[];
  rssStart: number | null;
  rssEnd: number | null;
  /** Memory of the system's processes, idle right after start and at the end of the rounds. */
  memoryIdle?: MemoryKiB;
  memoryEnd?: MemoryKiB;
  /** Figure keys (see figures.ts) that do not apply, and why. */
  notApplicable: Record<string, string>;
}

export function summarize(runs: SystemRuns): SystemResult {
  const perKey = {} as Record<FigureKey, Array<number | null>>;
  for (const key of SAMPLE_KEYS) perKey[key] = runs.samples.map((sample) => sample[key] ?? null);
  const m = (key: FigureKey) => median(perKey[key]);
  return {
    system: runs.system,
    version: runs.version,
    throughput_gbps: { P1: m("throughputP1"), P8: m("throughputP8") },
    latency_us: { p50: m("latencyP50"), p99: m("latencyP99") },
    conn_per_s: m("connPerS"),
    startup_ms: m("startupMs"),
    idle_kib_per_conn: m("idleKiBPerConn"),
    syscalls_per_gib: m("syscallsPerGiB"),
    context_switches_per_gib: m("contextSwitchesPerGiB"),
    cpu_s_per_gib: m("cpuSecondsPerGiB"),
    cpu_migrations_per_gib: m("cpuMigrationsPerGiB"),
    syscalls_per_gib_perf: m("syscallsPerGiBPerf"),
    instructions_per_gib: m("instructionsPerGiB"),
    cycles_per_gib: m("cyclesPerGiB"),
    runs: perKey,
    notes: runs.notes,
    rss_kib: { start: runs.rssStart, end: runs.rssEnd },
    private_kib: { idle: runs.memoryIdle?.pssAnon ?? null, end: runs.memoryEnd?.pssAnon ?? null },
    rss_anon_kib: { idle: runs.memoryIdle?.rssAnon ?? null, end: runs.memoryEnd?.rssAnon ?? null },
    file_kib: { idle: runs.memoryIdle?.rssFile ?? null, end: runs.memoryEnd?.rssFile ?? null },
    vm_rss_kib: { idle: runs.memoryIdle?.vmRss ?? null, end: runs.memoryEnd?.vmRss ?? null },
    conn_per_s_1000: m("connPerS1000"),
    conn_1000_failed: m("connFailed1000"),
    udp: { gbps: m("udpGbps"), loss_percent: m("udpLossPercent") },
    dns: { qps: m("dnsQps"), lost_percent: m("dnsLostPercent") },
    not_applicable: runs.notApplicable,
  };
}

/** `latest` or `latest-netns` (and the matching history suffix). */
function suffix(report: BenchReport): string {
  return report.path === "netns" ? "-netns" : "";
}

function chartName(report: BenchReport): string {
  return `latest${suffix(report)}.svg`;
}

function scalingChartName(report: BenchReport): string {
  return `latest${suffix(report)}-scaling.svg`;
}

function historyName(report: BenchReport): string {
  const stamp = report.machine.date.slice(0, 16).replace(":", "-");
  return `${stamp}${report.mode === "quick" ? "-quick" : ""}${suffix(report)}.json`;
}

/** The most recent earlier report of the same mode and path, if any. */
function previousReport(report: BenchReport): { name: string; report: BenchReport } | undefined {
  const dir = join(RESULTS_DIR, "history");
  if (!existsSync(dir)) return undefined;
  const own = historyName(report);
  const pattern = new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d-\\d\\d${report.mode === "quick" ? "-quick" : ""}${suffix(report)}\\.json$`);
  const names = readdirSync(dir).filter((name) => pattern.test(name) && name < own).sort();
  const name = names.at(-1);
  if (name === undefined) return undefined;
  try {
    return { name, report: JSON.parse(readFileSync(join(dir, name), "utf8")) as BenchReport };
  } catch {
    return undefined;
  }
}

export function markdownTable(report: BenchReport, figures: readonly Figure[] = FIGURES): string {
  const header = `| system | ${figures.map((f) => `${f.title} (${f.unit})`).join(" | ")} |`;
  const rule = `|---|${figures.map(() => "---:").join("|")}|`;
  const rows = report.results.map((result) => `| ${result.system} | ${figures.map((f) => figureCell(f, result)).join(" | ")} |`);
  return [header, rule, ...rows].join("\n");
}

export function ratioTable(report: BenchReport, all: readonly Figure[] = FIGURES): string {
  const figures = all.filter((f) => f.noRatio !== true);
  const rinetd = report.results.find((result) => result.system === "rinetd");
  const direct = report.results.find((result) => result.system === "direct");
  const header = `| system | ${figures.map((f) => f.title).join(" | ")} |`;
  const rule = `|---|${figures.map(() => "---:").join("|")}|`;
  const rows = report.results.map((result) => {
    const cells = figures.map((f) => {
      const toRinetd = formatRatio(ratio(f.get(result), rinetd === undefined ? null : f.get(rinetd)));
      const toDirect = formatRatio(ratio(f.get(result), direct === undefined ? null : f.get(direct)));
      return `${toRinetd} · ${toDirect}`;
    });
    return `| ${result.system} | ${cells.join(" | ")} |`;
  });
  return [header, rule, ...rows].join("\n");
}

function regressionSection(report: BenchReport): string {
  const previous = previousReport(report);
  const now = report.results.find((result) => result.system === "oi");
  if (previous === undefined || now === undefined) return "No earlier run of this mode in history/ to compare with.";
  const before = previous.report.results.find((result) => result.system === "oi");
  if (before === undefined) return `The earlier run (${previous.name}) has no oi figures.`;
  const lines = ALL_FIGURES.map((f) => {
    const a = f.get(before);
    const b = f.get(now);
    const change = ratio(b, a);
    const percent = change === null ? "—" : `${change >= 1 ? "+" : ""}${((change - 1) * 100).toFixed(1)}%`;
    return `| ${f.title} (${f.unit}) | ${formatFigure(f, a)} | ${formatFigure(f, b)} | ${percent} | ${f.higherIsBetter ? "higher" : "lower"} |`;
  });
  return [
    `oi now against the previous ${report.mode} run (history/${previous.name}):`,
    "",
    "| figure | before | now | change | better |",
    "|---|---:|---:|---:|---|",
    ...lines,
  ].join("\n");
}

export function renderMarkdown(report: BenchReport): string {
  const m = report.machine;
  const notes = [
    ...Object.entries(report.skipped).map(([system, why]) => `- ${system}: not measured: ${why}`),
    ...report.results.flatMap((result) => result.notes.map((note) => `- ${result.system}: ${note}`)),
  ];
  const span = (pair: { idle: number | null; end: number | null } | undefined) => `${formatNumber(pair?.idle ?? null)} → ${formatNumber(pair?.end ?? null)}`;
  const memory = report.results
    .filter((result) => result.not_applicable?.private === undefined)
    .map(
      (result) =>
        `| ${result.system} | ${span(result.private_kib)} | ${span(result.rss_anon_kib)} | ${span(result.file_kib)} | ${span(result.vm_rss_kib)} |`,
    );
  const absent = report.results.filter((result) => result.not_applicable?.private !== undefined).map((result) => `${result.system} (${result.not_applicable.private})`);
  const extras = report.results.map(
    (result) =>
      `| ${result.system} | ${formatNumber(result.cpu_migrations_per_gib)} | ${formatNumber(result.syscalls_per_gib_perf)} | ${formatNumber(result.instructions_per_gib)} | ${formatNumber(result.cycles_per_gib)} |`,
  );
  return `# oi bench: ${report.mode} run, ${report.path} path

\`${report.command}\` on ${m.date} (${report.wall_seconds.toFixed(0)} s wall time)
${m.cpu_model}, ${m.cores} cores, ${m.memory_mib} MiB, ${m.os}, Linux ${m.kernel}, Bun ${m.bun};
${Object.entries(m.tools).map(([tool, version]) => `${tool} ${version}`).join(", ")}.
Medians of ${report.settings.runs} interleaved runs per figure.

${markdownTable(report)}

Ratios (to rinetd · to direct): the system's figure divided by the reference's.
Above 1 is better for throughput and conn/s; below 1 is better for the rest.

${ratioTable(report)}

![ratios to rinetd](${chartName(report)})

More figures per GiB forwarded (perf stat during the iperf3 -P 1 run; hardware counters are null where the machine has none):

| system | CPU migrations | syscalls (perf tracepoint, no strace slowdown) | instructions | cycles |
|---|---:|---:|---:|---:|
${extras.join("\n")}

Memory of each forwarder, KiB, idle at start (one rule per service) → at the end of the rounds. Private memory is
Pss_Anon summed over the forwarder's processes (heap, stacks, buffers; copy-on-write pages of socat's forked children
split among them); RssAnon counts such shared pages in every process; RssFile is file-backed: the program's own
binary and libraries, shared with every process that maps them and reclaimable (most of oi's VmRSS is pages of the
Bun runtime's own executable, about 100 MB on disk). VmRSS, the old figure, is RssAnon + RssFile (+ RssShmem). Each column sums the same processes.

| system | private (Pss_Anon) | RssAnon | file-backed (RssFile) | VmRSS |
|---|---:|---:|---:|---:|
${memory.join("\n")}
${absent.length > 0 ? `\nNo forwarder process: ${absent.join("; ")}.\n` : ""}
UDP and 1,000 clients: \`ab -c ${report.settings.abHighConcurrency ?? 1000}\` without keep-alive (failed requests counted, median of the rounds);
\`iperf3 -u -l 1400 -b 2G\` (received rate at the server; loss = share of the sent bytes that never arrived);
\`dnsperf\` against dnsmasq answering from its own host records (queries per second answered, share lost).
n/a: the figure does not apply (haproxy has no UDP forwarding; oi-plain's UDP path is oi's, \`splice\` being TCP only; dnat has no process).

${markdownTable(report, SECOND_FIGURES)}

Ratios (to rinetd · to direct):

${ratioTable(report, SECOND_FIGURES)}

${report.scaling === undefined ? "The \"how cost grows\" section was not run (--no-scaling)." : scalingMarkdown(report.scaling, scalingChartName(report))}

${regressionSection(report)}

${notes.length > 0 ? `Seen while measuring:\n\n${notes.join("\n")}` : "Nothing went wrong while measuring."}
`;
}

export interface WrittenFiles {
  json: string;
  markdown: string;
  chart: string;
  /** The chart of the "how cost grows" section (absent with --no-scaling). */
  scalingChart?: string;
  history: string;
}

export function writeReport(report: BenchReport): WrittenFiles {
  mkdirSync(join(RESULTS_DIR, "history"), { recursive: true });
  const base = `latest${suffix(report)}`;
  const files: WrittenFiles = {
    json: join(RESULTS_DIR, `${base}.json`),
    markdown: join(RESULTS_DIR, `${base}.md`),
    chart: join(RESULTS_DIR, chartName(report)),
    history: join(RESULTS_DIR, "history", historyName(report)),
  };
  const json = `${JSON.stringify(report, null, 2)}\n`;
  // The markdown compares with history, so it is rendered before this run's copy lands there.
  writeFileSync(files.markdown, renderMarkdown(report));
  writeFileSync(files.json, json);
  writeFileSync(files.chart, renderChart(report));
  if (report.scaling !== undefined) {
    files.scalingChart = join(RESULTS_DIR, scalingChartName(report));
    writeFileSync(files.scalingChart, renderScalingChart(report, report.scaling));
  }
  writeFileSync(files.history, json);
  return files;
}
