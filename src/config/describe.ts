/**
 * @module Human-readable views of a loaded config for `oi check`: the
 * normalized rules, one line each, and config problems as `FILE:LINE: reason`.
 */

import { formatHostPort } from "../ip.ts";
import type { AccessList, Config, ConfigIssue, ForwardRule } from "../types.ts";

const FORMAT_NAMES = { conf: "rinetd .conf", toml: "oxidinetd TOML" } as const;
const SEPARATOR = "  ";

export function describeConfig(config: Config): string {
  const ruleCount = `${config.rules.length} forwarding rule${config.rules.length === 1 ? "" : "s"}`;
  return [
    `${config.file}: ${FORMAT_NAMES[config.format]} format, ${ruleCount}`,
    `global access: ${describeAccess(config.globalAccess) || "everyone"}`,
    `log file: ${config.logFile ?? "none"}`,
    `log format: ${config.logFormat}`,
    `pid file: ${config.pidFile ?? "none"}`,
    `max connections: ${config.maxConnections ?? "descriptor limit"}`,
    `metrics: ${config.metrics === undefined ? "off" : `http://${formatHostPort(config.metrics.host, config.metrics.port)}/metrics`}`,
    ...config.rules.map(describeRule),
  ].join("\n");
}

/** e.g. `oi.conf:12  tcp  0.0.0.0:80 -> 10.1.1.2:80  connect_timeout=10s  allow 10.0.0.*`. */
export function describeRule(rule: ForwardRule): string {
  const parts = [
    `${rule.at.file}:${rule.at.line}`,
    rule.mode,
    `${formatHostPort(rule.bind.host, rule.bind.port)} -> ${formatHostPort(rule.connect.host, rule.connect.port)}`,
  ];
  // Only the settings that act on this mode: the UDP idle timeout, the TCP connect timeout.
  if (rule.bind.transport === "udp" || rule.connect.transport === "udp") parts.push(`timeout=${rule.timeout}s`);
  if (rule.connect.transport === "tcp") parts.push(`connect_timeout=${rule.connectTimeout}s`);
  if (rule.sourceAddress !== undefined) parts.push(`src=${rule.sourceAddress}`);
  if (rule.maxConnections !== undefined) parts.push(`maxconn=${rule.maxConnections}`);
  if (rule.idleTimeout !== undefined) parts.push(`idle=${rule.idleTimeout}s`);
  if (rule.bind.transport === "udp") parts.push(`max_sessions=${rule.maxSessions}`);
  if (rule.framing !== "none") parts.push(`frame=${rule.framing}`);
  if (rule.bind.transport === "udp" || rule.connect.transport === "udp") parts.push(`max_datagram=${rule.maxDatagram}`);
  const access = describeAccess(rule.access);
  if (access !== "") parts.push(access);
  return parts.join(SEPARATOR);
}

/** `allow A  allow B  deny C`, or "" for an empty list. */
function describeAccess(list: AccessList): string {
  return [...list.allow, ...list.deny].map((rule) => `${rule.kind} ${rule.pattern.text}`).join(SEPARATOR);
}

/** `FILE:LINE: reason`, or `FILE: reason` for a problem with the whole file (line 0). */
export function formatIssue(issue: ConfigIssue): string {
  return issue.line === 0 ? `${issue.file}: ${issue.reason}` : `${issue.file}:${issue.line}: ${issue.reason}`;
}
