/**
 * @module The two periodic views of the counters that rinetd-uv has: a status
 * file (`statusfile PATH`, JSON or text, rewritten every `statusinterval`
 * seconds, replaced atomically so readers never see half a file) and a
 * one-line summary in the log every `statsloginterval` seconds. Both read the
 * same snapshot as the metrics endpoint. Like rinetd-uv's, they name rules
 * and backends but carry no client addresses.
 */
import { consola } from "consola";
import { isoSeconds } from "./log/console.ts";
import { replaceFile } from "./own-files.ts";
import type { Metrics, RuleSnapshot, Snapshot } from "./metrics.ts";
import type { StatusFileOptions, Transport } from "./types.ts";

function sum(rules: RuleSnapshot[], pick: (rule: RuleSnapshot) => number): number {
  let total = 0;
  for (const rule of rules) total += pick(rule);
  return total;
}

/** Failed connects to backends: the status file's `errors.connect`, as `oi_backend_failures_total` counts them. */
function connectFailures(rule: RuleSnapshot): number {
  let total = 0;
  for (const backend of rule.backends) total += backend.failures;
  return total;
}

/** Connection counts, overall and by what the rule listens on. */
interface ConnectionCounts {
  active: number;
  total: number;
  byTransport: Record<Transport, { active: number; total: number }>;
}

function connectionCounts(rules: RuleSnapshot[]): ConnectionCounts {
  const byTransport = { tcp: { active: 0, total: 0 }, udp: { active: 0, total: 0 }, unix: { active: 0, total: 0 } };
  for (const rule of rules) {
    byTransport[rule.transport].active += rule.active;
    byTransport[rule.transport].total += rule.total;
  }
  return { active: sum(rules, (rule) => rule.active), total: sum(rules, (rule) => rule.total), byTransport };
}

/** The result of a client that no rule of a shared bind matched (and that had no default to go to). */
export const NO_MATCH = "no match";

/**
 * rinetd-uv's three error counts: accept (here: clients refused by a limit),
 * connect, denied; and oi's `limited` and `no_match` (clients of a shared
 * bind that no rule took).
 */
function errorCounts(rules: RuleSnapshot[]): { accept: number; connect: number; denied: number; limited: number; no_match: number } {
  const limited = sum(rules, (rule) => rule.limited);
  return {
    accept: limited,
    connect: sum(rules, connectFailures),
    denied: sum(rules, (rule) => rule.denied),
    limited,
    no_match: sum(rules, (rule) => rule.errors.get(NO_MATCH) ?? 0),
  };
}

/**
 * The JSON status document, in rinetd-uv's layout and key names (a script
 * written for its status file reads this one). Beyond rinetd-uv: per rule
 * `mode`, per backend `failures`, and `errors.limited` and `errors.no_match`. rinetd-uv's
 * `buffer_pool` is left out: oi has no buffer pool (Bun manages buffers).
 */
export function statusJson(snapshot: Snapshot): string {
  const { rules } = snapshot;
  const connections = connectionCounts(rules);
  const { tcp, udp, unix } = connections.byTransport;
  return `${JSON.stringify(
    {
      timestamp: isoSeconds(new Date(snapshot.now)),
      version: snapshot.version,
      uptime_seconds: Math.round((snapshot.now - snapshot.startedAt) / 1000),
      config_reloads: snapshot.reloads,
      // The counters are kept across reloads: they count from the start.
      stats_since_reload: isoSeconds(new Date(snapshot.startedAt)),
      connections: {
        active: connections.active,
        active_tcp: tcp.active,
        active_udp: udp.active,
        active_unix: unix.active,
        total: connections.total,
        total_tcp: tcp.total,
        total_udp: udp.total,
        total_unix: unix.total,
      },
      traffic: { bytes_in: sum(rules, (rule) => rule.bytesIn), bytes_out: sum(rules, (rule) => rule.bytesOut) },
      errors: errorCounts(rules),
      servers: snapshot.servers,
      rules: rules.map((rule) => ({
        name: rule.name,
        mode: rule.mode,
        ...(rule.algorithm === undefined ? {} : { algorithm: rule.algorithm }),
        connections_active: rule.active,
        connections_total: rule.total,
        bytes_in: rule.bytesIn,
        bytes_out: rule.bytesOut,
        backends: rule.backends.map((backend) => ({
          name: backend.name,
          healthy: backend.healthy,
          connections_active: backend.active,
          connections_total: backend.total,
          failures: backend.failures,
          bytes_in: backend.bytesIn,
          bytes_out: backend.bytesOut,
        })),
        // A port range is one rule; its ports that had connections are its detail.
        ...(rule.ports === undefined
          ? {}
          : { ports: rule.ports.map((port) => ({ port: port.port, connections_active: port.active, connections_total: port.total })) }),
      })),
    },
    null,
    2,
  )}\n`;
}

/** `1.5G`-style sizes for the text views. */
export function humanBytes(bytes: number): string {
  const units = ["", "K", "M", "G", "T"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes}` : `${value.toFixed(1)}${units[unit]}`;
}

function uptime(snapshot: Snapshot): string {
  const seconds = Math.round((snapshot.now - snapshot.startedAt) / 1000);
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  return `${hours}:${String(minutes).padStart(2, "0")}:${String(seconds % 60).padStart(2, "0")}`;
}

function byTransport(counts: ConnectionCounts, pick: "active" | "total"): string {
  const { tcp, udp, unix } = counts.byTransport;
  return `${counts[pick]} (TCP: ${tcp[pick]}, UDP: ${udp[pick]}, Unix: ${unix[pick]})`;
}

/** The human-readable status report, laid out as rinetd-uv's. */
export function statusText(snapshot: Snapshot): string {
  const { rules } = snapshot;
  const connections = connectionCounts(rules);
  const errors = errorCounts(rules);
  const lines = [
    "oi Status Report",
    `Updated: ${isoSeconds(new Date(snapshot.now)).slice(0, 19).replace("T", " ")}`,
    `Version: ${snapshot.version}`,
    `Uptime: ${uptime(snapshot)}`,
    `Config reloads: ${snapshot.reloads}`,
    "",
    "CONNECTIONS",
    `Active: ${byTransport(connections, "active")}`,
    `Total: ${byTransport(connections, "total")}`,
    "",
    "TRAFFIC",
    `Bytes in: ${humanBytes(sum(rules, (rule) => rule.bytesIn))}`,
    `Bytes out: ${humanBytes(sum(rules, (rule) => rule.bytesOut))}`,
    "",
    "ERRORS",
    `Accept: ${errors.accept}`,
    `Connect: ${errors.connect}`,
    `Denied: ${errors.denied}`,
    // Not in rinetd-uv's report: shown only once a client of a shared bind matched no rule.
    ...(errors.no_match > 0 ? [`No match: ${errors.no_match}`] : []),
    "",
    "SERVERS",
    `Count: ${snapshot.servers}`,
    "",
    "RULES",
  ];
  for (const rule of rules) {
    lines.push(`  ${rule.name}${rule.algorithm === undefined ? "" : ` (${rule.algorithm})`}:`);
    lines.push(`    Active: ${rule.active}, Total: ${rule.total}, Traffic: ${humanBytes(rule.bytesIn)}/${humanBytes(rule.bytesOut)}`);
    if (rule.backends.length > 1) {
      lines.push("    Backends:");
      for (const backend of rule.backends) {
        lines.push(`      ${backend.name}: ${backend.healthy ? "healthy" : "unhealthy"}, active=${backend.active}, total=${backend.total}`);
      }
    }
    if (rule.ports !== undefined && rule.ports.length > 0) {
      lines.push("    Ports:");
      for (const port of rule.ports) lines.push(`      ${port.port}: active=${port.active}, total=${port.total}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

/** The periodic log line, as rinetd-uv's: `STATS: uptime=3600s conns=150/50000 tcp=120/45000 udp=25/4500 unix=5/500 traffic=1.0G/2.0G errors=0/15/100`. */
export function statsLine(snapshot: Snapshot): string {
  const { rules } = snapshot;
  const seconds = Math.round((snapshot.now - snapshot.startedAt) / 1000);
  const connections = connectionCounts(rules);
  const { tcp, udp, unix } = connections.byTransport;
  const errors = errorCounts(rules);
  return [
    "STATS:",
    `uptime=${seconds}s`,
    `conns=${connections.active}/${connections.total}`,
    `tcp=${tcp.active}/${tcp.total}`,
    `udp=${udp.active}/${udp.total}`,
    `unix=${unix.active}/${unix.total}`,
    `traffic=${humanBytes(sum(rules, (rule) => rule.bytesIn))}/${humanBytes(sum(rules, (rule) => rule.bytesOut))}`,
    `errors=${errors.accept}/${errors.connect}/${errors.denied}`,
  ].join(" ");
}

/**
 * Writes the status file now and then; replaced (timers restarted) on reload.
 * As rinetd-uv's, the file first appears one interval after start, not at
 * once: a script that waits for it to appear then reads counts, not zeros.
 */
export class StatusReporter {
  private fileTimer: Timer | undefined;
  private logTimer: Timer | undefined;
  private failing = false;
  private status: StatusFileOptions | undefined;

  /** `refresh`: brings the figures up to date before each view (worker threads report theirs on request). */
  constructor(
    private readonly metrics: Metrics,
    private readonly refresh?: () => Promise<void>,
  ) {}

  /** Start (or restart) the timers: the file is written one `interval` from now, and every interval after. */
  configure(status: StatusFileOptions | undefined, statsLogInterval: number): void {
    this.stop();
    this.status = status;
    if (status !== undefined) {
      this.fileTimer = setInterval(() => this.refreshed(() => this.writeFile(status)), status.interval * 1000);
      this.fileTimer.unref();
    }
    if (statsLogInterval > 0) {
      this.logTimer = setInterval(() => this.refreshed(() => consola.info(statsLine(this.metrics.snapshot()))), statsLogInterval * 1000);
      this.logTimer.unref();
    }
  }

  /** Write the status file now, when there is one (after a reload, and a last time at exit). */
  async writeNow(): Promise<void> {
    const status = this.status;
    if (status === undefined) return;
    await this.refresh?.();
    this.writeFile(status);
  }

  private refreshed(view: () => void): void {
    if (this.refresh === undefined) view();
    else void this.refresh().then(view);
  }

  stop(): void {
    if (this.fileTimer !== undefined) clearInterval(this.fileTimer);
    if (this.logTimer !== undefined) clearInterval(this.logTimer);
    this.fileTimer = undefined;
    this.logTimer = undefined;
  }

  /** Written aside in the same directory, then renamed over the old file: a reader sees the old or the new file, whole. */
  private writeFile(status: StatusFileOptions): void {
    const snapshot = this.metrics.snapshot();
    const text = status.format === "json" ? statusJson(snapshot) : statusText(snapshot);
    try {
      replaceFile(status.path, text, 0o644);
    } catch (error) {
      // Once per failing spell, not every interval.
      if (!this.failing) consola.warn(`cannot write status file ${status.path}: ${error instanceof Error ? error.message : String(error)}`);
      this.failing = true;
      return;
    }
    if (this.failing) consola.info(`status file ${status.path} written again`);
    this.failing = false;
  }
}
