/**
 * @module Global settings, described once for every config format: the
 * `.conf` directive (with rinetd's and rinetd-uv's spellings), the top-level
 * TOML key and the key under YAML's `global`, the value type and what it
 * sets: a field of the config, or a default that rules inherit. Tuning knobs
 * of rinetd-uv that mean nothing in `oi` are accepted with a warning saying
 * why; nothing is silently ignored.
 */
import type { AdminSettings, Config, LogFormat, SourceLocation } from "../types.ts";
import type { RuleDefaults } from "./options.ts";
import { MAX_WORKERS } from "../workers/count.ts";
import { checkAdminAddress, checkAdminMode } from "./admin.ts";
import { parseDnsServers } from "./dns-servers.ts";
import { checkConnectionRate, checkConnectTimeout, checkMaxConnections, checkMaxConnectionsPerClient, checkMetricsAddress } from "./validate.ts";

/**
 * `flag`: a .conf directive without argument (`logcommon`), true in TOML/YAML.
 * `switch`: on/off (true/false in TOML/YAML).
 * `string-or-octal`: permissions such as `0660`; in TOML/YAML a string, or a
 * bare number read as its digits (YAML gives `0660` unquoted as 660).
 * `name-or-id`: a user or group name, or its number (`nobody`, `65534`).
 */
export type GlobalValueType = "path" | "integer" | "number" | "string" | "flag" | "switch" | "switch-or-word" | "string-or-octal" | "name-or-id";

export type GlobalValue = string | number | boolean;

/** What a global setting writes to. */
export interface GlobalTarget {
  config: Config;
  defaults: RuleDefaults;
  /** Where the setting being applied stands (for checks that span settings, made after all are read). */
  at?: SourceLocation;
}

export interface GlobalSpec {
  /** .conf directive names; empty when the setting has no .conf form. */
  conf: readonly string[];
  /** Top-level TOML key, if TOML has it. */
  toml?: string;
  /** Key under YAML's `global` (dotted for nested tables: `status.file`), if YAML has it. */
  yaml?: string;
  type: GlobalValueType;
  /** Store a value of `type`; a reason when it is invalid. */
  apply(target: GlobalTarget, value: GlobalValue): string | undefined;
  /** For settings accepted but without effect in oi: why, for the warning (which names the setting as written). */
  noEffect?: string;
  /** A `switch` that may also stand alone in .conf (`watch` as `watch on`). */
  bareMeansOn?: boolean;
}

function integerIn(name: string, value: GlobalValue, min: number, max: number): number | string {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    return `${name} must be a whole number from ${min} to ${max}, got '${String(value)}'`;
  }
  return value;
}

/** An integer setting checked within min..max, stored by `set`. */
function bounded(name: string, min: number, max: number, set: (target: GlobalTarget, value: number) => void) {
  return (target: GlobalTarget, value: GlobalValue): string | undefined => {
    const checked = integerIn(name, value, min, max);
    if (typeof checked === "string") return checked;
    set(target, checked);
    return undefined;
  };
}

function logFormat(format: LogFormat) {
  return (target: GlobalTarget, value: GlobalValue): string | undefined => {
    if (value === true) target.config.logFormat = format;
    return undefined;
  };
}

/**
 * A tuning setting of rinetd-uv that oi has no use for: checked against
 * rinetd-uv's range (so a config rinetd-uv refuses is refused here too),
 * then reported.
 */
function noEffect(conf: string, yaml: string, min: number, max: number, why: string): GlobalSpec {
  return { conf: [conf], yaml, type: "integer", apply: bounded(conf, min, max, () => undefined), noEffect: why };
}

/** The admin settings being read; the address may come after the other directives (checked once all are read, see admin.ts). */
function adminOf(target: GlobalTarget): AdminSettings {
  target.config.admin ??= {
    address: undefined,
    at: target.at ?? { file: target.config.file, line: 0 },
    tokenFile: undefined,
    token: "",
    socketMode: 0o600,
    readOpen: false,
  };
  return target.config.admin;
}

function status(target: GlobalTarget) {
  target.config.status ??= { path: "", interval: 30, format: "json" };
  return target.config.status;
}

/** Clients a rule's per-client limits may remember: enough to be useful, few enough to bound memory (about 100 bytes each). */
const MIN_CLIENT_TABLE_SIZE = 100;
const MAX_CLIENT_TABLE_SIZE = 10_000_000;

/** rinetd-uv's range for buffersize. */
const MIN_BUFFER_SIZE = 1024;
const MAX_BUFFER_SIZE = 1_048_576;
const NO_POOL = "oi keeps no pool of buffers: each chunk Bun reads is forwarded and then left to the garbage collector";

export const GLOBAL_SETTINGS: readonly GlobalSpec[] = [
  {
    conf: ["logfile"],
    toml: "log_file",
    yaml: "log_file",
    type: "path",
    apply: (target, value) => {
      target.config.logFile = String(value);
      return undefined;
    },
  },
  {
    conf: ["pidlogfile", "pidfile"],
    toml: "pid_file",
    yaml: "pid_file",
    type: "path",
    apply: (target, value) => {
      target.config.pidFile = String(value);
      return undefined;
    },
  },
  { conf: ["logcommon"], yaml: "log_common", type: "flag", apply: logFormat("common") },
  { conf: ["logjson"], yaml: "log_json", type: "flag", apply: logFormat("json") },
  {
    conf: ["maxconn"],
    toml: "max_connections",
    yaml: "max_connections",
    type: "integer",
    apply: (target, value) => {
      const checked = checkMaxConnections(typeof value === "number" ? value : Number.NaN, String(value));
      if (!checked.ok) return checked.reason;
      target.config.maxConnections = checked.value;
      return undefined;
    },
  },
  {
    conf: ["maxconn-client", "maxconn_client"],
    toml: "max_connections_per_client",
    yaml: "max_connections_per_client",
    type: "integer",
    apply: (target, value) => {
      const checked = checkMaxConnectionsPerClient(typeof value === "number" ? value : Number.NaN, String(value));
      if (!checked.ok) return checked.reason;
      target.defaults.maxConnectionsPerClient = checked.value;
      return undefined;
    },
  },
  {
    conf: ["connrate-client", "connrate_client"],
    toml: "connection_rate_per_client",
    yaml: "connection_rate_per_client",
    type: "string",
    apply: (target, value) => {
      const checked = checkConnectionRate(String(value));
      if (!checked.ok) return checked.reason;
      target.defaults.connectionRatePerClient = checked.value;
      return undefined;
    },
  },
  {
    conf: ["client-table-size", "client_table_size"],
    toml: "client_table_size",
    yaml: "client_table_size",
    type: "integer",
    apply: bounded("client-table-size", MIN_CLIENT_TABLE_SIZE, MAX_CLIENT_TABLE_SIZE, (target, value) => (target.defaults.clientTableSize = value)),
  },
  {
    conf: ["metrics"],
    toml: "metrics",
    yaml: "metrics",
    type: "string",
    apply: (target, value) => {
      const checked = checkMetricsAddress(String(value));
      if (!checked.ok) return checked.reason;
      target.config.metrics = checked.value;
      return undefined;
    },
  },
  {
    conf: ["admin"],
    toml: "admin",
    yaml: "admin",
    type: "string",
    apply: (target, value) => {
      const checked = checkAdminAddress(String(value));
      if (!checked.ok) return checked.reason;
      const admin = adminOf(target);
      admin.address = checked.value;
      admin.at = target.at ?? admin.at;
      return undefined;
    },
  },
  {
    conf: ["admin-token", "admin_token"],
    toml: "admin_token",
    yaml: "admin_token",
    type: "path",
    apply: (target, value) => {
      adminOf(target).tokenFile = String(value);
      return undefined;
    },
  },
  {
    conf: ["admin-mode", "admin_mode"],
    toml: "admin_mode",
    yaml: "admin_mode",
    type: "string-or-octal",
    apply: (target, value) => {
      const checked = checkAdminMode(String(value));
      if (!checked.ok) return checked.reason;
      adminOf(target).socketMode = checked.value;
      return undefined;
    },
  },
  {
    conf: ["admin-read", "admin_read"],
    toml: "admin_read",
    yaml: "admin_read",
    type: "string",
    apply: (target, value) => {
      if (value !== "open" && value !== "token") return `admin-read must be open or token, got '${String(value)}'`;
      adminOf(target).readOpen = value === "open";
      return undefined;
    },
  },
  {
    conf: ["connect-timeout", "connect_timeout"],
    toml: "connect_timeout",
    yaml: "connect_timeout",
    type: "number",
    apply: (target, value) => {
      const checked = checkConnectTimeout(typeof value === "number" ? value : Number.NaN, String(value));
      if (!checked.ok) return checked.reason;
      target.defaults.connectTimeout = checked.value;
      return undefined;
    },
  },
  {
    conf: ["max-udp-connections", "max_udp_connections"],
    toml: "max_udp_connections",
    yaml: "max_udp_connections",
    type: "integer",
    apply: bounded("max-udp-connections", 1, 1_000_000, (target, value) => (target.defaults.maxSessions = value)),
  },
  {
    conf: ["dns-refresh", "dns_refresh"],
    toml: "dns_refresh",
    yaml: "dns_refresh",
    type: "integer",
    apply: bounded("dns-refresh", 0, 86_400, (target, value) => (target.defaults.dnsRefresh = value)),
  },
  {
    conf: ["dns-servers", "dns_servers"],
    toml: "dns_servers",
    yaml: "dns_servers",
    type: "string",
    apply: (target, value) => {
      const servers = parseDnsServers(String(value));
      if (!servers.ok) return servers.reason;
      target.config.dnsServers = servers.value;
      target.defaults.dnsServers = servers.value;
      return undefined;
    },
  },
  {
    conf: ["dns-multi-ip-expand", "dns_multi_ip_expand"],
    toml: "dns_multi_ip_expand",
    yaml: "dns_multi_ip_expand",
    type: "switch",
    apply: (target, value) => {
      if (typeof value !== "boolean") return `dns-multi-ip-expand must be on or off, got '${String(value)}'`;
      target.defaults.dnsSpread = value;
      return undefined;
    },
  },
  {
    conf: ["dns-multi-ip-proto", "dns_multi_ip_proto"],
    toml: "dns_multi_ip_proto",
    yaml: "dns_multi_ip_proto",
    type: "string",
    apply: (target, value) => {
      if (value !== "ipv4" && value !== "ipv6" && value !== "any") {
        return `dns-multi-ip-proto must be one of ipv4, ipv6, any, got '${String(value)}'`;
      }
      target.defaults.dnsFamily = value;
      return undefined;
    },
  },
  {
    conf: ["statusfile"],
    toml: "status.file",
    yaml: "status.file",
    type: "path",
    apply: (target, value) => {
      status(target).path = String(value);
      return undefined;
    },
  },
  {
    conf: ["statusinterval"],
    toml: "status.interval",
    yaml: "status.interval",
    type: "integer",
    apply: bounded("statusinterval", 1, 86_400, (target, value) => (status(target).interval = value)),
  },
  {
    conf: ["statusformat"],
    toml: "status.format",
    yaml: "status.format",
    type: "string",
    apply: (target, value) => {
      if (value !== "json" && value !== "text") return `statusformat must be json or text, got '${String(value)}'`;
      status(target).format = value;
      return undefined;
    },
  },
  {
    conf: ["statsloginterval"],
    toml: "stats_log_interval",
    yaml: "stats_log_interval",
    type: "integer",
    apply: bounded("statsloginterval", 0, 86_400, (target, value) => (target.config.statsLogInterval = value)),
  },
  {
    conf: ["workers"],
    toml: "workers",
    yaml: "workers",
    type: "integer",
    apply: bounded("workers", 1, MAX_WORKERS, (target, value) => (target.config.workers = value)),
  },
  {
    conf: [],
    toml: "status.enabled",
    yaml: "status.enabled",
    type: "switch",
    apply: (target, value) => {
      // Last in this list, so `enabled: false` wins whatever order the other status keys come in.
      if (value === false) target.config.status = undefined;
      return undefined;
    },
  },
  {
    conf: ["splice"],
    toml: "splice",
    yaml: "splice",
    type: "switch-or-word",
    apply: (target, value) => {
      if (typeof value === "boolean") target.config.splice = value ? "on" : "off";
      else if (value === "auto") target.config.splice = "auto";
      else return `splice must be on, off or auto, got '${String(value)}'`;
      return undefined;
    },
  },
  {
    conf: ["sockets"],
    toml: "sockets",
    yaml: "sockets",
    type: "string",
    apply: (target, value) => {
      if (value !== "auto" && value !== "direct" && value !== "bun") return `sockets must be auto, direct or bun, got '${String(value)}'`;
      target.config.sockets = value;
      return undefined;
    },
  },
  {
    conf: ["buffersize", "buffer_size"],
    toml: "buffer_size",
    yaml: "buffer_size",
    type: "integer",
    // Bun reads TCP into buffers of its own; what a buffer bounds in oi is the datagram size (see ForwardRule.bufferSize).
    apply: bounded("buffersize", MIN_BUFFER_SIZE, MAX_BUFFER_SIZE, (target, value) => (target.defaults.bufferSize = value)),
  },
  noEffect("pool-min-free", "pool_min_free", 0, 10_000, NO_POOL),
  noEffect("pool-max-free", "pool_max_free", 1, 100_000, NO_POOL),
  noEffect("pool-trim-delay", "pool_trim_delay", 100, 300_000, NO_POOL),
  {
    conf: ["listen-backlog"],
    toml: "listen_backlog",
    yaml: "listen_backlog",
    type: "integer",
    apply: bounded("listen-backlog", 1, 65_535, (target, value) => (target.config.listenBacklog = value)),
  },
  {
    conf: ["watch"],
    toml: "watch",
    yaml: "watch",
    type: "switch",
    bareMeansOn: true,
    apply: (target, value) => {
      if (typeof value !== "boolean") return `watch must be on or off, got '${String(value)}'`;
      target.config.watch = value;
      return undefined;
    },
  },
  {
    conf: ["user"],
    toml: "user",
    yaml: "user",
    type: "name-or-id",
    apply: (target, value) => accountSetting(target, "user", value),
  },
  {
    conf: ["group"],
    toml: "group",
    yaml: "group",
    type: "name-or-id",
    apply: (target, value) => accountSetting(target, "group", value),
  },
];

/** `user` or `group`: kept as written, resolved against /etc/passwd and /etc/group once the file is read (config/accounts.ts). */
function accountSetting(target: GlobalTarget, which: "user" | "group", value: GlobalValue): string | undefined {
  const name = String(value);
  if (!/^[A-Za-z0-9_.][A-Za-z0-9_.$-]*$/.test(name)) return `${which} must be a ${which} name or number, got '${name}'`;
  target.config[which] = { name, at: target.at ?? { file: target.config.file, line: 0 } };
  return undefined;
}

/** Look a setting up by its .conf directive name. */
export function confGlobal(name: string): GlobalSpec | undefined {
  return GLOBAL_SETTINGS.find((spec) => spec.conf.includes(name));
}

/** Checks that need every global setting: a status file needs its path. */
export function checkGlobals(config: Config): string | undefined {
  if (config.status !== undefined && config.status.path === "") {
    return "status file settings are given but no status file path (statusfile PATH)";
  }
  return undefined;
}

/** The warning for a setting without effect in oi, naming it as the config wrote it. */
export function noEffectWarning(name: string, why: string): string {
  return `${name} has no effect in oi: ${why}`;
}
