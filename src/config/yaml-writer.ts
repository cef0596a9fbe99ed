/**
 * @module The running config written as rinetd-uv YAML (the admin API's
 * `GET /api/v1/config?format=yaml`), whatever format it was read from, so
 * an operator can save what the API changed. Every rule option is written
 * out explicitly (YAML's defaults differ from the `.conf` ones), so the text
 * loads back to the same rules. Settings YAML has only as globals
 * (dns_multi_ip_expand, dns_multi_ip_proto, buffer_size, client_table_size)
 * are written from the first rule.
 */
import { formatEndpoint } from "../endpoint.ts";
import { formatHostPort } from "../ip.ts";
import type { AccessList, Backend, Config, ForwardRule, TlsClientSettings } from "../types.ts";

type Value = string | number | boolean | Value[] | { [key: string]: Value | undefined };
type Mapping = { [key: string]: Value | undefined };

function accessOf(list: AccessList): Mapping | undefined {
  if (list.allow.length === 0 && list.deny.length === 0) return undefined;
  return {
    ...(list.allow.length === 0 ? {} : { allow: list.allow.map((rule) => rule.pattern.text) }),
    ...(list.deny.length === 0 ? {} : { deny: list.deny.map((rule) => rule.pattern.text) }),
  };
}

function tlsClientOf(tls: TlsClientSettings): Mapping {
  return { ...(tls.caFile === undefined ? {} : { ca: tls.caFile }), ...(tls.serverName === undefined ? {} : { servername: tls.serverName }), verify: tls.verify };
}

function sameTls(a: TlsClientSettings | undefined, b: TlsClientSettings | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.caFile === b.caFile && a.serverName === b.serverName && a.verify === b.verify);
}

function backendOf(rule: ForwardRule, backend: Backend): Mapping {
  const own = backend.tls !== undefined && !sameTls(backend.tls, rule.tlsConnect) ? tlsClientOf(backend.tls) : undefined;
  return {
    dest: formatEndpoint(backend.endpoint),
    name: backend.name,
    // An srv: backend's weights come from its records (a weight given to it is refused).
    ...(backend.endpoint.srv === true ? {} : { weight: backend.weight }),
    ...(backend.sourceAddress === undefined ? {} : { src: backend.sourceAddress }),
    ...(own === undefined ? {} : { tls: own }),
  };
}

/** A rule's options under their YAML keys (every one, defaults included), as the admin API shows them and the export writes them. */
export function ruleOptionsYaml(rule: ForwardRule): Mapping {
  const balance = rule.balance;
  const options: Mapping = {
    timeout: rule.timeout,
    connect_timeout: rule.connectTimeout,
    ...(rule.sourceAddress === undefined ? {} : { src: rule.sourceAddress }),
    ...(rule.maxConnections === undefined ? {} : { max_connections: rule.maxConnections }),
    ...(rule.maxConnectionsPerClient === undefined ? {} : { max_connections_per_client: rule.maxConnectionsPerClient }),
    ...(rule.connectionRatePerClient === undefined
      ? {}
      : { connection_rate_per_client: `${rule.connectionRatePerClient.connections}/${rule.connectionRatePerClient.seconds}` }),
    ...(rule.idleTimeout === undefined ? {} : { idle_timeout: rule.idleTimeout }),
    max_sessions: rule.maxSessions,
    framing: rule.framing,
    max_datagram: rule.maxDatagram,
    ...(rule.proxyProtocol === undefined ? {} : { proxy_protocol: rule.proxyProtocol }),
    accept_proxy: rule.acceptProxy,
    ...(rule.proxyFrom === undefined ? {} : { proxy_from: rule.proxyFrom.map((pattern) => pattern.text) }),
    keepalive: rule.keepalive ?? false,
    ...(rule.socketMode === undefined ? {} : { mode: `0${rule.socketMode.toString(8)}` }),
    dns_refresh: rule.dnsRefresh,
    load_balancing: {
      algorithm: balance.algorithm,
      health_threshold: balance.healthThreshold,
      recovery_timeout: balance.recoveryTimeout,
      affinity_ttl: balance.affinityTtl,
      affinity_max_entries: balance.affinityMaxEntries,
      ...(balance.probeInterval === undefined ? {} : { probe_interval: balance.probeInterval, probe_timeout: balance.probeTimeout }),
    },
    ...(rule.match === undefined
      ? {}
      : {
          match: {
            ...(rule.match.sni.length === 0 ? {} : { sni: rule.match.sni }),
            ...(rule.match.host.length === 0 ? {} : { host: rule.match.host }),
            ...(rule.match.protocol.length === 0 ? {} : { protocol: rule.match.protocol }),
          },
        }),
    ...(rule.peekTimeout === undefined ? {} : { peek_timeout: rule.peekTimeout }),
    ...(rule.tls === undefined ? {} : { tls: { cert: rule.tls.certFile, key: rule.tls.keyFile, alpn: rule.tls.alpn } }),
    ...(rule.tlsConnect === undefined ? {} : { tls_connect: tlsClientOf(rule.tlsConnect) }),
    ...(rule.rate === undefined ? {} : { rate: rule.rate }),
    ...(rule.rateRule === undefined ? {} : { rate_rule: rule.rateRule }),
    ...(rule.rateClient === undefined ? {} : { rate_client: rule.rateClient }),
  };
  const access = accessOf(rule.access);
  if (access !== undefined) options.access = access;
  return options;
}

/** The rules of `config` grouped by name (the binds of one YAML rule share it), as YAML rule mappings. */
function rulesOf(config: Config): Mapping[] {
  const byName = new Map<string, ForwardRule[]>();
  for (const rule of config.rules) {
    const group = byName.get(rule.name);
    if (group === undefined) byName.set(rule.name, [rule]);
    else group.push(rule);
  }
  return [...byName.values()].map((group) => {
    const first = group[0]!;
    const binds = group.map((rule) => formatEndpoint(rule.bind));
    return {
      name: first.name,
      bind: binds.length === 1 ? binds[0] : binds,
      connect: first.backends.map((backend) => backendOf(first, backend)),
      ...ruleOptionsYaml(first),
    };
  });
}

function globalOf(config: Config): Mapping {
  const first = config.rules[0];
  const admin = config.admin;
  const global: Mapping = {
    ...(config.logFile === undefined ? {} : { log_file: config.logFile }),
    ...(config.logFormat === "common" ? { log_common: true } : config.logFormat === "json" ? { log_json: true } : {}),
    ...(config.pidFile === undefined ? {} : { pid_file: config.pidFile }),
    ...(config.maxConnections === undefined ? {} : { max_connections: config.maxConnections }),
    ...(config.metrics === undefined ? {} : { metrics: `${config.metrics.host.includes(":") ? `[${config.metrics.host}]` : config.metrics.host}:${config.metrics.port}` }),
    ...(config.status === undefined
      ? {}
      : { status: { enabled: true, file: config.status.path, interval: config.status.interval, format: config.status.format } }),
    // Always written: YAML's default (60 s) is not TOML's (off), and 0 must stay off when loaded back.
    stats_log_interval: config.statsLogInterval,
    splice: config.splice === "auto" ? "auto" : config.splice === "on",
    sockets: config.sockets,
    ...(config.listenBacklog === undefined ? {} : { listen_backlog: config.listenBacklog }),
    ...(config.workers === undefined ? {} : { workers: config.workers }),
    ...(config.dnsServers === undefined ? {} : { dns_servers: config.dnsServers.map((server) => formatHostPort(server.host, server.port)).join(",") }),
    ...(config.user === undefined ? {} : { user: config.user.name }),
    ...(config.group === undefined ? {} : { group: config.group.name }),
    ...(first === undefined
      ? {}
      : {
          dns_multi_ip_expand: first.dnsSpread,
          dns_multi_ip_proto: first.dnsFamily,
          buffer_size: first.bufferSize,
          client_table_size: first.clientTableSize,
        }),
  };
  if (admin?.address !== undefined) {
    const address = admin.address;
    global.admin = address.transport === "unix" ? `unix:${address.path}` : `${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;
    if (admin.tokenFile !== undefined) global.admin_token = admin.tokenFile;
    global.admin_mode = `0${admin.socketMode.toString(8)}`;
    if (admin.readOpen) global.admin_read = "open";
  }
  const access = accessOf(config.globalAccess);
  if (access !== undefined) global.access = access;
  return global;
}

/** The whole running config as YAML text. */
export function configYaml(config: Config): string {
  const header = `# oi: the running configuration (read from ${config.file}, with the rule changes made through the admin API)\n`;
  return header + emit({ global: globalOf(config), rules: rulesOf(config) }, 0);
}

/** Block-style YAML; every string double-quoted (JSON's escapes are YAML's), so no value is ever read as another type. */
function emit(value: Value, indent: number): string {
  const pad = " ".repeat(indent);
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]\n";
    return value
      .map((item) => {
        if (isMapping(item)) {
          const body = emit(item, indent + 2);
          return `${pad}- ${body.slice(indent + 2)}`;
        }
        return `${pad}- ${scalar(item)}\n`;
      })
      .join("");
  }
  if (isMapping(value)) {
    const entries = Object.entries(value).filter((entry): entry is [string, Value] => entry[1] !== undefined);
    if (entries.length === 0) return "{}\n";
    return entries
      .map(([key, item]) => {
        if (Array.isArray(item)) return item.length === 0 ? `${pad}${key}: []\n` : `${pad}${key}:\n${emit(item, indent + 2)}`;
        if (isMapping(item)) return Object.keys(item).length === 0 ? `${pad}${key}: {}\n` : `${pad}${key}:\n${emit(item, indent + 2)}`;
        return `${pad}${key}: ${scalar(item)}\n`;
      })
      .join("");
  }
  return `${scalar(value)}\n`;
}

function isMapping(value: Value): value is Mapping {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function scalar(value: Value): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}
