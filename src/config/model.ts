/**
 * @module Building blocks of the config model shared by every parser: empty
 * values to start from, and the mapping between a rule's mode and its two
 * transports.
 */

import { formatEndpoint, formatTarget } from "../endpoint.ts";
import type { AccessList, Backend, Config, ConfigFormat, Endpoint, ForwardRule, RuleMatch, RuleMode, TlsClientSettings, Transport } from "../types.ts";

export function emptyAccessList(): AccessList {
  return { allow: [], deny: [] };
}

/** Seconds between STATS lines in the log when the config does not say: rinetd-uv's default. */
export const DEFAULT_STATS_LOG_INTERVAL = 60;

export function emptyConfig(file: string, format: ConfigFormat): Config {
  return {
    file,
    format,
    rules: [],
    globalAccess: emptyAccessList(),
    logFile: undefined,
    pidFile: undefined,
    logFormat: "rinetd",
    maxConnections: undefined,
    metrics: undefined,
    status: undefined,
    // rinetd-uv's default (a STATS line a minute) for the formats it reads; oxidinetd's TOML never had one.
    statsLogInterval: format === "toml" ? 0 : DEFAULT_STATS_LOG_INTERVAL,
    // Bulk relays move to the splice worker; short, idle and chatty ones stay on the plain path.
    splice: "auto",
    sockets: "auto",
    listenBacklog: undefined,
    workers: undefined,
  };
}

/** The mode named by the bind side's transport, then the connect side's (a unix socket is a stream, like TCP). */
export function modeOf(bind: Transport, connect: Transport): RuleMode {
  const from = bind === "udp" ? "udp" : "tcp";
  const to = connect === "udp" ? "udp" : "tcp";
  if (from === to) return from;
  return from === "udp" ? "udptotcp" : "tcptoudp";
}

/** [bind transport, connect transport] for a mode, as oxidinetd's `protocol` sets them. */
export function transportsOf(mode: RuleMode): [Transport, Transport] {
  switch (mode) {
    case "tcp":
      return ["tcp", "tcp"];
    case "udp":
      return ["udp", "udp"];
    case "udptotcp":
      return ["udp", "tcp"];
    case "tcptoudp":
      return ["tcp", "udp"];
  }
}

/**
 * A rule's name when the config gives none: its bind endpoint, as metrics
 * and the status file show it, and its match when it shares the bind with
 * other rules (`0.0.0.0:443/tcp [sni=a.example.com]`).
 */
export function defaultRuleName(rule: Pick<ForwardRule, "bind" | "match">): string {
  const bind = formatEndpoint(rule.bind);
  return rule.match === undefined ? bind : `${bind} [${describeMatch(rule.match)}]`;
}

/** A match as the .conf bracket writes it: `sni=a.example.com|*.b.example.com,protocol=tls`. */
export function describeMatch(match: RuleMatch): string {
  const parts: string[] = [];
  if (match.sni.length > 0) parts.push(`sni=${match.sni.join("|")}`);
  if (match.host.length > 0) parts.push(`host=${match.host.join("|")}`);
  if (match.protocol.length > 0) parts.push(`protocol=${match.protocol.join("|")}`);
  return parts.join(",");
}

/** A backend; its name when none is given is where it points (`10.0.0.1:80`, `unix:/run/app.sock`). */
export function backendOf(
  endpoint: Endpoint,
  name: string | undefined,
  weight: number,
  sourceAddress: string | undefined,
  tls?: TlsClientSettings,
): Backend {
  const backend: Backend = { name: name ?? formatTarget(endpoint), endpoint, weight, sourceAddress };
  if (tls !== undefined) backend.tls = tls;
  return backend;
}
