/**
 * @module Human-readable views of a loaded config for `oi check`: the
 * normalized rules, one line each, and config problems as `FILE:LINE: reason`.
 */

import { formatTarget } from "../endpoint.ts";
import { formatHostPort } from "../ip.ts";
import type { AdminSettings, AccessList, Backend, Config, ConfigIssue, ForwardRule, SocketsMode, SpliceMode, TlsClientSettings } from "../types.ts";
import { defaultRuleName, describeMatch } from "./model.ts";
import { BALANCE_DEFAULTS } from "./options.ts";
import { DEFAULT_CLIENT_TABLE_ENTRIES } from "../clients.ts";
import { formatRate } from "../rate/units.ts";

const FORMAT_NAMES = { conf: "rinetd .conf", toml: "oxidinetd TOML", yaml: "rinetd-uv YAML" } as const;
const SEPARATOR = "  ";

const SOCKETS_DESCRIPTIONS: Record<SocketsMode, string> = {
  auto: "auto (TCP rules on oi's own system calls where they work here, else Bun's sockets)",
  direct: "direct (TCP rules on oi's own system calls)",
  bun: "bun (TCP rules on Bun's sockets)",
};

const SPLICE_DESCRIPTIONS: Record<SpliceMode, string> = {
  off: "off (every TCP relay moves its bytes through JavaScript)",
  on: "on (established TCP relays move in a splice(2) worker)",
  auto: "auto (TCP relays that carry bulk move to a splice(2) worker)",
};

export function describeConfig(config: Config): string {
  const ruleCount = `${config.rules.length} forwarding rule${config.rules.length === 1 ? "" : "s"}`;
  const status = config.status;
  return [
    `${config.file}: ${FORMAT_NAMES[config.format]} format, ${ruleCount}`,
    `global access: ${describeAccess(config.globalAccess) || "everyone"}`,
    `log file: ${config.logFile ?? "none"}`,
    `log format: ${config.logFormat}`,
    `pid file: ${config.pidFile ?? "none"}`,
    `max connections: ${config.maxConnections ?? "descriptor limit"}`,
    `metrics: ${config.metrics === undefined ? "off" : `http://${formatHostPort(config.metrics.host, config.metrics.port)}/metrics`}`,
    ...(config.admin?.address === undefined ? [] : [`admin: ${describeAdmin(config.admin)}`]),
    ...(status === undefined ? [] : [`status file: ${status.path} (${status.format}, every ${status.interval}s)`]),
    ...(config.statsLogInterval > 0 ? [`stats log: every ${config.statsLogInterval}s`] : []),
    `splice: ${SPLICE_DESCRIPTIONS[config.splice]}`,
    `sockets: ${SOCKETS_DESCRIPTIONS[config.sockets]}`,
    ...(config.listenBacklog === undefined ? [] : [`listen backlog: ${config.listenBacklog}`]),
    ...(config.workers === undefined ? [] : [`workers: ${config.workers}`]),
    ...(config.watch === true ? ["watch: on (reload when the config or an included file changes)"] : []),
    ...(config.dnsServers === undefined ? [] : [`dns servers: ${config.dnsServers.map((server) => formatHostPort(server.host, server.port)).join(", ")} (every lookup)`]),
    ...(config.privilege === undefined
      ? []
      : [`runs as: user ${config.privilege.user} (${config.privilege.uid}), group ${config.privilege.group} (${config.privilege.gid}) once its listeners are bound`]),
    ...config.rules.map(describeRule),
  ].join("\n");
}

function describeAdmin(admin: AdminSettings): string {
  const address = admin.address;
  const where = address === undefined ? "" : address.transport === "unix" ? `unix:${address.path} (mode 0${admin.socketMode.toString(8)})` : `http://${formatHostPort(address.host, address.port)}`;
  const access = admin.tokenFile === undefined ? "no token" : `token from ${admin.tokenFile}${admin.readOpen ? ", reads open" : ""}`;
  return `${where}, ${access}`;
}

function describeBackend(backend: Backend, several: boolean): string {
  const target = formatTarget(backend.endpoint);
  const weight = several && backend.weight !== 1 ? `*${backend.weight}` : "";
  const named = backend.name !== target ? `(${backend.name})` : "";
  const source = backend.sourceAddress === undefined ? "" : `[src=${backend.sourceAddress}]`;
  return `${target}${weight}${named}${source}${describeTlsConnect(backend.tls)}`;
}

/** `[tls servername=api.internal ca=/etc/oi/ca.pem]`, `[tls verify=off]`, or "" without TLS to the backend. */
function describeTlsConnect(tls: TlsClientSettings | undefined): string {
  if (tls === undefined) return "";
  const parts = ["tls"];
  if (tls.serverName !== undefined) parts.push(`servername=${tls.serverName}`);
  parts.push(tls.caFile === undefined ? "ca=system" : `ca=${tls.caFile}`);
  if (!tls.verify) parts.push("verify=off");
  return `[${parts.join(" ")}]`;
}

/** e.g. `oi.conf:12  tcp  0.0.0.0:80 -> 10.1.1.2:80  connect_timeout=10s  allow 10.0.0.*`. */
export function describeRule(rule: ForwardRule): string {
  const several = rule.backends.length > 1;
  // A port range shows as one: `0.0.0.0:8000-8099 -> 10.0.0.1:9000-9099`.
  const bind = formatTarget(rule.bind);
  const parts = [
    `${rule.at.file}:${rule.at.line}`,
    rule.mode,
    `${bind} -> ${rule.backends.map((backend) => describeBackend(backend, several)).join(",")}`,
  ];
  if (rule.name !== defaultRuleName(rule)) parts.push(`name=${rule.name}`);
  if (rule.match !== undefined) parts.push(`match ${describeMatch(rule.match)}`);
  if (rule.peekTimeout !== undefined) parts.push(`peek-timeout=${rule.peekTimeout}s`);
  if (rule.tls !== undefined) {
    const alpn = rule.tls.alpn.length === 0 ? "none" : rule.tls.alpn.join("|");
    parts.push(`tls-cert=${rule.tls.certFile}`, `tls-key=${rule.tls.keyFile}`, `tls-alpn=${alpn}`);
  }
  if (rule.bindIpv6Only === true) parts.push("ipv6_only (0.0.0.0 has the port for IPv4)");
  const datagrams = rule.bind.transport === "udp" || rule.backends.some((backend) => backend.endpoint.transport === "udp");
  const streamBackends = rule.backends.some((backend) => backend.endpoint.transport !== "udp");
  // Only the settings that act on this kind of rule.
  if (datagrams) parts.push(`timeout=${rule.timeout}s`);
  if (streamBackends) parts.push(`connect_timeout=${rule.connectTimeout}s`);
  if (rule.sourceAddress !== undefined) parts.push(`src=${rule.sourceAddress}`);
  if (rule.maxConnections !== undefined) parts.push(`maxconn=${rule.maxConnections}`);
  if (rule.maxConnectionsPerClient !== undefined) parts.push(`maxconn-client=${rule.maxConnectionsPerClient}`);
  const rate = rule.connectionRatePerClient;
  if (rate !== undefined) parts.push(`connrate-client=${rate.connections}/${rate.seconds}`);
  // The table bound matters only to rules that remember clients, and is shown when it is not the default.
  if ((rate !== undefined || rule.maxConnectionsPerClient !== undefined) && rule.clientTableSize !== DEFAULT_CLIENT_TABLE_ENTRIES) {
    parts.push(`client-table-size=${rule.clientTableSize}`);
  }
  if (rule.idleTimeout !== undefined) parts.push(`idle=${rule.idleTimeout}s`);
  if (rule.rate !== undefined) parts.push(`rate=${formatRate(rule.rate)}`);
  if (rule.rateRule !== undefined) parts.push(`rate-rule=${formatRate(rule.rateRule)}`);
  if (rule.rateClient !== undefined) parts.push(`rate-client=${formatRate(rule.rateClient)}`);
  if (rule.bind.transport === "udp") parts.push(`max_sessions=${rule.maxSessions}`);
  if (rule.framing !== "none") parts.push(`frame=${rule.framing}`);
  if (datagrams) parts.push(`max_datagram=${rule.maxDatagram}`);
  if (rule.proxyProtocol !== undefined) parts.push(`proxy=${rule.proxyProtocol}`);
  if (rule.acceptProxy) parts.push("accept_proxy");
  if (rule.proxyFrom !== undefined) parts.push(`proxy-from=${rule.proxyFrom.map((pattern) => pattern.text).join("|")}`);
  if (rule.keepalive !== undefined) parts.push(`keepalive=${rule.keepalive}s`);
  if (rule.socketMode !== undefined) parts.push(`mode=0${rule.socketMode.toString(8)}`);
  if (several) parts.push(...describeBalance(rule));
  const access = describeAccess(rule.access);
  if (access !== "") parts.push(access);
  return parts.join(SEPARATOR);
}

/** The balancing settings that differ from the defaults (the algorithm always). */
function describeBalance(rule: ForwardRule): string[] {
  const balance = rule.balance;
  const parts = [`lb=${balance.algorithm}`];
  if (balance.healthThreshold !== BALANCE_DEFAULTS.healthThreshold) parts.push(`health_threshold=${balance.healthThreshold}`);
  if (balance.recoveryTimeout !== BALANCE_DEFAULTS.recoveryTimeout) parts.push(`recovery_timeout=${balance.recoveryTimeout}s`);
  if (balance.affinityTtl > 0) parts.push(`affinity_ttl=${balance.affinityTtl}s`, `affinity_max_entries=${balance.affinityMaxEntries}`);
  if (balance.probeInterval !== undefined) parts.push(`probe=${balance.probeInterval}s`, `probe_timeout=${balance.probeTimeout}s`);
  return parts;
}

/** `allow A  allow B  deny C`, or "" for an empty list. */
function describeAccess(list: AccessList): string {
  return [...list.allow, ...list.deny].map((rule) => `${rule.kind} ${rule.pattern.text}`).join(SEPARATOR);
}

/** `FILE:LINE: reason`, or `FILE: reason` for a problem with the whole file (line 0). */
export function formatIssue(issue: ConfigIssue): string {
  return issue.line === 0 ? `${issue.file}: ${issue.reason}` : `${issue.file}:${issue.line}: ${issue.reason}`;
}
