/**
 * @module The two periodic views of the counters that rinetd-uv has: a status
 * file (`statusfile PATH`, JSON or text, rewritten every `statusinterval`
 * seconds, replaced atomically so readers never see half a file) and a
 * one-line summary in the log every `statsloginterval` seconds. Both read the
 * same snapshot as the metrics endpoint. Like rinetd-uv's, they name rules
 * and backends but carry no client addresses.
 */
import { renameSync, writeFileSync } from "node:fs";
import { consola } from "consola";
import type { Metrics, RuleSnapshot, Snapshot } from "./metrics.ts";
import type { StatusFileOptions } from "./types.ts";

function sum(rules: RuleSnapshot[], pick: (rule: RuleSnapshot) => number): number {
  let total = 0;
  for (const rule of rules) total += pick(rule);
  return total;
}

function connectFailures(rule: RuleSnapshot): number {
  return (rule.errors.get("refused") ?? 0) + (rule.errors.get("timeout") ?? 0);
}

/** The JSON status document: rinetd-uv's layout, with oi's figures. */
export function statusJson(snapshot: Snapshot): string {
  const { rules } = snapshot;
  const udp = rules.filter((rule) => rule.udp);
  const stream = rules.filter((rule) => !rule.udp);
  return `${JSON.stringify(
    {
      timestamp: new Date(snapshot.now).toISOString(),
      version: snapshot.version,
      uptime_seconds: Math.round((snapshot.now - snapshot.startedAt) / 1000),
      config_reloads: snapshot.reloads,
      connections: {
        active: sum(rules, (rule) => rule.active),
        active_tcp: sum(stream, (rule) => rule.active),
        active_udp: sum(udp, (rule) => rule.active),
        total: sum(rules, (rule) => rule.total),
        total_tcp: sum(stream, (rule) => rule.total),
        total_udp: sum(udp, (rule) => rule.total),
      },
      traffic: { bytes_in: sum(rules, (rule) => rule.bytesIn), bytes_out: sum(rules, (rule) => rule.bytesOut) },
      errors: {
        connect: sum(rules, connectFailures),
        denied: sum(rules, (rule) => rule.denied),
        limited: sum(rules, (rule) => rule.limited),
      },
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

/** The human-readable status report. */
export function statusText(snapshot: Snapshot): string {
  const { rules } = snapshot;
  const lines = [
    "oi status report",
    `Updated: ${new Date(snapshot.now).toISOString()}`,
    `Version: ${snapshot.version}`,
    `Uptime: ${uptime(snapshot)}`,
    `Config reloads: ${snapshot.reloads}`,
    "",
    "CONNECTIONS",
    `Active: ${sum(rules, (rule) => rule.active)}`,
    `Total: ${sum(rules, (rule) => rule.total)}`,
    "",
    "TRAFFIC",
    `Bytes in: ${humanBytes(sum(rules, (rule) => rule.bytesIn))}`,
    `Bytes out: ${humanBytes(sum(rules, (rule) => rule.bytesOut))}`,
    "",
    "ERRORS",
    `Connect: ${sum(rules, connectFailures)}`,
    `Denied: ${sum(rules, (rule) => rule.denied)}`,
    `Limited: ${sum(rules, (rule) => rule.limited)}`,
    "",
    "RULES",
  ];
  for (const rule of rules) {
    lines.push(`  ${rule.name}${rule.algorithm === undefined ? "" : ` (${rule.algorithm})`}:`);
    lines.push(`    Active: ${rule.active}, Total: ${rule.total}, Traffic: ${humanBytes(rule.bytesIn)}/${humanBytes(rule.bytesOut)}`);
    if (rule.backends.length > 1) {
      lines.push("    Backends:");
      for (const backend of rule.backends) {
        lines.push(`      ${backend.name}: ${backend.healthy ? "healthy" : "down"}, active=${backend.active}, total=${backend.total}, failures=${backend.failures}`);
      }
    }
  }
  return `${lines.join("\n")}\n`;
}

/** The periodic log line: `STATS: uptime=3600s conns=150/50000 traffic=1.0G/2.0G errors=15/100/0`. */
export function statsLine(snapshot: Snapshot): string {
  const { rules } = snapshot;
  const seconds = Math.round((snapshot.now - snapshot.startedAt) / 1000);
  return `STATS: uptime=${seconds}s conns=${sum(rules, (rule) => rule.active)}/${sum(rules, (rule) => rule.total)} traffic=${humanBytes(
    sum(rules, (rule) => rule.bytesIn),
  )}/${humanBytes(sum(rules, (rule) => rule.bytesOut))} errors=${sum(rules, connectFailures)}/${sum(rules, (rule) => rule.denied)}/${sum(
    rules,
    (rule) => rule.limited,
  )}`;
}

/** Writes the status file now and then; replaced (timers restarted) on reload. */
export class StatusReporter {
  private fileTimer: Timer | undefined;
  private logTimer: Timer | undefined;

  /** `refresh`: brings the figures up to date before each view (worker threads report theirs on request). */
  constructor(
    private readonly metrics: Metrics,
    private readonly refresh?: () => Promise<void>,
  ) {}

  configure(status: StatusFileOptions | undefined, statsLogInterval: number): void {
    this.stop();
    if (status !== undefined) {
      this.refreshed(() => this.writeFile(status));
      this.fileTimer = setInterval(() => this.refreshed(() => this.writeFile(status)), status.interval * 1000);
      this.fileTimer.unref();
    }
    if (statsLogInterval > 0) {
      this.logTimer = setInterval(() => this.refreshed(() => consola.info(statsLine(this.metrics.snapshot()))), statsLogInterval * 1000);
      this.logTimer.unref();
    }
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

  private writeFile(status: StatusFileOptions): void {
    const snapshot = this.metrics.snapshot();
    const text = status.format === "json" ? statusJson(snapshot) : statusText(snapshot);
    const temporary = `${status.path}.tmp-${process.pid}`;
    try {
      writeFileSync(temporary, text);
      renameSync(temporary, status.path);
    } catch (error) {
      consola.warn(`cannot write status file ${status.path}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
