/**
 * @module Counters per rule, fed by session events (never by the data path),
 * and their Prometheus text view served at `/metrics` when `metrics
 * HOST:PORT` is configured. Byte counters add the bytes of connections still
 * open (asked of the forwarders at scrape time) to those of finished ones, so
 * long transfers show up while they run.
 */
import type { Server as HttpServer } from "bun";
import { consola } from "consola";
import { formatEndpoint } from "./endpoint.ts";
import type { Forwarder } from "./forwarder.ts";
import { formatHostPort } from "./ip.ts";
import { descriptorLimit, openDescriptors } from "./limits.ts";
import type { SessionEvents, SessionRecord } from "./session.ts";
import type { ForwardRule, MetricsAddress } from "./types.ts";

/** One rule's counters, kept for the life of the process (also after a reload removes the rule). */
class RuleCounters {
  connections = 0;
  denied = 0;
  limited = 0;
  bytesIn = 0;
  bytesOut = 0;
  readonly errors = new Map<string, number>();
  constructor(
    readonly label: string,
    public mode: string,
  ) {}
}

export class Metrics implements SessionEvents {
  private readonly rules = new Map<string, RuleCounters>();
  private readonly startedAt = Date.now() / 1000;

  constructor(
    private readonly version: string,
    /** The forwarders to ask for open connections and bytes in flight, at scrape time. */
    private readonly forwarders: () => Forwarder[],
  ) {}

  denied(rule: ForwardRule, _address: string, _port: number, reason: "denied" | "limit"): void {
    const counters = this.countersOf(rule);
    if (reason === "limit") counters.limited++;
    else counters.denied++;
  }

  started(rule: ForwardRule): void {
    this.countersOf(rule).connections++;
  }

  ended(record: SessionRecord): void {
    const counters = this.countersOf(record.rule);
    counters.bytesIn += record.bytesIn;
    counters.bytesOut += record.bytesOut;
    // A UDP session normally ends by going idle: that is not an error.
    const normal = record.result === "done" || (record.result === "timeout" && record.rule.bind.transport === "udp");
    if (!normal) {
      const reason = record.result.startsWith("error: ") ? record.result.slice(7) : record.result;
      counters.errors.set(reason, (counters.errors.get(reason) ?? 0) + 1);
    }
  }

  /** The Prometheus text exposition of every counter, plus process figures. */
  render(): string {
    const active = new Map<string, number>();
    const inFlight = new Map<string, [number, number]>();
    for (const forwarder of this.forwarders()) {
      const counters = this.countersOf(forwarder.rule);
      active.set(counters.label, (active.get(counters.label) ?? 0) + forwarder.active);
      const [bytesIn, bytesOut] = forwarder.bytesInFlight();
      const sum = inFlight.get(counters.label) ?? [0, 0];
      inFlight.set(counters.label, [sum[0] + bytesIn, sum[1] + bytesOut]);
    }
    const out = new Exposition();
    out.family("oi_build_info", "gauge", "Version of oi.");
    out.sample("oi_build_info", { version: this.version }, 1);

    const all = [...this.rules.values()];
    const udp = all.filter((rule) => rule.mode === "udp" || rule.mode === "udptotcp");
    out.family("oi_connections_total", "counter", "Connections (TCP) or sessions (UDP) accepted, per rule.");
    for (const rule of all) out.sample("oi_connections_total", ruleLabels(rule), rule.connections);
    out.family("oi_connections_active", "gauge", "Connections or sessions open now, per rule.");
    for (const rule of all) out.sample("oi_connections_active", ruleLabels(rule), active.get(rule.label) ?? 0);
    out.family("oi_bytes_total", "counter", "Bytes forwarded: in = from clients, out = to clients.");
    for (const rule of all) {
      const [liveIn, liveOut] = inFlight.get(rule.label) ?? [0, 0];
      out.sample("oi_bytes_total", { ...ruleLabels(rule), direction: "in" }, rule.bytesIn + liveIn);
      out.sample("oi_bytes_total", { ...ruleLabels(rule), direction: "out" }, rule.bytesOut + liveOut);
    }
    out.family("oi_denied_total", "counter", "Clients refused by the allow/deny rules.");
    for (const rule of all) out.sample("oi_denied_total", ruleLabels(rule), rule.denied);
    out.family("oi_limited_total", "counter", "Clients refused by a connection or descriptor limit.");
    for (const rule of all) out.sample("oi_limited_total", ruleLabels(rule), rule.limited);
    out.family("oi_errors_total", "counter", "Connections or sessions that ended other than normally, by reason.");
    for (const rule of all) {
      for (const [reason, count] of rule.errors) out.sample("oi_errors_total", { ...ruleLabels(rule), reason }, count);
    }
    out.family("oi_udp_sessions_total", "counter", "UDP sessions started, per UDP rule.");
    for (const rule of udp) out.sample("oi_udp_sessions_total", ruleLabels(rule), rule.connections);
    out.family("oi_udp_sessions_active", "gauge", "UDP sessions open now, per UDP rule.");
    for (const rule of udp) out.sample("oi_udp_sessions_active", ruleLabels(rule), active.get(rule.label) ?? 0);

    const memory = process.memoryUsage();
    const cpu = process.cpuUsage();
    out.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    out.sample("process_resident_memory_bytes", {}, memory.rss);
    out.family("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
    out.sample("process_cpu_seconds_total", {}, (cpu.user + cpu.system) / 1e6);
    out.family("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.");
    out.sample("process_start_time_seconds", {}, this.startedAt);
    const openFds = openDescriptors();
    if (openFds !== undefined) {
      out.family("process_open_fds", "gauge", "Number of open file descriptors.");
      out.sample("process_open_fds", {}, openFds);
    }
    const maxFds = descriptorLimit();
    if (maxFds !== undefined) {
      out.family("process_max_fds", "gauge", "Maximum number of open file descriptors.");
      out.sample("process_max_fds", {}, maxFds);
    }
    return out.text();
  }

  private countersOf(rule: ForwardRule): RuleCounters {
    const label = formatEndpoint(rule.bind);
    let counters = this.rules.get(label);
    if (counters === undefined) {
      counters = new RuleCounters(label, rule.mode);
      this.rules.set(label, counters);
    }
    counters.mode = rule.mode;
    return counters;
  }
}

function ruleLabels(rule: RuleCounters): Record<string, string> {
  return { rule: rule.label, mode: rule.mode };
}

/** Builds Prometheus text format 0.0.4. */
class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: "counter" | "gauge", help: string): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: Record<string, string>, value: number): void {
    const pairs = Object.entries(labels).map(([key, text]) => `${key}="${escapeLabel(text)}"`);
    this.lines.push(`${name}${pairs.length > 0 ? `{${pairs.join(",")}}` : ""} ${value}`);
  }

  text(): string {
    return `${this.lines.join("\n")}\n`;
  }
}

function escapeLabel(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Serves `metrics.render()` at GET /metrics; throws (with Bun's reason) if the address cannot be bound. */
export function serveMetrics(address: MetricsAddress, metrics: Metrics): HttpServer<undefined> {
  const server = Bun.serve({
    hostname: address.host,
    port: address.port,
    fetch(request) {
      const path = new URL(request.url).pathname;
      if (path !== "/metrics") return new Response("not found: metrics are at /metrics\n", { status: 404 });
      return new Response(metrics.render(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    },
  });
  consola.info(`metrics at http://${formatHostPort(address.host, address.port)}/metrics`);
  return server;
}
