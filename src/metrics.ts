/**
 * @module One set of counters, fed by session events (never by the data
 * path), and the three views that read it: Prometheus text at `/metrics`
 * (when `metrics HOST:PORT` is set), the status file, and the periodic
 * one-line summary in the log. Byte counters add the bytes of connections
 * still open (asked of the forwarders when a view is made) to those of
 * finished ones, so long transfers show while they run.
 */
import type { Server as HttpServer } from "bun";
import { consola } from "consola";
import type { RuleBackends } from "./backends.ts";
import type { Forwarder } from "./forwarder.ts";
import { formatHostPort } from "./ip.ts";
import { descriptorLimit, openDescriptors } from "./limits.ts";
import type { LogSink } from "./log/console.ts";
import { LIMIT_LABELS, type LimitLabel, limitLabel, type Refusal, type SessionEvents, type SessionRecord } from "./session.ts";
import type { ForwardRule, MetricsAddress, RuleMode, Transport } from "./types.ts";

/** One rule's counters (by rule name), kept for the life of the process, also after a reload removes the rule. */
class RuleCounters {
  connections = 0;
  denied = 0;
  /** Peers refused by the rule's proxy-from. */
  untrustedProxy = 0;
  limited = 0;
  /** `limited` by which limit refused. */
  readonly limitedBy: Record<LimitLabel, number> = { rule: 0, global: 0, client: 0 };
  bytesIn = 0;
  bytesOut = 0;
  readonly errors = new Map<string, number>();
  /** A port range's connections by port (`[active, total]`), for the status file's detail; undefined on a rule of one port. */
  ports: Map<number, [active: number, total: number]> | undefined;
  constructor(
    readonly name: string,
    public mode: RuleMode,
    /** What the rule listens on: the status file counts TCP, UDP and unix socket rules apart. */
    public transport: Transport,
  ) {}
}

export interface BackendSnapshot {
  name: string;
  healthy: boolean;
  active: number;
  total: number;
  failures: number;
  bytesIn: number;
  bytesOut: number;
}

export interface RuleSnapshot {
  name: string;
  mode: RuleMode;
  /** What the rule listens on; rules listening on UDP count sessions rather than connections. */
  transport: Transport;
  algorithm: string | undefined;
  active: number;
  total: number;
  denied: number;
  /** Peers reset before their PROXY header was read: not in the rule's proxy-from. */
  untrustedProxy: number;
  /** Clients refused by any limit; `limitedBy` splits them by which. */
  limited: number;
  limitedBy: Readonly<Record<LimitLabel, number>>;
  bytesIn: number;
  bytesOut: number;
  errors: ReadonlyMap<string, number>;
  backends: BackendSnapshot[];
  /** Datagrams dropped by the rule's open forwarders: [over a bandwidth limit, for any other reason]; undefined for stream rules. */
  datagramsDropped?: [rate: number, other: number];
  /** A port range's ports that had connections, in order; absent on a rule of one port. */
  ports?: PortSnapshot[];
}

/** One port of a range: connections open now and since start. */
export interface PortSnapshot {
  port: number;
  active: number;
  total: number;
}

export interface Snapshot {
  version: string;
  startedAt: number;
  now: number;
  reloads: number;
  /** Listeners open now. */
  servers: number;
  rules: RuleSnapshot[];
  /** Log lines dropped because their output could not keep up, per sink. */
  logDrops: Readonly<Record<LogSink, number>>;
}

/** What the views read of a forwarder (worker threads report these figures for theirs). */
export type ForwarderFigures = Pick<Forwarder, "rule" | "active" | "bytesInFlight" | "datagramsDropped">;
/** What the views read of a rule's backends. */
export type BackendFigures = Pick<RuleBackends, "rule" | "statuses">;

/** What the views need from the rest of oi, asked for each time a view is made. */
export interface MetricsSources {
  forwarders(): ForwarderFigures[];
  /** How many of the forwarders are listening (the others drain after a reload). */
  listening(): number;
  backends(): BackendFigures[];
  logDrops(): Readonly<Record<LogSink, number>>;
}

export class Metrics implements SessionEvents {
  private readonly rules = new Map<string, RuleCounters>();
  private readonly startedAt = Date.now();
  reloads = 0;

  constructor(
    private readonly version: string,
    private readonly sources: MetricsSources,
  ) {}

  denied(rule: ForwardRule, _address: string, _port: number, reason: Refusal): void {
    const counters = this.countersOf(rule);
    if (reason === "denied") {
      counters.denied++;
      return;
    }
    if (reason === "untrusted-proxy") {
      counters.untrustedProxy++;
      return;
    }
    counters.limited++;
    counters.limitedBy[limitLabel(reason)]++;
  }

  started(rule: ForwardRule, offset?: number): void {
    const counters = this.countersOf(rule);
    counters.connections++;
    if (rule.bind.portEnd !== undefined && offset !== undefined) {
      counters.ports ??= new Map();
      const port = rule.bind.port + offset;
      const counts = counters.ports.get(port);
      if (counts === undefined) counters.ports.set(port, [1, 1]);
      else {
        counts[0]++;
        counts[1]++;
      }
    }
  }

  ended(record: SessionRecord): void {
    const counters = this.countersOf(record.rule);
    if (record.offset !== undefined && record.rule.bind.portEnd !== undefined) {
      const counts = counters.ports?.get(record.rule.bind.port + record.offset);
      if (counts !== undefined) counts[0]--;
    }
    counters.bytesIn += record.bytesIn;
    counters.bytesOut += record.bytesOut;
    // A UDP session normally ends by going idle: that is not an error.
    const normal = record.result === "done" || (record.result === "timeout" && record.rule.bind.transport === "udp");
    if (!normal) {
      const reason = record.result.startsWith("error: ") ? record.result.slice(7) : record.result;
      counters.errors.set(reason, (counters.errors.get(reason) ?? 0) + 1);
    }
  }

  /** Every counter as of now, with connections in flight included. */
  snapshot(): Snapshot {
    const active = new Map<string, number>();
    const inFlight = new Map<string, [number, number]>();
    const dropped = new Map<string, [number, number]>();
    for (const forwarder of this.sources.forwarders()) {
      const name = this.countersOf(forwarder.rule).name;
      active.set(name, (active.get(name) ?? 0) + forwarder.active);
      const [bytesIn, bytesOut] = forwarder.bytesInFlight();
      const sum = inFlight.get(name) ?? [0, 0];
      inFlight.set(name, [sum[0] + bytesIn, sum[1] + bytesOut]);
      const drops = forwarder.datagramsDropped?.();
      if (drops !== undefined) {
        const before = dropped.get(name) ?? [0, 0];
        dropped.set(name, [before[0] + drops[0], before[1] + drops[1]]);
      }
    }
    const backendsByRule = new Map<string, BackendFigures>();
    for (const backends of this.sources.backends()) backendsByRule.set(backends.rule.name, backends);
    const rules = [...this.rules.values()].map((counters): RuleSnapshot => {
      const [liveIn, liveOut] = inFlight.get(counters.name) ?? [0, 0];
      const backends = backendsByRule.get(counters.name);
      return {
        name: counters.name,
        mode: counters.mode,
        transport: counters.transport,
        algorithm: backends === undefined || backends.rule.backends.length < 2 ? undefined : backends.rule.balance.algorithm,
        active: active.get(counters.name) ?? 0,
        total: counters.connections,
        denied: counters.denied,
        untrustedProxy: counters.untrustedProxy,
        limited: counters.limited,
        limitedBy: { ...counters.limitedBy },
        bytesIn: counters.bytesIn + liveIn,
        bytesOut: counters.bytesOut + liveOut,
        errors: counters.errors,
        ...(dropped.has(counters.name) ? { datagramsDropped: dropped.get(counters.name) } : {}),
        backends: (backends?.statuses ?? []).map((status) => ({
          name: status.name,
          healthy: status.healthy,
          active: status.active,
          total: status.totalConnections,
          failures: status.totalFailures,
          bytesIn: status.bytesIn,
          bytesOut: status.bytesOut,
        })),
        ...(counters.ports === undefined ? {} : { ports: portSnapshots(counters.ports) }),
      };
    });
    return {
      version: this.version,
      startedAt: this.startedAt,
      now: Date.now(),
      reloads: this.reloads,
      servers: this.sources.listening(),
      rules,
      logDrops: this.sources.logDrops(),
    };
  }

  /** The Prometheus text exposition of every counter, plus process figures. */
  render(): string {
    const { rules, version, startedAt, logDrops } = this.snapshot();
    const out = new Exposition();
    out.family("oi_build_info", "gauge", "Version of oi.");
    out.sample("oi_build_info", { version }, 1);

    const labels = (rule: RuleSnapshot) => ({ rule: rule.name, mode: rule.mode });
    const perRule = (name: string, type: "counter" | "gauge", help: string, value: (rule: RuleSnapshot) => number, only = rules) => {
      out.family(name, type, help);
      for (const rule of only) out.sample(name, labels(rule), value(rule));
    };
    perRule("oi_connections_total", "counter", "Connections (TCP) or sessions (UDP) accepted, per rule.", (rule) => rule.total);
    perRule("oi_connections_active", "gauge", "Connections or sessions open now, per rule.", (rule) => rule.active);
    out.family("oi_bytes_total", "counter", "Bytes forwarded: in = from clients, out = to clients.");
    for (const rule of rules) {
      out.sample("oi_bytes_total", { ...labels(rule), direction: "in" }, rule.bytesIn);
      out.sample("oi_bytes_total", { ...labels(rule), direction: "out" }, rule.bytesOut);
    }
    perRule("oi_denied_total", "counter", "Clients refused by the allow/deny rules.", (rule) => rule.denied);
    perRule(
      "oi_proxy_untrusted_total",
      "counter",
      "Peers reset before their PROXY header was read: their address is not in the rule's proxy-from.",
      (rule) => rule.untrustedProxy,
    );
    out.family("oi_limited_total", "counter", "Clients refused by a limit: the rule's maxconn (rule), the global maxconn or descriptors (global), a per-client limit (client).");
    for (const rule of rules) {
      for (const reason of LIMIT_LABELS) out.sample("oi_limited_total", { ...labels(rule), reason }, rule.limitedBy[reason]);
    }
    out.family("oi_errors_total", "counter", "Connections or sessions that ended other than normally, by reason.");
    for (const rule of rules) {
      for (const [reason, count] of rule.errors) out.sample("oi_errors_total", { ...labels(rule), reason }, count);
    }
    const udp = rules.filter((rule) => rule.transport === "udp");
    perRule("oi_udp_sessions_total", "counter", "UDP sessions started, per UDP rule.", (rule) => rule.total, udp);
    perRule("oi_udp_sessions_active", "gauge", "UDP sessions open now, per UDP rule.", (rule) => rule.active, udp);
    out.family("oi_datagrams_dropped_total", "counter", "Datagrams dropped by the rule's running forwarders: rate = over a bandwidth limit; other = a full queue, a failed send, too long, or after the rule stopped.");
    for (const rule of rules) {
      const drops = rule.datagramsDropped;
      if (drops === undefined) continue;
      out.sample("oi_datagrams_dropped_total", { ...labels(rule), reason: "rate" }, drops[0]);
      out.sample("oi_datagrams_dropped_total", { ...labels(rule), reason: "other" }, drops[1]);
    }

    const perBackend = (name: string, type: "counter" | "gauge", help: string, value: (backend: BackendSnapshot) => number) => {
      out.family(name, type, help);
      for (const rule of rules) for (const backend of rule.backends) out.sample(name, { rule: rule.name, backend: backend.name }, value(backend));
    };
    perBackend("oi_backend_up", "gauge", "1 when the backend is in service, 0 while health checks keep it out.", (backend) => (backend.healthy ? 1 : 0));
    perBackend("oi_backend_connections_active", "gauge", "Connections or sessions open to the backend now.", (backend) => backend.active);
    perBackend("oi_backend_connections_total", "counter", "Connections or sessions the backend took.", (backend) => backend.total);
    perBackend("oi_backend_failures_total", "counter", "Failed connects to the backend.", (backend) => backend.failures);
    out.family("oi_backend_bytes_total", "counter", "Bytes through the backend's finished connections: in = from clients, out = to clients.");
    for (const rule of rules) {
      for (const backend of rule.backends) {
        out.sample("oi_backend_bytes_total", { rule: rule.name, backend: backend.name, direction: "in" }, backend.bytesIn);
        out.sample("oi_backend_bytes_total", { rule: rule.name, backend: backend.name, direction: "out" }, backend.bytesOut);
      }
    }

    out.family("oi_log_lines_dropped_total", "counter", "Log lines dropped because stdout, stderr or the log file could not keep up.");
    for (const [sink, count] of Object.entries(logDrops)) out.sample("oi_log_lines_dropped_total", { sink }, count);

    const memory = process.memoryUsage();
    const cpu = process.cpuUsage();
    out.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    out.sample("process_resident_memory_bytes", {}, memory.rss);
    out.family("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
    out.sample("process_cpu_seconds_total", {}, (cpu.user + cpu.system) / 1e6);
    out.family("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.");
    out.sample("process_start_time_seconds", {}, startedAt / 1000);
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
    let counters = this.rules.get(rule.name);
    if (counters === undefined) {
      counters = new RuleCounters(rule.name, rule.mode, rule.bind.transport);
      this.rules.set(rule.name, counters);
    }
    counters.mode = rule.mode;
    counters.transport = rule.bind.transport;
    return counters;
  }
}

/** A range's per-port counts, by port. */
function portSnapshots(ports: Map<number, [number, number]>): PortSnapshot[] {
  return [...ports].sort(([a], [b]) => a - b).map(([port, [active, total]]) => ({ port, active, total }));
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
export function serveMetrics(address: MetricsAddress, metrics: { render(): string | Promise<string> }): HttpServer<undefined> {
  const server = Bun.serve({
    hostname: address.host,
    port: address.port,
    async fetch(request) {
      const path = new URL(request.url).pathname;
      if (path !== "/metrics") return new Response("not found: metrics are at /metrics\n", { status: 404 });
      return new Response(await metrics.render(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    },
  });
  consola.info(`metrics at http://${formatHostPort(address.host, address.port)}/metrics`);
  return server;
}
