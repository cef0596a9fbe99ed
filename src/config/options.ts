/**
 * @module Per-rule options, described once for every config format: the
 * names in a `.conf` option group (`[timeout=30]`, with rinetd-uv's spellings
 * as aliases), the key in a TOML or YAML rule (or in its `load_balancing`
 * table), the value type and the check. Parsers look options up here; adding
 * an option is one entry.
 */
import type { AddressPattern, Algorithm, BalanceOptions, Framing, ProxyProtocolVersion, RuleMatch, RuleOptions, TlsClientSettings } from "../types.ts";
import { compilePattern } from "../access.ts";
import {
  MATCH_PROTOCOLS,
  DEFAULT_BUFFER_SIZE,
  DEFAULT_CONNECT_TIMEOUT_SECONDS,
  DEFAULT_DNS_REFRESH_SECONDS,
  DEFAULT_MAX_UDP_SESSIONS,
  DEFAULT_UDP_TIMEOUT_SECONDS,
  MAX_UDP_PAYLOAD,
} from "../types.ts";
import { checkAlpn } from "../tls/certificates.ts";
import { DEFAULT_CLIENT_TABLE_ENTRIES } from "../clients.ts";
import {
  type Checked,
  checkConnectionRate,
  checkConnectTimeout,
  checkHost,
  checkMatchName,
  checkMaxConnectionsPerClient,
  checkSourceAddress,
  checkUdpTimeout,
} from "./validate.ts";
import { parseRate } from "../rate/units.ts";

/**
 * How a value is written. TOML/YAML type expected, and the .conf text accepted:
 * `switch` is on/off/true/false (a bare `[accept_proxy]` is on),
 * `switch-or-seconds` is a switch or a number of seconds, and `list` is one
 * or more words (`a|b` in .conf; a string or an array of strings in TOML
 * and YAML), `rate` a bandwidth (`100mbit`; in TOML and YAML a string or a
 * bare number of bytes per second).
 */
export type OptionValueType = "integer" | "number" | "string" | "switch" | "switch-or-seconds" | "list" | "rate";

export type OptionValue = string | number | boolean | string[];

/** Tables of a TOML/YAML rule that hold options (the .conf format writes them all in the bracket). */
export type OptionTable = "load_balancing" | "match" | "tls" | "tls_connect";

export interface OptionSpec {
  /** Names inside a .conf option group: the first is oi's, the others rinetd-uv's spellings. */
  conf: readonly string[];
  /** Key in a TOML/YAML forwarding rule. */
  toml: string;
  /** Set when the key lives in one of the rule's tables (`load_balancing`, `match`, ...) rather than the rule itself. */
  table?: OptionTable;
  /**
   * Set on a switch that may also be written as the table of its own
   * sub-options in TOML/YAML (`tls_connect = true`, or `[...tls_connect]`
   * with `ca = ...`): the table's presence switches it on. Its sub-options
   * need it on, so it is applied before them in every format.
   */
  opens?: OptionTable;
  type: OptionValueType;
  /** Check a value (already of `type`) and store it on `options`; a reason when it is invalid. */
  apply(options: RuleOptions, value: OptionValue, written: string): string | undefined;
  /** Set when a global setting gives this option's default (rules that set it keep their own). */
  inherits?: keyof RuleDefaults;
}

/** Rule options whose default a global setting may change (rinetd-uv's global options). */
export type RuleDefaults = Pick<
  RuleOptions,
  | "timeout"
  | "connectTimeout"
  | "maxSessions"
  | "dnsRefresh"
  | "dnsFamily"
  | "dnsSpread"
  | "dnsServers"
  | "keepalive"
  | "bufferSize"
  | "maxConnectionsPerClient"
  | "connectionRatePerClient"
  | "clientTableSize"
>;

/** Seconds of silence before the first keepalive probe when it is just switched on (rinetd-uv's). */
export const DEFAULT_KEEPALIVE_SECONDS = 60;

export const BALANCE_DEFAULTS: Readonly<BalanceOptions> = {
  algorithm: "roundrobin",
  healthThreshold: 3,
  recoveryTimeout: 30,
  affinityTtl: 0,
  affinityMaxEntries: 10_000,
  probeInterval: undefined,
  probeTimeout: 2,
};

export function defaultRuleOptions(): RuleOptions {
  return {
    timeout: DEFAULT_UDP_TIMEOUT_SECONDS,
    connectTimeout: DEFAULT_CONNECT_TIMEOUT_SECONDS,
    sourceAddress: undefined,
    maxConnections: undefined,
    maxConnectionsPerClient: undefined,
    connectionRatePerClient: undefined,
    clientTableSize: DEFAULT_CLIENT_TABLE_ENTRIES,
    idleTimeout: undefined,
    maxSessions: DEFAULT_MAX_UDP_SESSIONS,
    framing: "none",
    maxDatagram: MAX_UDP_PAYLOAD,
    bufferSize: DEFAULT_BUFFER_SIZE,
    proxyProtocol: undefined,
    acceptProxy: false,
    proxyFrom: undefined,
    keepalive: undefined,
    socketMode: undefined,
    dnsRefresh: DEFAULT_DNS_REFRESH_SECONDS,
    dnsFamily: "ipv4",
    dnsSpread: false,
    dnsServers: undefined,
    match: undefined,
    peekTimeout: undefined,
    tls: undefined,
    tlsConnect: undefined,
    rate: undefined,
    rateRule: undefined,
    rateClient: undefined,
    balance: { ...BALANCE_DEFAULTS },
  };
}

/** Run a shared check and store its value; the reason when it fails. */
function store<T>(checked: Checked<T>, set: (value: T) => void): string | undefined {
  if (!checked.ok) return checked.reason;
  set(checked.value);
  return undefined;
}

/** A `list` option's words, whatever the format gave (a .conf `a|b` arrives split already). */
function words(value: OptionValue): string[] {
  return Array.isArray(value) ? value : [String(value)];
}

/** Add a match option's entries (sni=, host=, protocol=) to the rule's match, each checked; the first reason when one is invalid. */
function addMatches(options: RuleOptions, kind: keyof RuleMatch, value: OptionValue): string | undefined {
  const match = (options.match ??= { sni: [], host: [], protocol: [] });
  const list: string[] = match[kind];
  const entries = words(value);
  if (entries.length === 0) return `${kind} lists no ${kind === "protocol" ? "protocol" : "name"}`;
  for (const entry of entries) {
    let checked: Checked<string>;
    if (kind === "protocol") {
      const protocol = MATCH_PROTOCOLS.find((candidate) => candidate === entry.toLowerCase());
      checked = protocol === undefined ? { ok: false, reason: `protocol must be one of ${MATCH_PROTOCOLS.join(", ")}, got '${entry}'` } : { ok: true, value: protocol };
    } else {
      checked = checkMatchName(entry, kind);
    }
    if (!checked.ok) return checked.reason;
    if (list.includes(checked.value)) return `${kind} lists '${checked.value}' twice`;
    list.push(checked.value);
  }
  return undefined;
}

/** A rule's TLS-to-backends settings, made when first named (tls-connect=on switches them on before any sub-option). */
function tlsConnectOf(options: RuleOptions, option: string): TlsClientSettings | string {
  return options.tlsConnect ?? `${option} applies to a rule with tls-connect=on (oi speaks TLS to its backends)`;
}

/** The rule's termination settings, made when one of them is first given. */
function tlsServerOf(options: RuleOptions) {
  return (options.tls ??= { certFile: "", keyFile: "", alpn: [], certPem: "", keyPem: "" });
}

/** Seconds a shared bind may wait for a client's first bytes, at most. */
const MAX_PEEK_TIMEOUT = 300;

function checkCount(name: string, value: number, written: string, min: number, max: number): Checked<number> {
  if (!Number.isInteger(value) || value < min || value > max) {
    return { ok: false, reason: `${name} must be a whole number from ${min} to ${max}, got '${written}'` };
  }
  return { ok: true, value };
}

function checkSeconds(name: string, value: number, written: string): Checked<number> {
  if (!Number.isFinite(value) || value <= 0) {
    return { ok: false, reason: `${name} must be a positive number of seconds, got '${written}'` };
  }
  return { ok: true, value };
}

function oneOf<T extends string>(name: string, choices: readonly T[], value: OptionValue, set: (choice: T) => void): string | undefined {
  const choice = choices.find((candidate) => candidate === value);
  if (choice === undefined) return `${name} must be one of ${choices.join(", ")}, got '${String(value)}'`;
  set(choice);
  return undefined;
}

/** An integer option: `[name=N]`, TOML `key = N`, checked within min..max. */
function count(conf: string[], toml: string, min: number, max: number, set: (options: RuleOptions, value: number) => void, table?: "load_balancing"): OptionSpec {
  return {
    conf,
    toml,
    ...(table === undefined ? {} : { table }),
    type: "integer",
    apply: (options, value, written) => store(checkCount(conf[0]!, Number(value), written, min, max), (v) => set(options, v)),
  };
}

/** A bandwidth option: `[rate=100mbit]`, TOML/YAML `rate = "100mbit"` (or a number of bytes per second). */
function bandwidth(conf: string[], toml: string, set: (options: RuleOptions, bytesPerSecond: number) => void): OptionSpec {
  return {
    conf,
    toml,
    type: "rate",
    apply: (options, value) => store(parseRate(conf[0]!, typeof value === "number" ? value : String(value)), (v) => set(options, v)),
  };
}

const FRAMINGS: readonly Framing[] = ["none", "len16"];
const PROXY_VERSIONS: readonly ProxyProtocolVersion[] = ["v1", "v2"];
const ALGORITHMS: readonly Algorithm[] = ["roundrobin", "leastconn", "random", "iphash"];
/** The most backends a rule may have (the balancer tracks tried backends in a 32-bit mask). */
export const MAX_BACKENDS = 32;

/** Why a rule cannot list `count` backends, or undefined when it can (the same reason in every format). */
export function tooManyBackends(count: number): string | undefined {
  return count > MAX_BACKENDS ? `a rule has at most ${MAX_BACKENDS} backends, this one lists ${count}` : undefined;
}

/**
 * Backend names label metrics and the status file: two of one rule may not
 * share one, in any format (a backend listed twice gets a weight instead).
 */
export function duplicateBackendName(backends: readonly { name: string }[]): string | undefined {
  const seen = new Set<string>();
  for (const backend of backends) {
    if (seen.has(backend.name)) return `two backends of this rule are named '${backend.name}'`;
    seen.add(backend.name);
  }
  return undefined;
}

export const RULE_OPTIONS: readonly OptionSpec[] = [
  {
    conf: ["timeout"],
    toml: "timeout",
    type: "integer",
    apply: (options, value, written) => store(checkUdpTimeout(Number(value), written), (v) => (options.timeout = v)),
    inherits: "timeout",
  },
  {
    conf: ["src"],
    toml: "source_address",
    type: "string",
    apply: (options, value) => store(checkSourceAddress(String(value)), (v) => (options.sourceAddress = v)),
  },
  {
    conf: ["connect_timeout", "connect-timeout"],
    toml: "connect_timeout",
    type: "number",
    apply: (options, value, written) =>
      store(checkConnectTimeout(Number(value), written), (v) => (options.connectTimeout = v)),
    inherits: "connectTimeout",
  },
  count(["maxconn"], "max_connections", 1, 10_000_000, (options, v) => (options.maxConnections = v)),
  {
    conf: ["maxconn-client", "maxconn_client"],
    toml: "max_connections_per_client",
    type: "integer",
    apply: (options, value, written) =>
      store(checkMaxConnectionsPerClient(Number(value), written), (v) => (options.maxConnectionsPerClient = v)),
    inherits: "maxConnectionsPerClient",
  },
  {
    conf: ["connrate-client", "connrate_client"],
    toml: "connection_rate_per_client",
    type: "string",
    apply: (options, value) => store(checkConnectionRate(String(value)), (v) => (options.connectionRatePerClient = v)),
    inherits: "connectionRatePerClient",
  },
  {
    conf: ["idle"],
    toml: "idle_timeout",
    type: "number",
    apply: (options, value, written) =>
      store(checkSeconds("idle", Number(value), written), (v) => (options.idleTimeout = v)),
  },
  { ...count(["max_sessions"], "max_sessions", 1, 1_000_000, (options, v) => (options.maxSessions = v)), inherits: "maxSessions" },
  {
    conf: ["frame"],
    toml: "framing",
    type: "string",
    apply: (options, value) => oneOf("frame", FRAMINGS, value, (v) => (options.framing = v)),
  },
  count(["max_datagram"], "max_datagram", 1, MAX_UDP_PAYLOAD, (options, v) => (options.maxDatagram = v)),
  {
    conf: ["proxy"],
    toml: "proxy_protocol",
    type: "string",
    apply: (options, value) => oneOf("proxy", PROXY_VERSIONS, value, (v) => (options.proxyProtocol = v)),
  },
  {
    conf: ["accept_proxy"],
    toml: "accept_proxy",
    type: "switch",
    apply: (options, value) => {
      if (typeof value !== "boolean") return `accept_proxy must be on or off, got '${String(value)}'`;
      options.acceptProxy = value;
      return undefined;
    },
  },
  {
    conf: ["proxy-from", "proxy_from"],
    toml: "proxy_from",
    type: "list",
    apply: (options, value) => {
      const networks: AddressPattern[] = [];
      for (const word of words(value)) {
        const pattern = /^[0-9a-fA-F.:]+(\/\d+)?$/.test(word) ? compilePattern(word) : "a network (10.0.0.0/8, fd00::/8) or an address";
        if (typeof pattern === "string") return `proxy-from '${word}': ${pattern}`;
        networks.push(pattern);
      }
      if (networks.length === 0) return "proxy-from needs at least one network";
      options.proxyFrom = networks;
      return undefined;
    },
  },
  {
    conf: ["keepalive"],
    toml: "keepalive",
    type: "switch-or-seconds",
    apply: (options, value, written) => {
      if (value === false) options.keepalive = undefined;
      else if (value === true) options.keepalive = DEFAULT_KEEPALIVE_SECONDS;
      else {
        const seconds = Number(value);
        if (!Number.isInteger(seconds) || seconds < 1 || seconds > 86_400) {
          return `keepalive must be on, off or a whole number of seconds from 1 to 86400, got '${written}'`;
        }
        options.keepalive = seconds;
      }
      return undefined;
    },
    inherits: "keepalive",
  },
  {
    conf: ["mode"],
    toml: "socket_mode",
    type: "string",
    apply: (options, value) => {
      const text = String(value);
      if (!/^0?[0-7]{3}$/.test(text)) return `mode must be octal permissions like 0660, got '${text}'`;
      options.socketMode = Number.parseInt(text, 8);
      return undefined;
    },
  },
  { ...count(["dns_refresh", "dns-refresh"], "dns_refresh", 0, 86_400, (options, v) => (options.dnsRefresh = v)), inherits: "dnsRefresh" },
  {
    conf: ["lb"],
    toml: "algorithm",
    table: "load_balancing",
    type: "string",
    apply: (options, value) => oneOf("lb", ALGORITHMS, value, (v) => (options.balance.algorithm = v)),
  },
  count(["health_threshold"], "health_threshold", 1, 100, (options, v) => (options.balance.healthThreshold = v), "load_balancing"),
  count(["recovery_timeout"], "recovery_timeout", 1, 86_400, (options, v) => (options.balance.recoveryTimeout = v), "load_balancing"),
  count(["affinity_ttl"], "affinity_ttl", 0, 2_592_000, (options, v) => (options.balance.affinityTtl = v), "load_balancing"),
  count(
    ["affinity_max_entries"],
    "affinity_max_entries",
    100,
    10_000_000,
    (options, v) => (options.balance.affinityMaxEntries = v),
    "load_balancing",
  ),
  {
    conf: ["probe"],
    toml: "probe_interval",
    table: "load_balancing",
    type: "number",
    apply: (options, value, written) =>
      store(checkSeconds("probe", Number(value), written), (v) => (options.balance.probeInterval = v)),
  },
  {
    conf: ["probe_timeout"],
    toml: "probe_timeout",
    table: "load_balancing",
    type: "number",
    apply: (options, value, written) =>
      store(checkSeconds("probe_timeout", Number(value), written), (v) => (options.balance.probeTimeout = v)),
  },
  { conf: ["sni"], toml: "sni", table: "match", type: "list", apply: (options, value) => addMatches(options, "sni", value) },
  { conf: ["host"], toml: "host", table: "match", type: "list", apply: (options, value) => addMatches(options, "host", value) },
  { conf: ["protocol"], toml: "protocol", table: "match", type: "list", apply: (options, value) => addMatches(options, "protocol", value) },
  {
    conf: ["peek-timeout", "peek_timeout"],
    toml: "peek_timeout",
    type: "number",
    apply: (options, value, written) => {
      const seconds = Number(value);
      if (!Number.isFinite(seconds) || seconds <= 0 || seconds > MAX_PEEK_TIMEOUT) {
        return `peek-timeout must be a number of seconds above 0 and at most ${MAX_PEEK_TIMEOUT}, got '${written}'`;
      }
      options.peekTimeout = seconds;
      return undefined;
    },
  },
  {
    conf: ["tls-cert", "tls_cert"],
    toml: "cert",
    table: "tls",
    type: "string",
    apply: (options, value) => {
      if (String(value) === "") return "tls-cert needs a file (PEM certificate chain)";
      tlsServerOf(options).certFile = String(value);
      return undefined;
    },
  },
  {
    conf: ["tls-key", "tls_key"],
    toml: "key",
    table: "tls",
    type: "string",
    apply: (options, value) => {
      if (String(value) === "") return "tls-key needs a file (PEM private key)";
      tlsServerOf(options).keyFile = String(value);
      return undefined;
    },
  },
  {
    conf: ["tls-alpn", "tls_alpn"],
    toml: "alpn",
    table: "tls",
    type: "list",
    apply: (options, value) => {
      const alpn = words(value);
      const problem = checkAlpn(alpn);
      if (problem !== undefined) return `tls-alpn: ${problem}`;
      tlsServerOf(options).alpn = alpn;
      return undefined;
    },
  },
  {
    conf: ["tls-connect", "tls_connect"],
    toml: "tls_connect",
    type: "switch",
    opens: "tls_connect",
    apply: (options, value) => {
      if (typeof value !== "boolean") return `tls-connect must be on or off, got '${String(value)}'`;
      options.tlsConnect = value ? (options.tlsConnect ?? { serverName: undefined, caFile: undefined, caPem: undefined, verify: true }) : undefined;
      return undefined;
    },
  },
  {
    conf: ["tls-ca", "tls_ca"],
    toml: "ca",
    table: "tls_connect",
    type: "string",
    apply: (options, value) => {
      const settings = tlsConnectOf(options, "tls-ca");
      if (typeof settings === "string") return settings;
      if (String(value) === "") return "tls-ca needs a file (PEM certificates of the authorities to trust)";
      settings.caFile = String(value);
      return undefined;
    },
  },
  {
    conf: ["tls-servername", "tls_servername"],
    toml: "servername",
    table: "tls_connect",
    type: "string",
    apply: (options, value) => {
      const settings = tlsConnectOf(options, "tls-servername");
      if (typeof settings === "string") return settings;
      return store(checkHost(String(value), "tls-servername"), (name) => (settings.serverName = name.toLowerCase()));
    },
  },
  {
    conf: ["tls-verify", "tls_verify"],
    toml: "verify",
    table: "tls_connect",
    type: "switch",
    apply: (options, value) => {
      const settings = tlsConnectOf(options, "tls-verify");
      if (typeof settings === "string") return settings;
      if (typeof value !== "boolean") return `tls-verify must be on or off, got '${String(value)}'`;
      settings.verify = value;
      return undefined;
    },
  },
  bandwidth(["rate"], "rate", (options, v) => (options.rate = v)),
  bandwidth(["rate-rule", "rate_rule"], "rate_rule", (options, v) => (options.rateRule = v)),
  bandwidth(["rate-client", "rate_client"], "rate_client", (options, v) => (options.rateClient = v)),
];

export const CONF_OPTION_NAMES = RULE_OPTIONS.map((spec) => spec.conf[0]!);

/** Find an option by any of its .conf spellings. */
export function confOption(name: string): OptionSpec | undefined {
  return RULE_OPTIONS.find((spec) => spec.conf.includes(name));
}

/**
 * .conf option text to a typed value: integers and numbers must look like
 * them, switches are on/off/true/false/yes/no (a bare name is on); anything
 * else becomes NaN or the text itself, and the check says why.
 */
export function parseConfOptionValue(spec: OptionSpec, text: string | undefined): OptionValue {
  if (spec.type === "string" || spec.type === "rate") return text ?? "";
  // `sni=a.example.com|*.b.example.com`: an empty word is kept, for the check to name it.
  if (spec.type === "list") return (text ?? "").split("|").map((word) => word.trim());
  if (spec.type === "switch" || spec.type === "switch-or-seconds") {
    if (text === undefined) return true;
    const lower = text.toLowerCase();
    if (["on", "true", "yes"].includes(lower)) return true;
    if (["off", "false", "no"].includes(lower)) return false;
    if (spec.type === "switch") return text;
  }
  const pattern = spec.type === "integer" || spec.type === "switch-or-seconds" ? /^\d+$/ : /^(\d+\.?\d*|\.\d+)$/;
  return text !== undefined && pattern.test(text) ? Number(text) : Number.NaN;
}

/** Set the inheritable options a rule did not set itself from `defaults`. */
export function inheritDefaults(options: RuleOptions, defaults: RuleDefaults, explicit: ReadonlySet<keyof RuleDefaults>): void {
  for (const key of Object.keys(defaults) as Array<keyof RuleDefaults>) {
    if (!explicit.has(key)) Object.assign(options, { [key]: defaults[key] });
  }
}

export function defaultRuleDefaults(): RuleDefaults {
  const options = defaultRuleOptions();
  return {
    timeout: options.timeout,
    connectTimeout: options.connectTimeout,
    maxSessions: options.maxSessions,
    dnsRefresh: options.dnsRefresh,
    dnsFamily: options.dnsFamily,
    dnsSpread: options.dnsSpread,
    dnsServers: options.dnsServers,
    keepalive: options.keepalive,
    bufferSize: options.bufferSize,
    maxConnectionsPerClient: options.maxConnectionsPerClient,
    connectionRatePerClient: options.connectionRatePerClient,
    clientTableSize: options.clientTableSize,
  };
}
